"""Compaction and querying in place: real Parquet files, real DuckDB, real processes killed with SIGKILL.

A run's per-case files are merged per device into one file per model (harness.layout says which
files count at every moment); a model filter opens only that model's files; several writers share
one results root.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import textwrap
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from test_store import T0, make_row

from harness import layout
from harness.commands import main as cli_main
from harness.errors import SchemaError
from harness.records import SCHEMA_VERSION, SCHEMA_VERSION_METADATA_KEY, case_id_for
from harness.store import ResultsStore, RowFilter

REPO = Path(__file__).resolve().parents[1]
V2_DATASET = REPO / "tests" / "data" / "results_v2"
RUN = "run-1"
MODELS = ("alpha", "beta", "gamma")
SERIALS = ("lab-a", "lab-b")
KEY = ["run_id", "serial", "case_id", "repetition"]


def write_run(root: Path, run_id: str = RUN, serials: tuple[str, ...] = SERIALS, cases: int = 2) -> int:
    """A run as a sweep writes it: one file per case (3 repetitions), per device and model."""
    store = ResultsStore(root)
    written = 0
    for serial in serials:
        for model in MODELS:
            for case in range(cases):
                case_id = case_id_for(serial, model * 8, "cpu", case + 1, ())
                rows = [
                    make_row(
                        run_id=run_id,
                        serial=serial,
                        model_name=model,
                        num_threads=case + 1,
                        case_id=case_id,
                        repetition=repetition,
                        started_at=T0 + timedelta(seconds=written + repetition),
                    )
                    for repetition in range(3)
                ]
                store.append(rows)
                written += len(rows)
    return written


def described(path: Path, run_id: str = RUN) -> layout.DataFile:
    found = layout.describe(path, run_id, "")
    assert found is not None, path
    return found


def rows_of(root: Path) -> pd.DataFrame:
    return ResultsStore(root).read().sort_values(KEY).reset_index(drop=True)


def parquet_files(root: Path) -> list[Path]:
    return sorted(root.glob("dataset/run_id=*/device=*/*.parquet"))


def test_compaction_merges_each_device_of_a_run_into_one_file_per_model(tmp_path: Path) -> None:
    total = write_run(tmp_path)
    write_run(tmp_path, run_id="run-2", serials=("lab-a",))
    before = rows_of(tmp_path)
    assert len(parquet_files(tmp_path)) == 2 * 3 * 2 + 3 * 2

    report = ResultsStore(tmp_path).compact(RUN)

    assert report.rows == total and len(report.merged) == 12 and report.skipped == ()
    run_files = sorted((tmp_path / "dataset" / f"run_id={RUN}").rglob("*.parquet"))
    assert len(run_files) == len(SERIALS) * len(MODELS)
    for path in run_files:
        found = described(path)
        assert found.compaction is not None and found.count == len(MODELS)
        assert set(pq.read_table(path)["model_name"].to_pylist()) == {found.model_name}
        assert pq.read_schema(path).metadata[SCHEMA_VERSION_METADATA_KEY.encode()] == str(SCHEMA_VERSION).encode()
    # run-2 was not asked for: still one file per case.
    assert len(list((tmp_path / "dataset" / "run_id=run-2").rglob("*.parquet"))) == 6
    pd.testing.assert_frame_equal(rows_of(tmp_path), before)
    assert not [p for p in tmp_path.rglob(".*")]  # no temporary file, no lock left
    # Idempotent: a compacted run has nothing left to do.
    again = ResultsStore(tmp_path).compact(RUN)
    assert again.merged == () and again.written == ()


def test_rows_added_after_a_compaction_are_merged_by_the_next_one(tmp_path: Path) -> None:
    """--resume on a compacted run appends per-case files beside the compaction; they count, then merge."""
    write_run(tmp_path, serials=("lab-a",))
    store = ResultsStore(tmp_path)
    store.compact(RUN)
    store.append([make_row(run_id=RUN, serial="lab-a", model_name="alpha", case_id="late", repetition=0)])
    assert len(store.read()) == 3 * 2 * 3 + 1
    assert ("late", 0) in store.stored_case_keys(RUN)

    report = store.compact(RUN)

    assert report.rows == 3 * 2 * 3 + 1 and len(report.merged) == 4  # 3 model files and the new case
    assert len(parquet_files(tmp_path)) == 3 and len(store.read()) == 19


def _steps(total_files: int, models: int) -> list[tuple[str, int]]:
    """Every point a compaction of one folder passes (see store._compact_folder)."""
    return (
        [("written", k) for k in range(1, models + 1)]
        + [("verified", models)]
        + [("renamed", k) for k in range(1, models + 1)]
        + [("removed", k) for k in (1, total_files // 2, total_files)]
    )


@pytest.mark.parametrize(("step", "count"), _steps(total_files=6, models=3))
def test_kill_9_at_any_step_of_a_compaction_loses_and_doubles_nothing(tmp_path: Path, step: str, count: int) -> None:
    write_run(tmp_path, serials=("lab-a",))
    before = rows_of(tmp_path)
    # A real process, killed with SIGKILL by the store's own step hook: no cleanup code of ours runs.
    script = textwrap.dedent(
        f"""
        import os, signal
        from pathlib import Path
        from harness import store
        def hook(step, count):
            if (step, count) == ({step!r}, {count}):
                os.kill(os.getpid(), signal.SIGKILL)
        store._compaction_hook = hook
        store.ResultsStore(Path({str(tmp_path)!r})).compact({RUN!r})
        """
    )
    killed = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr

    # Whatever is on disk now, every row counts exactly once, for every reader.
    pd.testing.assert_frame_equal(rows_of(tmp_path), before)
    assert ResultsStore(tmp_path).query("SELECT count(*) AS n FROM rows")["n"].iloc[0] == len(before)
    assert len(ResultsStore(tmp_path).stored_case_keys(RUN)) == len(before)

    # `harness results compact` settles it: the dead holder's lock is taken over, leftovers go.
    result = CliRunner().invoke(cli_main, ["results", "compact", RUN, "--results", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    files = parquet_files(tmp_path)
    assert len(files) == len(MODELS) and all(described(f).compaction for f in files)
    pd.testing.assert_frame_equal(rows_of(tmp_path), before)
    assert not [p for p in tmp_path.rglob(".*")]


def test_a_model_filter_opens_only_that_models_files(tmp_path: Path) -> None:
    write_run(tmp_path)
    write_run(tmp_path, run_id="run-2")
    store = ResultsStore(tmp_path)
    store.compact(RUN)  # run-1 compacted, run-2 still one file per case: both are pruned by name
    expected = rows_of(tmp_path)
    expected = expected[expected["model_name"] == "beta"]
    # Every file of the other models is made unreadable: opening any one of them would fail the query.
    others = [f for f in parquet_files(tmp_path) if described(f).model_name != "beta"]
    assert len(others) == len(SERIALS) * 2 + len(SERIALS) * 2 * 2  # run-1: per device and model; run-2: per case
    for path in others:
        path.write_bytes(b"not parquet")

    with store.connect() as connection:
        report = store.scan(connection, RowFilter(model_name="beta"))
        counted = connection.execute("SELECT count(*), count(DISTINCT model_name) FROM rows").fetchone()
        one_run = connection.execute("SELECT count(*) FROM rows WHERE run_id = $r", {"r": RUN}).fetchone()
    assert report.skipped == () and {described(p).model_name for p in report.files} == {"beta"}
    assert len(report.files) == len(SERIALS) + len(SERIALS) * 2  # run-1: 1 per device; run-2: 1 per case
    assert counted == (len(expected), 1) and one_run == (len(expected) // 2,)
    # Runs and devices prune folders the same way.
    narrow = store.files(RowFilter(run_ids=(RUN,), model_name="beta", serials=("lab-b",)))
    assert [(f.run_id, f.serial, f.model_name) for f in narrow] == [(RUN, "lab-b", "beta")]
    frame = store.query(
        "SELECT serial, count(*) AS n FROM rows GROUP BY serial ORDER BY serial",
        where=RowFilter(run_ids=(RUN,), model_name="beta"),
    )
    assert frame.to_dict("list") == {"serial": list(SERIALS), "n": [6, 6]}


def test_a_damaged_file_named_as_current_is_skipped_and_reported_and_the_rest_still_reads(tmp_path: Path) -> None:
    write_run(tmp_path)
    store = ResultsStore(tmp_path)
    store.compact(RUN)
    before = rows_of(tmp_path)
    damaged, truncated = sorted(parquet_files(tmp_path))[:2]
    lost = len(pq.read_table(damaged)) + len(pq.read_table(truncated))
    damaged.write_bytes(b"not parquet")
    truncated.write_bytes(truncated.read_bytes()[:-100])

    loaded = store.read_where(RowFilter())
    assert {s.path for s in loaded.skipped} == {damaged, truncated}
    assert all("not a readable Parquet file" in s.reason for s in loaded.skipped)
    assert len(loaded.frame) == len(before) - lost
    assert damaged.exists() and truncated.exists()  # reported, never deleted: a person decides


def test_two_sweeps_on_two_hosts_write_one_results_root_at_once(tmp_path: Path) -> None:
    """Two processes append per-case files into one root at the same time, each compacting its run when it
    ends (as two hosts' sweeps do on a shared folder): both runs complete, every row once, no collision."""
    script = textwrap.dedent(
        """
        import sys
        from datetime import timedelta
        from pathlib import Path
        from harness.store import ResultsStore
        from tests.test_store import T0, make_row
        root, run_id, serial = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
        store = ResultsStore(root)
        for case in range(40):
            for model in ("alpha", "beta"):
                store.append([
                    make_row(run_id=run_id, serial=serial, model_name=model, case_id=f"{model}-{case}",
                             repetition=r, started_at=T0 + timedelta(seconds=case))
                    for r in range(3)
                ])
        store.write_run_manifest(run_id, {"argv": ["harness", "run"], "started_at": T0})
        print(store.compact(run_id).rows)
        """
    )
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(tmp_path), run_id, serial],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for run_id, serial in (("host-a-run", "phone-a"), ("host-b-run", "phone-b"))
    ]
    outputs = [writer.communicate(timeout=300) for writer in writers]
    assert [writer.returncode for writer in writers] == [0, 0], outputs
    assert [int(out.strip()) for out, _ in outputs] == [240, 240]

    rows = ResultsStore(tmp_path).read()
    assert len(rows) == 480 and not rows.duplicated(KEY).any()
    assert rows.groupby("run_id").size().to_dict() == {"host-a-run": 240, "host-b-run": 240}
    assert {run.run_id for run in ResultsStore(tmp_path).list_runs()} == {"host-a-run", "host-b-run"}
    assert len(parquet_files(tmp_path)) == 4  # per run: one device x two models


