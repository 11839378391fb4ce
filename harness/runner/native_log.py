"""Relay of the LiteRT runtime's own log lines into the benchmark output.

The runtime logs to file descriptor 2 (e.g. `INFO: Created TensorFlow Lite
XNNPACK delegate for CPU.`). The real benchmark_model writes those lines and
its own into one stream, in order; this runner writes its lines to stdout, so
while native code runs, fd 2 is pointed at a pipe whose lines a thread copies
into the same output. A thread (not a buffer read afterwards) so that lines
are out before a crash in native code ends the process.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from harness.runner.report import Log


@contextmanager
def native_log_relayed(log: Log) -> Iterator[None]:
    sys.stderr.flush()
    saved_fd = os.dup(2)
    read_fd, write_fd = os.pipe()
    os.dup2(write_fd, 2)
    os.close(write_fd)
    relay = threading.Thread(target=_relay, args=(read_fd, log), name="native-log", daemon=True)
    relay.start()
    try:
        yield
    finally:
        sys.stderr.flush()
        # Closing the pipe's last write end (fd 2) ends the relay at EOF.
        os.dup2(saved_fd, 2)
        os.close(saved_fd)
        relay.join()


def _relay(read_fd: int, log: Log) -> None:
    with os.fdopen(read_fd, "rb") as pipe:
        for raw in pipe:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            if line:
                log.line(line)
