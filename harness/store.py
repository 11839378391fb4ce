"""The results store: a Parquet dataset of ResultRows plus per-run manifests and raw logs.

Layout under the results root:

    dataset/run_id=<run_id>/device=<serial, percent-encoded>/part-<uuid>.parquet
    runs/<run_id>/run.json
    runs/<run_id>/raw/

Every file is written to a dot-prefixed temporary name in its final folder,
fsynced, then renamed into place, so a crash never leaves a half file under a
name a reader looks at. Readers open each Parquet file on its own: the file's
columns are authoritative (folder names only narrow the search), a newer
schema is refused, an older one is upgraded, and a damaged file is skipped
and reported instead of failing the whole dataset.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from harness.atomic import write_atomically
from harness.errors import SchemaError, UsageError
from harness.locations import DEFAULT_RESULTS
from harness.records import (
    RESULTS_SCHEMA,
    SCHEMA_VERSION,
    SCHEMA_VERSION_METADATA_KEY,
    CaseStatus,
    ErrorType,
    ResultRow,
)
from harness.versioned import checked_version, upgraded

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


UPGRADES: dict[int, Callable[[pa.Table], pa.Table]] = {1: _upgrade_v1_to_v2}
"""Results schema upgrades: UPGRADES[n] turns a version-n table into version n+1 (see
records.SCHEMA_VERSION for when a change needs one). Every older file keeps reading."""

RESULTS_KIND = "results file"
_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_PART_GLOB = "part-*.parquet"


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
        partitions = {(row.run_id, row.serial) for row in rows}
        if len(partitions) != 1:
            raise ValueError(f"one batch must hold one run and one device, got {sorted(partitions)}")
        [(run_id, serial)] = partitions
        versions = {row.schema_version for row in rows}
        if versions != {SCHEMA_VERSION}:
            raise ValueError(f"rows must be schema v{SCHEMA_VERSION}, got {sorted(versions)}")
        table = pa.Table.from_pylist([row.to_record() for row in rows], schema=RESULTS_SCHEMA)
        # from_pylist does not enforce nullability; a required column left None is a bug upstream.
        missing = [f.name for f in RESULTS_SCHEMA if not f.nullable and table[f.name].null_count]
        if missing:
            raise ValueError(f"required columns are None: {', '.join(missing)}")
        folder = self._run_partition(run_id) / f"device={_path_safe(serial)}"
        path = folder / f"part-{uuid.uuid4().hex}.parquet"
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
        if wanted is None:
            files = sorted(self.dataset_dir.glob(f"run_id=*/device=*/{_PART_GLOB}"))
        else:
            files = sorted(
                path for run_id in wanted for path in self._run_partition(run_id).glob(f"device=*/{_PART_GLOB}")
            )
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
        for path in sorted(self.dataset_dir.glob(f"run_id=*/device=*/{_PART_GLOB}")):
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
        """
        frame = self.read([run_id])
        frame = frame[frame["error_type"].fillna("") != ErrorType.LEASED.value]
        return {(str(case), int(rep)) for case, rep in zip(frame["case_id"], frame["repetition"], strict=False)}

    def stored_windows(self, run_id: str) -> dict[tuple[str, int], dict[int, datetime]]:
        """(case_id, repetition) -> {window index: started_at} of a run's stored sustained windows, so that
        `--resume` runs exactly the missing windows and knows when the case's first one started. Like
        stored_case_keys, a window skipped for another sweep's lease is a gap."""
        frame = self.read([run_id])
        frame = frame[frame["window_index"].notna() & (frame["error_type"].fillna("") != ErrorType.LEASED.value)]
        out: dict[tuple[str, int], dict[int, datetime]] = {}
        for case, rep, index, started in zip(
            frame["case_id"], frame["repetition"], frame["window_index"], frame["started_at"], strict=False
        ):
            out.setdefault((str(case), int(rep)), {})[int(index)] = pd.Timestamp(started).to_pydatetime()
        return out

    def list_runs(self) -> list[RunSummary]:
        """Every run that has rows or a manifest, oldest first."""
        frame = self.read()
        run_ids = set(frame["run_id"])
        if self.runs_dir.is_dir():
            run_ids |= {path.parent.name for path in self.runs_dir.glob("*/run.json")}
        summaries = [self._summarise(run_id, frame[frame["run_id"] == run_id]) for run_id in run_ids]
        far_future = datetime.max.replace(tzinfo=UTC)
        return sorted(summaries, key=lambda s: (s.started_at or far_future, s.run_id))

    # -- helpers ---------------------------------------------------------------

    def _summarise(self, run_id: str, rows: pd.DataFrame) -> RunSummary:
        manifest_path = self._run_dir(run_id) / "run.json"
        manifest = self.read_run_manifest(run_id) if manifest_path.exists() else {}
        first_row_at = last_end_at = None
        if not rows.empty:
            first_row_at = rows["started_at"].min().to_pydatetime()
            ends = rows["started_at"] + pd.to_timedelta(rows["duration_s"], unit="s")
            # datetime holds microseconds; flooring says so instead of warning about the lost nanoseconds.
            last_end_at = ends.max().floor("us").to_pydatetime()
        started_at, ended_at = run_times(manifest, first_row_at, last_end_at)
        status = rows["status"]
        return RunSummary(
            run_id=run_id,
            started_at=started_at,
            ended_at=ended_at,
            devices=tuple(sorted(set(rows["serial"]))),
            cases=rows["case_id"].nunique(),
            ok=int((status == CaseStatus.OK.value).sum()),
            failed=int((~status.isin([CaseStatus.OK.value, CaseStatus.SKIPPED.value])).sum()),
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


def _path_safe(serial: str) -> str:
    """Serial as one reversible path segment: '127.0.0.1:5555' -> '127.0.0.1%3A5555'.

    A leading '.' is encoded too, so no serial makes a hidden (ignored) folder or '..'.
    """
    encoded = quote(serial, safe="-_.")
    return "%2E" + encoded[1:] if encoded.startswith(".") else encoded


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
