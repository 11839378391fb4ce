"""harness.ranking, `harness policy derive` and `coverage`: constructed results with a known
answer (tests/policy_data.py) and a real sweep on the virtual farm."""

from __future__ import annotations

import json
import os
from pathlib import Path

import policy_data as known
import pytest
from click.testing import CliRunner

from harness import ranking, sweep
from harness.commands import main
from harness.coverage import CoverageVerdict, coverage
from harness.errors import UsageError
from harness.phone.discovery import discover, select
from harness.phone.profiles import load_farm, load_tiers
from harness.policy import DeriveRequest, derive, load_rows
from harness.policy_file import validate
from harness.ranking import Constraints
from harness.store import ResultsStore
from harness.virtual_farm import farm as farm_lib


def chain_of(document: dict, tier: str) -> list[str]:
    entry = next(t for t in document["tiers"] if t["name"] == tier)
    return [f"{e['variant']}/{e['delegate']}/x{e['num_threads']}" for e in [entry["choice"], *entry["fallbacks"]]]


def evidence_of(document: dict, tier: str) -> dict:
    return next(t for t in document["tiers"] if t["name"] == tier)["evidence"]


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("known") / "results"
    known.write_results(root)
    return root


@pytest.fixture(scope="module")
def policy(results: Path) -> dict:
    return derive(DeriveRequest(results_root=results)).document


# --- statistics -------------------------------------------------------------------


def test_device_stats_use_repetitions_and_count_failures(results: Path) -> None:
    stats = ranking.stats_of(ResultsStore(results).read())
    row = stats[
        (stats["serial"] == "mid-a")
        & (stats["variant"] == "int8")
        & (stats["delegate"] == "xnnpack")
        & (stats["num_threads"] == 2)
    ].iloc[0]
    assert row["ok_rows"] == 3 and row["inference_p50_us"] == 1010.0
    assert list(row["reps_inference_p50_us"]) == [970.0, 1010.0, 1050.0]  # each repetition, in the order it ran
    gpu = stats[(stats["serial"] == "mid-b") & (stats["delegate"] == "gpu")].iloc[0]
    assert gpu["failures"] == 3 and gpu["ok_rows"] == 0 and gpu["failure_kinds"] == "delegate_failed"


def test_rows_without_a_tier_rank_as_unclassified_after_the_known_tiers(results: Path) -> None:
    rows = ResultsStore(results).read()
    rows.loc[rows["serial"] == "low-1", "tier"] = None
    rankings = ranking.rank_tiers(ranking.stats_of(rows), known.MODEL, tier_order=load_tiers().tiers)
    assert [r.tier for r in rankings] == ["high", "mid", ranking.NO_TIER]
    assert rankings[-1].devices == ("low-1",)


def test_pareto_front_keeps_only_undominated_rows() -> None:
    import pandas as pd

    frame = pd.DataFrame({"latency": [1.0, 2.0, 2.0, 3.0, None], "size": [3.0, 2.0, 3.0, 1.0, 0.5]})
    assert ranking.pareto_front(frame, ["latency", "size"]).tolist() == [True, True, False, True, False]


# --- derive on constructed results -------------------------------------------------


def test_clear_winner_leads_its_tier(policy: dict) -> None:
    assert chain_of(policy, "high") == ["fp16/xnnpack/x2", "int8/cpu/x2"]
    evidence = evidence_of(policy, "high")
    assert evidence["tie"]["tied_with_best"] == [] and evidence["tie"]["decided_by"] is None
    assert evidence["devices"] == 1 and evidence["inference_p50_us"] == 1000.0


def test_an_undecided_difference_goes_to_the_better_median_never_to_a_tie_breaker(policy: dict) -> None:
    evidence = evidence_of(policy, "mid")
    # fp32 1,000 us and int8 1,010 us, each 3 repetitions 40 us apart: not shown equal within 5% (the interval
    # spans more), not shown different. The better median wins; the smaller model does not.
    assert chain_of(policy, "mid")[0] == "fp32/xnnpack/x2"
    assert evidence["tie"]["tied_with_best"] == [] and evidence["tie"]["decided_by"] is None
    [undecided] = [u for u in evidence["undecided"] if u["config"] == "int8/xnnpack/x2"]
    assert undecided["verdict"] == "undecided" and undecided["ratio"] == pytest.approx(1.01)
    assert undecided["more_repetitions"] >= 1
    assert "Hodges-Lehmann" in evidence["tie"]["test"]


def test_delegate_failing_on_one_device_of_the_tier_is_never_in_its_chain(policy: dict) -> None:
    assert not any("gpu" in config for config in chain_of(policy, "mid"))
    excluded = {e["config"]: e["reason"] for e in evidence_of(policy, "mid")["excluded"]}
    assert "delegate_failed on SM-A546B" in excluded["fp16/gpu/x1"]
    assert evidence_of(policy, "mid")["failures"] == 1


