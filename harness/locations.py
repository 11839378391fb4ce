"""Where the harness keeps things when not told otherwise (import-light: the CLI reads it at start-up)."""

from __future__ import annotations

from pathlib import Path

DEFAULT_RESULTS = Path("results")
"""The results root: Parquet dataset, run manifests, raw logs, accuracy table, policies."""
