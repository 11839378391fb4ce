"""The dashboard's data layer: the results dataset of one results root, queried where it lies.

`Dataset.open(root)` reads no row: it lists the files that count (harness.layout: runs and
devices from the folders, the model from each file name), the run manifests and the accuracy
rows. Every query then reads in place through DuckDB (`Dataset.sql`, `Dataset.cursor`): a
selection (one model, some runs) opens only its runs' files of its model, and DuckDB reads only
the columns and row groups the query needs. `state_key(root)` changes whenever a results file is
added, replaced or removed: callers cache per query on it, so a new run shows up on the next
rerun without a restart.

Files are judged by harness.store's rules, never by rules of our own: a file whose name does not
say it is current (v1/v2, written before compaction existed) is checked by its footer first, an
older one is upgraded, a damaged one skipped (reported in `Dataset.skipped`), and a newer one
refused (SchemaError, worded as `harness results` words it).

No Streamlit here: the bench and the tests use this module as it is.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from harness.errors import HarnessError
from harness.layout import DataFile
from harness.store import ResultsStore, RowFilter, SkippedFile, checked, run_times

log = logging.getLogger(__name__)

RESULTS_ENV = "TFLITE_FARM_RESULTS"
"""Environment variable naming the results root when no --results is given."""

ROWS = "rows"
"""Name of the (cursor-local) DuckDB view holding the result rows a query reads."""

_ACCURACY_GLOB = "accuracy/part-*.parquet"
_MANIFEST_GLOB = "runs/*/run.json"

StateKey = tuple[int, int, int]


def dataset_files(root: Path) -> list[Path]:
    """The result files that count in a results root, in a stable order (see harness.layout)."""
    return [f.path for f in ResultsStore(Path(root)).files()]


def state_key(root: Path) -> StateKey:
    """(entries, newest mtime in ns, total bytes) over the dataset's folders, accuracy files and manifests.

    Cheap (one stat per folder, not per file) and changes on every append, compaction, replace or
    removal: each of those adds, renames or removes a file in a (run, device) folder, which changes
    that folder's mtime; a new run or device adds a folder.
    """
    root = Path(root)
    count = newest = size = 0

    def seen(path: str | Path) -> None:
        nonlocal count, newest, size
        try:
            stat = os.stat(path)
        except FileNotFoundError:  # removed between listing and stat: it is simply not there
            return
        count += 1
        newest = max(newest, stat.st_mtime_ns)
        size += stat.st_size if not os.path.isdir(path) else 0

    for run_folder in _folders(root / "dataset", "run_id="):
        seen(run_folder)
        for device_folder in _folders(run_folder, "device="):
            seen(device_folder)
    for pattern in (_ACCURACY_GLOB, _MANIFEST_GLOB):
        for path in root.glob(pattern):
            seen(path)
    return count, newest, size


def _folders(folder: str | Path, prefix: str) -> list[str]:
    try:
        return [entry.path for entry in os.scandir(folder) if entry.name.startswith(prefix) and entry.is_dir()]
    except (FileNotFoundError, NotADirectoryError):
        return []


@dataclass(frozen=True)
class RunInfo:
    """One run: its manifest where there is one, its rows for what the manifest lacks.

    `devices` counts the run's device folders. `ended_at` is None for a run still going or one that
    crashed before writing its end. Row counts are `Dataset.run_figures` (they read rows).
    """

    run_id: str
    started_at: datetime | None
    ended_at: datetime | None
    devices: int
    harness_version: str | None
    argv: tuple[str, ...]
    has_manifest: bool


@dataclass(frozen=True)
class RunFigures:
    """A run's rows at a glance; `ok` and `failed` count rows (one per repetition) as `harness results ls`
    does, skipped rows count as neither."""

    cases: int
    rows: int
    ok: int
    failed: int


POOLED_RUNS_MAX = 30
"""Up to this many runs of a model, the pages pool every run by default. Beyond (a lab's nightly runs) they
show the newest run, and the sidebar's "All runs" pools them: ranking a model over a year of nights reads
and aggregates every night's rows of it, which takes seconds, and mixes benchmark binaries across updates."""


def pools_runs_by_default(run_ids: Sequence[str]) -> bool:
    """Whether the sidebar's "All runs" starts on for a model measured in these runs."""
    return len(run_ids) <= POOLED_RUNS_MAX


def default_run_ids(run_ids: Sequence[str]) -> tuple[str, ...]:
    """The runs a page shows before anyone picks (run_ids oldest first): all, or the newest (see POOLED_RUNS_MAX)."""
    return tuple(run_ids) if pools_runs_by_default(run_ids) else tuple(run_ids[-1:])


@dataclass(frozen=True)
class Selection:
    """What the sidebar selected: one model and the runs to include."""

    model_name: str
    run_ids: tuple[str, ...]

    def where(self, alias: str = "") -> tuple[str, dict[str, Any]]:
        """SQL condition and its named parameters selecting this model's rows of these runs."""
        prefix = f"{alias}." if alias else ""
        condition = f"{prefix}model_name = $model_name AND list_contains($run_ids, {prefix}run_id)"
        return condition, {"model_name": self.model_name, "run_ids": list(self.run_ids)}

    def row_filter(self) -> RowFilter:
        return RowFilter(run_ids=self.run_ids, model_name=self.model_name)


class Dataset:
    """The files, accuracy and runs of one results root (see the module docstring)."""

    def __init__(
        self,
        root: Path,
        connection: duckdb.DuckDBPyConnection,
        *,
        files: Sequence[DataFile],
        skipped: Sequence[SkippedFile],
        accuracy: pd.DataFrame,
        accuracy_error: str | None,
        runs: Sequence[RunInfo],
        models: Sequence[str],
        manifest_errors: Sequence[str],
    ) -> None:
        self.root = root
        self.store = ResultsStore(root)
        self.data_files = tuple(files)
        self.skipped = tuple(skipped)
        self.accuracy = accuracy
        self.accuracy_error = accuracy_error
        self.runs = tuple(runs)
        self.manifest_errors = tuple(manifest_errors)
        self._models = tuple(models)
        self._connection = connection

    @property
    def files(self) -> tuple[Path, ...]:
        return tuple(f.path for f in self.data_files)

    # -- opening -----------------------------------------------------------------

    @classmethod
    def open(cls, root: Path | str) -> Dataset:
        """List a results root (no row is read). Raises SchemaError when a file is newer than this harness reads."""
        root = Path(root)
        store = ResultsStore(root)
        connection = duckdb.connect(":memory:")
        try:
            # The store writes UTC; show UTC whatever the machine's zone (ICU may be absent).
            connection.execute("SET TimeZone = 'UTC'")
        except duckdb.Error:
            pass
        # Footers stay cached between queries: a page's queries read the same files.
        connection.execute("SET parquet_metadata_cache = true")
        files = store.files()
        unnamed = [f for f in files if f.model_name is None]
        skipped: tuple[SkippedFile, ...] = ()
        models = {f.model_name for f in files if f.model_name is not None}
        if unnamed:
            # Files that do not say their model (older layouts): checked (SchemaError for a newer one), then asked.
            with connection.cursor() as cursor:
                skipped = store.scan_files(cursor, unnamed).skipped
                named = checked(lambda: cursor.execute(f"SELECT DISTINCT model_name FROM {ROWS}").df())
                models |= set(named["model_name"])
        unreadable = {s.path for s in skipped}
        live = [f for f in files if f.path not in unreadable] if unreadable else files
        accuracy, accuracy_error = _read_accuracy(root)
        runs, manifest_errors = _read_runs(root, store, live, connection)
        return cls(
            root,
            connection,
            files=live,
            skipped=skipped,
            accuracy=accuracy,
            accuracy_error=accuracy_error,
            runs=runs,
            models=sorted(models),
            manifest_errors=manifest_errors,
        )

    # -- querying ----------------------------------------------------------------

    def selected_files(self, selection: Selection | None) -> list[DataFile]:
        """The files a selection reads: its runs' files of its model (files that do not say their model too)."""
        if selection is None:
            return list(self.data_files)
        runs = set(selection.run_ids)
        return [
            f
            for f in self.data_files
            if f.run_id in runs and (f.model_name is None or f.model_name == selection.model_name)
        ]

    @contextmanager
    def cursor(self, selection: Selection | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
        """A cursor of its own whose view `rows` holds the selection's rows (every row without one).

        One connection serves every browser session, and DuckDB connections are not to be
        shared between threads: each query gets its own cursor, and its view lives on it only.
        """
        cursor = self._connection.cursor()
        try:
            where = selection.row_filter() if selection is not None else RowFilter()
            self.store.scan_files(cursor, self.selected_files(selection), where)
            yield cursor
        finally:
            cursor.close()

    def sql(
        self,
        query: str,
        params: Mapping[str, Any] | Sequence[Any] | None = None,
        selection: Selection | None = None,
    ) -> pd.DataFrame:
        """`query` over the view `rows` of the selection's rows (read in place)."""
        with self.cursor(selection) as cursor:
            return checked(lambda: cursor.execute(query, params).df())

    @property
    def row_count(self) -> int:
        """Every row (reads every file's row count)."""
        return int(self.sql(f"SELECT count(*) AS n FROM {ROWS}")["n"].iloc[0])

    @property
    def empty(self) -> bool:
        return not self.data_files

    def models(self) -> list[str]:
        return list(self._models)

    def run_ids(self, model_name: str | None = None) -> list[str]:
        """Runs oldest first; with a model, only the runs that measured it."""
        if model_name is None:
            return [run.run_id for run in self.runs]
        with_model = {f.run_id for f in self.data_files if f.model_name == model_name}
        unnamed = [f for f in self.data_files if f.model_name is None and f.run_id not in with_model]
        if unnamed:
            with self._connection.cursor() as cursor:
                self.store.scan_files(cursor, unnamed, RowFilter(model_name=model_name))
                with_model |= set(cursor.execute(f"SELECT DISTINCT run_id FROM {ROWS}").df()["run_id"])
        return [run.run_id for run in self.runs if run.run_id in with_model]

    def run_figures(self) -> dict[str, RunFigures]:
        """Row counts per run (reads four columns of every file)."""
        figures = self.sql(
            f"""
            SELECT run_id, count(DISTINCT case_id) AS cases, count(*) AS rows,
                   count(*) FILTER (WHERE status = 'ok') AS ok,
                   count(*) FILTER (WHERE status NOT IN ('ok', 'skipped')) AS failed
            FROM {ROWS} GROUP BY run_id
            """
        )
        return {
            str(run_id): RunFigures(int(cases), int(rows), int(ok), int(failed))
            for run_id, cases, rows, ok, failed in zip(
                figures["run_id"], figures["cases"], figures["rows"], figures["ok"], figures["failed"], strict=True
            )
        }

    def close(self) -> None:
        self._connection.close()


# -- reading ------------------------------------------------------------------------


def _read_accuracy(root: Path) -> tuple[pd.DataFrame, str | None]:
    """Accuracy rows, or an empty frame and the reason (a newer accuracy file must not hide latency)."""
    # Imported here: harness.convert pulls numpy and the dataset helpers, which only this needs.
    from harness.convert_files import read_accuracy

    try:
        return read_accuracy(root), None
    except HarnessError as error:
        return pd.DataFrame(), str(error)


def _read_runs(
    root: Path, store: ResultsStore, files: Sequence[DataFile], connection: duckdb.DuckDBPyConnection
) -> tuple[list[RunInfo], list[str]]:
    """Every run with rows or a manifest, oldest first, and the manifests that could not be read.

    The manifest says when a run started and ended; only a run without one (or without its times)
    has its rows read for them.
    """
    by_run: dict[str, list[DataFile]] = {}
    for f in files:
        by_run.setdefault(f.run_id, []).append(f)
    run_ids = set(by_run) | {path.parent.name for path in Path(root).glob(_MANIFEST_GLOB)}
    runs: list[RunInfo] = []
    errors: list[str] = []
    for run_id in run_ids:
        manifest: dict[str, Any] = {}
        if (Path(root) / "runs" / run_id / "run.json").is_file():
            try:
                manifest = store.read_run_manifest(run_id)
            except (HarnessError, OSError) as error:
                errors.append(str(error))
        run_files = by_run.get(run_id, [])
        runs.append(_run_info(run_id, manifest, len({f.serial for f in run_files}), store, run_files, connection))
    far_future = datetime.max.replace(tzinfo=UTC)
    runs.sort(key=lambda run: (run.started_at or far_future, run.run_id))
    return runs, errors


def _run_info(
    run_id: str,
    manifest: Mapping[str, Any],
    devices: int,
    store: ResultsStore,
    run_files: Sequence[DataFile],
    connection: duckdb.DuckDBPyConnection,
) -> RunInfo:
    # The same precedence as ResultsStore.list_runs: the manifest, then the rows for what it lacks.
    first_row = last_end = None
    version = manifest.get("harness_version")
    # A manifest's times suffice (nightly runs have them): reading a run's rows costs one scan per run.
    if run_files and ("started_at" not in manifest or "ended_at" not in manifest):
        with connection.cursor() as cursor:
            store.scan_files(cursor, run_files, RowFilter(run_ids=(run_id,)))
            first, last_s, row_version = checked(
                lambda: cursor.execute(
                    f"SELECT min(started_at), max(epoch(started_at) + duration_s), max(harness_version) FROM {ROWS}"
                ).fetchone()
            ) or (None, None, None)
        first_row = pd.Timestamp(first).to_pydatetime() if first is not None else None
        last_end = datetime.fromtimestamp(float(last_s), UTC) if last_s is not None else None
        version = version or row_version
    started_at, ended_at = run_times(manifest, first_row, last_end)
    argv = manifest.get("argv")
    return RunInfo(
        run_id=run_id,
        started_at=started_at,
        ended_at=ended_at,
        devices=devices,
        harness_version=str(version) if version else None,
        argv=tuple(str(arg) for arg in argv) if isinstance(argv, list) else (),
        has_manifest=bool(manifest),
    )


def runs_frame(runs: Iterable[RunInfo], figures: Mapping[str, RunFigures]) -> pd.DataFrame:
    """Runs as a table for display (`figures`: Dataset.run_figures)."""
    none = RunFigures(0, 0, 0, 0)
    return pd.DataFrame(
        [
            {
                "run_id": run.run_id,
                "started_at": run.started_at,
                "ended_at": run.ended_at,
                "devices": run.devices,
                "cases": figures.get(run.run_id, none).cases,
                "rows": figures.get(run.run_id, none).rows,
                "ok": figures.get(run.run_id, none).ok,
                "failed": figures.get(run.run_id, none).failed,
                "harness_version": run.harness_version,
            }
            for run in runs
        ],
        columns=["run_id", "started_at", "ended_at", "devices", "cases", "rows", "ok", "failed", "harness_version"],
    )
