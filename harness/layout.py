"""Where result files lie, what their names say, and which of them count.

Layout of a results root's dataset (results schema v3):

    dataset/run_id=<run_id>/device=<serial, percent-encoded>/<file>.parquet

with these file names (every one matches `part-*.parquet`, so a v2 harness sees them and refuses
their version instead of silently missing them):

    part-<id>.parquet                          a v1/v2 file: one batch, any model (read to know)
    part-<id>.model-<model>.parquet            one batch of one model (a case, as the sweep writes it)
    part-<gen>.<k>of<n>.model-<model>.parquet  file k of the n files of compaction <gen>: every row of
                                               one model of the (run, device), merged

`<model>` is the model name percent-encoded (dots too), so a model filter picks its files by
name and opens no other model's. Folder names only narrow the search: the rows' own columns
stay authoritative.

Which files count: a compaction's files list the files they replace in their Parquet metadata
(REPLACES_KEY). A compaction counts once all n of its files are present (it renames them in one
by one); from then on the files it lists never count, even while they are still on disk (a crash
between the rename and their removal). An incomplete compaction does not count, and its replaced
files still do. So at any moment every row counts exactly once.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote

import pyarrow.parquet as pq

REPLACES_KEY = "tflite_farm.replaces"
"""Parquet metadata key of a compaction's files: JSON list of the file names (same folder) it replaces."""

_NAME = re.compile(
    r"part-(?P<id>[0-9A-Za-z_-]+?)(?:\.(?P<index>[0-9]+)of(?P<count>[0-9]+))?(?:\.model-(?P<model>[^./]*))?\.parquet"
)
_MAX_MODEL_CHARS = 120  # file names stop at 255 bytes; a longer model name is left out of the name (read to know)


@dataclass(frozen=True)
class DataFile:
    """One Parquet file of the dataset, as its folder and name describe it."""

    path: Path
    run_id: str
    serial: str
    model_name: str | None  # None: the name does not say (a v1/v2 file, or a batch of several models)
    compaction: str | None  # the compaction's id; None: a batch as the sweep wrote it
    index: int = 0  # k of "k of n" (compactions only)
    count: int = 0  # n

    @property
    def name(self) -> str:
        return self.path.name


def model_segment(model_name: str) -> str | None:
    """The model as it appears in a file name, or None when it is too long to fit one."""
    encoded = quote(model_name, safe="").replace(".", "%2E")
    return encoded if len(encoded) <= _MAX_MODEL_CHARS else None


def batch_name(batch_id: str, model_name: str | None) -> str:
    segment = None if model_name is None else model_segment(model_name)
    return f"part-{batch_id}.parquet" if segment is None else f"part-{batch_id}.model-{segment}.parquet"


def compaction_name(compaction_id: str, index: int, count: int, model_name: str) -> str:
    segment = model_segment(model_name)
    model = "" if segment is None else f".model-{segment}"
    return f"part-{compaction_id}.{index}of{count}{model}.parquet"


_COMPACTION_TEMPORARY = re.compile(r"\.part-[0-9A-Za-z_-]+\.[0-9]+of[0-9]+(\.model-[^./]*)?\.parquet\.[0-9a-f]+\.tmp")


def is_compaction_temporary(name: str) -> bool:
    """Whether a hidden file is one a compaction writes before renaming it into place."""
    return _COMPACTION_TEMPORARY.fullmatch(name) is not None


def path_safe(serial: str) -> str:
    """Serial as one reversible path segment: '127.0.0.1:5555' -> '127.0.0.1%3A5555'.

    A leading '.' is encoded too, so no serial makes a hidden (ignored) folder or '..'.
    """
    encoded = quote(serial, safe="-_.")
    return "%2E" + encoded[1:] if encoded.startswith(".") else encoded


def describe(path: Path, run_id: str, serial: str) -> DataFile | None:
    """A file of a (run, device) folder, or None when its name is no results file's (temporary, foreign)."""
    match = _NAME.fullmatch(path.name)
    if match is None:
        return None
    model = match["model"]
    index, count = match["index"], match["count"]
    return DataFile(
        path=path,
        run_id=run_id,
        serial=serial,
        model_name=None if model is None else unquote(model),
        compaction=None if index is None else match["id"],
        index=0 if index is None else int(index),
        count=0 if count is None else int(count),
    )