def test_every_chain_ends_on_cpu_and_default_is_the_most_conservative(policy: dict) -> None:
    assert validate(policy) == ()
    for entry in policy["tiers"]:
        chain = [entry["choice"], *entry["fallbacks"]]
        assert chain[-1]["delegate"] == "cpu"
        assert len({e["delegate"] for e in chain}) == len(chain)
    assert (policy["default"]["delegate"], policy["default"]["num_threads"]) == ("cpu", 1)
    # One entry per rule of tiers.toml, in rule order, so an app's first match is the harness's tier.
    assert [(t["name"], t["rule"]) for t in policy["tiers"]] == [(r.tier, r.id) for r in load_tiers().rules]


def test_tier_without_valid_candidate_names_the_constraint(results: Path) -> None:
    with pytest.raises(UsageError) as error:
        derive(DeriveRequest(results_root=results, constraints=Constraints(max_latency_us=1500)))
    message = str(error.value)
    assert "tier low of net" in message and "max_latency_us excluded" in message and "--max-latency-us" in message
    assert "tier mid" not in message and "tier high" not in message


def test_cpu_fallback_outside_the_constraints_is_kept_and_said(results: Path) -> None:
    without_low = load_rows(results).query("tier != 'low'")
    derived = derive(DeriveRequest(results_root=results, constraints=Constraints(max_latency_us=1800)), without_low)
    assert chain_of(derived.document, "high") == ["fp16/xnnpack/x2", "int8/cpu/x2"]
    assert "outside the constraints" in evidence_of(derived.document, "high")["notes"][0]
    # A tier nobody measured runs the default, and derive says so.
    low = next(t for t in derived.document["tiers"] if t["name"] == "low")
    assert low["choice"] == derived.document["default"] and low["evidence"]["devices"] == 0
    assert any("tier low: no device of this tier was measured" in w for w in derived.warnings)


def test_manifest_gives_signatures_and_the_accuracy_gate(results: Path, tmp_path: Path) -> None:
    manifest = known.write_manifest(tmp_path / "models", int8_drop=0.02)
    request = DeriveRequest(
        results_root=results,
        manifest_path=manifest,
        constraints=Constraints(max_accuracy_drop=0.01),
        model_url_template="https://cdn.example.com/{model}/{version}/{file}",
        model_version="2026.11.24",
    )
    document = derive(request).document
    # int8 loses 2 points: out everywhere, so mid falls to fp32 and its chain to fp16 on CPU.
    assert chain_of(document, "mid") == ["fp32/xnnpack/x2", "fp16/cpu/x2"]
    assert document["default"]["variant"] == "fp16"
    excluded = {e["config"]: e["reason"] for e in evidence_of(document, "mid")["excluded"]}
    assert excluded["int8/xnnpack/x2"].startswith("max_accuracy_drop: 0.0200 > 0.01")
    choice = next(t for t in document["tiers"] if t["name"] == "mid")["choice"]["model"]
    assert choice["url"] == "https://cdn.example.com/net/2026.11.24/net_fp32.tflite"
    assert choice["io_signature"]["inputs"][0] == {
        "name": "serving_default_x:0",
        "shape": [1, 8, 8, 1],
        "dtype": "float32",
        "quantization": None,
    }
    assert document["objective"]["constraints"] == {"max_accuracy_drop": 0.01}


