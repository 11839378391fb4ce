"""The results store: a Parquet dataset of ResultRows plus per-run manifests and raw logs.

Layout under the results root:

    dataset/run_id=<run_id>/device=<serial, percent-encoded>/part-<id>[.<k>of<n>].model-<model>.parquet
    runs/<run_id>/run.json
    runs/<run_id>/raw/

(file names and which files count: harness.layout). A sweep writes one file per case; when the run
ends, `compact` merges each (run, device)'s files into one file per model (crash-safe, see there).

Every file is written to a dot-prefixed temporary name in its final folder,
fsynced, then renamed into place, so a crash never leaves a half file under a
name a reader looks at. `load` opens each Parquet file on its own: the file's
columns are authoritative (folder and file names only narrow the search), a newer
schema is refused, an older one is upgraded, and a damaged file is skipped
and reported instead of failing the whole dataset. `scan` queries the files where
they lie (DuckDB), reading only the runs, devices, model and columns a query needs.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import socket
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from harness import layout
from harness.atomic import write_atomically
from harness.errors import SchemaError, UsageError
from harness.layout import DataFile, path_safe
from harness.locations import DEFAULT_RESULTS
from harness.records import (
    RESULTS_SCHEMA,
    SCHEMA_VERSION,
    SCHEMA_VERSION_METADATA_KEY,
    CaseStatus,
    ErrorType,
    ResultRow,
)
from harness.versioned import UPGRADE_FIX, checked_version, upgraded

log = logging.getLogger(__name__)


MANIFEST_VERSION = 2
"""Version of run.json; it evolves independently of the Parquet schema."""


def _manifest_v1_to_v2(document: dict[str, Any]) -> dict[str, Any]:
    """v2: `binaries` lists each ABI's binaries (an ABI may have the classic and the LiteRT 2.x benchmark_model);
    v1 named one per ABI."""
    binaries = document.get("binaries")
    if isinstance(binaries, dict):
        document = {
            **document,
            "binaries": {abi: entry if isinstance(entry, list) else [entry] for abi, entry in binaries.items()},
        }
    return {**document, "schema_version": 2}


MANIFEST_UPGRADES: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {1: _manifest_v1_to_v2}
"""run.json upgrades: MANIFEST_UPGRADES[n] turns a version-n document into version n+1."""


def _upgrade_v1_to_v2(table: pa.Table) -> pa.Table:
    """v1 -> v2: made-up values become null, and what a v1 row shows of its phone's kind is kept.

    - `device_model`, `manufacturer`, `abi` "unknown", `android_sdk` 0 and `bench_binary_sha256` ""
      were stand-ins for "not known": null.
    - `device_kind`: v1 did not record it. "virtual" where the row itself shows it: power_method
      "model" (only virtual farm phones wrote it), or ABI x86_64 on a loopback serial (the virtual
      farm or an Android emulator); otherwise null, never a guessed "physical".
    - `temperature_method`: "model" on those virtual rows; null where v1 cannot tell.
    - `throttled` was judged on modelled temperatures too; on virtual rows it becomes null.
    - `soc_identities`: [soc] (v1 stored the first identity the tier rules matched).
    New nullable columns (counts, binary name and version) read as null.
    """
    n = table.num_rows

    def column(name: str) -> pa.ChunkedArray:
        return table[name] if name in table.column_names else pa.chunked_array([pa.nulls(n, pa.string())])

    def null_if(name: str, sentinel: object) -> pa.Array:
        values = table[name]
        return pc.if_else(pc.equal(values, sentinel), pa.scalar(None, values.type), values)

    loopback = pc.starts_with(column("serial"), "127.0.0.1:")
    emulated = pc.and_(pc.equal(column("abi"), "x86_64"), loopback)
    virtual = pc.fill_null(pc.or_kleene(pc.equal(column("power_method"), "model"), emulated), False)
    kind = pc.if_else(virtual, pa.scalar("virtual"), pa.scalar(None, pa.string()))
    has_temperature = pc.or_kleene(pc.is_valid(column("temp_start_c")), pc.is_valid(column("temp_end_c")))
    temperature_method = pc.if_else(pc.and_(virtual, has_temperature), pa.scalar("model"), pa.scalar(None, pa.string()))
    soc = column("soc")
    identities = pa.array([None if value is None else [value] for value in soc.to_pylist()], pa.list_(pa.string()))
    replaced = {
        "device_model": null_if("device_model", "unknown"),
        "manufacturer": null_if("manufacturer", "unknown"),
        "abi": null_if("abi", "unknown"),
        "android_sdk": null_if("android_sdk", 0),
        "bench_binary_sha256": null_if("bench_binary_sha256", ""),
        "throttled": pc.if_else(virtual, pa.scalar(None, pa.bool_()), column("throttled")),
    }
    for name, values in replaced.items():
        table = table.set_column(table.schema.get_field_index(name), name, values)
    added = {"device_kind": kind, "temperature_method": temperature_method, "soc_identities": identities}
    for name, values in added.items():
        table = table.append_column(name, values)
    version = pa.array([2] * n, pa.int64())
    return table.set_column(table.schema.get_field_index("schema_version"), "schema_version", version)


def _upgrade_v2_to_v3(table: pa.Table) -> pa.Table:
    """v2 -> v3: the rows are unchanged; v3 is about files (a compaction supersedes the files it lists)."""
    version = pa.array([3] * table.num_rows, pa.int64())
    return table.set_column(table.schema.get_field_index("schema_version"), "schema_version", version)


UPGRADES: dict[int, Callable[[pa.Table], pa.Table]] = {1: _upgrade_v1_to_v2, 2: _upgrade_v2_to_v3}
"""Results schema upgrades: UPGRADES[n] turns a version-n table into version n+1 (see
records.SCHEMA_VERSION for when a change needs one). Every older file keeps reading."""

RESULTS_KIND = "results file"
_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_VERSION_ERROR = "tflite-farm results file newer than this harness"  # marks scan's refusal (see _checked_scan)


@dataclass(frozen=True)
class SkippedFile:
    """A dataset file that could not be read; the rest of the dataset still was."""

    path: Path
    reason: str


@dataclass(frozen=True)
class LoadedResults:
    """Rows read from the dataset plus the files that had to be skipped."""

    frame: pd.DataFrame
    skipped: tuple[SkippedFile, ...]


@dataclass(frozen=True)
class UpgradeReport:
    """What `ResultsStore.upgrade` rewrote, and what it could not read."""

    upgraded: tuple[Path, ...]
    skipped: tuple[SkippedFile, ...]


@dataclass(frozen=True)
class CompactionReport:
    """What `ResultsStore.compact` did: per (run, device) folder, the files merged and written."""

    merged: tuple[Path, ...]  # files whose rows now live in a compaction (removed)
    written: tuple[Path, ...]  # the compactions' files
    removed_leftovers: tuple[Path, ...]  # superseded or unfinished files an interrupted compaction left
    rows: int  # rows in the written files
    skipped: tuple[SkippedFile, ...]  # unreadable files, left in place


@dataclass(frozen=True)
class RowFilter:
    """Which rows a query reads: runs and devices prune folders, the model prunes files by name."""

    run_ids: tuple[str, ...] | None = None
    model_name: str | None = None
    serials: tuple[str, ...] | None = None


@dataclass(frozen=True)
class ScanReport:
    """What `ResultsStore.scan` put behind its view."""

    files: tuple[Path, ...]  # every file the view reads (no other is opened)
    skipped: tuple[SkippedFile, ...]  # files left out as unreadable


@dataclass(frozen=True)
class _RunRows:
    """What a run's rows say of it (list_runs counts them in place)."""

    first_row_at: datetime
    last_end_at: datetime
    devices: tuple[str, ...]
    cases: int
    ok: int
    failed: int


