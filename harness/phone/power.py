"""Average power of a phone while a benchmark runs, from its battery fuel gauge.

A background thread reads the battery's `status`, `current_now` and
`voltage_now` about ten times a second and `stop()` turns the samples into
one PowerReading. The rule is never to make a number up: power is None, with
the reason, whenever the gauge cannot tell what the phone draws.

The samples come through ONE long-lived `adb shell` per window: a loop on the
phone prints a sample per tick, each closed by an end line, and the thread
parses them as they arrive; a sample whose end line has not arrived is not
whole and is dropped. `stop()` closes the stream, which ends the loop: adbd
hangs up the shell (and its next write would fail on the closed stream
anyway). A round trip per sample (a new adb connection, a new shell) made
power sampling 72% of the harness's CPU per case and most of the adb server's
with 32 virtual phones (bench/farm_scale.py). A stream that breaks or cannot
open is reopened after one interval, until the window ends.

How a window of samples is judged (`reading_from_samples`):
- `status` decides the direction, because the sign of current_now is not
  portable: the kernel ABI and the virtual devices say negative = out of the
  battery, many vendor drivers (Samsung, older Qualcomm) print discharge as a
  positive number. `Charging`/`Full` anywhere in the window -> "charging";
  `Not charging` (plugged in with charging paused, the phone runs off the
  charger and the battery current says nothing about the load) -> "external
  power"; only `Discharging` samples are used, |current| being the load.
- Both signs among Discharging samples means current flowed into the battery
  for part of the window (a charger came and went faster than `status`
  followed) -> "charging".
- current_now or voltage_now missing or 0 -> the sample is no reading ("no
  fuel gauge" if no sample had one).
- Units: the ABI says uA, a few drivers print mA. A phone awake enough to run
  a benchmark draws more than 10 mA and less than 10 A, so a median magnitude
  below 10_000 can only be mA. Voltage must be a battery's (2.5..10 V in uV,
  dual-cell phones included); a current beyond 20 A is no phone's. Anything
  else -> "implausible reading".
- Fewer than 2 usable samples -> "too few samples".

On virtual devices the numbers come from the device's documented power model
(harness/defaults/virtual/README.md), so the method is "model", not "fuel_gauge".
Both measure the whole phone, idle power included, not the model alone.
"""

from __future__ import annotations

import contextlib
import socket
import statistics
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum

import adbutils

from harness.errors import HarnessError
from harness.phone.device import SHELL_EXIT, SHELL_STDOUT, Phone, close_stream, read_shell_packet
from harness.phone.facts import PowerSupply, parse_power_supply_uevent
from harness.records import PowerMethod

BATTERY_DIR = "/sys/class/power_supply/battery"
SAMPLE_END = "POWER_SAMPLE_END"  # the line that proves the sample before it is whole
_END_LINE = f"{SAMPLE_END}\n".encode()
# One sample: uevent lines so devicefacts' parser reads them, then the end line,
# in one printf (one write, so usually one packet). A file that cannot be read
# leaves its value empty rather than shifting the others.
SAMPLE_COMMAND = (
    "printf 'POWER_SUPPLY_STATUS=%s\\nPOWER_SUPPLY_CURRENT_NOW=%s\\nPOWER_SUPPLY_VOLTAGE_NOW=%s\\n"
    f"{SAMPLE_END}\\n' "
    '"$(cat $b/status 2>/dev/null)" "$(cat $b/current_now 2>/dev/null)" "$(cat $b/voltage_now 2>/dev/null)"'
)


def stream_command(interval_s: float) -> str:
    """The phone-side loop: a sample, a pause; until the stream closes.

    toybox's sleep (Android 6+, which the harness needs anyway for sha256sum)
    takes fractions; should a sleep refuse them, `|| sleep 1` keeps the loop
    from spinning on the phone.
    """
    return f"b={BATTERY_DIR}; while true; do {SAMPLE_COMMAND}; sleep {interval_s:g} || sleep 1; done"


# Short, so stop() never waits long for a thread stuck opening a stream to a frozen phone.
OPEN_TIMEOUT_S = 1.0
# A stream silent this long (a frozen phone, a lost transport) is closed and reopened.
STREAM_SILENCE_S = 3.0
MIN_SAMPLES = 2
_MA_BELOW = 10_000
_MIN_VOLTAGE_UV = 2_500_000
_MAX_VOLTAGE_UV = 10_000_000
_MAX_CURRENT_UA = 20_000_000


class NoPowerReason(str, Enum):
    CHARGING = "charging"
    EXTERNAL_POWER = "external power"
    NO_FUEL_GAUGE = "no fuel gauge"
    UNKNOWN_STATUS = "unknown charge status"
    IMPLAUSIBLE_READING = "implausible reading"
    TOO_FEW_SAMPLES = "too few samples"


@dataclass(frozen=True)
class PowerReading:
    """Average whole-phone power over a sampling window.

    `samples` counts the reads that arrived; `power_method` is None exactly
    when `avg_power_mw` is, and `reason` then says why.
    """

    avg_power_mw: float | None
    power_method: PowerMethod | None
    samples: int
    reason: NoPowerReason | None


def _refusal(sample: PowerSupply) -> NoPowerReason | None:
    """Why one sample says nothing about the load; None when it is usable."""
    status = (sample.status or "").strip().lower()
    if status in ("charging", "full"):
        return NoPowerReason.CHARGING
    if status == "not charging":
        return NoPowerReason.EXTERNAL_POWER
    if not sample.current_now_ua or not sample.voltage_now_uv:
        return NoPowerReason.NO_FUEL_GAUGE
    if status != "discharging":
        return NoPowerReason.UNKNOWN_STATUS
    return None