def test_accuracy_gate_from_the_results_accuracy_table(tmp_path: Path) -> None:
    """Without --manifest the gate comes from results/accuracy/, as `harness convert` wrote it."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from harness.convert_files import ACCURACY_SCHEMA_VERSION, accuracy_schema

    root = tmp_path / "results"
    known.write_results(root)
    rows = [
        {
            "schema_version": ACCURACY_SCHEMA_VERSION,
            "conversion_id": "c1",
            "model_name": known.MODEL,
            "variant": variant,
            "status": "ok",
            "sha256": model_sha,
            "size_bytes": size,
            "accuracy_drop": 0.05 if variant == "int8" else 0.0,
            "accepted": variant != "int8",
            "reason": "top-1 accuracy drop 0.0500 > 0.01" if variant == "int8" else None,
        }
        for variant, (model_sha, size, _) in known.VARIANTS.items()
    ]
    (root / "accuracy").mkdir()
    pq.write_table(pa.Table.from_pylist(rows, schema=accuracy_schema()), root / "accuracy" / "part-c1.parquet")
    document = derive(DeriveRequest(results_root=root)).document
    assert chain_of(document, "mid")[0] == "fp32/xnnpack/x2"
    excluded = {e["config"]: e["reason"] for e in evidence_of(document, "mid")["excluded"]}
    assert excluded["int8/xnnpack/x2"] == "rejected by the convert accuracy gate: top-1 accuracy drop 0.0500 > 0.01"
    report = coverage(document, load_rows(root), ranking.accuracy_from_results(root))
    assert all(not (d.best_config or "").startswith("int8/") for d in report.devices)


# --- coverage -----------------------------------------------------------------------


def test_coverage_reports_each_device_against_its_best(policy: dict, results: Path) -> None:
    report = coverage(policy, load_rows(results))
    by_serial = {d.serial: d for d in report.devices}
    assert set(by_serial) == set(known.DEVICES)
    for serial, device in by_serial.items():
        assert device.policy_tier == device.measured_tier == known.DEVICES[serial][0]
        assert device.failed_before == ()
    # mid-a's GPU is twice as fast, but the GPU fails on mid-b: the policy gives that up, honestly.
    assert by_serial["mid-a"].best_config == "fp16/gpu/x1" and by_serial["mid-a"].ratio == pytest.approx(2.0)
    assert by_serial["mid-a"].verdict is CoverageVerdict.SLOWER
    assert by_serial["mid-a"].describe() == "slower than best by 100%"
    assert by_serial["mid-b"].verdict is CoverageVerdict.BEST and by_serial["hi-1"].ratio == 1.0
    # low-1 runs the smallest of three variants shown within 5% of each other (a tie settled by size).
    assert by_serial["low-1"].verdict is CoverageVerdict.WITHIN and by_serial["low-1"].describe() == "within 5% of best"
    assert report.share_at_best == 0.75 and not report.meets_goal


def test_policy_cli_derive_then_coverage(results: Path, tmp_path: Path) -> None:
    out = tmp_path / "policy.json"
    runner = CliRunner()
    derived = runner.invoke(main, ["policy", "derive", "--results", str(results), "--out", str(out)])
    assert derived.exit_code == 0, derived.output
    assert "mid" in derived.output and "int8/xnnpack/x2" in derived.output
    assert json.loads(out.read_text())["model"]["name"] == "net"
    report = runner.invoke(main, ["policy", "coverage", str(out), "--results", str(results), "--json"])
    assert report.exit_code == 0, report.output
    assert json.loads(report.output)["share_at_best"] == 0.75
    failing = runner.invoke(
        main,
        ["policy", "derive", "--results", str(results), "--max-latency-us", "1500", "--out", str(tmp_path / "x.json")],
    )
    assert failing.exit_code == 2 and "max_latency_us excluded" in failing.output
    assert not (tmp_path / "x.json").exists()


# --- a real sweep on the virtual farm ------------------------------------------------


@pytest.fixture(scope="module")
def swept(tmp_path_factory, tiny_models) -> Path:
    """The four shipped virtual phones swept over cpu, xnnpack and gpu at 1 and 2 threads."""
    base = tmp_path_factory.mktemp("policy-farm")
    saved = os.environ.get(farm_lib.ENV_ADB_PORT)
    farm_lib.start_private(base / "state")
    try:
        devices = select(discover(load_farm(), load_tiers()).entries, "all")
        model = base / "tiny_fp32.tflite"
        model.write_bytes(tiny_models["conv"].read_bytes())
        store = ResultsStore(base / "results")
        params = sweep.SweepParams(
            delegates=("cpu", "xnnpack", "gpu"),
            threads=(1, 2),
            repetitions=2,
            num_runs=20,
            warmup_runs=1,
            min_secs=0.05,
            thermal_threshold_c=90.0,
            thermal_max_wait_s=2.0,
        )
        run_id = sweep.new_run_id()
        binaries = sweep.build_binaries({}, store.root / "runs" / run_id)
        sweep.run_sweep(
            devices, sweep.collect_models([model]), params, binaries, store, run_id=run_id, show_progress=False
        )
    finally:
        farm_lib.stop_private(base / "state")
        if saved is None:
            os.environ.pop(farm_lib.ENV_ADB_PORT, None)
        else:
            os.environ[farm_lib.ENV_ADB_PORT] = saved
    return store.root


def test_policy_from_a_real_sweep(swept: Path) -> None:
    derived = derive(DeriveRequest(results_root=swept))
    document = derived.document
    assert validate(document) == ()
    for tier in ("high", "mid", "low"):
        chain = chain_of(document, tier)
        assert chain[-1].endswith(("/cpu/x1", "/cpu/x2"))
        assert not any("/gpu/" in config for config in chain)  # virtual phones have no GPU delegate
        assert evidence_of(document, tier)["devices"] == (2 if tier == "mid" else 1)
        assert any(
            "gpu" in e["config"] and "delegate_failed" in e["reason"] for e in evidence_of(document, tier)["excluded"]
        )
    report = coverage(document, load_rows(swept))
    assert len(report.devices) == 4 and report.failed_choices == 0
    for device in report.devices:
        assert device.policy_tier == device.measured_tier
        assert device.runs_p50_us and device.best_p50_us and device.ratio is not None and device.ratio >= 1.0