@dataclass(frozen=True)
class RunSummary:
    """One run at a glance. `cases` counts distinct case_ids; `ok` and `failed`
    count rows (one per repetition); skipped rows count as neither."""

    run_id: str
    started_at: datetime | None
    ended_at: datetime | None
    devices: tuple[str, ...]
    cases: int
    ok: int
    failed: int


class ResultsStore:
    """The results dataset, run manifests and raw logs under one root folder."""

    def __init__(self, root: Path = DEFAULT_RESULTS) -> None:
        self.root = Path(root)
        self.dataset_dir = self.root / "dataset"
        self.runs_dir = self.root / "runs"

    # -- writing ---------------------------------------------------------------

    def append(self, rows: Sequence[ResultRow]) -> Path:
        """Write one batch of rows of one (run, device) as one new Parquet file."""
        if not rows:
            raise ValueError("append needs at least one row")
        versions = {row.schema_version for row in rows}
        if versions != {SCHEMA_VERSION}:
            raise ValueError(f"rows must be schema v{SCHEMA_VERSION}, got {sorted(versions)}")
        return self.append_table(pa.Table.from_pylist([row.to_record() for row in rows], schema=RESULTS_SCHEMA))

    def append_table(self, table: pa.Table) -> Path:
        """Write one batch of one (run, device), given as an Arrow table of RESULTS_SCHEMA's columns (absent
        nullable ones read as null), as one new Parquet file: what `append` does for ResultRows."""
        if not table.num_rows:
            raise ValueError("append needs at least one row")
        partitions = set(zip(table["run_id"].to_pylist(), table["serial"].to_pylist(), strict=True))
        if len(partitions) != 1:
            raise ValueError(f"one batch must hold one run and one device, got {sorted(partitions)}")
        [(run_id, serial)] = partitions
        if "schema_version" not in table.column_names:
            table = table.append_column("schema_version", pa.array([SCHEMA_VERSION] * table.num_rows, pa.int64()))
        missing = [f.name for f in RESULTS_SCHEMA if not f.nullable and f.name in table.column_names]
        # from_pylist does not enforce nullability; a required column left None is a bug upstream.
        missing = [name for name in missing if table[name].null_count]
        missing += [f.name for f in RESULTS_SCHEMA if not f.nullable and f.name not in table.column_names]
        if missing:
            raise ValueError(f"required columns are None: {', '.join(missing)}")
        folder = self._run_partition(run_id) / f"device={path_safe(serial)}"
        try:
            table = _conform(folder, table)
        except _Unreadable as exc:
            raise ValueError(exc.reason) from None
        # One model per file lets a model filter skip the file by its name (harness.layout).
        models = set(table["model_name"].to_pylist())
        path = folder / layout.batch_name(uuid.uuid4().hex, models.pop() if len(models) == 1 else None)
        write_atomically(path, lambda out: pq.write_table(table, out))
        return path

    def write_run_manifest(self, run_id: str, manifest: dict[str, object]) -> Path:
        """Write runs/<run_id>/run.json (argv, harness version, plan, devices, started_at,
        ended_at, ...), replacing any earlier one. Datetimes are stored as ISO 8601."""
        document = {"schema_version": MANIFEST_VERSION, "run_id": run_id}
        document |= {k: v for k, v in manifest.items() if k not in document}
        text = json.dumps(document, indent=2, default=_json_default) + "\n"
        path = self._run_dir(run_id) / "run.json"
        write_atomically(path, lambda out: out.write(text.encode("utf-8")))
        return path

    def raw_log_dir(self, run_id: str) -> Path:
        """Folder for this run's raw benchmark logs; created on demand."""
        path = self._run_dir(run_id) / "raw"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def numerics_dir(self, run_id: str) -> Path:
        """Folder for this run's fixed numerics inputs (harness.numerics); created on demand."""
        path = self._run_dir(run_id) / "numerics"
        path.mkdir(parents=True, exist_ok=True)
        return path

    # -- reading ---------------------------------------------------------------

    def read_run_manifest(self, run_id: str) -> dict[str, Any]:
        path = self._run_dir(run_id) / "run.json"
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise UsageError(
                f"no run '{run_id}' under {self.root}",
                "list the stored runs with 'harness results ls --results DIR'",
            ) from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise SchemaError(
                f"{path} is not valid JSON ({exc})",
                f"restore it from a backup or delete {path} to drop the run's manifest",
            ) from None
        version = document.get("schema_version") if isinstance(document, dict) else None
        version = checked_version(path, "run manifest", version, MANIFEST_VERSION)
        return upgraded(document, path, "run manifest", version, MANIFEST_VERSION, MANIFEST_UPGRADES)

    def read(self, run_ids: Iterable[str] | None = None) -> pd.DataFrame:
        """All result rows, or those of some runs; skipped files are logged (see `load`)."""
        return self.load(run_ids).frame

    def load(self, run_ids: Iterable[str] | None = None) -> LoadedResults:
        """Rows as `read` returns them, plus the files skipped as unreadable.

        Raises SchemaError if any file is newer than this harness understands:
        silently dropping a newer run would mislead more than failing does.
        """
        wanted = None if run_ids is None else set(run_ids)
        if wanted is not None:
            for run_id in wanted:
                _checked_run_id(run_id)
        files = [f.path for f in layout.live_files(self.dataset_dir, wanted)]
        tables: list[pa.Table] = []
        skipped: list[SkippedFile] = []
        for path in files:
            try:
                tables.append(_read_file(path))
            except _Unreadable as exc:
                log.warning("skipping results file %s: %s", path, exc.reason)
                skipped.append(SkippedFile(path=path, reason=exc.reason))
        table = pa.concat_tables(tables) if tables else RESULTS_SCHEMA.empty_table()
        if wanted is not None:
            table = table.filter(pc.is_in(table["run_id"], pa.array(sorted(wanted), pa.string())))
        table = table.sort_by([(name, "ascending") for name in ("started_at", "serial", "case_id", "repetition")])
        frame = table.to_pandas(types_mapper=_PANDAS_TYPES.get)
        return LoadedResults(frame=frame, skipped=tuple(skipped))

    def upgrade(self) -> UpgradeReport:
        """Rewrite every file of an older schema as the current one, in place.

        Reading upgrades on the fly anyway; rewriting once saves that work on every
        read (and lets the dashboard read the files directly). Each file is replaced
        by write-then-rename, so a kill leaves either the old file or the new one.
        A newer file stops the upgrade (SchemaError); a damaged one is skipped.
        """
        upgraded, skipped = [], []
        for path in [f.path for f in layout.live_files(self.dataset_dir)]:
            try:
                if _file_version(path, pq.ParquetFile(path).read()) >= SCHEMA_VERSION:
                    continue
                table = _read_file(path)
            except (_Unreadable, pa.ArrowException, OSError) as exc:
                skipped.append(SkippedFile(path, getattr(exc, "reason", str(exc))))
                continue
            write_atomically(path, functools.partial(pq.write_table, table))
            upgraded.append(path)
        return UpgradeReport(tuple(upgraded), tuple(skipped))

    def stored_case_keys(self, run_id: str) -> set[tuple[str, int]]:
        """(case_id, repetition) pairs already stored for a run: what `--resume` skips.

        Failed rows count as stored: a failure is a result, not a gap. Cases skipped because another
        sweep held the phone's lease (error_type `leased`) do not: they are gaps, for --resume to fill.
        Read in place (three columns of one run's files), compacted or not.
        """
        frame = self.query(
            "SELECT case_id, repetition FROM rows WHERE coalesce(error_type, '') <> $leased",
            {"leased": ErrorType.LEASED.value},
            RowFilter(run_ids=(run_id,)),
        )
        return {(str(case), int(rep)) for case, rep in zip(frame["case_id"], frame["repetition"], strict=True)}

    def stored_windows(self, run_id: str) -> dict[tuple[str, int], dict[int, datetime]]:
        """(case_id, repetition) -> {window index: started_at} of a run's stored sustained windows, so that
        `--resume` runs exactly the missing windows and knows when the case's first one started. Like
        stored_case_keys, a window skipped for another sweep's lease is a gap."""
        frame = self.query(
            "SELECT case_id, repetition, window_index, started_at FROM rows "
            "WHERE window_index IS NOT NULL AND coalesce(error_type, '') <> $leased",
            {"leased": ErrorType.LEASED.value},
            RowFilter(run_ids=(run_id,)),
        )
        out: dict[tuple[str, int], dict[int, datetime]] = {}
        for case, rep, index, started in zip(
            frame["case_id"], frame["repetition"], frame["window_index"], frame["started_at"], strict=True
        ):
            out.setdefault((str(case), int(rep)), {})[int(index)] = pd.Timestamp(started).to_pydatetime()
        return out

    def list_runs(self) -> list[RunSummary]:
        """Every run that has rows or a manifest, oldest first (the rows are counted in place)."""
        sql = """
            SELECT run_id, min(started_at) AS first_row_at,
                   max(started_at + to_microseconds(CAST(duration_s * 1e6 AS BIGINT))) AS last_end_at,
                   list(DISTINCT serial ORDER BY serial) AS devices, count(DISTINCT case_id) AS cases,
                   count(*) FILTER (WHERE status = $ok) AS ok,
                   count(*) FILTER (WHERE status NOT IN ($ok, $skipped)) AS failed
            FROM rows GROUP BY run_id
        """
        params = {"ok": CaseStatus.OK.value, "skipped": CaseStatus.SKIPPED.value}
        with self.connect() as connection:
            self.scan(connection)
            fetched: list[tuple[Any, ...]] = checked(lambda: connection.execute(sql, params).fetchall())
        by_run = {
            str(run_id): _RunRows(first, last, tuple(str(serial) for serial in devices), int(cases), int(ok), int(bad))
            for run_id, first, last, devices, cases, ok, bad in fetched
        }
        run_ids = set(by_run)
        if self.runs_dir.is_dir():
            run_ids |= {path.parent.name for path in self.runs_dir.glob("*/run.json")}
        summaries = [self._summarise(run_id, by_run.get(run_id)) for run_id in run_ids]
        far_future = datetime.max.replace(tzinfo=UTC)
        return sorted(summaries, key=lambda s: (s.started_at or far_future, s.run_id))

    # -- compaction ------------------------------------------------------------

    def compact(self, run_id: str | None = None) -> CompactionReport:
        """Merge each (run, device)'s files into one file per model: one run, or every run.

        Crash-safe at every step (harness.layout says which files count): the merged files are
        written under hidden names and their row counts checked against the rows read, then
        renamed into place one by one (the compaction counts once all are there), and only then
        are the files they replace removed. A kill leaves either the old files counting or the
        compaction, never both and never neither; compacting again finishes the job. Files that
        cannot be read are left where they are and reported. Idempotent.
        """
        run_ids = None if run_id is None else [_checked_run_id(run_id)]
        merged: list[Path] = []
        written: list[Path] = []
        leftovers: list[Path] = []
        skipped: list[SkippedFile] = []
        rows = 0
        for run, serial, folder in list(layout.partitions(self.dataset_dir, run_ids)):
            with _compaction_lock(folder):
                outcome = _compact_folder(folder, run, serial)
            merged += outcome.merged
            written += outcome.written
            leftovers += outcome.removed_leftovers
            skipped += outcome.skipped
            rows += outcome.rows
        return CompactionReport(tuple(merged), tuple(written), tuple(leftovers), rows, tuple(skipped))

    # -- querying in place -------------------------------------------------------

    def files(self, where: RowFilter = RowFilter()) -> list[DataFile]:
        """The files that hold the rows `where` selects and count (no other file of the dataset)."""
        run_ids = None if where.run_ids is None else [_checked_run_id(r) for r in where.run_ids]
        return layout.live_files(self.dataset_dir, run_ids, where.model_name, where.serials)

    def scan(
        self, connection: duckdb.DuckDBPyConnection, where: RowFilter = RowFilter(), name: str = "rows"
    ) -> ScanReport:
        """Define on `connection` a view `name` of the rows `where` selects, in RESULTS_SCHEMA's columns,
        read where they lie: only the selected files are opened (runs and devices by folder, the model by
        file name), and DuckDB reads only the columns and row groups a query on the view needs.

        Files whose names do not say they are current (v1/v2 files, batches of several models) are
        checked first: v2 is read in place, v1 is upgraded in memory, a damaged one is skipped (reported)
        and a newer one refused (SchemaError). A current file of a newer version fails the query that
        reads it, with the fix (see `query`).
        """
        return self.scan_files(connection, self.files(where), where, name)

    def scan_files(
        self,
        connection: duckdb.DuckDBPyConnection,
        files: Sequence[DataFile],
        where: RowFilter = RowFilter(),
        name: str = "rows",
    ) -> ScanReport:
        """`scan` over files already listed (`files`, e.g. a catalog a caller keeps), filtered by `where`."""
        direct: list[str] = []
        upgraded_tables: list[pa.Table] = []
        skipped: list[SkippedFile] = []
        for f in files:
            if f.model_name is not None:
                direct.append(str(f.path))
                continue
            try:
                version = _footer_version(f.path)
                if version in (2, SCHEMA_VERSION):
                    direct.append(str(f.path))
                else:
                    upgraded_tables.append(_read_file(f.path))
            except _Unreadable as exc:
                log.warning("skipping results file %s: %s", f.path, exc.reason)
                skipped.append(SkippedFile(f.path, exc.reason))
        in_memory = None
        if upgraded_tables or not direct:
            in_memory = f"_{name}_upgraded"
            tables = upgraded_tables or [RESULTS_SCHEMA.empty_table()]
            connection.register(in_memory, pa.concat_tables(tables))
        while True:
            try:
                _define_view(connection, name, direct, in_memory, where)
                break
            except duckdb.Error as error:
                # Files named as current are not checked one by one (a year holds tens of thousands):
                # DuckDB reads their footers when the view is bound, and names a damaged one.
                damaged = _damaged_file(error, direct)
                if damaged is None:
                    raise
                reason = f"not a readable Parquet file ({str(error).splitlines()[0]})"
                log.warning("skipping results file %s: %s", damaged, reason)
                skipped.append(SkippedFile(Path(damaged), reason))
                direct.remove(damaged)
        unreadable = {s.path for s in skipped}
        return ScanReport(tuple(f.path for f in files if f.path not in unreadable), tuple(skipped))

    def query(
        self, sql: str, params: Mapping[str, object] | None = None, where: RowFilter = RowFilter()
    ) -> pd.DataFrame:
        """`sql` (over the view `rows`) on the rows `where` selects, read in place (see `scan`)."""
        with self.connect() as connection:
            self.scan(connection, where)
            return checked(lambda: connection.execute(sql, params or {}).df())

    def read_where(self, where: RowFilter) -> LoadedResults:
        """The rows `where` selects, as `load` returns them (same columns, types and order), read in place:
        only the selected runs', devices' and model's files are opened."""
        order = ", ".join(("started_at", "serial", "case_id", "repetition"))
        with self.connect() as connection:
            report = self.scan(connection, where)
            table = checked(lambda: connection.sql(f"SELECT * FROM rows ORDER BY {order}").to_arrow_table())
        table = table.cast(RESULTS_SCHEMA)
        return LoadedResults(frame=table.to_pandas(types_mapper=_PANDAS_TYPES.get), skipped=report.skipped)

    @contextmanager
    def connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A DuckDB connection for queries over this store (UTC, closed on exit)."""
        connection = duckdb.connect(":memory:")
        try:
            _utc(connection)
            connection.execute("SET parquet_metadata_cache = true")  # a view's footers are read once, not per bind
            yield connection
        finally:
            connection.close()

    # -- helpers ---------------------------------------------------------------

    def _summarise(self, run_id: str, rows: _RunRows | None) -> RunSummary:
        manifest_path = self._run_dir(run_id) / "run.json"
        manifest = self.read_run_manifest(run_id) if manifest_path.exists() else {}
        started_at, ended_at = run_times(
            manifest, rows.first_row_at if rows else None, rows.last_end_at if rows else None
        )
        return RunSummary(
            run_id=run_id,
            started_at=started_at,
            ended_at=ended_at,
            devices=rows.devices if rows else (),
            cases=rows.cases if rows else 0,
            ok=rows.ok if rows else 0,
            failed=rows.failed if rows else 0,
        )

    def _run_partition(self, run_id: str) -> Path:
        return self.dataset_dir / f"run_id={_checked_run_id(run_id)}"

    def _run_dir(self, run_id: str) -> Path:
        return self.runs_dir / _checked_run_id(run_id)


# Integers and booleans keep their nulls in pandas (not float NaN / object).
_PANDAS_TYPES: dict[pa.DataType, object] = {pa.int64(): pd.Int64Dtype(), pa.bool_(): pd.BooleanDtype()}


class _Unreadable(Exception):
    """A dataset file that is damaged or not a results file: skip it, keep reading."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _read_file(path: Path) -> pa.Table:
    """One Parquet file as a table of the current schema."""
    try:
        # ParquetFile reads just this file: no hive partition columns are inferred from the path.
        table = pq.ParquetFile(path).read()
    except (pa.ArrowException, OSError) as exc:
        raise _Unreadable(f"not a readable Parquet file ({exc})") from None
    version = checked_version(path, RESULTS_KIND, _file_version(path, table), SCHEMA_VERSION)
    return _conform(path, upgraded(table, path, RESULTS_KIND, version, SCHEMA_VERSION, UPGRADES))


