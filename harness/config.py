"""Which farm.toml, tiers.toml and virtual phone profiles the harness uses: the one home of that lookup.

Each setting is looked up on its own, in these folders, the first that has it wins:

1. `harness --config DIR ...` (an error when DIR does not exist);
2. $HARNESS_CONFIG (likewise);
3. ./device_profiles/ in the current folder: a lab's own repository, worked in;
4. the user's config folder (harness.locations.user_config_dir, e.g. ~/.config/tflite-farm);
5. the defaults packaged with the harness (harness/defaults/: the demo's farm, the shipped tier
   rules and the four virtual phones).

So a lab that keeps only its farm.toml gets the shipped tier rules, and `harness config` shows where
each file came from. `harness init [DIR]` writes editable copies of farm.toml and tiers.toml.
binaries.lock is not looked up: it lives beside the farm.toml that names the binaries it pins.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from enum import Enum
from importlib import resources
from pathlib import Path

from harness.errors import InputFileError, UsageError
from harness.locations import user_config_dir

ENV_CONFIG = "HARNESS_CONFIG"
LAB_FOLDER = Path("device_profiles")
FARM_FILE_NAME = "farm.toml"
TIERS_FILE_NAME = "tiers.toml"
VIRTUAL_FOLDER_NAME = "virtual"
LOCK_FILE_NAME = "binaries.lock"
# What `harness init` writes: the two files a lab edits. Virtual profiles are test devices; a lab
# that wants its own copies them from the packaged folder `harness config` names.
INIT_FILES = (FARM_FILE_NAME, TIERS_FILE_NAME)


class Source(str, Enum):
    """Where a configuration folder comes from, in lookup order."""

    OPTION = "--config"
    ENVIRONMENT = f"${ENV_CONFIG}"
    LAB = "./device_profiles"
    USER = "user config folder"
    PACKAGED = "packaged defaults"


@dataclass(frozen=True)
class SearchFolder:
    source: Source
    path: Path
    exists: bool


@dataclass(frozen=True)
class Setting:
    """One configuration file (or folder) and where it was found."""

    name: str  # farm.toml | tiers.toml | virtual
    path: Path
    source: Source

    @property
    def packaged(self) -> bool:
        return self.source is Source.PACKAGED


@dataclass(frozen=True)
class Config:
    folders: tuple[SearchFolder, ...]  # lookup order, including folders that do not exist
    farm: Setting
    tiers: Setting
    virtual_profiles: Setting

    @property
    def settings(self) -> tuple[Setting, ...]:
        return (self.farm, self.tiers, self.virtual_profiles)

    @property
    def binaries_lock(self) -> Path:
        return self.farm.path.parent / LOCK_FILE_NAME

    def to_json(self) -> dict[str, object]:
        return {
            "settings": {s.name: {"path": str(s.path), "source": s.source.value} for s in self.settings},
            "binaries_lock": str(self.binaries_lock),
            "search": [{"source": f.source.value, "path": str(f.path), "exists": f.exists} for f in self.folders],
        }


# `harness --config DIR` for the duration of one command (a context variable, reset when the command
# ends, so a library call after a CLI call in the same process never sees a stale folder).
_explicit: contextvars.ContextVar[Path | None] = contextvars.ContextVar("harness_config_dir", default=None)


@contextlib.contextmanager
def config_dir_option(folder: Path | None) -> Iterator[None]:
    """Makes `folder` the first configuration folder until the block ends (None: no --config)."""
    token = _explicit.set(None if folder is None else Path(folder))
    try:
        yield
    finally:
        _explicit.reset(token)


def explicit_config_dir() -> Path | None:
    """The --config folder of the running command, if any (child processes get it as $HARNESS_CONFIG)."""
    return _explicit.get()


def packaged_defaults() -> Path:
    """harness/defaults/ of the installed package: read-only shipped configuration."""
    folder = resources.files("harness") / "defaults"
    # The harness is always installed as files (the runner zipapp and the virtual phones need paths).
    if not isinstance(folder, Path):
        raise InputFileError(
            f"the harness's packaged defaults are not plain files ({folder})",
            "install tflite-farm as files (pip/pipx install), not from a zip archive",
        )
    return folder


def search_folders(
    explicit: Path | None = None, environ: Mapping[str, str] | None = None, cwd: Path | None = None
) -> tuple[SearchFolder, ...]:
    environ = os.environ if environ is None else environ
    explicit = explicit if explicit is not None else _explicit.get()
    candidates: list[tuple[Source, Path]] = []
    if explicit is not None:
        candidates.append((Source.OPTION, Path(explicit)))
    if environ.get(ENV_CONFIG):
        candidates.append((Source.ENVIRONMENT, Path(environ[ENV_CONFIG]).expanduser()))
    candidates += [
        (Source.LAB, (cwd or Path.cwd()) / LAB_FOLDER),
        (Source.USER, user_config_dir(environ)),
        (Source.PACKAGED, packaged_defaults()),
    ]
    folders = tuple(SearchFolder(source, path.resolve(), path.is_dir()) for source, path in candidates)
    for folder in folders:
        # A folder named on purpose that is not there is a typo, not a reason to fall back quietly.
        if folder.source in (Source.OPTION, Source.ENVIRONMENT) and not folder.exists:
            raise UsageError(
                f"configuration folder {folder.path} ({folder.source.value}) does not exist",
                f"create it with 'harness init {folder.path}', or name an existing folder",
            )
    return folders


def resolve(explicit: Path | None = None, environ: Mapping[str, str] | None = None, cwd: Path | None = None) -> Config:
    """The configuration in effect: for each setting, the first search folder that has it."""
    folders = search_folders(explicit, environ, cwd)

    def find(name: str, wanted_dir: bool) -> Setting:
        for folder in folders:
            candidate = folder.path / name
            if candidate.is_dir() if wanted_dir else candidate.is_file():
                return Setting(name, candidate, folder.source)
        raise InputFileError(
            f"no {name} in any configuration folder ({', '.join(str(f.path) for f in folders)})",
            "reinstall tflite-farm: its packaged defaults are incomplete",
        )

    return Config(
        folders=folders,
        farm=find(FARM_FILE_NAME, False),
        tiers=find(TIERS_FILE_NAME, False),
        virtual_profiles=find(VIRTUAL_FOLDER_NAME, True),
    )


def farm_file() -> Path:
    return resolve().farm.path


def tiers_file() -> Path:
    return resolve().tiers.path


def virtual_profiles_dir() -> Path:
    return resolve().virtual_profiles.path


def writable_farm_file() -> Path:
    """The farm.toml a command may edit (`harness binaries fetch`): never the packaged one."""
    setting = resolve().farm
    if setting.packaged:
        raise UsageError(
            f"the farm file in effect is the packaged default ({setting.path}), which is not yours to edit",
            "run 'harness init' to write an editable ./device_profiles/farm.toml (or 'harness init DIR' and "
            f"point --config or ${ENV_CONFIG} at DIR), then run the command again",
        )
    return setting.path


@dataclass(frozen=True)
class InitResult:
    folder: Path
    written: tuple[Path, ...]
    kept: tuple[Path, ...]  # already there, left alone (no --force)


_HEADER = (
    "# Written by `harness init` from tflite-farm's packaged defaults: this copy is yours to edit.\n"
    "# `harness config` shows which file each setting comes from.\n"
)


def init(folder: Path | None = None, force: bool = False) -> InitResult:
    """Writes editable copies of the packaged farm.toml and tiers.toml into `folder` (default ./device_profiles).

    Existing files are kept unless `force`: they are a lab's own configuration.
    """
    target = (Path(folder) if folder is not None else LAB_FOLDER).resolve()
    if target.exists() and not target.is_dir():
        raise UsageError(f"{target} is a file, not a folder", "name a folder for the configuration files")
    target.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    kept: list[Path] = []
    for name in INIT_FILES:
        path = target / name
        if path.exists() and not force:
            kept.append(path)
            continue
        path.write_text(_HEADER + (packaged_defaults() / name).read_text(encoding="utf-8"), encoding="utf-8")
        written.append(path)
    return InitResult(target, tuple(written), tuple(kept))
