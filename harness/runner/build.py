"""The runner as one executable file: a deterministic zipapp.

The harness pushes files to devices content-addressed by sha256, so the same
sources must always give the same bytes: entries are written in a fixed
order with fixed timestamps and permissions, and stored uncompressed so the
bytes do not depend on the zlib build either.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

SHEBANG = b"#!/usr/bin/env python3\n"
# The earliest time a zip entry can carry.
_ENTRY_TIME = (1980, 1, 1, 0, 0, 0)
_ENTRY_MODE = 0o644 << 16  # rw-r--r--, regular file (upper 16 bits: Unix mode)


def runner_sources() -> list[tuple[str, Path]]:
    """(name in the archive, source file), in archive order."""
    package = Path(__file__).resolve().parent
    harness = package.parent
    return [
        # The runner's own __main__ doubles as the archive's entry point.
        ("__main__.py", package / "__main__.py"),
        ("harness/__init__.py", harness / "__init__.py"),
        *sorted((f"harness/runner/{path.name}", path) for path in package.glob("*.py")),
    ]


def build_runner(out_path: Path) -> Path:
    """Writes the runner zipapp to `out_path` (mode 0755) and returns the path."""
    buffer = io.BytesIO()
    buffer.write(SHEBANG)
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, source in runner_sources():
            entry = zipfile.ZipInfo(name, date_time=_ENTRY_TIME)
            entry.external_attr = _ENTRY_MODE
            entry.create_system = 3  # Unix, whatever system builds it
            archive.writestr(entry, source.read_bytes())
    # Imported here: this module ships inside the zipapp, which carries only the runner.
    from harness.atomic import write_atomically

    write_atomically(Path(out_path), lambda out: out.write(buffer.getvalue()), mode=0o755)
    return Path(out_path)
