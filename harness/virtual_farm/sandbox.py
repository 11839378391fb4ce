"""The device's file system: a folder on the host seen through chroot rules.

Every device path is resolved component by component against the sandbox
root: `..` stops at `/`, symlinks are followed by us (absolute targets restart
at the sandbox root), so no path, however built, reaches a host file outside
the root. Only /data/local/tmp and /sdcard are writable, as for adb's `shell`
user; /proc and /sys are generated read-only files. Writes are charged
against the profile's storage quota and fail with ENOSPC like a full phone.
"""

from __future__ import annotations

import errno
import io
import os
import shutil
import stat as stat_mod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

Generator = Callable[[], bytes]

WRITABLE_ROOTS = ("/data/local/tmp", "/sdcard")
SKELETON_DIRS = ("data/local/tmp", "sdcard")
MAX_SYMLINK_HOPS = 40
SHELL_UID = 2000  # Android's `shell` user owns everything adb creates


def fs_error(code: int, device_path: str) -> OSError:
    return OSError(code, os.strerror(code), device_path)


def _under(path: str, roots: tuple[str, ...]) -> bool:
    return any(path == r or path.startswith(r + "/") for r in roots)


def normalize(path: str, cwd: str = "/") -> str:
    """Lexical absolute form: joins cwd, drops '.', applies '..' (never above '/')."""
    parts: list[str] = []
    for part in (path if path.startswith("/") else f"{cwd}/{path}").split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts:
                parts.pop()
        else:
            parts.append(part)
    return "/" + "/".join(parts)


@dataclass(frozen=True)
class Node:
    """A resolved path. Exactly one of host / generated is set unless it is a virtual dir."""

    path: str  # canonical device path, symlinks resolved
    host: Path | None = None
    generated: Generator | None = None
    virtual_dir: bool = False

    @property
    def exists(self) -> bool:
        if self.host is not None:
            return os.path.lexists(self.host)
        return self.generated is not None or self.virtual_dir


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

    @property
    def is_dir(self) -> bool:
        return stat_mod.S_ISDIR(self.mode)

    @property
    def is_file(self) -> bool:
        return stat_mod.S_ISREG(self.mode)


