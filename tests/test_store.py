"""The results store on real Parquet files: round trips, atomic appends, versions, damage."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from harness import store as store_module
from harness.errors import SchemaError, UsageError
from harness.records import (
    RESULTS_SCHEMA,
    SCHEMA_VERSION,
    CaseStatus,
    ResultRow,
    case_id_for,
)
from harness.store import ResultsStore

REPO = Path(__file__).resolve().parents[1]
T0 = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)


def make_row(**overrides: object) -> ResultRow:
    values: dict[str, object] = dict(
        run_id="run-1",
        case_id=case_id_for("emulator-5554", "ab" * 32, "xnnpack", 4, ("--num_runs=50",)),
        repetition=0,
        started_at=T0,
        duration_s=3.5,
        harness_version="0.1.0",
        adb_server="127.0.0.1:5037",
        serial="emulator-5554",
        device_model="Pixel 7",
        manufacturer="Google",
        soc="Tensor G2",
        abi="x86_64",
        android_sdk=34,
        ram_bytes=8_000_000_000,
        tier="high",
        build_fingerprint="google/panther/panther:14/UQ1A/1:user/release-keys",
        model_name="mobilenet_v2",
        variant="fp16",
        quantization="float16",
        model_sha256="ab" * 32,
        model_size_bytes=7_000_000,
        delegate="xnnpack",
        num_threads=4,
        num_runs=50,
        warmup_runs=1,
        bench_binary_sha256="cd" * 32,
        init_us=1500.0,
        first_inference_us=9000.5,
        warmup_avg_us=8000.0,
        inference_avg_us=4210.25,
        inference_std_us=120.0,
        inference_min_us=4000.0,
        inference_max_us=4900.0,
        inference_p50_us=4200.0,
        inference_p95_us=4700.0,
        memory_init_mb=12.5,
        memory_overall_mb=40.0,
        memory_peak_mb=41.0,
        delegated_fraction=1.0,
        avg_power_mw=850.0,
        energy_mj_per_inference=3.6,
        power_method="model",
        temp_start_c=31.0,
        temp_end_c=35.5,
        throttled=False,
        status=CaseStatus.OK,
        raw_log_path="runs/run-1/raw/case-0.log",
    )
    values.update(overrides)
    return ResultRow(**values)  # type: ignore[arg-type]


def failed_row(**overrides: object) -> ResultRow:
    """A row as a timed-out case leaves it: every measurement None."""
    return make_row(
        **{
            "repetition": 1,
            "soc": None,
            "ram_bytes": None,
            "tier": None,
            "quantization": None,
            **{name: None for name in METRIC_COLUMNS},
            "status": CaseStatus.TIMEOUT,
            "error_type": "timeout",
            "error_message": "benchmark_model did not finish within 120 s",
            **overrides,
        }
    )


METRIC_COLUMNS = [
    "init_us", "first_inference_us", "warmup_avg_us", "inference_avg_us", "inference_std_us",
    "inference_min_us", "inference_max_us", "inference_p50_us", "inference_p95_us",
    "memory_init_mb", "memory_overall_mb", "memory_peak_mb", "delegated_fraction",
    "avg_power_mw", "energy_mj_per_inference", "power_method", "temp_start_c", "temp_end_c",
    "throttled",
]  # fmt: skip


def plain(value: object) -> object:
    """A value read back from pandas, with its missing-value markers as None."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    return value


def frame_records(frame: pd.DataFrame) -> list[dict[str, object]]:
    return [{str(k): plain(v) for k, v in rec.items()} for rec in frame.to_dict("records")]


def write_table(path: Path, table: pa.Table) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return path


# -- records ---------------------------------------------------------------------


def test_the_arrow_schema_is_derived_from_the_result_row() -> None:
    fields = dataclasses.fields(ResultRow)
    assert [f.name for f in fields] == RESULTS_SCHEMA.names
    # Optional in Python <=> nullable in Arrow, so a failed row is storable and nothing else is null.
    assert {f.name: "None" in str(f.type) for f in fields} == {f.name: f.nullable for f in RESULTS_SCHEMA}
    assert RESULTS_SCHEMA.metadata == {b"tflite_farm.schema_version": str(SCHEMA_VERSION).encode()}
    assert RESULTS_SCHEMA.field("started_at").type == pa.timestamp("us", tz="UTC")
    assert RESULTS_SCHEMA.field("soc_identities").type == pa.list_(pa.string())
    # Closed sets are stored as their values.
    for name in ("delegate", "status", "error_type", "device_kind", "power_method", "temperature_method"):
        assert RESULTS_SCHEMA.field(name).type == pa.string(), name
    # Unknown facts are null, never 0 or "unknown"; what every row has is required.
    for name in ("device_model", "manufacturer", "abi", "android_sdk", "bench_binary_sha256", "device_kind"):
        assert RESULTS_SCHEMA.field(name).nullable, name
    for name in ("run_id", "serial", "model_sha256", "delegate", "num_runs", "status"):
        assert not RESULTS_SCHEMA.field(name).nullable, name