def _file_version(path: Path, table: pa.Table) -> int:
    """The newest of the schema metadata and the schema_version column."""
    versions: list[int] = []
    raw = (table.schema.metadata or {}).get(SCHEMA_VERSION_METADATA_KEY.encode())
    if raw is not None:
        try:
            versions.append(int(raw))
        except ValueError:
            raise _Unreadable(f"schema version metadata {raw!r} is not an integer") from None
    if "schema_version" in table.column_names and table.num_rows:
        versions.append(int(pc.max(table["schema_version"]).as_py()))
    if not versions:
        raise _Unreadable("no schema version (not a tflite-farm results file?)")
    return max(versions)


def _conform(path: Path, table: pa.Table) -> pa.Table:
    """Reorder and cast to RESULTS_SCHEMA; absent optional columns become typed nulls."""
    columns = []
    for field in RESULTS_SCHEMA:
        if field.name == "schema_version":
            # The upgraded rows are current-version rows, whatever the file said.
            columns.append(pa.array([SCHEMA_VERSION] * table.num_rows, field.type))
        elif field.name in table.column_names:
            columns.append(table[field.name])
        elif field.nullable:
            columns.append(pa.nulls(table.num_rows, field.type))
        else:
            raise _Unreadable(f"required column '{field.name}' is missing")
    try:
        # cast (unlike from_arrays) also refuses nulls in a required column.
        return pa.Table.from_arrays(columns, names=RESULTS_SCHEMA.names).cast(RESULTS_SCHEMA)
    except (pa.ArrowException, ValueError) as exc:
        raise _Unreadable(f"columns do not fit the results schema ({exc})") from None


