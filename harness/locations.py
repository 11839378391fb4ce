"""Where the harness keeps things when not told otherwise (import-light: the CLI reads it at start-up).

Three per-user folders, by the platform's conventions (the XDG base directories on Linux,
~/Library on macOS, %LOCALAPPDATA% / %APPDATA% on Windows), each with an environment variable
that overrides it (tests point them at temporary folders):

- config: a lab's farm.toml / tiers.toml / virtual/ when no closer folder has them (harness.config);
- state: what outlives one command but is no one's data, e.g. the virtual farm's pids and sandboxes;
- cache: what can be fetched or rebuilt again, e.g. downloaded benchmark binaries.

Results are data, not state: they stay in ./results unless --results says otherwise.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

APP_NAME = "tflite-farm"

DEFAULT_RESULTS = Path("results")
"""The results root: Parquet dataset, run manifests, raw logs, accuracy table, policies."""

ENV_CACHE_DIR = "HARNESS_CACHE_DIR"
ENV_STATE_DIR = "HARNESS_STATE_DIR"


def _platform_dir(environ: Mapping[str, str], xdg_variable: str, xdg_default: str, mac: str, windows: str) -> Path:
    """The folder for APP_NAME: $XDG_... when set (on every platform, so one variable moves it), else the
    platform's convention."""
    if environ.get(xdg_variable):
        return (Path(environ[xdg_variable]).expanduser() / APP_NAME).resolve()
    if sys.platform == "darwin":
        return (Path.home() / "Library" / mac / APP_NAME).resolve()
    if sys.platform == "win32":
        base = environ.get(windows) or str(Path.home() / "AppData" / ("Roaming" if windows == "APPDATA" else "Local"))
        return (Path(base) / APP_NAME).resolve()
    return (Path.home() / xdg_default / APP_NAME).resolve()


def user_cache_dir(environ: Mapping[str, str] | None = None) -> Path:
    """The harness's per-user cache: $HARNESS_CACHE_DIR, else $XDG_CACHE_HOME/tflite-farm, else
    ~/.cache/tflite-farm (~/Library/Caches on macOS, %LOCALAPPDATA% on Windows). Downloaded benchmark
    binaries and what the harness learnt about them live here."""
    environ = os.environ if environ is None else environ
    if environ.get(ENV_CACHE_DIR):
        return Path(environ[ENV_CACHE_DIR]).expanduser().resolve()
    return _platform_dir(environ, "XDG_CACHE_HOME", ".cache", "Caches", "LOCALAPPDATA")


def user_state_dir(environ: Mapping[str, str] | None = None) -> Path:
    """The harness's per-user state: $HARNESS_STATE_DIR, else $XDG_STATE_HOME/tflite-farm, else
    ~/.local/state/tflite-farm (~/Library/Application Support on macOS, %LOCALAPPDATA% on Windows).
    The virtual farm (farm/) and the demo's work folder (demo/) live here unless --state-dir says otherwise."""
    environ = os.environ if environ is None else environ
    if environ.get(ENV_STATE_DIR):
        return Path(environ[ENV_STATE_DIR]).expanduser().resolve()
    return _platform_dir(environ, "XDG_STATE_HOME", ".local/state", "Application Support", "LOCALAPPDATA")


def user_config_dir(environ: Mapping[str, str] | None = None) -> Path:
    """The per-user configuration folder: $XDG_CONFIG_HOME/tflite-farm, else ~/.config/tflite-farm
    (~/Library/Application Support on macOS, %APPDATA% on Windows). One of the places harness.config
    looks for farm.toml, tiers.toml and virtual/; $HARNESS_CONFIG names a folder looked at before it."""
    environ = os.environ if environ is None else environ
    return _platform_dir(environ, "XDG_CONFIG_HOME", ".config", "Application Support", "APPDATA")
