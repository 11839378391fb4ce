"""Decisions use only numbers measured the same way, and every output says how they were measured:
device kinds and benchmark binaries are never mixed unasked, modelled energy decides nothing, and
policies record (and validate warns about) what they were measured on."""

from __future__ import annotations

import json
from pathlib import Path

import policy_data as known
import pytest
from click.testing import CliRunner

from harness import ranking
from harness.commands import main
from harness.compare import compare_runs
from harness.coverage import coverage
from harness.errors import UsageError
from harness.policy import DeriveRequest, derive, load_rows
from harness.policy_file import physical_only, provenance_warnings, validate
from harness.ranking import Constraints, MixingAllowed
from harness.store import ResultsStore


def results(tmp_path: Path, **overrides: dict) -> Path:
    root = tmp_path / "results"
    known.write_results(root, overrides=overrides)
    return root


def evidence_of(document: dict, tier: str) -> dict:
    return next(t for t in document["tiers"] if t["name"] == tier)["evidence"]


def chain_of(document: dict, tier: str) -> list[str]:
    entry = next(t for t in document["tiers"] if t["name"] == tier)
    return [f"{e['variant']}/{e['delegate']}/x{e['num_threads']}" for e in [entry["choice"], *entry["fallbacks"]]]


# --- mixing --------------------------------------------------------------------------


def test_a_tier_mixing_physical_and_virtual_devices_is_refused_unless_allowed(tmp_path: Path) -> None:
    root = results(tmp_path, **{"mid-b": {"device_kind": "virtual"}})
    with pytest.raises(UsageError) as error:
        derive(DeriveRequest(results_root=root))
    message = str(error.value)
    assert "tier mid of net mixes physical and virtual devices" in message
    assert "physical: A063" in message and "virtual: SM-A546B" in message and "--allow-mixed-kinds" in message
    document = derive(DeriveRequest(results_root=root, mixing=MixingAllowed(kinds=True))).document
    assert validate(document) == ()
    assert evidence_of(document, "mid")["measured_on"]["device_kinds"] == ["physical", "virtual"]
    assert evidence_of(document, "high")["measured_on"]["device_kinds"] == ["physical"]
    # The CLI says the same, with exit status 2, and the flag lets it through.
    out = tmp_path / "p.json"
    refused = CliRunner().invoke(main, ["policy", "derive", "--results", str(root), "--out", str(out)])
    assert refused.exit_code == 2 and "--allow-mixed-kinds" in refused.output and not out.exists()
    allowed = CliRunner().invoke(
        main, ["policy", "derive", "--results", str(root), "--out", str(out), "--allow-mixed-kinds"]
    )
    assert allowed.exit_code == 0, allowed.output


def test_rows_of_two_benchmark_binaries_are_never_one_series_unasked(tmp_path: Path) -> None:
    newer = ("android_aarch64_benchmark_model", known.sha("benchmark_model 2.20"))
    root = results(tmp_path, **{"mid-a": {"bench_binary_name": newer[0], "bench_binary_sha256": newer[1]}})
    with pytest.raises(UsageError, match="tier mid of net mixes rows from 2 benchmark binaries") as error:
        derive(DeriveRequest(results_root=root))
    assert "--allow-mixed-binaries" in str(error.value)
    document = derive(DeriveRequest(results_root=root, mixing=MixingAllowed(binaries=True))).document
    assert len(evidence_of(document, "mid")["measured_on"]["bench_binaries"]) == 2
    # Coverage compares configurations of one device: a device measured by two binaries is refused too.
    rows = load_rows(root)
    rows.loc[(rows["serial"] == "hi-1") & (rows["delegate"] == "cpu"), "bench_binary_sha256"] = newer[1]
    with pytest.raises(UsageError, match="coverage on hi-1 mixes rows from 2 benchmark binaries"):
        coverage(document, rows)
    assert coverage(document, rows, mixing=MixingAllowed(binaries=True)).devices


