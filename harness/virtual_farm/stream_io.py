"""Adapters between an adb Stream and the shell's input and output."""

from __future__ import annotations

from harness.virtual_farm.transport import Stream

FLUSH_AT_BYTES = 64 * 1024
READ_CHUNK_BYTES = 64 * 1024


class Sink:
    async def write(self, data: bytes | bytearray | memoryview) -> None:
        raise NotImplementedError

    async def flush(self) -> None:
        return None


class Source:
    async def read(self, n: int = READ_CHUNK_BYTES) -> bytes:
        """Up to n bytes; b'' at end of input."""
        raise NotImplementedError


class BufferedStreamWriter:
    """Coalesces small writes into packets of up to the link's max payload."""

    def __init__(self, stream: Stream) -> None:
        self.stream = stream
        self.buf = bytearray()

    async def write(self, data: bytes | bytearray | memoryview) -> None:
        self.buf += data
        if len(self.buf) >= self.stream.conn.max_payload:
            await self.flush()

    async def flush(self) -> None:
        if self.buf:
            # A fresh buffer each time: the old one may still be referenced by the socket layer.
            data, self.buf = self.buf, bytearray()
            await self.stream.write(data)


class RawStreamSink(Sink):
    """Shell v1: stdout and stderr share the stream (a pty's own line discipline turns \\n into \\r\\n)."""

    def __init__(self, stream: Stream) -> None:
        self.out = BufferedStreamWriter(stream)

    async def write(self, data: bytes | bytearray | memoryview) -> None:
        await self.out.write(data)
        if len(self.out.buf) >= FLUSH_AT_BYTES:
            await self.out.flush()

    async def flush(self) -> None:
        await self.out.flush()


class StreamSource(Source):
    def __init__(self, stream: Stream) -> None:
        self.stream = stream

    async def read(self, n: int = 64 * 1024) -> bytes:
        return await self.stream.read(n)