def test_the_checked_in_v2_per_case_dataset_reads_in_place_and_compacts_into_v3(tmp_path: Path) -> None:
    """tests/data/results_v2 was written by the v2 harness: one `part-<uuid>.parquet` per case, no model in
    the name. It reads as it is (in place too), and compaction rewrites it as v3 files named by model."""
    root = tmp_path / "results"
    shutil.copytree(V2_DATASET, root)
    assert all(described(f).model_name is None for f in parquet_files(root))
    assert {pq.read_schema(f).metadata[SCHEMA_VERSION_METADATA_KEY.encode()] for f in parquet_files(root)} == {b"2"}
    before = rows_of(root)
    assert len(before) == 24 and set(before["schema_version"]) == {SCHEMA_VERSION}
    in_place = ResultsStore(root).query(
        "SELECT count(*) AS n, min(schema_version) AS v FROM rows", where=RowFilter(model_name="alpha")
    )
    assert in_place.to_dict("records") == [{"n": 12, "v": SCHEMA_VERSION}]

    report = ResultsStore(root).compact()

    assert report.rows == 24 and len(report.merged) == 24
    files = parquet_files(root)
    assert sorted(str(described(f).model_name) for f in files) == ["alpha", "alpha", "beta", "beta"]
    assert {pq.read_schema(f).metadata[SCHEMA_VERSION_METADATA_KEY.encode()] for f in files} == {b"3"}
    pd.testing.assert_frame_equal(rows_of(root), before)