def reading_from_samples(samples: Sequence[PowerSupply], method: PowerMethod) -> PowerReading:
    """Judge a window of samples by the rules in the module docstring."""

    def refused(reason: NoPowerReason) -> PowerReading:
        return PowerReading(None, None, len(samples), reason)

    refusals = [_refusal(sample) for sample in samples]
    for contaminating in (NoPowerReason.CHARGING, NoPowerReason.EXTERNAL_POWER):
        if contaminating in refusals:
            return refused(contaminating)
    usable = [sample for sample, refusal in zip(samples, refusals, strict=False) if refusal is None]
    if len(usable) < MIN_SAMPLES:
        if not usable:
            for reason in (NoPowerReason.NO_FUEL_GAUGE, NoPowerReason.UNKNOWN_STATUS):
                if reason in refusals:
                    return refused(reason)
        return refused(NoPowerReason.TOO_FEW_SAMPLES)

    currents = [sample.current_now_ua or 0 for sample in usable]
    voltages_uv = [sample.voltage_now_uv or 0 for sample in usable]
    if min(currents) < 0 < max(currents):
        return refused(NoPowerReason.CHARGING)
    ua_per_unit = 1000 if statistics.median(abs(i) for i in currents) < _MA_BELOW else 1
    currents_ua = [abs(i) * ua_per_unit for i in currents]
    if max(currents_ua) > _MAX_CURRENT_UA or not all(_MIN_VOLTAGE_UV <= v <= _MAX_VOLTAGE_UV for v in voltages_uv):
        return refused(NoPowerReason.IMPLAUSIBLE_READING)
    powers_mw = [i_ua * v_uv / 1e9 for i_ua, v_uv in zip(currents_ua, voltages_uv, strict=False)]
    return PowerReading(statistics.fmean(powers_mw), method, len(samples), None)


class PowerSampler:
    """Samples the battery in a background thread between start() and stop().

    Use as `with PowerSampler(phone, method) as sampler: ...`, then
    `sampler.reading`; or start() and stop() (which returns the reading).
    One sampler measures one window, through one shell stream (reopened if it
    breaks). A failing or cut-off sample is skipped, never raised.
    """

    def __init__(self, phone: Phone, method: PowerMethod, interval_s: float = 0.1) -> None:
        self.phone = phone
        self.interval_s = interval_s
        self.method = method
        self.reading: PowerReading | None = None
        self._samples: list[PowerSupply] = []
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._connection: adbutils.AdbConnection | None = None

    def __enter__(self) -> PowerSampler:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> PowerSampler:
        if self._thread is not None:
            raise RuntimeError("a PowerSampler measures one window: make a new one")
        self._thread = threading.Thread(target=self._run, name=f"power-{self.phone.serial}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> PowerReading:
        if self._thread is None:
            raise RuntimeError("PowerSampler.stop() before start()")
        if self.reading is None:
            self._stopping.set()
            self._hang_up()
            self._thread.join()
            self.reading = reading_from_samples(self._samples, self.method)
        return self.reading

    def _hang_up(self) -> None:
        """Wake the thread out of its read at once: shutdown, because close() would not interrupt a recv."""
        with self._lock:
            connection = self._connection
        if connection is not None:
            with contextlib.suppress(OSError):
                connection.conn.shutdown(socket.SHUT_RDWR)

    def _run(self) -> None:
        command = stream_command(self.interval_s)
        while not self._stopping.is_set():
            opened = time.monotonic()
            self._stream(command)
            # The stream could not open or broke: try again after an interval, never in a tight loop.
            self._stopping.wait(max(0.0, opened + self.interval_s - time.monotonic()))

    def _stream(self, command: str) -> None:
        """Collect samples from one shell stream until it ends, breaks, falls silent or stop() hangs it up."""
        try:
            connection = self.phone.open_shell(command, OPEN_TIMEOUT_S)
        except HarnessError:
            # The phone did not answer this time; the sweep's own commands decide whether it is lost.
            return
        with self._lock:
            self._connection = connection
        try:
            if self._stopping.is_set():  # stop() came before the connection was there to hang up
                return
            connection.conn.settimeout(STREAM_SILENCE_S)
            pending = b""
            while True:
                kind, payload = read_shell_packet(connection.conn)
                if kind == SHELL_EXIT:
                    return  # the loop ended on the phone (killed there): reopen
                if kind != SHELL_STDOUT:
                    continue
                *whole, pending = (pending + payload).split(_END_LINE)
                # Only a sample followed by its end line is known to have all three lines.
                self._samples.extend(
                    parse_power_supply_uevent(text.decode("utf-8", errors="replace")) for text in whole
                )
        except (OSError, EOFError):
            return  # hung up by stop(), or the transport broke or fell silent
        finally:
            with self._lock:
                self._connection = None
            close_stream(connection)


@contextmanager
def unplugged(phone: Phone) -> Iterator[None]:
    """`dumpsys battery unplug` for the block, `dumpsys battery reset` after it.

    On a virtual device this stops the modelled charger, so current_now shows
    the load. On a real phone it only changes what Android believes (battery
    stats, doze): the kernel still reports `Charging` while USB powers it, and
    the sampler rightly says "charging". Real power needs a phone on battery
    (adb over Wi-Fi, or a hub that switches VBUS off).
    """
    phone.check_output("dumpsys battery unplug")
    try:
        yield
    finally:
        phone.check_output("dumpsys battery reset")


def energy_mj_per_inference(avg_power_mw: float | None, inference_avg_us: float | None) -> float | None:
    """Whole-phone energy per inference in mJ (mW * s); None without both positive inputs."""
    if avg_power_mw is None or inference_avg_us is None or avg_power_mw <= 0 or inference_avg_us <= 0:
        return None
    return avg_power_mw * inference_avg_us / 1e6
