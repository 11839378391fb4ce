"""The device side of one adb transport connection: packets in, streams out.

One Connection per TCP connection from the adb server. It answers CNXN,
opens a Stream per OPEN, and keeps adb's flow control: every WRTE is
answered by OKAY, and a stream never has more than one unacknowledged WRTE
in flight in either direction. Packets of all streams share the socket, so
each packet is written whole (header and payload in one write call).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from harness.virtual_farm.protocol import (
    A_VERSION,
    HEADER_SIZE,
    MAX_PAYLOAD_BYTES,
    Command,
    ProtocolError,
    decode_header,
    encode_header,
)

# A stream's unread input above which we hold back our OKAY (the server then
# stops sending): bounds memory when a consumer is slower than the link.
INBOUND_HIGH_WATER_BYTES = 4 * MAX_PAYLOAD_BYTES

ServiceFactory = Callable[[str], Callable[["Stream"], Awaitable[None]] | None]


class LinkFaults:
    """Run-time faults shared by every connection of a device (see `farm fault`)."""

    def __init__(self) -> None:
        self.thawed = asyncio.Event()
        self.thawed.set()
        self.dropped = False
        self.rate_bytes_per_s: float | None = None
        self._next_send_s = 0.0

    @property
    def frozen(self) -> bool:
        return not self.thawed.is_set()

    async def pace(self, nbytes: int) -> None:
        """Wait until the link is thawed and, when throttled, until nbytes fit the rate."""
        await self.thawed.wait()
        if self.rate_bytes_per_s is None:
            return
        now = time.monotonic()
        start = max(now, self._next_send_s)
        self._next_send_s = start + nbytes / self.rate_bytes_per_s
        if start > now:
            await asyncio.sleep(start - now)


class StreamClosed(ConnectionError):
    """The server closed the stream (CLSE) or the connection went away."""


class Stream:
    def __init__(self, conn: Connection, local_id: int, remote_id: int, service: str) -> None:
        self.conn = conn
        self.local_id = local_id
        self.remote_id = remote_id
        self.service = service
        self.closed = False
        self._inbound: collections.deque[memoryview] = collections.deque()
        self._inbound_bytes = 0
        self._inbound_eof = False
        self._okay_owed = False
        self._data_ready = asyncio.Event()
        self._send_ready = asyncio.Event()  # set when our last WRTE was acknowledged
        self._send_ready.set()
        self.task: asyncio.Task[None] | None = None

    # --- inbound ------------------------------------------------------------

    def _on_write(self, payload: bytes) -> None:
        if payload:
            self._inbound.append(memoryview(payload))
            self._inbound_bytes += len(payload)
            self._data_ready.set()
        if self._inbound_bytes < INBOUND_HIGH_WATER_BYTES:
            self.conn.send_nowait(Command.OKAY, self.local_id, self.remote_id)
        else:
            self._okay_owed = True

    def _consumed(self, n: int) -> None:
        self._inbound_bytes -= n
        if self._okay_owed and self._inbound_bytes < INBOUND_HIGH_WATER_BYTES and not self.closed:
            self._okay_owed = False
            self.conn.send_nowait(Command.OKAY, self.local_id, self.remote_id)

    async def _wait_data(self) -> bool:
        while not self._inbound:
            if self._inbound_eof or self.closed:
                return False
            self._data_ready.clear()
            await self._data_ready.wait()
        return True

    async def read(self, n: int) -> bytes:
        """Up to n bytes, b'' once the server closed the stream."""
        if not await self._wait_data():
            return b""
        head = self._inbound[0]
        if len(head) <= n:
            self._inbound.popleft()
            out = bytes(head)
        else:
            out = bytes(head[:n])
            self._inbound[0] = head[n:]
        self._consumed(len(out))
        return out

    async def readexactly(self, n: int) -> bytes:
        parts = []
        need = n
        while need:
            chunk = await self.read(need)
            if not chunk:
                raise StreamClosed(f"stream closed with {need} of {n} bytes unread")
            parts.append(chunk)
            need -= len(chunk)
        return b"".join(parts)

    async def read_views(self, n: int) -> AsyncIterator[memoryview]:
        """Yield exactly n bytes as memoryview slices, without copying."""
        need = n
        while need:
            if not await self._wait_data():
                raise StreamClosed(f"stream closed with {need} of {n} bytes unread")
            head = self._inbound[0]
            if len(head) <= need:
                self._inbound.popleft()
                view = head
            else:
                view = head[:need]
                self._inbound[0] = head[need:]
            need -= len(view)
            self._consumed(len(view))
            yield view

    # --- outbound -----------------------------------------------------------

    def _on_okay(self) -> None:
        self._send_ready.set()

    async def write(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        max_payload = self.conn.max_payload
        while view:
            await self._send_ready.wait()
            if self.closed:
                raise StreamClosed(f"stream {self.service!r} was closed by the server")
            chunk = view[:max_payload]
            self._send_ready.clear()
            await self.conn.send(Command.WRTE, self.local_id, self.remote_id, chunk)
            view = view[len(chunk) :]

    async def close(self) -> None:
        """Our side is done: wait for the last acknowledgement, then CLSE."""
        if self.closed:
            return
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._send_ready.wait(), 5.0)
        if not self.closed:
            self.closed = True
            self._data_ready.set()
            self._send_ready.set()
            self.conn.forget(self)
            await self.conn.send(Command.CLSE, self.local_id, self.remote_id)

    def _on_remote_close(self) -> None:
        self.closed = True
        self._inbound_eof = True
        self._data_ready.set()
        self._send_ready.set()
        if self.task is not None:
            self.task.cancel()  # CLSE kills whatever the stream runs


class Connection:
    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        banner: bytes,
        services: ServiceFactory,
        faults: LinkFaults,
        log: logging.Logger,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.banner = banner
        self.services = services
        self.faults = faults
        self.log = log
        self.max_payload = MAX_PAYLOAD_BYTES
        self.streams: dict[int, Stream] = {}
        self._next_id = 1
        self.online = False

    async def send(self, command: Command, arg0: int, arg1: int, payload: bytes | memoryview = b"") -> None:
        await self.faults.pace(HEADER_SIZE + len(payload))
        if self.writer.is_closing():
            raise StreamClosed("connection to the adb server is closed")
        header = encode_header(command, arg0, arg1, len(payload))
        # Header and payload go out back to back (no await between): packets never interleave.
        if len(payload) < 65536:
            self.writer.write(header + bytes(payload))
        else:
            self.writer.write(header)
            self.writer.write(payload)
        await self.writer.drain()

    def send_nowait(self, command: Command, arg0: int, arg1: int) -> None:
        """Queue a payload-less packet (OKAY) without blocking the reader loop."""
        task = asyncio.create_task(self.send(command, arg0, arg1))
        task.add_done_callback(_consume_error)

    def forget(self, stream: Stream) -> None:
        self.streams.pop(stream.local_id, None)

    async def serve(self) -> None:
        try:
            while True:
                await self.faults.thawed.wait()
                raw = await self.reader.readexactly(HEADER_SIZE)
                header = decode_header(raw)
                payload = await self.reader.readexactly(header.data_length) if header.data_length else b""
                await self.faults.pace(HEADER_SIZE + len(payload))
                await self._handle(header.command, header.arg0, header.arg1, payload)
        except (asyncio.IncompleteReadError, ConnectionError, ProtocolError) as e:
            self.log.info("adb connection ended: %s", e.__class__.__name__ if not isinstance(e, ProtocolError) else e)
        finally:
            await self.shutdown()

    async def shutdown(self) -> None:
        for stream in list(self.streams.values()):
            stream._on_remote_close()
        tasks = [s.task for s in self.streams.values() if s.task is not None]
        self.streams.clear()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self.writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self.writer.wait_closed()

    async def _handle(self, command: Command, arg0: int, arg1: int, payload: bytes) -> None:
        if command is Command.CNXN:
            # arg0 = server's version, arg1 = its max payload; we answer with ours.
            self.max_payload = min(arg1, MAX_PAYLOAD_BYTES) or MAX_PAYLOAD_BYTES
            self.online = True
            self.log.info("CNXN from %s (version %#x, max payload %d)", payload.rstrip(b"\0")[:60], arg0, arg1)
            await self.send(Command.CNXN, A_VERSION, MAX_PAYLOAD_BYTES, self.banner)
        elif command is Command.OPEN:
            await self._open(arg0, payload.rstrip(b"\0").decode(errors="replace"))
        elif command is Command.WRTE:
            stream = self.streams.get(arg1)
            if stream is None:
                await self.send(Command.CLSE, 0, arg0)
            else:
                stream._on_write(payload)
        elif command is Command.OKAY:
            stream = self.streams.get(arg1)
            if stream is not None:
                stream.remote_id = arg0
                stream._on_okay()
        elif command is Command.CLSE:
            stream = self.streams.pop(arg1, None)
            if stream is not None:
                stream._on_remote_close()
        # AUTH, STLS and SYNC never come from a server we did not ask for them.

    async def _open(self, remote_id: int, service: str) -> None:
        handler = self.services(service)
        if handler is None:
            self.log.info("refusing service %r", service)
            await self.send(Command.CLSE, 0, remote_id)
            return
        local_id = self._next_id
        self._next_id += 1
        stream = Stream(self, local_id, remote_id, service)
        self.streams[local_id] = stream
        await self.send(Command.OKAY, local_id, remote_id)
        stream.task = asyncio.create_task(self._run(stream, handler))

    async def _run(self, stream: Stream, handler: Callable[[Stream], Awaitable[None]]) -> None:
        try:
            await handler(stream)
        except (asyncio.CancelledError, StreamClosed):
            pass
        except Exception:
            self.log.exception("service %r failed", stream.service)
        finally:
            if not stream.closed:
                with contextlib.suppress(ConnectionError, OSError):
                    await stream.close()


def _consume_error(task: asyncio.Task[None]) -> None:
    if not task.cancelled():
        task.exception()
