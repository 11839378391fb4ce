"""The `shell:`, `shell,v2,...:` and `exec:` services: Android's real shell in the phone's sandbox.

Each service runs `/system/bin/sh -c CMD` (mksh; an interactive `sh` when CMD is empty) inside the
phone's sandbox (sandbox.py), with pipes, or a pty when one is asked for.

v1 (`shell:CMD`, `exec:CMD`) streams raw output and closes; no exit code.
v2 frames every message as id byte + u32 LE length (shell_protocol.h):
0 stdin, 1 stdout, 2 stderr, 3 exit (1 byte), 4 close stdin, 5 window size.
The exit code is adbd's: the shell's status, or 128 + the signal that killed it.

Faults that act on programs: `crash-next` sends SIGSEGV to the next program (anything but mksh and
toybox) a shell starts, at its first output or after CRASH_DELAY_S; `corrupt-outputs DELEGATE`
byte-reverses the file a program saved with --output_filepath on that delegate.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import resource
import shlex
import signal
import subprocess
import sys
import termios
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from harness.virtual_farm.sandbox import MKSH, SHELL_ENV, TOYBOX
from harness.virtual_farm.stream_io import FLUSH_AT_BYTES, BufferedStreamWriter, RawStreamSink, Sink, StreamSource
from harness.virtual_farm.transport import Stream

if TYPE_CHECKING:
    from harness.virtual_farm.device import VirtualDevice

ID_STDIN, ID_STDOUT, ID_STDERR, ID_EXIT, ID_CLOSE_STDIN, ID_WINDOW_SIZE = range(6)
CRASH_DELAY_S = 0.5  # crash-next fires at the first output, or after this long
_SHELL_TOOLS = frozenset({os.path.realpath(MKSH), os.path.realpath(TOYBOX), "/usr/bin/nsenter"})
_GARBLE = "import sys; p = sys.argv[1]; d = open(p, 'rb').read(); open(p, 'wb').write(d[::-1])"


class _V2Sink(Sink):
    def __init__(self, out: BufferedStreamWriter, packet_id: int) -> None:
        self.out = out
        self.packet_id = packet_id

    async def write(self, data: bytes | bytearray | memoryview) -> None:
        if data:
            await self.out.write(bytes([self.packet_id]) + len(data).to_bytes(4, "little"))
            await self.out.write(data)
            if len(self.out.buf) >= FLUSH_AT_BYTES:
                await self.out.flush()

    async def flush(self) -> None:
        await self.out.flush()


def shell_env(device: VirtualDevice, term: str | None) -> dict[str, str]:
    env = {
        **SHELL_ENV,
        "HOSTNAME": device.spec.hostname,
        "PS1": "${HOSTNAME}:${PWD:-?} $ ",
        "USER": "shell",
        "LOGNAME": "shell",
    }
    if term:
        env["TERM"] = term
    return env


def _child_setup(pty: bool) -> Callable[[], None]:
    def setup() -> None:
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # nsenter re-raises a crash's signal: no core file here
        if pty:
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    return setup


class ShellProcess:
    """One shell in the sandbox, its output pumped into sinks as it comes."""

    def __init__(self, device: VirtualDevice, command: str, pty: bool, term: str | None) -> None:
        self.device = device
        self.command = command
        self.pty = pty
        self.term = term
        self.first_output = asyncio.Event()
        self.proc: asyncio.subprocess.Process | None = None
        self._master = -1
        self.started_s = 0.0

    async def start(self, merge_stderr: bool) -> None:
        argv = self.device.sandbox.command_argv(self.command if self.command.strip() else None)
        env = shell_env(self.device, self.term)
        if self.pty:
            self._master, slave = os.openpty()
            try:
                self.proc = await asyncio.create_subprocess_exec(
                    *argv,
                    stdin=slave,
                    stdout=slave,
                    stderr=slave,
                    env=env,
                    start_new_session=True,
                    preexec_fn=_child_setup(True),
                )
            finally:
                os.close(slave)
        else:
            # No preexec_fn: without one, subprocess starts the shell with vfork, much cheaper than a fork of this
            # process (RLIMIT_CORE is already 0 in the device process, see __main__).
            self.proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT if merge_stderr else subprocess.PIPE,
                env=env,
                start_new_session=True,
            )
        self.device.log.info("shell pid=%d %s", self.proc.pid, shlex.quote(self.command)[:200])
        self.started_s = time.monotonic()

    async def _pump_reader(self, reader: asyncio.StreamReader | None, sink: Sink) -> None:
        if reader is None:
            return
        broken = False
        while chunk := await reader.read(64 * 1024):
            self.first_output.set()
            if broken:
                continue  # keep draining so the program never blocks on a full pipe
            try:
                await sink.write(chunk)
                await sink.flush()
            except (OSError, ConnectionError):
                broken = True

    async def _pump_master(self, sink: Sink) -> None:
        loop = asyncio.get_running_loop()
        while True:
            ready: asyncio.Future[None] = loop.create_future()
            loop.add_reader(self._master, _set_once, ready)
            try:
                await ready
            finally:
                loop.remove_reader(self._master)
            try:
                chunk = os.read(self._master, 64 * 1024)
            except OSError:  # EIO: every process holding the pty has gone
                return
            if not chunk:
                return
            self.first_output.set()
            await sink.write(chunk)
            await sink.flush()

    async def write_stdin(self, data: bytes) -> None:
        if self.pty:
            with contextlib.suppress(OSError):
                os.write(self._master, data)
            return
        assert self.proc is not None and self.proc.stdin is not None
        with contextlib.suppress(ConnectionError, BrokenPipeError):
            self.proc.stdin.write(data)
            await self.proc.stdin.drain()

    def close_stdin(self) -> None:
        if self.pty:
            with contextlib.suppress(OSError):
                os.write(self._master, b"\x04")  # ^D: end of input on a terminal
            return
        if self.proc is not None and self.proc.stdin is not None:
            self.proc.stdin.close()

    async def run(self, stdout: Sink, stderr: Sink) -> int:
        """Pumps output until the shell exits; its exit code as adbd reports it."""
        assert self.proc is not None
        if self.pty:
            pumps = [asyncio.create_task(self._pump_master(stdout))]
        else:
            pumps = [
                asyncio.create_task(self._pump_reader(self.proc.stdout, stdout)),
                asyncio.create_task(self._pump_reader(self.proc.stderr, stderr)),
            ]
        crash = asyncio.create_task(self._crash_next()) if self.device.crash_next else None
        code: int | None = None
        try:
            code = await self.proc.wait()
            # Whatever the shell left running in the background goes with it (as with adbd's session), so the
            # pipes reach their end; what is in them is still delivered, however slowly the client acknowledges.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            await asyncio.gather(*pumps)
        finally:
            for task in [*pumps, *([crash] if crash is not None else [])]:
                task.cancel()
            if code is None:  # cancelled: the server closed the stream or the device stops
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                await self.proc.wait()
            else:  # whatever the shell left running in the background goes with it, as adbd's session does
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
            if self._master >= 0:
                os.close(self._master)
                self._master = -1
        # bench/sweep_overhead.py and sweep_scaling.py read these lines (the shell's whole process tree).
        self.device.log.info(
            "exit pid=%d code=%d wall=%.2fs command=%s",
            self.proc.pid,
            code,
            time.monotonic() - self.started_s,
            shlex.quote(self.command)[:200],
        )
        if self.device.corrupt_outputs:
            await self._garble_outputs()
        return 128 - code if code < 0 else code

    def _programs(self) -> list[int]:
        """Host pids of this shell's programs (its process group) that are not mksh or toybox."""
        assert self.proc is not None
        found = []
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            try:
                with open(f"/proc/{name}/stat", "rb") as f:
                    raw = f.read()
                if int(raw[raw.rindex(b")") + 2 :].split()[2]) != self.proc.pid:
                    continue
                if os.path.realpath(f"/proc/{name}/exe") not in _SHELL_TOOLS:
                    found.append(int(name))
            except (OSError, ValueError):
                continue
        return sorted(found)

    async def _crash_next(self) -> None:
        """The `crash-next` fault: SIGSEGV to the next program, at its first output or after CRASH_DELAY_S."""
        while not (victims := self._programs()):
            await asyncio.sleep(0.02)
        self.device.crash_next = False
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.first_output.wait(), CRASH_DELAY_S)
        self.device.log.info("crash-next: sending SIGSEGV to pid %d", victims[-1])
        with contextlib.suppress(ProcessLookupError):
            os.kill(victims[-1], signal.SIGSEGV)

    async def _garble_outputs(self) -> None:
        """The `corrupt-outputs DELEGATE` fault, a stand-in for a buggy delegate driver: a program that ran on
        that delegate and saved its outputs (--output_filepath) finds them byte-reversed, still the right size."""
        try:
            words = shlex.split(self.command)
        except ValueError:
            return
        flags = dict(word[2:].split("=", 1) for word in words if word.startswith("--") and "=" in word)
        path = flags.get("output_filepath")
        if not path or delegate_of(flags) not in self.device.corrupt_outputs:
            return
        self.device.log.info("corrupt-outputs: garbling %s", path)
        python = os.path.join(sys.prefix, "bin", "python3")
        proc = await asyncio.create_subprocess_exec(
            *self.device.sandbox.exec_argv([python, "-c", _GARBLE, path]),
            env=shell_env(self.device, None),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        await proc.wait()


def _set_once(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def delegate_of(flags: dict[str, str]) -> str:
    """Which delegate benchmark_model's flags ask for (as the harness passes them: one per run).

    LiteRT 2.x's tool asks with use_npu / use_gpu / use_cpu; its CPU path is XNNPACK.
    """
    for delegate in ("npu", "gpu", "nnapi", "xnnpack"):
        if flags.get(f"use_{delegate}", "").lower() in ("true", "1"):
            return delegate
    return "xnnpack" if "use_cpu" in flags else "cpu"


async def _v2_input(stream: Stream, shell: ShellProcess) -> None:
    """Demultiplex the client's v2 packets: stdin data, close-stdin, window size."""
    try:
        while True:
            header = await stream.readexactly(5)
            payload = await stream.readexactly(int.from_bytes(header[1:], "little"))
            if header[0] == ID_STDIN:
                await shell.write_stdin(payload)
            elif header[0] == ID_CLOSE_STDIN:
                break
    except (ConnectionError, BrokenPipeError, asyncio.IncompleteReadError):
        pass
    finally:
        shell.close_stdin()


async def _v1_input(stream: Stream, shell: ShellProcess) -> None:
    source = StreamSource(stream)
    try:
        while chunk := await source.read():
            await shell.write_stdin(chunk)
    except (ConnectionError, BrokenPipeError):
        pass


async def shell_v1(device: VirtualDevice, stream: Stream, command: str, pty: bool, term: str | None = None) -> None:
    sink = RawStreamSink(stream)
    shell = ShellProcess(device, command, pty, term)
    await shell.start(merge_stderr=True)
    pump = asyncio.create_task(_v1_input(stream, shell))
    try:
        await shell.run(sink, sink)
    finally:
        pump.cancel()
    await sink.flush()


async def shell_v2(device: VirtualDevice, stream: Stream, command: str, pty: bool, term: str | None = None) -> None:
    out = BufferedStreamWriter(stream)
    shell = ShellProcess(device, command, pty, term)
    await shell.start(merge_stderr=False)
    pump = asyncio.create_task(_v2_input(stream, shell))
    stdout = _V2Sink(out, ID_STDOUT)
    # With a pty, stderr is the terminal too.
    stderr = stdout if pty else _V2Sink(out, ID_STDERR)
    try:
        code = await shell.run(stdout, stderr)
    finally:
        pump.cancel()
    await out.write(bytes([ID_EXIT]) + (1).to_bytes(4, "little") + bytes([code & 0xFF]))
    await out.flush()
