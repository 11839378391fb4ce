"""The `sync:` service (file_sync_protocol.h): STAT, STA2/LST2, LIST/LIS2, SEND, RECV, QUIT.

Requests are `id(4) + u32 LE path length + path`; replies follow adbd's
file_sync_service.cpp, including its error texts ("couldn't create file: ...",
"write failed: No space left on device", "open failed: ...").

The files are reached from inside the phone's sandbox: a small helper (SYNC_HELPER, run by the
project's Python in the sandbox as adb's shell user) does the file system calls, so paths, `..` and
symlinks resolve in the phone's namespace, the quota is the tmpfs's, and the errors are the kernel's.
As for adbd's shell user, only /data/local/tmp and /sdcard are writable.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import stat as stat_mod
import struct
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn

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

# One JSON request per line on stdin (a write's bytes follow its line); one JSON reply per line on stdout
# (a read's bytes follow its reply).
SYNC_HELPER = r"""
import json, os, sys
WRITABLE = ("/data/local/tmp", "/data/media/0")
inp, out = sys.stdin.buffer, sys.stdout.buffer
def reply(obj, data=b""):
    out.write(json.dumps(obj).encode() + b"\n" + data); out.flush()
def st(s):
    times = [int(s.st_mtime), int(s.st_atime), int(s.st_ctime)]
    return [s.st_mode, s.st_size, *times, s.st_ino, s.st_nlink, s.st_uid, s.st_gid]
def err(e):
    reply({"errno": e.errno or 5, "strerror": e.strerror or os.strerror(e.errno or 5)})
def writable(path):
    real = os.path.realpath(path)
    return any(real == w or real.startswith(w + "/") for w in WRITABLE)
fd, path = -1, None
while line := inp.readline():
    r = json.loads(line)
    op = r["op"]
    try:
        if op == "stat":
            reply({"st": st(os.stat(r["path"]) if r["follow"] else os.lstat(r["path"]))})
        elif op == "list":
            names = [".", ".."] + sorted(os.listdir(r["path"]))
            entries = []
            for name in names:
                try:
                    entries.append([name, st(os.lstat(os.path.join(r["path"], name))), 0])
                except OSError as e:
                    entries.append([name, None, e.errno or 5])
            reply({"entries": entries})
        elif op == "open":
            path = r["path"]
            parent = os.path.realpath(os.path.dirname(path) or "/")
            if not writable(parent) and (parent + "/").startswith(("/data/", "/proc/", "/sys/")):
                raise PermissionError(13, os.strerror(13))
            os.makedirs(parent, mode=0o771, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, r["mode"])
            os.fchmod(fd, r["mode"])
            reply({"ok": True})
        elif op == "write":
            view = memoryview(inp.read(r["n"]))
            while view:
                view = view[os.write(fd, view):]
            reply({"ok": True})
        elif op == "close":
            os.close(fd); fd = -1
            os.utime(path, (r["mtime"], r["mtime"]))
            reply({"ok": True})
        elif op == "abort":
            if fd >= 0:
                os.close(fd); fd = -1
            if path is not None:
                os.unlink(path)
            reply({"ok": True})
        elif op == "read":
            with open(r["path"], "rb") as f:
                while True:
                    chunk = f.read(r["chunk"])
                    reply({"n": len(chunk)}, chunk)
                    if not chunk:
                        break
    except OSError as e:
        err(e)
