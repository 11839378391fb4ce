"""Byte sources and sinks the emulated shell reads and writes.

Sinks buffer small writes so a command that prints many lines becomes a few
adb packets; every sink is flushed when its command ends.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import BinaryIO

from harness.virtual_farm.sandbox import QuotaWriter

READ_CHUNK_BYTES = 64 * 1024


class WriteError(OSError):
    """Writing a command's output failed (full disk, closed pipe)."""


class Sink:
    async def write(self, data: bytes | bytearray | memoryview) -> None:
        raise NotImplementedError

    async def flush(self) -> None:
        return None


class Source:
    async def read(self, n: int = READ_CHUNK_BYTES) -> bytes:
        """Up to n bytes; b'' at end of input."""
        raise NotImplementedError

    async def read_all(self) -> bytes:
        out = bytearray()
        while chunk := await self.read():
            out += chunk
        return bytes(out)


class NullSink(Sink):
    async def write(self, data: bytes | bytearray | memoryview) -> None:
        return None


class BufferSink(Sink):
    def __init__(self) -> None:
        self.data = bytearray()

    async def write(self, data: bytes | bytearray | memoryview) -> None:
        self.data += data


class FileSink(Sink):
    def __init__(self, writer: QuotaWriter) -> None:
        self.writer = writer

    async def write(self, data: bytes | bytearray | memoryview) -> None:
        try:
            self.writer.write(data)
        except OSError as e:
            raise WriteError(e.errno, e.strerror) from None

    def close(self) -> None:
        self.writer.close()


class EmptySource(Source):
    async def read(self, n: int = READ_CHUNK_BYTES) -> bytes:
        return b""


class FileSource(Source):
    def __init__(self, f: BinaryIO) -> None:
        self.f = f

    async def read(self, n: int = READ_CHUNK_BYTES) -> bytes:
        return self.f.read(n)

    def close(self) -> None:
        self.f.close()


class AsyncPipe:
    """A bounded in-memory pipe between two commands of a pipeline."""

    CAPACITY_BYTES = 256 * 1024

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.writer_closed = False
        self.reader_closed = False
        self.changed = asyncio.Event()

    def _notify(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()

    class Writer(Sink):
        def __init__(self, pipe: AsyncPipe) -> None:
            self.pipe = pipe

        async def write(self, data: bytes | bytearray | memoryview) -> None:
            pipe = self.pipe
            view = memoryview(data)
            while view:
                if pipe.reader_closed:
                    raise BrokenPipeError(32, "Broken pipe")
                room = pipe.CAPACITY_BYTES - len(pipe.buffer)
                if room <= 0:
                    await pipe.changed.wait()
                    continue
                pipe.buffer += view[:room]
                view = view[room:]
                pipe._notify()

        def close(self) -> None:
            self.pipe.writer_closed = True
            self.pipe._notify()

    class Reader(Source):
        def __init__(self, pipe: AsyncPipe) -> None:
            self.pipe = pipe

        async def read(self, n: int = READ_CHUNK_BYTES) -> bytes:
            pipe = self.pipe
            while not pipe.buffer and not pipe.writer_closed:
                await pipe.changed.wait()
            out = bytes(pipe.buffer[:n])
            del pipe.buffer[:n]
            pipe._notify()
            return out

        def close(self) -> None:
            self.pipe.reader_closed = True
            self.pipe._notify()

    def ends(self) -> tuple[AsyncPipe.Writer, AsyncPipe.Reader]:
        return AsyncPipe.Writer(self), AsyncPipe.Reader(self)


@dataclass
class ShellIO:
    stdin: Source
    stdout: Sink
    stderr: Sink

    async def flush(self) -> None:
        await self.stdout.flush()
        if self.stderr is not self.stdout:
            await self.stderr.flush()