def test_result_row_refuses_naive_datetimes_and_unknown_statuses() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        make_row(started_at=datetime(2026, 3, 1, 12, 0))
    with pytest.raises(ValueError):
        make_row(status="exploded")
    assert make_row(status="ok").status is CaseStatus.OK


def test_case_id_is_stable_across_processes_and_sensitive_to_every_input() -> None:
    args = ("serial-1", "ab" * 32, "gpu", 4, ("--num_runs=50", "--warmup_runs=1"))
    here = case_id_for(*args)
    script = f"from harness.records import case_id_for; print(case_id_for(*{args!r}))"
    # A fresh interpreter with a different hash seed: no dependence on hash() or dict order.
    there = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO,
        env={**os.environ, "PYTHONHASHSEED": "12345"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert here == there
    assert len(here) == 16 and int(here, 16) >= 0
    assert case_id_for(*args[:3], 2, args[4]) != here
    assert case_id_for("serial-2", *args[1:]) != here
    assert case_id_for(*args[:4], tuple(reversed(args[4]))) != here


# -- round trips -----------------------------------------------------------------


def test_round_trip_keeps_ok_and_failure_rows_exactly(tmp_path: Path) -> None:
    store = ResultsStore(tmp_path)
    rows = [
        make_row(),
        failed_row(started_at=T0 + timedelta(seconds=10)),
        make_row(
            repetition=2,
            started_at=T0 + timedelta(seconds=20),
            status=CaseStatus.DELEGATE_FAILED,
            delegate="gpu",
            delegated_fraction=0.0,
            throttled=True,
            error_type="delegate_failed",
            error_message="Failed to apply GPU delegate",
        ),
    ]
    path = store.append(rows)

    assert path.parent.parent.name == "run_id=run-1"
    frame = store.read()
    assert list(frame.columns) == RESULTS_SCHEMA.names
    assert frame_records(frame) == [r.to_record() for r in rows]
    # Nullable integers and booleans stay integers and booleans in pandas.
    assert str(frame["ram_bytes"].dtype) == "Int64"
    assert str(frame["throttled"].dtype) == "boolean"


def test_datetimes_come_back_in_utc_as_the_same_instant(tmp_path: Path) -> None:
    store = ResultsStore(tmp_path)
    local = datetime(2026, 3, 1, 14, 0, 0, 5, tzinfo=timezone(timedelta(hours=2)))
    store.append([make_row(started_at=local)])

    started = store.read()["started_at"]
    assert str(started.dt.tz) == "UTC"
    assert started.iloc[0].to_pydatetime() == local
    assert started.iloc[0].to_pydatetime().utcoffset() == timedelta(0)
    assert pq.read_schema(next(tmp_path.rglob("*.parquet"))).field("started_at").type.tz == "UTC"


def test_many_batches_and_two_runs(tmp_path: Path) -> None:
    store = ResultsStore(tmp_path)
    serials = ["emulator-5554", "127.0.0.1:5555"]
    for run_id in ("run-a", "run-b"):
        for serial in serials:
            for batch in range(5):
                store.append(
                    [
                        make_row(
                            run_id=run_id,
                            serial=serial,
                            case_id=f"case-{batch}",
                            repetition=rep,
                            started_at=T0 + timedelta(minutes=batch, seconds=rep),
                        )
                        for rep in range(3)
                    ]
                )

    everything = store.read()
    assert len(everything) == 2 * 2 * 5 * 3
    assert set(everything["serial"]) == set(serials)
    run_b = store.read(["run-b"])
    assert len(run_b) == 30 and set(run_b["run_id"]) == {"run-b"}
    assert store.read(["run-missing"]).empty
    # Partition folder names are path-safe; the serial column keeps the real serial.
    device_dirs = {p.name for p in (tmp_path / "dataset" / "run_id=run-a").iterdir()}
    assert device_dirs == {"device=emulator-5554", "device=127.0.0.1%3A5555"}


def test_stored_case_keys_lists_every_stored_repetition_of_one_run(tmp_path: Path) -> None:
    store = ResultsStore(tmp_path)
    store.append([make_row(case_id="c1", repetition=0), failed_row(case_id="c1", repetition=1)])
    store.append([make_row(case_id="c2", repetition=0, serial="other")])
    store.append([make_row(run_id="run-2", case_id="c3", repetition=0)])

    assert store.stored_case_keys("run-1") == {("c1", 0), ("c1", 1), ("c2", 0)}
    assert store.stored_case_keys("run-3") == set()


def test_file_columns_win_over_partition_folder_names(tmp_path: Path) -> None:
    store = ResultsStore(tmp_path)
    written = store.append([make_row()])
    moved = tmp_path / "dataset" / "run_id=elsewhere" / "device=nobody" / written.name
    moved.parent.mkdir(parents=True)
    written.rename(moved)

    frame = store.read()
    assert list(frame.columns).count("run_id") == 1
    assert frame.loc[0, "run_id"] == "run-1" and frame.loc[0, "serial"] == "emulator-5554"


def test_empty_root_reads_as_an_empty_frame_with_every_column(tmp_path: Path) -> None:
    store = ResultsStore(tmp_path / "nothing-here")
    frame = store.read()
    assert frame.empty and list(frame.columns) == RESULTS_SCHEMA.names
    assert str(frame["started_at"].dtype) == "datetime64[us, UTC]"
    assert store.list_runs() == []


def test_append_refuses_mixed_batches_and_missing_required_values(tmp_path: Path) -> None:
    store = ResultsStore(tmp_path)
    with pytest.raises(ValueError, match="one run and one device"):
        store.append([make_row(), make_row(serial="other")])
    with pytest.raises(ValueError, match="required columns are None: model_name"):
        store.append([make_row(model_name=None)])
    with pytest.raises(UsageError, match="not a valid run id"):
        store.append([make_row(run_id="../escape")])
    assert not list(tmp_path.rglob("*.parquet"))


# -- atomic writes ---------------------------------------------------------------


def test_a_crash_between_write_and_rename_leaves_nothing_in_view(tmp_path: Path) -> None:
    store = ResultsStore(tmp_path)
    store.append([make_row(case_id="kept")])
    # Kill a real process right after it has written and fsynced the temp file.
    script = textwrap.dedent(
        f"""
        import os
        from harness.store import ResultsStore
        import tests.test_store as t
        os.replace = lambda *args: os._exit(9)
        ResultsStore({str(tmp_path)!r}).append([t.make_row(case_id="lost")])
        """
    )
    crashed = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True)
    assert crashed.returncode == 9, crashed.stderr

    leftovers = [p for p in tmp_path.rglob("*") if p.is_file() and p.name.endswith(".tmp")]
    assert len(leftovers) == 1 and leftovers[0].name.startswith(".")
    assert leftovers[0].stat().st_size > 0
    assert list(store.read()["case_id"]) == ["kept"]
    assert store.load().skipped == ()
    # Other readers of the dataset (pyarrow.dataset, hence pandas and duckdb scans) skip it too.
    assert ds.dataset(tmp_path / "dataset", format="parquet").count_rows() == 1