def test_a_newer_file_named_as_current_fails_the_query_with_the_upgrade_fix(tmp_path: Path) -> None:
    write_run(tmp_path, serials=("lab-a",), cases=1)
    store = ResultsStore(tmp_path)
    store.compact(RUN)
    (path,) = [f for f in parquet_files(tmp_path) if "model-alpha" in f.name]
    table = pq.read_table(path)
    table = table.set_column(0, "schema_version", pq.read_table(path)["schema_version"].cast("int64"))
    newer = table.drop(["schema_version"]).add_column(0, "schema_version", [[SCHEMA_VERSION + 1] * table.num_rows])
    pq.write_table(newer.replace_schema_metadata(table.schema.metadata), path)

    with pytest.raises(SchemaError) as raised:
        store.query("SELECT count(*) FROM rows")
    assert f"is results file v{SCHEMA_VERSION + 1}, but this tflite-farm reads up to v{SCHEMA_VERSION}" in str(
        raised.value
    )
    assert raised.value.fix == "upgrade tflite-farm: pip install -U tflite-farm"
    # The other models' files are never opened, so they still answer.
    assert store.query("SELECT count(*) AS n FROM rows", where=RowFilter(model_name="beta"))["n"].iloc[0] == 3


def test_a_compaction_held_by_another_host_is_refused_with_the_fix(tmp_path: Path) -> None:
    write_run(tmp_path, serials=("lab-a",), cases=1)
    folder = next((tmp_path / "dataset" / f"run_id={RUN}").iterdir())
    (folder / ".compacting.lock").write_text(json.dumps({"host": "other-host", "pid": 1}))
    result = CliRunner().invoke(cli_main, ["results", "compact", RUN, "--results", str(tmp_path)])
    assert result.exit_code == 2
    assert "is being compacted by" in result.output and "other-host" in result.output
    assert "delete" in result.output and ".compacting.lock" in result.output
    assert len(parquet_files(tmp_path)) == 3  # nothing touched


