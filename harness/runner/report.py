"""benchmark_model's output conventions: prefixed log lines and C++ iostream numbers."""

from __future__ import annotations

import threading
from typing import TextIO


def fmt_num(value: float) -> str:
    """A number as C++ `std::ostream << double` prints it by default.

    The default stream precision is 6 significant digits in %g style, which is
    why real logs show `avg=1.24027e+06`; parsers of real output expect it.
    """
    return "%g" % value  # noqa: UP031 - printf %g is the C++ default the logs reproduce


class Log:
    """Writes `INFO: ` / `WARN: ` / `ERROR: ` lines as TFLITE_LOG does.

    Every line is flushed at once so that output up to a crash inside native
    code (e.g. a delegate segfaulting) still reaches the harness; the lock is
    there because the native-log relay thread writes too.
    """

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def info(self, text: str) -> None:
        self.line(f"INFO: {text}")

    def warn(self, text: str) -> None:
        self.line(f"WARN: {text}")

    def error(self, text: str) -> None:
        self.line(f"ERROR: {text}")

    def line(self, text: str) -> None:
        with self._lock:
            self._stream.write(text + "\n")
            self._stream.flush()