def test_comparing_runs_of_different_binaries_is_refused_unless_allowed(tmp_path: Path) -> None:
    root = tmp_path / "results"
    known.write_results(root, run_id="run-a")
    newer = {"bench_binary_sha256": known.sha("benchmark_model 2.20")}
    known.write_results(root, run_id="run-b", overrides={serial: newer for serial in known.DEVICES})
    stats = ranking.stats_of(ResultsStore(root).read(), by_run=True)
    with pytest.raises(UsageError, match="comparing runs run-a and run-b mixes rows from 2 benchmark binaries"):
        compare_runs(stats, "run-a", "run-b")
    changes = compare_runs(stats, "run-a", "run-b", mixing=MixingAllowed(binaries=True))
    assert set(changes["verdict"]) >= {"unchanged"}


# --- energy ------------------------------------------------------------------------------


def test_modelled_energy_never_ranks_breaks_ties_or_meets_a_limit(tmp_path: Path) -> None:
    modelled = {serial: {"power_method": "model"} for serial in known.DEVICES}
    root = results(tmp_path, **modelled)
    with pytest.raises(UsageError, match="no measured energy for model 'net': modelled energy"):
        derive(DeriveRequest(results_root=root, metric="energy_mj_per_inference"))
    # A limit on energy cannot be checked against a model: it is not applied, and the evidence says so.
    document = derive(DeriveRequest(results_root=root, constraints=Constraints(max_energy_mj=0.0001))).document
    for tier in ("high", "mid", "low"):
        notes = evidence_of(document, tier)["notes"]
        assert any(note.startswith("max_energy_mj not applied") and "model" in note for note in notes), notes
        assert "energy_mj_per_inference" not in evidence_of(document, tier)
    stats = ranking.stats_of(load_rows(root))
    assert stats["energy_mj_per_inference"].isna().all() and stats["modelled_energy_mj_per_inference"].notna().any()


@pytest.mark.parametrize(
    ("power_method", "winner", "decided_by"),
    [
        ("fuel_gauge", "fp32/xnnpack/x1", "measured energy"),  # measured: the lower energy settles the tie
        ("model", "fp32/cpu/x1", "name"),  # modelled: energy is not looked at; with equal medians the name decides
    ],
)
def test_only_measured_energy_settles_a_tie(tmp_path: Path, power_method: str, winner: str, decided_by: str) -> None:
    import datetime as dt

    from harness.records import CaseStatus, Delegate, DeviceKind, PowerMethod, ResultRow, case_id_for

    store = ResultsStore(tmp_path / "results")
    started = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    rows: list[ResultRow] = []
    # Same file, same threads, the same latency: a tie on p50; plain CPU draws more power than XNNPACK.
    for delegate, energy in (("cpu", 2.0), ("xnnpack", 1.0)):
        for repetition, p50 in enumerate((1000.0, 1001.0, 999.0)):
            rows.append(
                ResultRow(
                    run_id="energy",
                    case_id=case_id_for("phone", "e" * 64, delegate, 1, ()),
                    repetition=repetition,
                    started_at=started + dt.timedelta(seconds=len(rows)),
                    duration_s=1.0,
                    harness_version="test",
                    adb_server="127.0.0.1:5037",
                    serial="phone",
                    device_kind=DeviceKind.PHYSICAL,
                    device_model="Phone",
                    soc="SM8650",
                    soc_identities=("SM8650",),
                    abi="arm64-v8a",
                    android_sdk=34,
                    ram_bytes=11_000_000_000,
                    tier="high",
                    model_name="net",
                    variant="fp32",
                    model_sha256="e" * 64,
                    model_size_bytes=1000,
                    delegate=Delegate(delegate),
                    num_threads=1,
                    num_runs=50,
                    warmup_runs=1,
                    bench_binary_name="bm",
                    bench_binary_sha256="b" * 64,
                    inference_avg_us=p50,
                    inference_p50_us=p50,
                    energy_mj_per_inference=energy,
                    avg_power_mw=energy * 1000,
                    power_method=PowerMethod(power_method),
                    status=CaseStatus.OK,
                )
            )
    store.append(rows)
    models = [
        {
            "name": "net",
            "variant": "fp32",
            "quantization": None,
            "path": "/m/net_fp32.tflite",
            "sha256": "e" * 64,
            "size_bytes": 1000,
        }
    ]
    store.write_run_manifest("energy", {"plan": {"models": models}})
    high = derive(DeriveRequest(results_root=store.root)).document["tiers"][0]
    assert high["evidence"]["tie"]["tied_with_best"] != []
    assert chain_of({"tiers": [high]}, "high")[0] == winner and high["evidence"]["tie"]["decided_by"] == decided_by


