"""The `shell:`, `shell,v2,...:` and `exec:` services.

v1 (`shell:CMD`, `exec:CMD`) streams raw output and closes; no exit code.
v2 frames every message as id byte + u32 LE length (shell_protocol.h):
0 stdin, 1 stdout, 2 stderr, 3 exit (1 byte), 4 close stdin, 5 window size.
An empty command is an interactive shell reading lines from stdin.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from harness.virtual_farm.shell import Session
from harness.virtual_farm.shell_io import AsyncPipe, ShellIO, Sink, Source
from harness.virtual_farm.stream_io import FLUSH_AT_BYTES, BufferedStreamWriter, RawStreamSink, StreamSource
from harness.virtual_farm.transport import Stream

if TYPE_CHECKING:
    from harness.virtual_farm.device import VirtualDevice

ID_STDIN, ID_STDOUT, ID_STDERR, ID_EXIT, ID_CLOSE_STDIN, ID_WINDOW_SIZE = range(6)


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


async def _v2_input(stream: Stream, stdin: AsyncPipe.Writer) -> None:
    """Demultiplex the client's v2 packets: stdin data, close-stdin, window size."""
    try:
        while True:
            header = await stream.readexactly(5)
            payload = await stream.readexactly(int.from_bytes(header[1:], "little"))
            if header[0] == ID_STDIN:
                await stdin.write(payload)
            elif header[0] == ID_CLOSE_STDIN:
                break
    except (ConnectionError, BrokenPipeError):
        pass
    finally:
        stdin.close()


async def _run(session: Session, command: str, io: ShellIO, pty: bool) -> int:
    if command.strip():
        return await session.run_script(command, io)
    # Interactive: one line at a time, with a prompt, until exit or end of input.
    pending = b""
    status = 0
    while True:
        await io.stdout.write(f"{session.device.profile.props['ro.product.device']}:{session.cwd} $ ".encode())
        await io.stdout.flush()
        while b"\n" not in pending and b"\r" not in pending:
            chunk = await io.stdin.read()
            if not chunk:
                return status
            if pty:
                await io.stdout.write(chunk.replace(b"\r", b"\n"))  # a pty echoes what is typed
                await io.stdout.flush()
            pending += chunk
        line, pending = _split_line(pending)
        status = await session.run_script(line.decode(errors="replace"), io)
        if session.exited:
            return status


def _split_line(data: bytes) -> tuple[bytes, bytes]:
    cut = min(i for i in (data.find(b"\n"), data.find(b"\r")) if i >= 0)
    return data[:cut], data[cut + 1 :]


async def _session_run(device: VirtualDevice, command: str, io: ShellIO, pty: bool) -> int:
    session = Session(device)
    session.task = asyncio.current_task()
    try:
        return await _run(session, command, io, pty)
    except asyncio.CancelledError:
        if session.killed_by is None:
            raise
        return 128 + session.killed_by  # `kill` from another device shell
    finally:
        session.close()


async def shell_v1(device: VirtualDevice, stream: Stream, command: str, pty: bool) -> None:
    sink = RawStreamSink(stream, pty)
    await _session_run(device, command, ShellIO(StreamSource(stream), sink, sink), pty)
    await sink.flush()


async def shell_v2(device: VirtualDevice, stream: Stream, command: str, pty: bool) -> None:
    out = BufferedStreamWriter(stream)
    stdin_writer, stdin_reader = AsyncPipe().ends()
    pump = asyncio.create_task(_v2_input(stream, stdin_writer))
    stdin: Source = stdin_reader
    stdout = _V2Sink(out, ID_STDOUT)
    # With a pty, stderr is the terminal too.
    stderr = stdout if pty else _V2Sink(out, ID_STDERR)
    try:
        code = await _session_run(device, command, ShellIO(stdin, stdout, stderr), pty)
    finally:
        pump.cancel()
    await out.write(bytes([ID_EXIT]) + (1).to_bytes(4, "little") + bytes([code & 0xFF]))
    await out.flush()
