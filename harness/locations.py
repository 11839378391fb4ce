"""Where the harness keeps things when not told otherwise (import-light: the CLI reads it at start-up)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

DEFAULT_RESULTS = Path("results")
"""The results root: Parquet dataset, run manifests, raw logs, accuracy table, policies."""


def user_cache_dir(environ: Mapping[str, str] | None = None) -> Path:
    """The harness's per-user cache: $HARNESS_CACHE_DIR, else $XDG_CACHE_HOME/tflite-farm, else
    ~/.cache/tflite-farm. Downloaded benchmark binaries and what the harness learnt about them live here."""
    environ = os.environ if environ is None else environ
    if environ.get("HARNESS_CACHE_DIR"):
        return Path(environ["HARNESS_CACHE_DIR"]).expanduser().resolve()
    if environ.get("XDG_CACHE_HOME"):
        return (Path(environ["XDG_CACHE_HOME"]).expanduser() / "tflite-farm").resolve()
    return (Path.home() / ".cache" / "tflite-farm").resolve()
