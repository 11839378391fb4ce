"""Where the harness keeps things when not told otherwise (import-light: the CLI reads it at start-up)."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_RESULTS = Path("results")
"""The results root: Parquet dataset, run manifests, raw logs, accuracy table, policies."""


def user_cache_dir() -> Path:
    """The harness's per-user cache: $HARNESS_CACHE_DIR, else $XDG_CACHE_HOME/tflite-farm, else
    ~/.cache/tflite-farm. Downloaded benchmark binaries and what the harness learnt about them live here."""
    explicit = os.environ.get("HARNESS_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "tflite-farm"