def test_measured_energy_ranks_and_meets_limits(tmp_path: Path) -> None:
    root = results(tmp_path)
    document = derive(DeriveRequest(results_root=root, metric="energy_mj_per_inference")).document
    assert validate(document) == ()
    assert evidence_of(document, "high")["energy_mj_per_inference"] == pytest.approx(1.0)
    # 1.5 mJ excludes everything of the low tier (>= 3 mJ): the limit is applied, not skipped.
    with pytest.raises(UsageError, match="max_energy_mj excluded"):
        derive(DeriveRequest(results_root=root, constraints=Constraints(max_energy_mj=1.5)))


# --- what a policy records, and what validate says about it ---------------------------------


def test_policy_records_how_it_was_measured_and_validate_warns_about_virtual_numbers(tmp_path: Path) -> None:
    physical = derive(DeriveRequest(results_root=results(tmp_path / "p"))).document
    assert physical["source"]["device_kinds"] == ["physical"]
    assert physical["source"]["bench_binaries"] == [f"{known.BINARY[0]}@{known.BINARY[1]}"]
    assert physical["source"]["power_methods"] == ["fuel_gauge"]
    assert physical["source"]["temperature_methods"] == ["sensor"]
    assert provenance_warnings(physical) == () and physical_only(physical)

    virtual_kind = {
        serial: {"device_kind": "virtual", "power_method": "model", "temperature_method": "model"}
        for serial in known.DEVICES
    }
    derived = derive(DeriveRequest(results_root=results(tmp_path / "v", **virtual_kind)))
    virtual = derived.document
    assert virtual["source"]["device_kinds"] == ["virtual"] and validate(virtual) == ()
    assert "VIRTUAL devices only" in "\n".join(derived.lines())
    assert evidence_of(virtual, "mid")["measured_on"]["power_methods"] == ["model"]
    [warning] = provenance_warnings(virtual)
    assert "every number in this policy were measured on virtual devices" in warning

    path = tmp_path / "virtual.json"
    path.write_text(json.dumps(virtual))
    runner = CliRunner()
    warned = runner.invoke(main, ["policy", "validate", str(path)])
    assert warned.exit_code == 0 and "warning: every number" in warned.stderr
    strict = runner.invoke(main, ["policy", "validate", str(path), "--require-physical"])
    assert strict.exit_code == 2 and "--require-physical refuses" in strict.stderr
    (tmp_path / "physical.json").write_text(json.dumps(physical))
    fine = runner.invoke(main, ["policy", "validate", str(tmp_path / "physical.json"), "--require-physical", "--json"])
    assert fine.exit_code == 0 and json.loads(fine.stdout) == {
        "valid": True,
        "schema_version": 2,
        "problems": [],
        "warnings": [],
    }
    # A policy of an older harness says nothing about its devices: --require-physical cannot vouch for it.
    del physical["source"]["device_kinds"]
    (tmp_path / "old.json").write_text(json.dumps(physical))
    assert runner.invoke(main, ["policy", "validate", str(tmp_path / "old.json"), "--require-physical"]).exit_code == 2
