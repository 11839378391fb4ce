"""The runner (harness/runner/) as one executable file: a deterministic zipapp, built on the host.

The harness pushes files to devices content-addressed by sha256, so the same
sources must always give the same bytes: entries are written in a fixed
order with fixed timestamps and permissions, and stored uncompressed so the
bytes do not depend on the zlib build either.

Two dialects share the package and differ in the archive's entry point:
"classic" (TensorFlow Lite's benchmark_model, harness.runner.benchmark) and
"litert" (LiteRT 2.x's benchmark tool, harness.runner.litert_tool).
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

from harness.atomic import write_atomically

SHEBANG = b"#!/usr/bin/env python3\n"
# The earliest time a zip entry can carry.
_ENTRY_TIME = (1980, 1, 1, 0, 0, 0)
_ENTRY_MODE = 0o644 << 16  # rw-r--r--, regular file (upper 16 bits: Unix mode)
# Dialect -> the package module that doubles as the archive's __main__.py.
ENTRY_POINTS = {"classic": "__main__.py", "litert": "litert_main.py"}
# Data files the runner reads through its package loader (importlib.resources).
_DATA_FILES = ("benchmark_result.proto",)


def runner_sources(dialect: str = "classic") -> list[tuple[str, Path]]:
    """(name in the archive, source file), in archive order."""
    if dialect not in ENTRY_POINTS:
        raise ValueError(f"unknown runner dialect {dialect!r}: use one of {', '.join(ENTRY_POINTS)}")
    harness = Path(__file__).resolve().parent
    package = harness / "runner"
    files = [*package.glob("*.py"), *(package / name for name in _DATA_FILES)]
    return [
        ("__main__.py", package / ENTRY_POINTS[dialect]),
        ("harness/__init__.py", harness / "__init__.py"),
        *sorted((f"harness/runner/{path.name}", path) for path in files),
    ]


def build_runner(out_path: Path, dialect: str = "classic") -> Path:
    """Writes the `dialect` runner zipapp to `out_path` (mode 0755) and returns the path."""
    buffer = io.BytesIO()
    buffer.write(SHEBANG)
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, source in runner_sources(dialect):
            entry = zipfile.ZipInfo(name, date_time=_ENTRY_TIME)
            entry.external_attr = _ENTRY_MODE
            entry.create_system = 3  # Unix, whatever system builds it
            archive.writestr(entry, source.read_bytes())
    write_atomically(Path(out_path), lambda out: out.write(buffer.getvalue()), mode=0o755)
    return Path(out_path)
