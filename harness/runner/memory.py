"""Memory figures of this process, as benchmark_model reports them.

They describe the whole benchmark process (interpreter, Python, numpy), not
the model alone, which is also true of the real tool's figures.
"""

from __future__ import annotations

import threading

_STATUS = "/proc/self/status"


def status_kb(field: str) -> int | None:
    """A `kB` field of /proc/self/status (VmHWM, VmRSS); None where there is none."""
    try:
        with open(_STATUS, encoding="ascii") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def high_water_mark_kb() -> int | None:
    """Peak resident set size so far (VmHWM): what getrusage's ru_maxrss reports."""
    return status_kb("VmHWM")


class PeakMemoryMonitor:
    """--report_peak_memory_footprint: samples VmRSS from a thread every interval.

    Like the real MemoryUsageMonitor it runs beside the benchmark, which is
    why the flag is off by default: the sampling can disturb the timings.
    """

    def __init__(self, interval_ms: int) -> None:
        self._interval_s = interval_ms / 1000.0
        self._stop = threading.Event()
        self._peak_kb = 0
        self._thread = threading.Thread(target=self._sample, name="peak-memory", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> float | None:
        """Stops sampling; the peak in MB, or None when VmRSS cannot be read."""
        self._stop.set()
        self._thread.join()
        self._take_sample()
        return self._peak_kb / 1024.0 if self._peak_kb > 0 else None

    def _sample(self) -> None:
        while True:
            self._take_sample()
            if self._stop.wait(self._interval_s):
                return

    def _take_sample(self) -> None:
        rss_kb = status_kb("VmRSS")
        if rss_kb is not None and rss_kb > self._peak_kb:
            self._peak_kb = rss_kb
