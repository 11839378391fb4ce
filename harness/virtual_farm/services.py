"""Which service an OPEN names, and the handler that serves it.

`shell:CMD`, `shell,v2[,raw|,pty][,TERM=..]:CMD`, `exec:CMD` and `sync:`;
every other service (reboot:, root:, tcp:, framebuffer:, ...) is refused
with CLSE, which clients report as the device declining it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from harness.virtual_farm.shell_service import shell_v1, shell_v2
from harness.virtual_farm.sync_service import SyncService
from harness.virtual_farm.transport import Stream

if TYPE_CHECKING:
    from harness.virtual_farm.device import VirtualDevice

Handler = Callable[[Stream], Awaitable[None]]


def service_factory(device: VirtualDevice) -> Callable[[str], Handler | None]:
    def lookup(name: str) -> Handler | None:
        head, colon, command = name.partition(":")
        if not colon:
            return None
        kind, *options = head.split(",")
        if kind == "shell":
            # A command runs raw unless a pty is asked for; no command means an interactive pty.
            pty = "pty" in options or (not command and "raw" not in options)
            term = next((o.split("=", 1)[1] for o in options if o.startswith("TERM=")), None)
            if "v2" in options:
                return lambda stream: shell_v2(device, stream, command, pty, term)
            return lambda stream: shell_v1(device, stream, command, pty, term)
        if kind == "exec" and not options:
            return lambda stream: shell_v1(device, stream, command, False)
        if kind == "sync" and not options and not command:
            return lambda stream: SyncService(device, stream).run()
        return None

    return lookup
