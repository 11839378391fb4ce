"""Files that appear whole or not at all: write beside the target, fsync, rename into place.

The temporary name starts with '.', which the results store, pyarrow.dataset and
DuckDB's hive readers all ignore, so a crash leaves nothing half-written in view.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def write_atomically(path: Path, write: Callable[[BinaryIO], object], mode: int | None = None) -> None:
    """`write` fills a stream that becomes `path` (with `mode`, if given) only once it is complete."""

    def to_file(temp: Path) -> None:
        with open(temp, "wb") as out:
            write(out)
            out.flush()
            os.fsync(out.fileno())

    replace_atomically(path, to_file, mode=mode)


def replace_atomically(
    path: Path, make: Callable[[Path], object], suffix: str = ".tmp", mode: int | None = None
) -> None:
    """`make` writes a temporary file (named with `suffix`, for libraries that insist on one) that is
    then renamed to `path`; nothing is left behind when it fails."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{uuid.uuid4().hex}{suffix}")
    try:
        make(temp)
        if mode is not None:
            os.chmod(temp, mode)
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    if os.name == "posix":
        # Make the rename itself durable, not only the file's bytes.
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
