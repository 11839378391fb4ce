"""A virtual device process: the adb listener, the fault control channel, the model ticker.

Both listeners bind 127.0.0.1 port 0 (the kernel picks a free port, no race)
and the chosen ports go to a ready file the farm waits for. The control
channel takes one JSON object per line, e.g. {"op": "freeze"}, and answers
one JSON line.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from harness.atomic import write_atomically
from harness.records import Delegate
from harness.virtual_farm.device import VirtualDevice
from harness.virtual_farm.protocol import MAX_PAYLOAD_BYTES, device_banner
from harness.virtual_farm.services import service_factory
from harness.virtual_farm.transport import Connection, LinkFaults

DELEGATES = tuple(delegate.value for delegate in Delegate)


class Fault(str, Enum):
    """Faults `farm fault` can inject."""

    DROP = "drop"  # close the adb connection, refuse reconnects until thaw
    FREEZE = "freeze"  # keep sockets open, read and answer nothing until thaw
    THAW = "thaw"  # back to normal (also lifts `slow` and `corrupt-outputs`)
    CRASH_NEXT = "crash-next"  # the next executed program dies of SIGSEGV
    SLOW = "slow"  # throttle the link to `kbps` kilobytes per second
    HIDE = "hide"  # the shell command `command` is gone, as on a phone without it (until the farm restarts)
    CORRUPT_OUTPUTS = "corrupt-outputs"  # outputs saved on delegate `command` come out garbled, as from a buggy driver


@dataclass(frozen=True)
class Ready:
    """What the device process announces once it listens."""

    pid: int
    adb_port: int
    control_port: int


class DeviceServer:
    def __init__(self, device: VirtualDevice, log: logging.Logger) -> None:
        self.device = device
        self.log = log
        self.faults = LinkFaults()
        self.connections: set[Connection] = set()
        props = device.props
        self.banner = device_banner(props["ro.product.name"], props["ro.product.model"], props["ro.product.device"])
        self.services = service_factory(device)

    async def _on_adb(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.faults.dropped:
            self.log.info("refusing an adb connection: the device is dropped")
            writer.transport.abort()
            return
        conn = Connection(reader, writer, self.banner, self.services, self.faults, self.log)
        self.connections.add(conn)
        self.log.info("adb server connected from %s", writer.get_extra_info("peername"))
        try:
            await conn.serve()
        finally:
            self.connections.discard(conn)

    def apply(self, op: Fault, kbps: float | None = None, command: str | None = None) -> None:
        self.log.info(
            "fault %s%s%s", op.value, f" {kbps} KB/s" if kbps is not None else "", f" {command}" if command else ""
        )
        if op is Fault.DROP:
            self.faults.dropped = True
            for conn in list(self.connections):
                conn.writer.transport.abort()
        elif op is Fault.FREEZE:
            self.faults.thawed.clear()
        elif op is Fault.THAW:
            self.faults.dropped = False
            self.faults.rate_bytes_per_s = None
            self.faults.thawed.set()
            self.device.corrupt_outputs.clear()
        elif op is Fault.CRASH_NEXT:
            self.device.crash_next = True
        elif op is Fault.SLOW:
            if kbps is None or kbps <= 0:
                raise ValueError("slow needs a rate in KB/s above 0")
            self.faults.rate_bytes_per_s = kbps * 1000.0
        elif op is Fault.HIDE:
            if not command or "/" in command or command.startswith("."):
                raise ValueError(f"hide needs one of the device's commands, got {command!r}")
            self.device.hide(command)
        elif op is Fault.CORRUPT_OUTPUTS:
            if command not in DELEGATES:
                raise ValueError(f"corrupt-outputs needs a delegate ({', '.join(DELEGATES)}), got {command!r}")
            self.device.corrupt_outputs.add(command)

    def state(self) -> dict[str, object]:
        if self.faults.dropped:
            link = "dropped"
        elif self.faults.frozen:
            link = "frozen"
        else:
            link = "normal"
        rate = self.faults.rate_bytes_per_s
        return {
            "link": link,
            "slow_kbps": rate / 1000.0 if rate is not None else None,
            "crash_next": self.device.crash_next,
            "corrupt_outputs": sorted(self.device.corrupt_outputs),
            "hidden_commands": sorted(self.device.hidden),
            "adb_connections": len(self.connections),
            "running_programs": self.device.running_programs(),
        }

    async def _on_control(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                try:
                    request = json.loads(line)
                    op = request.get("op")
                    if op != "status":
                        self.apply(Fault(op), request.get("kbps"), request.get("command"))
                    reply = {"ok": True, "state": self.state()}
                except (ValueError, TypeError, AttributeError) as e:
                    reply = {"ok": False, "error": str(e)}
                writer.write(json.dumps(reply).encode() + b"\n")
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def serve(self, ready_file: Path) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.add_signal_handler(sig, stop.set)
        # A big reader limit keeps 1 MiB payloads from pausing the socket every 128 KiB.
        adb = await asyncio.start_server(self._on_adb, "127.0.0.1", 0, limit=4 * MAX_PAYLOAD_BYTES)
        control = await asyncio.start_server(self._on_control, "127.0.0.1", 0)
        ticker = asyncio.create_task(self.device.run_model())
        ready = Ready(os.getpid(), adb.sockets[0].getsockname()[1], control.sockets[0].getsockname()[1])
        write_atomically(ready_file, lambda out: out.write(json.dumps(ready.__dict__).encode()))
        self.log.info("listening: adb on 127.0.0.1:%d, control on 127.0.0.1:%d", ready.adb_port, ready.control_port)
        await stop.wait()
        self.log.info("stopping")
        ticker.cancel()
        adb.close()
        control.close()
        for conn in list(self.connections):
            await conn.shutdown()  # cancels services, which kill their programs
        with contextlib.suppress(asyncio.CancelledError):
            await ticker
        self.device.close()