def _checked_run_id(run_id: str) -> str:
    # Run ids become folder names and come from the command line (--resume, results show).
    if not _RUN_ID.fullmatch(run_id):
        raise UsageError(
            f"'{run_id}' is not a valid run id",
            "run ids use letters, digits, '.', '_' and '-'; list them with 'harness results ls'",
        )
    return run_id


def _json_default(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"run manifest value {value!r} is not JSON-serialisable")


def run_times(
    manifest: Mapping[str, object], first_row_at: datetime | None, last_end_at: datetime | None
) -> tuple[datetime | None, datetime | None]:
    """(started_at, ended_at) of a run: its manifest's, with the rows filling in what a
    crashed run never wrote (an `ended_at` of null means the run never finished)."""
    started_at = _manifest_time(manifest.get("started_at")) or first_row_at
    ended_at = _manifest_time(manifest.get("ended_at"))
    if ended_at is None and "ended_at" not in manifest:
        ended_at = last_end_at
    return started_at, ended_at


def _manifest_time(value: object) -> datetime | None:
    """An ISO 8601 time from run.json (naive means UTC), or None when absent or unreadable."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


# -- compaction ---------------------------------------------------------------------

CompactionHook = Callable[[str, int], None]
_compaction_hook: CompactionHook | None = None
"""Called after each step of a compaction (step name, how many of it so far). Tests set it to kill the
process at that point; nothing else does."""


def _step(name: str, count: int) -> None:
    if _compaction_hook is not None:
        _compaction_hook(name, count)


@contextmanager
def _compaction_lock(folder: Path) -> Iterator[None]:
    """One compaction of a (run, device) folder at a time, whichever host runs it (shared results roots).

    The lock is a hidden file created exclusively (atomic on local and network file systems); one whose
    holder died on this host is taken over, one held by another host is refused with the fix.
    """
    lock = folder / ".compacting.lock"
    owner = {"host": socket.gethostname(), "pid": os.getpid(), "at": datetime.now(UTC).isoformat()}
    for _ in range(2):
        try:
            descriptor = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _lock_holder(lock)
            if holder is not None and holder.get("host") == owner["host"] and not _alive(holder.get("pid")):
                lock.unlink(missing_ok=True)  # its compaction was killed: what it left is settled below
                continue
            raise UsageError(
                f"{folder} is being compacted by {holder or 'another process'}",
                f"wait for it to finish; if no compaction runs on that host, delete {lock} and compact again",
            ) from None
        with os.fdopen(descriptor, "w") as out:
            out.write(json.dumps(owner))
        break
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)


def _lock_holder(lock: Path) -> dict[str, object] | None:
    try:
        holder = json.loads(lock.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return holder if isinstance(holder, dict) else None


def _alive(pid: object) -> bool:
    if not isinstance(pid, int):
        return True  # unknown holder: assume alive, never break a lock we cannot judge
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _compact_folder(folder: Path, run_id: str, serial: str) -> CompactionReport:
    """Compact one (run, device) folder (its lock held); see ResultsStore.compact for the steps."""
    resolved = layout.resolve(layout.folder_files(folder, run_id, serial))
    # What an interrupted compaction left: files it had already replaced, or its own unfinished files.
    leftovers = [f.path for f in (*resolved.superseded, *resolved.incomplete)]
    # And the hidden files a killed compaction was writing (the lock says none is writing now; a sweep's
    # own temporaries are named for a batch, never "<k>of<n>", and are left alone).
    leftovers += sorted(p for p in folder.glob(".part-*.tmp") if layout.is_compaction_temporary(p.name))
    for count, path in enumerate(leftovers, start=1):
        path.unlink(missing_ok=True)
        _step("removed_leftover", count)
    live = resolved.live
    if not live or (len({f.compaction for f in live}) == 1 and live[0].compaction is not None):
        return CompactionReport((), (), tuple(leftovers), 0, ())  # nothing, or already one compaction
    tables: list[pa.Table] = []
    read: list[Path] = []
    skipped: list[SkippedFile] = []
    for f in live:
        try:
            tables.append(_read_file(f.path))
            read.append(f.path)
        except _Unreadable as exc:
            skipped.append(SkippedFile(f.path, exc.reason))  # left in place: it still is what it was
    if not tables:
        return CompactionReport((), (), tuple(leftovers), 0, tuple(skipped))
    table = pa.concat_tables(tables)
    table = table.sort_by([(name, "ascending") for name in ("model_name", "started_at", "case_id", "repetition")])
    models = sorted(set(table["model_name"].to_pylist()))
    compaction_id = uuid.uuid4().hex
    replaces = json.dumps(sorted(path.name for path in read))
    metadata = {**(RESULTS_SCHEMA.metadata or {}), layout.REPLACES_KEY.encode(): replaces.encode()}
    temps: list[tuple[Path, Path, int]] = []  # (temporary, final, rows)
    try:
        for index, model in enumerate(models, start=1):
            part = table.filter(pc.equal(table["model_name"], model)).replace_schema_metadata(metadata)
            final = folder / layout.compaction_name(compaction_id, index, len(models), model)
            temp = folder / f".{final.name}.{uuid.uuid4().hex}.tmp"
            with open(temp, "wb") as out:
                pq.write_table(part, out)
                out.flush()
                os.fsync(out.fileno())
            temps.append((temp, final, part.num_rows))
            _step("written", index)
        # Verify what is on disk, not what was meant: every row read is in exactly one new file.
        on_disk = [pq.read_metadata(temp).num_rows for temp, _, _ in temps]
        if on_disk != [rows for _, _, rows in temps] or sum(on_disk) != table.num_rows:
            raise SchemaError(
                f"compacting {folder} wrote {sum(on_disk)} rows of {table.num_rows}",
                "nothing was replaced; check the disk (space, errors) and run 'harness results compact' again",
            )
        _step("verified", len(temps))
    except BaseException:
        for temp, _, _ in temps:
            temp.unlink(missing_ok=True)
        raise
    for count, (temp, final, _) in enumerate(temps, start=1):
        os.replace(temp, final)
        _step("renamed", count)
    _fsync_folder(folder)
    # The compaction counts from here; the files it replaces no longer do, and go.
    for count, path in enumerate(read, start=1):
        path.unlink(missing_ok=True)
        _step("removed", count)
    _fsync_folder(folder)
    return CompactionReport(
        tuple(read), tuple(final for _, final, _ in temps), tuple(leftovers), table.num_rows, tuple(skipped)
    )


def _fsync_folder(folder: Path) -> None:
    if os.name == "posix":
        descriptor = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


# -- querying in place ----------------------------------------------------------------

# How DuckDB names the Arrow types of RESULTS_SCHEMA (for the typed nulls of columns a file lacks).
_DUCKDB_TYPES: dict[pa.DataType, str] = {
    pa.int64(): "BIGINT",
    pa.float64(): "DOUBLE",
    pa.string(): "VARCHAR",
    pa.bool_(): "BOOLEAN",
    pa.timestamp("us", tz="UTC"): "TIMESTAMP WITH TIME ZONE",
    pa.list_(pa.string()): "VARCHAR[]",
    pa.list_(pa.int64()): "BIGINT[]",
    pa.list_(pa.float64()): "DOUBLE[]",
}


def duckdb_type(field: pa.Field) -> str:
    return _DUCKDB_TYPES[field.type]


def _utc(connection: duckdb.DuckDBPyConnection) -> None:
    try:
        # The store writes UTC; show UTC whatever the machine's zone (ICU may be absent).
        connection.execute("SET TimeZone = 'UTC'")
    except duckdb.Error:
        pass


def _footer_version(path: Path) -> int:
    """A file's schema version from its footer alone (no row is read)."""
    try:
        schema = pq.read_schema(path)
    except (pa.ArrowException, OSError) as exc:
        raise _Unreadable(f"not a readable Parquet file ({exc})") from None
    raw = (schema.metadata or {}).get(SCHEMA_VERSION_METADATA_KEY.encode())
    if raw is None:
        raise _Unreadable("no schema version (not a tflite-farm results file?)")
    try:
        version = int(raw)
    except ValueError:
        raise _Unreadable(f"schema version metadata {raw!r} is not an integer") from None
    return checked_version(path, RESULTS_KIND, version, SCHEMA_VERSION)