def test_a_failed_write_removes_its_temporary_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def disk_full(table: pa.Table, where: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pq, "write_table", disk_full)  # the module the store writes with
    with pytest.raises(OSError, match="No space left"):
        ResultsStore(tmp_path).append([make_row()])
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


# -- versions --------------------------------------------------------------------


def _table_with_version(version: int, metadata_version: int) -> pa.Table:
    table = pa.Table.from_pylist([make_row().to_record()], schema=RESULTS_SCHEMA)
    table = table.set_column(0, "schema_version", pa.array([version], pa.int64()))
    return table.replace_schema_metadata({"tflite_farm.schema_version": str(metadata_version)})


@pytest.mark.parametrize(("column", "metadata"), [(4, 4), (3, 4), (4, 3)])
def test_a_newer_file_is_refused_with_the_upgrade_command(tmp_path: Path, column: int, metadata: int) -> None:
    store = ResultsStore(tmp_path)
    store.append([make_row()])
    write_table(
        tmp_path / "dataset" / "run_id=run-9" / "device=x" / "part-new.parquet",
        _table_with_version(column, metadata),
    )

    with pytest.raises(SchemaError) as raised:
        store.read()
    assert "results file v4, but this tflite-farm reads up to v3" in str(raised.value)
    assert raised.value.fix == "upgrade tflite-farm: pip install -U tflite-farm"


V1_DATASET = REPO / "tests" / "data" / "results_v1"


