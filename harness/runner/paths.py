"""The device's view of the file system.

A virtual device runs this program with HARNESS_DEVICE_ROOT set to its
sandbox folder. Absolute paths the user gives (as they would on a phone,
e.g. /data/local/tmp/m.tflite) then name files inside that folder, resolved
the way a chroot would: `..` stops at the root and absolute symlink targets
restart at the root, so nothing outside the sandbox can be reached.
"""

from __future__ import annotations

import errno
import os

ROOT_ENV = "HARNESS_DEVICE_ROOT"

# Same limit as Linux's path resolution, so a symlink loop fails like ELOOP.
_MAX_SYMLINKS = 40


def device_root() -> str | None:
    root = os.environ.get(ROOT_ENV)
    return os.path.realpath(root) if root else None


def host_path(path: str, root: str | None) -> str:
    """Where `path`, as given on the device, lives on this machine.

    Relative paths are left to the working directory (the device sets it).
    """
    if root is None or not os.path.isabs(path):
        return path
    resolved: list[str] = []
    pending = path.split("/")
    hops = 0
    while pending:
        part = pending.pop(0)
        if part in ("", "."):
            continue
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = os.path.join(root, *resolved, part)
        if os.path.islink(candidate):
            hops += 1
            if hops > _MAX_SYMLINKS:
                raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path)
            target = os.readlink(candidate)
            if target.startswith("/"):
                resolved = []
            pending = target.split("/") + pending
            continue
        resolved.append(part)
    return os.path.join(root, *resolved)