def _define_view(
    connection: duckdb.DuckDBPyConnection, name: str, direct: Sequence[str], in_memory: str | None, where: RowFilter
) -> None:
    try:
        connection.execute(_view_sql(name, direct, in_memory, where))
    except duckdb.BinderException:
        # Some column is in none of these files (older files, from before it was added): ask which are.
        listed = ", ".join(sql_literal(path) for path in direct)
        described = connection.execute(
            f"DESCRIBE SELECT * FROM read_parquet([{listed}], union_by_name = true, hive_partitioning = false)"
        ).fetchall()
        connection.execute(_view_sql(name, direct, in_memory, where, [row[0] for row in described]))


def _damaged_file(error: duckdb.Error, files: Sequence[str]) -> str | None:
    """The file of `files` that DuckDB's `error` names as unreadable (it quotes the path), if any."""
    text = str(error)
    if _VERSION_ERROR in text:
        return None
    return next((path for path in files if f"'{path}'" in text), None)


def sql_literal(value: str) -> str:
    """A SQL string literal. Only for DDL, which takes no bind parameters (a view's definition): a standard
    literal doubles its quotes, nothing else, so no value can end it."""
    return "'" + value.replace("'", "''") + "'"


def _view_sql(
    name: str, files: Sequence[str], in_memory: str | None, where: RowFilter, present: Iterable[str] | None = None
) -> str:
    """The definition of a scan's view: RESULTS_SCHEMA's columns over Parquet files read in place (and rows
    upgraded in memory, registered as `in_memory`), filtered by `where`.

    One SQL statement, bound once: DuckDB then pushes the projection (only the columns a query names) and
    the filters (the model against each row group's statistics) into the Parquet scan.
    """
    parts: list[str] = []
    if files:
        listed = ", ".join(sql_literal(path) for path in files)
        # By name: an older file may lack a nullable column added since (it reads as null below).
        source = f"read_parquet([{listed}], union_by_name = true, hive_partitioning = false, filename = true)"
        # A file of a newer version fails the query that reads it instead of being misread (see `checked`).
        guard = (
            f"CASE WHEN schema_version <= {SCHEMA_VERSION} THEN true ELSE error("
            f"'{_VERSION_ERROR}: ' || filename || ' is results file v' || schema_version || "
            f"', but this tflite-farm reads up to v{SCHEMA_VERSION}')::BOOLEAN END"
        )
        parts.append(f"SELECT {_columns(present)} FROM {source} WHERE {guard}")
    if in_memory is not None:
        parts.append(f"SELECT {_columns()} FROM {in_memory}")
    conditions = []
    if where.model_name is not None:
        conditions.append(f"model_name = {sql_literal(where.model_name)}")
    if where.run_ids is not None:
        conditions.append(f"run_id IN ({', '.join(sql_literal(r) for r in where.run_ids) or 'NULL'})")
    if where.serials is not None:
        conditions.append(f"serial IN ({', '.join(sql_literal(s) for s in where.serials) or 'NULL'})")
    union = " UNION ALL BY NAME ".join(f"({part})" for part in parts)
    filtered = f" WHERE {' AND '.join(conditions)}" if conditions else ""
    return f"CREATE OR REPLACE TEMP VIEW {name} AS SELECT * FROM ({union}){filtered}"


def _columns(present: Iterable[str] | None = None) -> str:
    """RESULTS_SCHEMA's columns, typed; those not `present` (None: all are) as typed nulls."""
    have = None if present is None else set(present)

    def column(field: pa.Field) -> str:
        if field.name == "schema_version":
            # Rows of older versions read in place are current rows (v2 -> v3 changes no row).
            return f"CAST({SCHEMA_VERSION} AS BIGINT) AS schema_version"
        value = f'"{field.name}"' if have is None or field.name in have else "NULL"
        return f'CAST({value} AS {duckdb_type(field)}) AS "{field.name}"'

    return ", ".join(column(field) for field in RESULTS_SCHEMA)


_T = TypeVar("_T")


def checked(run: Callable[[], _T]) -> _T:
    """`run()` (a query over a scan's view), with a newer file's refusal raised as the harness's SchemaError."""
    try:
        return run()
    except duckdb.Error as error:
        text = str(error)
        if _VERSION_ERROR in text:
            detail = text.split(f"{_VERSION_ERROR}: ", 1)[1].splitlines()[0]
            raise SchemaError(detail, UPGRADE_FIX) from None
        raise
