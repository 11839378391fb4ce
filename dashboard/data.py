"""The dashboard's data layer: the results dataset of one results root as a DuckDB table.

`Dataset.open(root)` reads every Parquet file under `<root>/dataset/` into an
in-memory DuckDB table named `rows` (RESULTS_SCHEMA columns, one row per run,
device, case and repetition), the accuracy rows of `<root>/accuracy/` and the
run manifests. Pages and harness.ranking query `rows` through their own
cursor (`Dataset.sql`, `Dataset.cursor`). `state_key(root)` changes whenever a
results file is added, replaced or removed: callers cache a Dataset on it, so a
new run shows up on the next rerun without a restart.

Files are judged by harness.store's rules, never by rules of our own. The fast
path is DuckDB straight over the files; as soon as it meets anything but a
readable file of the current schema version, the whole dataset is read through
`ResultsStore.load` instead, which refuses a newer schema (its SchemaError
propagates, worded as `harness results` words it), upgrades an older one and
skips a damaged file (reported in `Dataset.skipped`).

No Streamlit here: the bench and the tests use this module as it is.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa

from harness.errors import HarnessError
from harness.records import RESULTS_SCHEMA, SCHEMA_VERSION, SCHEMA_VERSION_METADATA_KEY
from harness.store import ResultsStore, SkippedFile, run_times

log = logging.getLogger(__name__)

RESULTS_ENV = "TFLITE_FARM_RESULTS"
"""Environment variable naming the results root when no --results is given."""

ROWS = "rows"
"""Name of the DuckDB table holding the result rows."""

_DATASET_GLOB = "dataset/run_id=*/device=*/part-*.parquet"
_ACCURACY_GLOB = "accuracy/part-*.parquet"
_MANIFEST_GLOB = "runs/*/run.json"

# How DuckDB names the Arrow types of RESULTS_SCHEMA; a file read as anything else goes to the store.
_DUCKDB_TYPES = {
    pa.int64(): "BIGINT",
    pa.float64(): "DOUBLE",
    pa.string(): "VARCHAR",
    pa.bool_(): "BOOLEAN",
    pa.timestamp("us", tz="UTC"): "TIMESTAMP WITH TIME ZONE",
    pa.list_(pa.string()): "VARCHAR[]",
    pa.list_(pa.int64()): "BIGINT[]",  # a sustained window's clocks per CPU cluster
    pa.list_(pa.float64()): "DOUBLE[]",
}

StateKey = tuple[int, int, int]


def dataset_files(root: Path) -> list[Path]:
    """The result files of a results root, in a stable order (the store's own layout)."""
    return sorted(Path(root).glob(_DATASET_GLOB))


def state_key(root: Path) -> StateKey:
    """(file count, newest mtime in ns, total bytes) over result, accuracy and manifest files.

    Cheap (one stat per file) and changes on every append, replace or removal:
    the store writes by rename, so a new or rewritten file has a new mtime, and
    a removed one lowers the count.
    """
    root = Path(root)
    count = newest = size = 0
    for pattern in (_DATASET_GLOB, _ACCURACY_GLOB, _MANIFEST_GLOB):
        for path in root.glob(pattern):
            try:
                stat = path.stat()
            except FileNotFoundError:  # removed between glob and stat: it is simply not there
                continue
            count += 1
            newest = max(newest, stat.st_mtime_ns)
            size += stat.st_size
    return count, newest, size


@dataclass(frozen=True)
class RunInfo:
    """One run: its manifest where there is one, its rows for what the manifest lacks.

    `ok` and `failed` count rows (one per repetition) as `harness results ls` does;
    skipped rows count as neither. `ended_at` is None for a run still going or
    one that crashed before writing its end.
    """

    run_id: str
    started_at: datetime | None
    ended_at: datetime | None
    devices: int
    cases: int
    rows: int
    ok: int
    failed: int
    harness_version: str | None
    argv: tuple[str, ...]
    has_manifest: bool


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


class Dataset:
    """The rows, accuracy and runs of one results root, read once (see the module docstring)."""

    def __init__(
        self,
        root: Path,
        connection: duckdb.DuckDBPyConnection,
        *,
        files: Sequence[Path],
        skipped: Sequence[SkippedFile],
        source: str,
        accuracy: pd.DataFrame,
        accuracy_error: str | None,
        runs: Sequence[RunInfo],
        manifest_errors: Sequence[str],
    ) -> None:
        self.root = root
        self.files = tuple(files)
        self.skipped = tuple(skipped)
        self.source = source  # "duckdb" (fast path) or "store" (ResultsStore.load)
        self.accuracy = accuracy
        self.accuracy_error = accuracy_error
        self.runs = tuple(runs)
        self.manifest_errors = tuple(manifest_errors)
        self._connection = connection

    # -- opening -----------------------------------------------------------------

    @classmethod
    def open(cls, root: Path | str) -> Dataset:
        """Read a results root. Raises SchemaError when a file is newer than this harness reads."""
        root = Path(root)
        files = dataset_files(root)
        connection = duckdb.connect(":memory:")
        try:
            # The store writes UTC; show UTC whatever the machine's zone (ICU may be absent).
            connection.execute("SET TimeZone = 'UTC'")
        except duckdb.Error:
            pass
        skipped: tuple[SkippedFile, ...] = ()
        source = "duckdb"
        if not files:
            _create_rows(connection, RESULTS_SCHEMA.empty_table())
        elif not _read_fast(connection, files):
            source = "store"
            loaded = ResultsStore(root).load()  # SchemaError for a newer file propagates
            skipped = loaded.skipped
            table = pa.Table.from_pandas(loaded.frame, schema=RESULTS_SCHEMA, preserve_index=False)
            _create_rows(connection, table)
        accuracy, accuracy_error = _read_accuracy(root)
        runs, manifest_errors = _read_runs(root, connection)
        return cls(
            root,
            connection,
            files=files,
            skipped=skipped,
            source=source,
            accuracy=accuracy,
            accuracy_error=accuracy_error,
            runs=runs,
            manifest_errors=manifest_errors,
        )

    # -- querying ----------------------------------------------------------------

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A cursor of its own on the dataset (table `rows`); close it when done.

        One connection serves every browser session, and DuckDB connections are
        not to be shared between threads: each query gets its own cursor.
        """
        return self._connection.cursor()

    def sql(self, query: str, params: Mapping[str, Any] | Sequence[Any] | None = None) -> pd.DataFrame:
        with self.cursor() as cursor:
            return cursor.execute(query, params).df()

    @property
    def row_count(self) -> int:
        with self.cursor() as cursor:
            row = cursor.execute(f"SELECT count(*) FROM {ROWS}").fetchone()
            assert row is not None  # count(*) always returns one row
            return int(row[0])

    @property
    def empty(self) -> bool:
        return self.row_count == 0

    def models(self) -> list[str]:
        return list(self.sql(f"SELECT DISTINCT model_name FROM {ROWS} ORDER BY 1")["model_name"])

    def run_ids(self, model_name: str | None = None) -> list[str]:
        """Runs oldest first; with a model, only the runs that measured it."""
        if model_name is None:
            return [run.run_id for run in self.runs]
        with_model = set(
            self.sql(f"SELECT DISTINCT run_id FROM {ROWS} WHERE model_name = $m", {"m": model_name})["run_id"]
        )
        return [run.run_id for run in self.runs if run.run_id in with_model]

    def close(self) -> None:
        self._connection.close()


# -- reading ------------------------------------------------------------------------


def _create_rows(connection: duckdb.DuckDBPyConnection, table: pa.Table) -> None:
    connection.register("_loaded", table)
    try:
        connection.execute(f"CREATE OR REPLACE TABLE {ROWS} AS SELECT * FROM _loaded")
    finally:
        connection.unregister("_loaded")


def _read_fast(connection: duckdb.DuckDBPyConnection, files: Sequence[Path]) -> bool:
    """Load `rows` with DuckDB straight from the files; False when the store must judge them.

    Every byte is read here, once: a damaged page then shows up now (and the
    store takes over) rather than as a failed chart later, and the pages query
    memory instead of re-reading Parquet on every rerun.
    """
    names = [str(path) for path in files]
    try:
        versions = connection.execute(
            "SELECT file_name, decode(value) FROM parquet_kv_metadata($files) WHERE key = encode($key)",
            {"files": names, "key": SCHEMA_VERSION_METADATA_KEY},
        ).fetchall()
        # Exactly one current-version tag per file: a missing, older or newer one is the store's call.
        if len(versions) != len(names) or {value for _, value in versions} != {str(SCHEMA_VERSION)}:
            return False
        columns = ", ".join(f'"{name}"' for name in RESULTS_SCHEMA.names)
        connection.execute(
            f"CREATE OR REPLACE TABLE {ROWS} AS SELECT {columns} "
            "FROM read_parquet($files, union_by_name = true, hive_partitioning = false)",
            {"files": names},
        )
        described = connection.execute(f"DESCRIBE {ROWS}").fetchall()
        expected = [(field.name, _DUCKDB_TYPES[field.type]) for field in RESULTS_SCHEMA]
        bounds = connection.execute(f"SELECT min(schema_version), max(schema_version) FROM {ROWS}").fetchone()
        assert bounds is not None  # an aggregate always returns one row
        low, high = bounds
        if [(name, kind) for name, kind, *_ in described] != expected or {low, high} != {SCHEMA_VERSION}:
            connection.execute(f"DROP TABLE {ROWS}")
            return False
    except duckdb.Error as error:
        log.info("results need the store's reader (%s)", error)
        connection.execute(f"DROP TABLE IF EXISTS {ROWS}")
        return False
    return True


def _read_accuracy(root: Path) -> tuple[pd.DataFrame, str | None]:
    """Accuracy rows, or an empty frame and the reason (a newer accuracy file must not hide latency)."""
    # Imported here: harness.convert pulls numpy and the dataset helpers, which only this needs.
    from harness.convert_files import read_accuracy

    try:
        return read_accuracy(root), None
    except HarnessError as error:
        return pd.DataFrame(), str(error)


def _read_runs(root: Path, connection: duckdb.DuckDBPyConnection) -> tuple[list[RunInfo], list[str]]:
    """Every run with rows or a manifest, oldest first, and the manifests that could not be read."""
    figures = connection.execute(
        f"""
        SELECT run_id,
               min(started_at) AS first_row,
               max(epoch(started_at) + duration_s) AS last_end_s,
               count(DISTINCT serial) AS devices,
               count(DISTINCT case_id) AS cases,
               count(*) AS rows,
               count(*) FILTER (WHERE status = 'ok') AS ok,
               count(*) FILTER (WHERE status NOT IN ('ok', 'skipped')) AS failed,
               max(harness_version) AS harness_version
        FROM {ROWS} GROUP BY run_id
        """
    ).df()
    figure_rows: Iterable[Any] = figures.itertuples(index=False)  # pandas-stubs types each field as any scalar
    by_run = {row.run_id: row for row in figure_rows}
    store = ResultsStore(root)
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
        runs.append(_run_info(run_id, manifest, by_run.get(run_id)))
    far_future = datetime.max.replace(tzinfo=UTC)
    runs.sort(key=lambda run: (run.started_at or far_future, run.run_id))
    return runs, errors


def _run_info(run_id: str, manifest: Mapping[str, Any], figures: Any) -> RunInfo:
    # The same precedence as ResultsStore.list_runs: the manifest, then the rows for what it lacks.
    started_at, ended_at = run_times(
        manifest,
        pd.Timestamp(figures.first_row).to_pydatetime() if figures is not None else None,
        datetime.fromtimestamp(float(figures.last_end_s), UTC) if figures is not None else None,
    )
    argv = manifest.get("argv")
    version = manifest.get("harness_version")
    return RunInfo(
        run_id=run_id,
        started_at=started_at,
        ended_at=ended_at,
        devices=int(figures.devices) if figures is not None else 0,
        cases=int(figures.cases) if figures is not None else 0,
        rows=int(figures.rows) if figures is not None else 0,
        ok=int(figures.ok) if figures is not None else 0,
        failed=int(figures.failed) if figures is not None else 0,
        harness_version=str(version) if version else (figures.harness_version if figures is not None else None),
        argv=tuple(str(arg) for arg in argv) if isinstance(argv, list) else (),
        has_manifest=bool(manifest),
    )


def runs_frame(runs: Iterable[RunInfo]) -> pd.DataFrame:
    """Runs as a table for display."""
    return pd.DataFrame(
        [
            {
                "run_id": run.run_id,
                "started_at": run.started_at,
                "ended_at": run.ended_at,
                "devices": run.devices,
                "cases": run.cases,
                "rows": run.rows,
                "ok": run.ok,
                "failed": run.failed,
                "harness_version": run.harness_version,
            }
            for run in runs
        ],
        columns=["run_id", "started_at", "ended_at", "devices", "cases", "rows", "ok", "failed", "harness_version"],
    )
