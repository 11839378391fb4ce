"""The `sync:` service (file_sync_protocol.h): STAT, STA2/LST2, LIST/LIS2, SEND, RECV, QUIT.

Requests are `id(4) + u32 LE path length + path`; replies follow adbd's
file_sync_service.cpp, including its error texts ("couldn't create file: ...",
"write failed: No space left on device", "open failed: ...").
"""

from __future__ import annotations

import errno
import stat as stat_mod
import struct
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, NoReturn

from harness.virtual_farm.sandbox import Stat
from harness.virtual_farm.stream_io import BufferedStreamWriter
from harness.virtual_farm.transport import Stream

if TYPE_CHECKING:
    from harness.virtual_farm.device import VirtualDevice

SYNC_DATA_MAX = 64 * 1024
MAX_PATH_BYTES = 1024
STAT_V1 = struct.Struct("<4sIII")
STAT_V2 = struct.Struct("<4sIQQIIIIQqqq")  # 72 bytes
DENT_V1 = struct.Struct("<4sIIII")
DENT_V2 = struct.Struct("<4sIQQIIIIQqqqI")
U32 = struct.Struct("<I")


class _Abort(Exception):
    """The request failed: a FAIL was sent and the service ends, as adbd's does."""


def _stat_v2_fields(st: Stat) -> tuple[int, ...]:
    return (0, st.ino, st.mode, st.nlink, st.uid, st.gid, st.size, st.atime_s, st.mtime_s, st.ctime_s)


class SyncService:
    def __init__(self, device: VirtualDevice, stream: Stream) -> None:
        self.fs = device.fs
        self.log = device.log
        self.stream = stream
        self.out = BufferedStreamWriter(stream)

    async def run(self) -> None:
        try:
            while True:
                request = await self.stream.readexactly(8)
                command, length = request[:4], U32.unpack_from(request, 4)[0]
                if length > MAX_PATH_BYTES:
                    await self.fail("path too long")
                path = (await self.stream.readexactly(length)).decode(errors="surrogateescape")
                if command == b"QUIT":
                    return
                handler = {
                    b"STAT": self.stat_v1,
                    b"STA2": self.stat_v2,
                    b"LST2": self.stat_v2,
                    b"LIST": self.list_v1,
                    b"LIS2": self.list_v2,
                    b"SEND": self.send,
                    b"RECV": self.recv,
                }.get(command)
                if handler is None:
                    await self.fail(f"unknown command {U32.unpack(command)[0]:08x}")
                await handler(path, command)
                await self.out.flush()
        except _Abort:
            await self.out.flush()

    async def fail(self, message: str) -> NoReturn:
        data = message.encode()
        await self.out.write(b"FAIL" + U32.pack(len(data)) + data)
        raise _Abort(message)

    async def stat_v1(self, path: str, command: bytes) -> None:
        try:
            st = self.fs.stat(path, follow=False)
            await self.out.write(STAT_V1.pack(b"STAT", st.mode, st.size & 0xFFFFFFFF, st.mtime_s & 0xFFFFFFFF))
        except OSError:
            await self.out.write(STAT_V1.pack(b"STAT", 0, 0, 0))

    async def stat_v2(self, path: str, command: bytes) -> None:
        try:
            st = self.fs.stat(path, follow=command == b"STA2")
            await self.out.write(STAT_V2.pack(command, 0, *_stat_v2_fields(st)))
        except OSError as e:
            await self.out.write(STAT_V2.pack(command, e.errno or errno.EIO, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0))

    async def _entries(self, path: str) -> AsyncIterator[tuple[str, Stat | None, int]]:
        try:
            names = [".", ".."] + self.fs.listdir(path)
        except OSError:
            return
        base = path.rstrip("/")
        for name in names:
            try:
                yield name, self.fs.stat(f"{base}/{name}", follow=False), 0
            except OSError as e:
                yield name, None, e.errno or errno.EIO

    async def list_v1(self, path: str, command: bytes) -> None:
        async for name, st, _err in self._entries(path):
            if st is None:
                continue
            raw = name.encode(errors="surrogateescape")
            await self.out.write(
                DENT_V1.pack(b"DENT", st.mode, st.size & 0xFFFFFFFF, st.mtime_s & 0xFFFFFFFF, len(raw)) + raw
            )
        await self.out.write(b"DONE" + bytes(16))

    async def list_v2(self, path: str, command: bytes) -> None:
        async for name, st, err in self._entries(path):
            raw = name.encode(errors="surrogateescape")
            fields = _stat_v2_fields(st) if st is not None else (0,) * 10
            await self.out.write(DENT_V2.pack(b"DNT2", err, *fields, len(raw)) + raw)
        await self.out.write(b"DONE" + bytes(72))

    async def send(self, spec: str, command: bytes) -> None:
        path, comma, mode_text = spec.rpartition(",")
        if not comma:
            await self.fail("missing , in ID_SEND_V1")
        try:
            mode = int(mode_text, 8) if mode_text.startswith("0") and mode_text[1:2].isdigit() else int(mode_text, 0)
        except ValueError:
            await self.fail("bad mode")
        if stat_mod.S_ISLNK(mode):
            await self._drain()
            await self.fail("symlinks are not supported by the virtual device")
        # As adbd: copy the owner's permission bits to group and other.
        mode &= 0o777
        mode |= (mode >> 3) & 0o070
        mode |= (mode >> 3) & 0o007
        try:
            writer = self.fs.open_write(path, mode=mode, make_parents=True)
        except OSError as e:
            await self._fail_draining(f"couldn't create file: {e.strerror}")
            return
        host = self.fs.resolve(path).host
        ok = False
        try:
            while True:
                header = await self.stream.readexactly(8)
                kind, size = header[:4], U32.unpack_from(header, 4)[0]
                if kind == b"DONE":
                    mtime = size
                    break
                if kind != b"DATA":
                    await self.fail("invalid data message")
                if size > SYNC_DATA_MAX:
                    await self.fail("oversize data message")
                failure = None
                async for view in self.stream.read_views(size):
                    if failure is None:
                        try:
                            writer.write(view)
                        except OSError as e:
                            failure = f"write failed: {e.strerror}"
                if failure is not None:
                    await self._fail_draining(failure)
            ok = True
        finally:
            writer.close()
            if not ok and host is not None:
                host.unlink(missing_ok=True)  # adbd removes what it could not finish
        self.fs.set_mtime(path, mtime)
        self.log.info("push %s (%o)", path, mode)
        await self.out.write(b"OKAY" + bytes(4))

    async def _drain(self) -> None:
        """Swallow DATA until DONE, as adbd does after a failure (old clients keep sending)."""
        while True:
            header = await self.stream.readexactly(8)
            if header[:4] != b"DATA":
                return
            async for _ in self.stream.read_views(U32.unpack_from(header, 4)[0]):
                pass

    async def _fail_draining(self, message: str) -> None:
        data = message.encode()
        await self.out.write(b"FAIL" + U32.pack(len(data)) + data)
        await self.out.flush()
        await self._drain()
        raise _Abort(message)

    async def recv(self, path: str, command: bytes) -> None:
        try:
            f = self.fs.open_read(path)
        except OSError as e:
            await self.fail(f"open failed: {e.strerror}")
        with f:
            while chunk := f.read(SYNC_DATA_MAX):
                await self.out.write(b"DATA" + U32.pack(len(chunk)) + chunk)
        await self.out.write(b"DONE" + bytes(4))