def test_the_checked_in_v1_run_json_reads_as_v2() -> None:
    """v1 named one benchmark binary per ABI; v2 lists them (classic and LiteRT 2.x may share an ABI)."""
    (run,) = [path.parent.name for path in (V1_DATASET / "runs").glob("*/run.json")]
    raw = json.loads((V1_DATASET / "runs" / run / "run.json").read_text())
    assert raw["schema_version"] == 1 and isinstance(raw["binaries"]["x86_64"], dict)
    document = ResultsStore(V1_DATASET).read_run_manifest(run)
    assert document["schema_version"] == 2
    assert document["binaries"] == {"x86_64": [raw["binaries"]["x86_64"]]}
    assert {k: v for k, v in document.items() if k not in ("schema_version", "binaries")} == {
        k: v for k, v in raw.items() if k not in ("schema_version", "binaries")
    }


def test_the_checked_in_v1_dataset_reads_as_current_rows() -> None:
    """tests/data/results_v1 was written by the v1 harness; every read upgrades it (v1 -> v2 -> v3)."""
    rows = ResultsStore(V1_DATASET).read()
    assert len(rows) == 30 and list(rows.columns) == RESULTS_SCHEMA.names
    assert set(rows["schema_version"]) == {SCHEMA_VERSION}
    x86 = rows[rows["abi"] == "x86_64"]
    arm = rows[rows["abi"] == "arm64-v8a"]
    # The virtual farm shows itself in v1 rows (modelled power, x86_64 on loopback) ...
    assert set(x86["device_kind"]) == {"virtual"} and len(x86) == 24
    # ... but the ARM stand-in only ever skipped: nothing says what it was, so nothing is claimed.
    assert arm["device_kind"].isna().all() and set(arm["status"]) == {"skipped"}
    assert set(x86["temperature_method"]) == {"model"} and x86["throttled"].isna().all()
    # Made-up values became null; v1's measurements are kept as they were.
    assert arm["bench_binary_sha256"].isna().all() and x86["bench_binary_sha256"].notna().all()
    assert (rows["device_model"] != "unknown").all() and rows["android_sdk"].notna().all()
    assert [list(v) for v in rows.loc[rows["device_model"] == "Pixel 8 Pro", "soc_identities"].head(1)] == [
        ["Tensor G3"]
    ]
    ok = rows[rows["status"] == "ok"]
    assert len(ok) == 16 and ok["inference_p50_us"].notna().all() and set(ok["power_method"]) == {"model"}
    assert rows["inference_count"].isna().all()  # v1 never stored the measured count


def test_an_older_file_without_its_upgrade_step_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    assert set(store_module.UPGRADES) == {1, 2}  # one named step per version: v1 -> v2 -> v3
    monkeypatch.delitem(store_module.UPGRADES, 1)
    with pytest.raises(SchemaError, match="results file v1 and there is no upgrade from v1"):
        ResultsStore(V1_DATASET).read()


def test_results_upgrade_rewrites_older_files_in_place(tmp_path: Path) -> None:
    import shutil

    root = tmp_path / "results"
    shutil.copytree(V1_DATASET, root)
    before = ResultsStore(root).read()
    report = ResultsStore(root).upgrade()
    files = sorted(root.glob("dataset/run_id=*/device=*/part-*.parquet"))
    assert sorted(report.upgraded) == files and report.skipped == ()
    assert {pq.read_schema(f).metadata[b"tflite_farm.schema_version"] for f in files} == {b"3"}
    assert [p.name for p in root.rglob(".*")] == []  # no temporary file left
    pd.testing.assert_frame_equal(ResultsStore(root).read(), before)
    assert ResultsStore(root).upgrade().upgraded == ()  # nothing left to do


# -- damaged files ---------------------------------------------------------------


def test_a_truncated_file_is_skipped_and_reported_while_the_rest_is_read(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = ResultsStore(tmp_path)
    store.append([make_row(case_id="good", serial="a")])
    victim = store.append([make_row(case_id="lost", serial="b")])
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])  # as a disk-full copy leaves it

    with caplog.at_level(logging.WARNING, logger="harness.store"):
        loaded = store.load()
    assert list(loaded.frame["case_id"]) == ["good"]
    assert [s.path for s in loaded.skipped] == [victim]
    assert "Parquet" in loaded.skipped[0].reason
    assert str(victim) in caplog.text
    assert list(store.read()["case_id"]) == ["good"]


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda t: t.drop_columns(["serial"]), "required column 'serial' is missing"),
        (lambda t: t.set_column(t.schema.get_field_index("serial"), "serial", pa.nulls(1, pa.string())),
         "do not fit the results schema"),
        (lambda t: t.replace_schema_metadata(None).drop_columns(["schema_version"]), "no schema version"),
    ],
)  # fmt: skip
def test_files_that_are_not_valid_results_are_skipped(tmp_path: Path, damage, reason: str) -> None:
    store = ResultsStore(tmp_path)
    store.append([make_row(case_id="good")])
    table = pa.Table.from_pylist([make_row(case_id="bad").to_record()], schema=RESULTS_SCHEMA)
    write_table(tmp_path / "dataset" / "run_id=run-1" / "device=x" / "part-bad.parquet", damage(table))

    loaded = store.load()
    assert list(loaded.frame["case_id"]) == ["good"]
    assert len(loaded.skipped) == 1 and reason in loaded.skipped[0].reason