class DeviceFS:
    def __init__(self, root: Path, quota_bytes: int, generated: Mapping[str, Generator]) -> None:
        self.root = root.resolve()
        self.quota_bytes = quota_bytes
        self.generated = dict(generated)
        self.virtual_dirs = {"/"}
        for path in self.generated:
            parent = path.rsplit("/", 1)[0]
            while parent:
                self.virtual_dirs.add(parent)
                parent = parent.rsplit("/", 1)[0]
        for rel in SKELETON_DIRS:
            (self.root / rel).mkdir(parents=True, exist_ok=True)
        self._used_bytes = 0
        self._open_writers = 0

    # --- resolution ---------------------------------------------------------

    def host_path(self, device_path: str) -> Path:
        """Host location of a canonical device path (no symlink handling)."""
        return self.root / device_path.lstrip("/")

    def resolve(self, path: str, cwd: str = "/", follow_last: bool = True) -> Node:
        # Physical resolution, as the kernel does: '..' applies after a symlink is followed.
        joined = path if path.startswith("/") else f"{cwd}/{path}"
        todo = [p for p in joined.split("/") if p not in ("", ".")]
        done: list[str] = []
        hops = 0
        while todo:
            part = todo.pop(0)
            if part == "..":
                if done:
                    done.pop()
                continue
            candidate = "/" + "/".join(done + [part])
            host = self.host_path(candidate)
            is_last = not todo
            if (follow_last or not is_last) and os.path.islink(host):
                hops += 1
                if hops > MAX_SYMLINK_HOPS:
                    raise fs_error(errno.ELOOP, path)
                target = os.readlink(host)
                if target.startswith("/"):
                    done = []
                todo = [p for p in target.split("/") if p not in ("", ".")] + todo
                continue
            done.append(part)
        device_path = "/" + "/".join(done)
        if device_path in self.generated:
            return Node(device_path, generated=self.generated[device_path])
        if device_path in self.virtual_dirs and not self.host_path(device_path).is_dir():
            return Node(device_path, virtual_dir=True)
        if _under(device_path, ("/proc", "/sys")):
            return Node(device_path)  # inside a generated tree but not generated: does not exist
        return Node(device_path, host=self.host_path(device_path))

    def _writable(self, node: Node) -> None:
        p = node.path
        if node.host is not None and _under(p, WRITABLE_ROOTS):
            return
        if _under(p, ("/proc", "/sys", "/data")):
            raise fs_error(errno.EACCES, p)
        raise fs_error(errno.EROFS, p)

    # --- queries ------------------------------------------------------------

    def stat(self, path: str, cwd: str = "/", follow: bool = True) -> Stat:
        node = self.resolve(path, cwd, follow_last=follow)
        if node.generated is not None:
            # /proc files report size 0, sysfs files one page, as the kernel does.
            size = 0 if node.path.startswith("/proc/") else 4096
            return Stat(stat_mod.S_IFREG | 0o444, size, 0, 0, 0, hash(node.path) & 0xFFFFFF, 1, 0, 0)
        if node.virtual_dir:
            return Stat(stat_mod.S_IFDIR | 0o555, 0, 0, 0, 0, hash(node.path) & 0xFFFFFF, 2, 0, 0)
        if node.host is None:
            raise fs_error(errno.ENOENT, path)
        try:
            st = os.lstat(node.host)  # resolve() already followed the links asked for
        except FileNotFoundError:
            raise fs_error(errno.ENOENT, path) from None
        except NotADirectoryError:
            raise fs_error(errno.ENOTDIR, path) from None
        return Stat(
            st.st_mode,
            st.st_size,
            int(st.st_mtime),
            int(st.st_atime),
            int(st.st_ctime),
            st.st_ino,
            st.st_nlink,
            SHELL_UID,
            SHELL_UID,
        )

    def exists(self, path: str, cwd: str = "/") -> bool:
        try:
            self.stat(path, cwd)
        except OSError:
            return False
        return True

    def listdir(self, path: str, cwd: str = "/") -> list[str]:
        node = self.resolve(path, cwd)
        names: set[str] = set()
        if node.virtual_dir or node.path == "/":
            prefix = node.path.rstrip("/") + "/"
            for p in list(self.generated) + list(self.virtual_dirs):
                if p.startswith(prefix) and p != prefix:
                    names.add(p[len(prefix) :].split("/", 1)[0])
        if node.host is not None or node.path == "/":
            host = node.host if node.host is not None else self.root
            try:
                names.update(os.listdir(host))
            except FileNotFoundError:
                raise fs_error(errno.ENOENT, path) from None
            except NotADirectoryError:
                raise fs_error(errno.ENOTDIR, path) from None
        elif not node.virtual_dir:
            if node.generated is not None:
                raise fs_error(errno.ENOTDIR, path)
            raise fs_error(errno.ENOENT, path)
        return sorted(names)

    def open_read(self, path: str, cwd: str = "/") -> BinaryIO:
        node = self.resolve(path, cwd)
        if node.generated is not None:
            return io.BytesIO(node.generated())
        if node.virtual_dir:
            raise fs_error(errno.EISDIR, path)
        if node.host is None:
            raise fs_error(errno.ENOENT, path)
        try:
            if os.path.isdir(node.host):
                raise fs_error(errno.EISDIR, path)
            return open(node.host, "rb")
        except FileNotFoundError:
            raise fs_error(errno.ENOENT, path) from None
        except NotADirectoryError:
            raise fs_error(errno.ENOTDIR, path) from None

    def read_bytes(self, path: str, cwd: str = "/") -> bytes:
        with self.open_read(path, cwd) as f:
            return f.read()

    # --- changes ------------------------------------------------------------

    def usage_bytes(self) -> int:
        total = 0
        for rel in SKELETON_DIRS:
            for dirpath, _dirs, files in os.walk(self.root / rel):
                for name in files:
                    try:
                        total += os.lstat(os.path.join(dirpath, name)).st_size
                    except OSError:
                        pass
        return total

    def open_write(
        self, path: str, cwd: str = "/", append: bool = False, mode: int = 0o666, make_parents: bool = False
    ) -> QuotaWriter:
        node = self.resolve(path, cwd)
        self._writable(node)
        assert node.host is not None
        if os.path.isdir(node.host):
            raise fs_error(errno.EISDIR, path)
        if make_parents:
            self.mkdir(node.path.rsplit("/", 1)[0] or "/", parents=True)
        elif not os.path.isdir(node.host.parent):
            raise fs_error(errno.ENOENT, path)
        if self._open_writers == 0:
            # Programs the device ran may have written files: recount from disk.
            self._used_bytes = self.usage_bytes()
        old_size = 0 if append or not node.host.exists() else node.host.stat().st_size
        existed = node.host.exists()
        fd = os.open(node.host, os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC), mode)
        if not existed:
            os.fchmod(fd, mode)  # exactly the requested mode, whatever this host's umask
        self._used_bytes -= old_size
        self._open_writers += 1
        return QuotaWriter(self, fd, node.path)

    def mkdir(self, path: str, cwd: str = "/", parents: bool = False, mode: int = 0o771) -> None:
        node = self.resolve(path, cwd)
        if node.exists:
            if parents and self.stat(node.path).is_dir:
                return
            raise fs_error(errno.EEXIST, path)
        parent = node.path.rsplit("/", 1)[0] or "/"
        if not self.exists(parent):
            if not parents:
                raise fs_error(errno.ENOENT, path)
            self.mkdir(parent, parents=True, mode=mode)
        self._writable(node)
        assert node.host is not None
        os.mkdir(node.host, mode)

    def remove(self, path: str, cwd: str = "/", recursive: bool = False) -> None:
        node = self.resolve(path, cwd, follow_last=False)
        if not node.exists:
            raise fs_error(errno.ENOENT, path)
        self._writable(node)
        if node.path in WRITABLE_ROOTS:
            raise fs_error(errno.EACCES, path)
        assert node.host is not None
        if os.path.isdir(node.host) and not os.path.islink(node.host):
            if not recursive:
                raise fs_error(errno.EISDIR, path)
            shutil.rmtree(node.host)
        else:
            os.unlink(node.host)

    def rename(self, src: str, dst: str, cwd: str = "/") -> None:
        s = self.resolve(src, cwd, follow_last=False)
        if not s.exists:
            raise fs_error(errno.ENOENT, src)
        self._writable(s)
        d = self.resolve(dst, cwd)
        if d.exists and self.stat(d.path).is_dir:
            d = self.resolve(d.path + "/" + s.path.rsplit("/", 1)[1])
        self._writable(d)
        assert s.host is not None and d.host is not None
        os.replace(s.host, d.host)

    def chmod(self, path: str, mode: int, cwd: str = "/") -> None:
        node = self.resolve(path, cwd)
        if not node.exists:
            raise fs_error(errno.ENOENT, path)
        self._writable(node)
        assert node.host is not None
        os.chmod(node.host, mode & 0o7777)

    def set_mtime(self, path: str, mtime_s: int, cwd: str = "/") -> None:
        node = self.resolve(path, cwd)
        if node.host is not None and node.host.exists():
            os.utime(node.host, (mtime_s, mtime_s))


class QuotaWriter:
    """Writes into the sandbox, charged against the device's storage quota."""

    def __init__(self, fs: DeviceFS, fd: int, device_path: str) -> None:
        self._fs = fs
        self._fd = fd
        self.device_path = device_path
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> int:
        n = len(data)
        room = self._fs.quota_bytes - self._fs._used_bytes
        view = memoryview(data)
        if n > room:
            if room > 0:
                self._write_all(view[:room])
            raise fs_error(errno.ENOSPC, self.device_path)
        self._write_all(view)
        return n

    def _write_all(self, view: memoryview) -> None:
        while view:
            done = os.write(self._fd, view)
            self._fs._used_bytes += done
            view = view[done:]

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            os.close(self._fd)
            self._fs._open_writers -= 1

    def __enter__(self) -> QuotaWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