def partitions(dataset_dir: Path, run_ids: Iterable[str] | None = None) -> Iterator[tuple[str, str, Path]]:
    """(run_id, serial, folder) of every (run, device) folder, pruned to `run_ids` by folder name."""
    if run_ids is None:
        run_folders = _subfolders(dataset_dir, "run_id=")
    else:
        run_folders = [dataset_dir / f"run_id={run_id}" for run_id in sorted(set(run_ids))]
    for run_folder in run_folders:
        run_id = run_folder.name.removeprefix("run_id=")
        for device_folder in _subfolders(run_folder, "device="):
            yield run_id, unquote(device_folder.name.removeprefix("device=")), device_folder


def _subfolders(folder: Path, prefix: str) -> list[Path]:
    try:
        entries = list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted(Path(e.path) for e in entries if e.name.startswith(prefix) and e.is_dir())


def folder_files(folder: Path, run_id: str, serial: str) -> list[DataFile]:
    """Every results file in a (run, device) folder, counting or not (hidden temporaries are not files)."""
    try:
        names = sorted(entry.name for entry in os.scandir(folder) if not entry.name.startswith("."))
    except FileNotFoundError:
        return []
    found = (describe(folder / name, run_id, serial) for name in names)
    return [f for f in found if f is not None]


@dataclass(frozen=True)
class Resolved:
    """The files of one folder split by whether their rows count."""

    live: tuple[DataFile, ...]
    superseded: tuple[DataFile, ...]  # replaced by a complete compaction: removable
    incomplete: tuple[DataFile, ...]  # files of a compaction that never finished: removable


def resolve(files: Sequence[DataFile]) -> Resolved:
    """Which files of one folder count (see the module docstring)."""
    compactions: dict[str, list[DataFile]] = {}
    for f in files:
        if f.compaction is not None:
            compactions.setdefault(f.compaction, []).append(f)
    complete = {
        cid: group
        for cid, group in compactions.items()
        if {f.index for f in group} == set(range(1, group[0].count + 1)) and len(group) == group[0].count
    }
    incomplete = [f for cid, group in compactions.items() if cid not in complete for f in group]
    # The common case, one finished compaction and nothing else, needs no metadata read.
    if len(complete) == 1 and not incomplete and all(f.compaction is not None for f in files):
        return Resolved(tuple(files), (), ())
    replaced: set[str] = set()
    for group in complete.values():
        replaced |= replaced_names(group[0].path)
    live = [f for f in files if f.name not in replaced and (f.compaction is None or f.compaction in complete)]
    superseded = [f for f in files if f.name in replaced]
    return Resolved(tuple(live), tuple(superseded), tuple(f for f in incomplete if f.name not in replaced))


def replaced_names(path: Path) -> set[str]:
    """The names a compaction's file lists as replaced (empty when unreadable: then nothing is dropped)."""
    try:
        metadata = pq.read_schema(path).metadata or {}
        names = json.loads(metadata.get(REPLACES_KEY.encode(), b"[]"))
    except (OSError, ValueError) as error:
        # Dropping nothing may count rows twice, but never loses any; compact again to settle it.
        import logging

        logging.getLogger(__name__).warning("cannot read what %s replaces (%s)", path, error)
        return set()
    return {str(name) for name in names} if isinstance(names, list) else set()


_LISTING_THREADS = 8  # folder listings wait on the file system (a shared one most of all), not on Python


def live_files(
    dataset_dir: Path,
    run_ids: Iterable[str] | None = None,
    model_name: str | None = None,
    serials: Iterable[str] | None = None,
) -> list[DataFile]:
    """The files whose rows count, pruned by run and device (folders) and by model (file names).

    A file whose name does not say its model is kept under a model filter: its rows say it.
    """
    wanted_serials = None if serials is None else set(serials)
    if run_ids is None:
        run_folders = _subfolders(dataset_dir, "run_id=")
    else:
        run_folders = [dataset_dir / f"run_id={run_id}" for run_id in sorted(set(run_ids))]

    def of_run(run_folder: Path) -> list[DataFile]:
        run_id = run_folder.name.removeprefix("run_id=")
        found: list[DataFile] = []
        for device_folder in _subfolders(run_folder, "device="):
            serial = unquote(device_folder.name.removeprefix("device="))
            if wanted_serials is not None and serial not in wanted_serials:
                continue
            for f in resolve(folder_files(device_folder, run_id, serial)).live:
                if model_name is None or f.model_name is None or f.model_name == model_name:
                    found.append(f)
        return found

    if len(run_folders) < 2:
        return [f for folder in run_folders for f in of_run(folder)]
    with ThreadPoolExecutor(max_workers=_LISTING_THREADS) as pool:
        return [f for listed in pool.map(of_run, run_folders) for f in listed]