# -- manifests and runs ----------------------------------------------------------


def test_run_manifest_round_trip(tmp_path: Path) -> None:
    store = ResultsStore(tmp_path)
    manifest = {
        "argv": ["harness", "run", "--devices", "all"],
        "harness_version": "0.1.0",
        "plan": [{"case_id": "c1", "delegate": "gpu", "num_threads": 4}],
        "devices": ["emulator-5554"],
        "started_at": T0,
        "ended_at": None,
    }
    path = store.write_run_manifest("run-1", manifest)

    assert path == tmp_path / "runs" / "run-1" / "run.json"
    assert [p.name for p in path.parent.iterdir()] == ["run.json"]  # no temporary file left
    assert store.read_run_manifest("run-1") == {
        "schema_version": 2,
        "run_id": "run-1",
        **manifest,
        "started_at": T0.isoformat(),
    }
    store.write_run_manifest("run-1", {**manifest, "ended_at": T0 + timedelta(hours=1)})
    assert store.read_run_manifest("run-1")["ended_at"] == (T0 + timedelta(hours=1)).isoformat()
    assert store.raw_log_dir("run-1") == tmp_path / "runs" / "run-1" / "raw"
    assert store.raw_log_dir("run-1").is_dir()


def test_run_manifest_errors_name_the_fix(tmp_path: Path) -> None:
    store = ResultsStore(tmp_path)
    with pytest.raises(UsageError, match="harness results ls"):
        store.read_run_manifest("run-nope")
    with pytest.raises(UsageError, match="not a valid run id"):
        store.read_run_manifest("../../etc")
    newer = tmp_path / "runs" / "run-new" / "run.json"
    newer.parent.mkdir(parents=True)
    newer.write_text(json.dumps({"schema_version": 3}))
    with pytest.raises(SchemaError, match="pip install -U"):
        store.read_run_manifest("run-new")


def test_list_runs_summarises_rows_and_manifests(tmp_path: Path) -> None:
    store = ResultsStore(tmp_path)
    store.write_run_manifest("run-a", {"started_at": T0 - timedelta(minutes=1), "ended_at": T0 + timedelta(hours=1)})
    store.append([make_row(run_id="run-a", case_id="c1"), failed_row(run_id="run-a", case_id="c1")])
    store.append(
        [
            make_row(run_id="run-a", serial="s2", case_id="c2"),
            make_row(run_id="run-a", serial="s2", case_id="c3", status=CaseStatus.SKIPPED),
        ]
    )
    later = T0 + timedelta(days=1)
    store.append([make_row(run_id="run-b", started_at=later, duration_s=2.0)])  # crashed before its manifest
    store.write_run_manifest("run-c", {"started_at": later + timedelta(days=1), "ended_at": None})

    runs = store.list_runs()
    assert [r.run_id for r in runs] == ["run-a", "run-b", "run-c"]
    a, b, c = runs
    assert (a.started_at, a.ended_at) == (T0 - timedelta(minutes=1), T0 + timedelta(hours=1))
    assert (a.devices, a.cases, a.ok, a.failed) == (("emulator-5554", "s2"), 3, 2, 1)
    assert (b.started_at, b.ended_at) == (later, later + timedelta(seconds=2))
    assert (b.devices, b.cases, b.ok, b.failed) == (("emulator-5554",), 1, 1, 0)
    assert (c.ended_at, c.devices, c.cases, c.ok, c.failed) == (None, (), 0, 0, 0)


def test_results_upgrade_command(tmp_path: Path) -> None:
    import shutil

    from click.testing import CliRunner

    from harness.commands import main

    root = tmp_path / "results"
    shutil.copytree(V1_DATASET, root)
    result = CliRunner().invoke(main, ["results", "upgrade", "--results", str(root), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["schema_version"] == SCHEMA_VERSION and len(report["upgraded"]) == 25 and report["skipped"] == []
