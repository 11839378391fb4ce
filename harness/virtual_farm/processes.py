"""The device's process table: what `ps` shows and `kill` reaches.

Device pids are the device's own numbers; a program the device runs for real
maps to its host process, so `kill` from the device shell can reach exactly
the device's programs and nothing else on the host.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

FIRST_DYNAMIC_PID = 4000

# Always present, as on any Android device.
_STATIC = ((1, 0, "root", "init"), (521, 1, "shell", "adbd"))


@dataclass
class DeviceProcess:
    pid: int
    ppid: int
    user: str
    name: str
    deliver: Callable[[int], None] | None  # sends a signal; None for static entries
    host_pid: int | None = None
    started_s: float = field(default_factory=time.monotonic)


class ProcessTable:
    def __init__(self) -> None:
        self._next = FIRST_DYNAMIC_PID
        self._procs: dict[int, DeviceProcess] = {
            pid: DeviceProcess(pid, ppid, user, name, None) for pid, ppid, user, name in _STATIC
        }

    def add(self, name: str, ppid: int, deliver: Callable[[int], None], host_pid: int | None = None) -> DeviceProcess:
        pid = self._next
        self._next += 1
        proc = DeviceProcess(pid, ppid, "shell", name, deliver, host_pid)
        self._procs[pid] = proc
        return proc

    def remove(self, pid: int) -> None:
        self._procs.pop(pid, None)

    def get(self, pid: int) -> DeviceProcess | None:
        return self._procs.get(pid)

    def all(self) -> list[DeviceProcess]:
        return sorted(self._procs.values(), key=lambda p: p.pid)

    def signal(self, pid: int, signum: int) -> bool:
        """False when no such process (ESRCH); init and adbd refuse (EPERM) by raising."""
        proc = self._procs.get(pid)
        if proc is None:
            return False
        if proc.deliver is None:
            raise PermissionError(1, "Operation not permitted")
        proc.deliver(signum)
        return True
