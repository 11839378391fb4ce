"""Versioned files: one rule and one wording for everything the harness persists.

Results (Parquet), run.json, the convert manifest, the accuracy table, policies, the
virtual farm's state, tiers.toml and farm.toml each carry a schema version. A reader
- refuses what has no version as "not a tflite-farm <kind>",
- refuses a newer version with the same fix (upgrade the harness), and
- upgrades an older one through a chain of named steps, one per version (`upgraded`),
  or says there is no way forward.

Compatibility rule (the same for every kind): adding an optional field or a nullable
column is compatible, older files read it as absent/null and keep their version; a
rename, a removal, a new required field or a change of meaning is a new version with
an upgrade step.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

from harness.errors import SchemaError

UPGRADE_FIX = "upgrade tflite-farm: pip install -U tflite-farm"

_T = TypeVar("_T")


def checked_version(path: Path | str, kind: str, version: object, newest: int, not_ours_fix: str | None = None) -> int:
    """`version` as read from the file at `path`, once it is one this harness can read.

    `not_ours_fix` replaces the generic fix for a file with no usable version.
    """
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise SchemaError(
            f"{path} is not a tflite-farm {kind}: its schema version is {version!r}, not an integer from 1",
            not_ours_fix or f"pass a {kind} that tflite-farm wrote, or move {path} out of the way",
        )
    if version > newest:
        raise SchemaError(f"{path} is {kind} v{version}, but this tflite-farm reads up to v{newest}", UPGRADE_FIX)
    return version


def upgraded(
    content: _T, path: Path | str, kind: str, version: int, newest: int, steps: Mapping[int, Callable[[_T], _T]]
) -> _T:
    """`content` of version `version` brought to `newest` by steps[n] (version n -> n+1)."""
    for from_version in range(version, newest):
        step = steps.get(from_version)
        if step is None:
            raise SchemaError(
                f"{path} is {kind} v{version} and there is no upgrade from v{from_version}",
                "read it with the tflite-farm release that wrote it",
            )
        content = step(content)
    return content