def test_results_compact_command(tmp_path: Path) -> None:
    write_run(tmp_path)
    result = CliRunner().invoke(cli_main, ["results", "compact", "--results", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "compacted 12 file(s) into 6 (36 rows)"
    unknown = CliRunner().invoke(cli_main, ["results", "compact", "no-such-run", "--results", str(tmp_path)])
    assert unknown.exit_code == 2 and "harness results ls" in unknown.output


def test_the_dashboard_sees_a_compaction_as_a_change_and_reads_the_same_rows(tmp_path: Path) -> None:
    from dashboard.data import Dataset, Selection, state_key

    write_run(tmp_path)
    before = state_key(tmp_path)
    dataset = Dataset.open(tmp_path)
    selection = Selection("beta", (RUN,))
    counted = dataset.sql("SELECT serial, count(*) AS n FROM rows GROUP BY 1 ORDER BY 1", selection=selection)
    assert len(dataset.selected_files(selection)) == len(SERIALS) * 2  # one file per case of beta
    dataset.close()

    ResultsStore(tmp_path).compact(RUN)

    assert state_key(tmp_path) != before  # cached queries are keyed on it: none survives the compaction
    dataset = Dataset.open(tmp_path)
    assert len(dataset.selected_files(selection)) == len(SERIALS)  # one file per device of beta
    after = dataset.sql("SELECT serial, count(*) AS n FROM rows GROUP BY 1 ORDER BY 1", selection=selection)
    pd.testing.assert_frame_equal(after, counted)
    assert dataset.models() == sorted(MODELS) and dataset.run_ids("beta") == [RUN]
    dataset.close()