"""


@dataclass(frozen=True)
class Stat:
    mode: int
    size: int
    mtime_s: int
    atime_s: int
    ctime_s: int
    ino: int
    nlink: int
    uid: int
    gid: int


def _stat(fields: list[int]) -> Stat:
    return Stat(*fields)


class SyncHelper:
    """The helper process in the phone's sandbox; each call raises OSError with the kernel's errno."""

    def __init__(self, device: VirtualDevice) -> None:
        self.device = device
        self.proc: asyncio.subprocess.Process | None = None

    async def _ensure(self) -> asyncio.subprocess.Process:
        if self.proc is None:
            python = os.path.join(sys.prefix, "bin", "python3")
            self.proc = await asyncio.create_subprocess_exec(
                *self.device.sandbox.exec_argv([python, "-I", "-c", SYNC_HELPER]),
                env={"PATH": "/system/bin", "HOME": "/", "LC_ALL": "C.UTF-8"},
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                limit=4 * SYNC_DATA_MAX,
            )
        return self.proc

    async def call(self, request: dict[str, Any], data: bytes | bytearray | memoryview = b"") -> dict[str, Any]:
        proc = await self._ensure()
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(json.dumps(request).encode() + b"\n")
        if data:
            proc.stdin.write(data)
        await proc.stdin.drain()
        line = await proc.stdout.readline()
        if not line:
            raise OSError(errno.EIO, "the phone's file helper stopped")
        reply: dict[str, Any] = json.loads(line)
        if "errno" in reply:
            raise OSError(reply["errno"], reply["strerror"])
        return reply

    async def stat(self, path: str, follow: bool) -> Stat:
        return _stat((await self.call({"op": "stat", "path": path, "follow": follow}))["st"])

    async def listdir(self, path: str) -> list[tuple[str, Stat | None, int]]:
        entries = (await self.call({"op": "list", "path": path}))["entries"]
        return [(name, _stat(fields) if fields is not None else None, code) for name, fields, code in entries]

    async def read(self, path: str) -> AsyncIterator[bytes]:
        proc = await self._ensure()
        assert proc.stdout is not None
        first = True
        while True:
            if first:
                reply = await self.call({"op": "read", "path": path, "chunk": SYNC_DATA_MAX})
                first = False
            else:
                line = await proc.stdout.readline()
                reply = json.loads(line)
            n = reply["n"]
            if not n:
                return
            yield await proc.stdout.readexactly(n)

    async def close(self) -> None:
        if self.proc is not None:
            if self.proc.stdin is not None:
                self.proc.stdin.close()
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            await self.proc.wait()
            self.proc = None


class _Abort(Exception):
    """The request failed: a FAIL was sent and the service ends, as adbd's does."""


def _stat_v2_fields(st: Stat) -> tuple[int, ...]:
    return (0, st.ino, st.mode, st.nlink, st.uid, st.gid, st.size, st.atime_s, st.mtime_s, st.ctime_s)


class SyncService:
    def __init__(self, device: VirtualDevice, stream: Stream) -> None:
        self.fs = SyncHelper(device)
        self.log = device.log
        self.stream = stream
        self.out = BufferedStreamWriter(stream)

    async def run(self) -> None:
        try:
            await self._serve()
        finally:
            await self.fs.close()

    async def _serve(self) -> None:
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
            st = await self.fs.stat(path, follow=False)
            await self.out.write(STAT_V1.pack(b"STAT", st.mode, st.size & 0xFFFFFFFF, st.mtime_s & 0xFFFFFFFF))
        except OSError:
            await self.out.write(STAT_V1.pack(b"STAT", 0, 0, 0))

    async def stat_v2(self, path: str, command: bytes) -> None:
        try:
            st = await self.fs.stat(path, follow=command == b"STA2")
            await self.out.write(STAT_V2.pack(command, 0, *_stat_v2_fields(st)))
        except OSError as e:
            await self.out.write(STAT_V2.pack(command, e.errno or errno.EIO, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0))

    async def _entries(self, path: str) -> AsyncIterator[tuple[str, Stat | None, int]]:
        try:
            entries = await self.fs.listdir(path)
        except OSError:
            return
        for entry in entries:
            yield entry

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
            await self.fs.call({"op": "open", "path": path, "mode": mode})
        except OSError as e:
            await self._fail_draining(f"couldn't create file: {e.strerror}")
            return
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
                data = bytearray()
                async for view in self.stream.read_views(size):
                    data += view
                try:
                    await self.fs.call({"op": "write", "n": len(data)}, data)
                except OSError as e:
                    await self._fail_draining(f"write failed: {e.strerror}")
            await self.fs.call({"op": "close", "mtime": mtime})
            ok = True
        finally:
            if not ok:
                with contextlib.suppress(OSError):
                    await self.fs.call({"op": "abort"})  # adbd removes what it could not finish
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

    async def _fail_draining(self, message: str) -> NoReturn:
        data = message.encode()
        await self.out.write(b"FAIL" + U32.pack(len(data)) + data)
        await self.out.flush()
        await self._drain()
        raise _Abort(message)

    async def recv(self, path: str, command: bytes) -> None:
        chunks = self.fs.read(path)
        try:
            first = await chunks.__anext__()
        except StopAsyncIteration:
            first = b""
        except OSError as e:
            await self.fail(f"open failed: {e.strerror}")
        if first:
            await self.out.write(b"DATA" + U32.pack(len(first)) + first)
            async for chunk in chunks:
                await self.out.write(b"DATA" + U32.pack(len(chunk)) + chunk)
        await self.out.write(b"DONE" + bytes(4))
