"""Fallback chains are correct by construction: a choice on every delegate, CPU included, only
CPU measured, CPU slowest; and derive on rows shaped like published numbers of real phones."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import published_phones as published
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.coverage import coverage
from harness.deprecations import NNAPI_DEPRECATION
from harness.errors import InputFileError, UsageError
from harness.policy import DeriveRequest, derive, load_rows
from harness.policy_file import validate
from harness.records import CaseStatus, ErrorType, ResultRow, case_id_for
from harness.stats import TieTest
from harness.store import ResultsStore

EXPECTED_CHAINS = {
    "mobilenet_v1": ["fp32/cpu/x4"],
    "mobilenet_v2": ["fp32/gpu/x4", "fp32/nnapi/x4", "fp32/cpu/x4"],
    "inception_v3": ["fp32/nnapi/x4", "fp32/cpu/x4"],
    "resnet50": ["fp32/cpu/x4"],
    "efficientnet_lite0": ["fp32/nnapi/x4", "fp32/cpu/x4"],
    "deeplab_v3": ["fp32/gpu/x4", "fp32/nnapi/x4", "fp32/cpu/x4"],
}


def chain_of(document: dict, tier: str) -> list[str]:
    entry = next(t for t in document["tiers"] if t["name"] == tier)
    return [f"{e['variant']}/{e['delegate']}/x{e['num_threads']}" for e in [entry["choice"], *entry["fallbacks"]]]


@pytest.fixture(scope="module")
def published_results(tmp_path_factory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("published")
    published.write(base / "results")
    return base / "results", published.write_manifest(base / "models")


@pytest.mark.parametrize("model", sorted(published.LATENCIES_MS))
def test_derive_on_published_phones_picks_each_phones_fastest(published_results, model: str) -> None:
    results, manifest = published_results
    derived = derive(DeriveRequest(results_root=results, model_name=model, manifest_path=manifest))
    document = derived.document
    assert validate(document) == ()
    # Both 2018/2019 flagships are classified at derive time (no tier was stored) as mid.
    assert chain_of(document, "mid") == EXPECTED_CHAINS[model]
    evidence = next(t for t in document["tiers"] if t["name"] == "mid")["evidence"]
    assert evidence["devices"] == 2
    assert evidence["tier_assigned_at_derive"] == ["GM1901", "Pixel 3"]
    assert any("assigned one at derive time" in warning for warning in derived.warnings)
    report = coverage(document, load_rows(results), derived.accuracy)
    for device in report.devices:
        index = list(published.PHONES).index(device.serial)
        assert device.policy_tier == "mid" and device.failed_before == ()
        assert device.runs_config == device.best_config == published.fastest(model, index)


# --- every shape of candidates gives a valid chain -----------------------------------

DELEGATES = ("cpu", "xnnpack", "gpu", "nnapi", "npu")
# per delegate: None = not measured, "fail" = delegate_failed, else a p50 in us
Outcome = int | str | None
_outcome = st.one_of(st.none(), st.just("fail"), st.integers(min_value=100, max_value=100_000))


def _rows(outcomes: Mapping[str, Outcome], serials: tuple[str, ...], sdk: int = 34) -> list[ResultRow]:
    import datetime as dt

    started = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    rows: list[ResultRow] = []
    for serial, (delegate, outcome), repetition in itertools.product(serials, outcomes.items(), range(3)):
        if outcome is None:
            continue
        common: dict[str, Any] = dict(
            run_id="shapes",
            repetition=repetition,
            case_id=case_id_for(serial, "f" * 64, delegate, 1, ()),
            started_at=started + dt.timedelta(seconds=len(rows)),
            duration_s=1.0,
            harness_version="test",
            adb_server="127.0.0.1:5037",
            serial=serial,
            device_model=serial,
            manufacturer="test",
            soc="SM8650",
            abi="arm64-v8a",
            android_sdk=sdk,
            ram_bytes=11_000_000_000,
            tier="high",
            model_name="net",
            variant="fp32",
            model_sha256="f" * 64,
            model_size_bytes=1000,
            delegate=delegate,
            num_threads=1,
            num_runs=50,
            warmup_runs=1,
            bench_binary_sha256="b" * 64,
        )
        if outcome == "fail":
            rows.append(
                ResultRow(
                    **common,
                    status=CaseStatus.DELEGATE_FAILED,
                    error_type=ErrorType.DELEGATE_FAILED,
                    error_message="Failed to apply delegate.",
                )
            )
        else:
            value = float(outcome) * (1.0 + 0.01 * repetition)
            rows.append(
                ResultRow(
                    **common,
                    status=CaseStatus.OK,
                    inference_avg_us=value,
                    inference_p50_us=value,
                    inference_std_us=value * 0.02,
                )
            )
    return rows


def _store(tmp_path_factory, rows: list[ResultRow]) -> ResultsStore:
    store = ResultsStore(tmp_path_factory.mktemp("shapes"))
    for serial in ("a", "b"):
        store.append([row for row in rows if row.serial == serial])
    models = [
        {
            "name": "net",
            "variant": "fp32",
            "quantization": None,
            "path": "/models/net_fp32.tflite",
            "sha256": "f" * 64,
            "size_bytes": 1000,
        }
    ]
    store.write_run_manifest("shapes", {"plan": {"models": models}})  # names the swept file, as a sweep does
    return store


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(outcomes=st.fixed_dictionaries({delegate: _outcome for delegate in DELEGATES}), sdk=st.sampled_from([34, 35]))
def test_every_derived_chain_is_valid_and_ends_on_cpu(tmp_path_factory, outcomes: dict[str, Outcome], sdk: int) -> None:
    rows = _rows(outcomes, ("a", "b"), sdk)
    cpu_works = isinstance(outcomes["cpu"], int)
    if not rows:
        return
    store = _store(tmp_path_factory, rows)
    request = DeriveRequest(results_root=store.root)
    if not cpu_works:
        # No plain-CPU configuration ran: no chain can end safely, and derive says why (never an assertion).
        with pytest.raises(UsageError):
            derive(request)
        return
    document = derive(request).document
    assert validate(document) == ()
    chain = chain_of(document, "high")
    assert chain[-1] == "fp32/cpu/x1"
    working = {d: o for d, o in outcomes.items() if isinstance(o, int)}
    assert working[chain[0].split("/")[1]] == min(working.values())
    # Nothing slower than plain CPU comes before it, and nothing failed is in it.
    assert all(working[label.split("/")[1]] <= working["cpu"] for label in chain)
    # NNAPI in the chain always carries the deprecation note (no tier match caps the SDK); it names the
    # measured devices when they are on SDK 35 or later.
    notes = next(t for t in document["tiers"] if t["name"] == "high")["evidence"].get("notes", [])
    nnapi_notes = [note for note in notes if note.startswith(NNAPI_DEPRECATION)]
    if "fp32/nnapi/x1" not in chain:
        assert nnapi_notes == []
    elif sdk >= 35:
        assert nnapi_notes == [
            f"{NNAPI_DEPRECATION} (the chain tries fp32/nnapi/x1; measured on a (SDK 35), b (SDK 35))"
        ]
    else:
        assert len(nnapi_notes) == 1 and "no measured device is on SDK 35 or later" in nnapi_notes[0]


def test_npu_gpu_xnnpack_cpu_is_a_chain(tmp_path_factory) -> None:
    outcomes: dict[str, Outcome] = {"npu": 200, "gpu": 400, "xnnpack": 800, "cpu": 1600, "nnapi": "fail"}
    document = derive(DeriveRequest(results_root=_store(tmp_path_factory, _rows(outcomes, ("a", "b"))).root)).document
    assert validate(document) == () and document["schema_version"] == 2
    assert chain_of(document, "high") == ["fp32/npu/x1", "fp32/gpu/x1", "fp32/xnnpack/x1", "fp32/cpu/x1"]


def test_the_nnapi_note_names_sdk_35_devices_and_rankings_flag_only_them(tmp_path_factory) -> None:
    from harness import ranking

    outcomes = {"nnapi": 300, "cpu": 1600}
    rows = [*_rows(outcomes, ("a",), sdk=35), *_rows(outcomes, ("b",), sdk=34)]
    store = _store(tmp_path_factory, rows)
    document = derive(DeriveRequest(results_root=store.root)).document
    assert chain_of(document, "high") == ["fp32/nnapi/x1", "fp32/cpu/x1"]
    notes = next(t for t in document["tiers"] if t["name"] == "high")["evidence"]["notes"]
    assert f"{NNAPI_DEPRECATION} (the chain tries fp32/nnapi/x1; measured on a (SDK 35))" in notes
    (tier,) = ranking.rank_tiers(ranking.stats_of(store.read()), "net")
    table = tier.table().set_index("config")
    assert table.loc["fp32/nnapi/x1", "deprecation"] == f"{NNAPI_DEPRECATION} (measured on a (SDK 35))"
    cpu_deprecation: Any = table.loc["fp32/cpu/x1", "deprecation"]  # a cell: pandas-stubs cannot say which scalar
    assert pd.isna(cpu_deprecation)
    # The same rows on SDK 34 only: no row is flagged.
    (tier,) = ranking.rank_tiers(ranking.stats_of(_store(tmp_path_factory, _rows(outcomes, ("a", "b"))).read()), "net")
    assert tier.table()["deprecation"].isna().all() and tier.deprecated_on("nnapi") == ()


def test_derive_never_invents_a_file_name(published_results) -> None:
    """Rows from another tool name no file: the policy cannot say what an app should load."""
    results, manifest = published_results
    with pytest.raises(InputFileError, match="no convert manifest and no run's plan names") as error:
        derive(DeriveRequest(results_root=results, model_name="resnet50"))
    assert "--manifest" in str(error.value)
    entry = derive(DeriveRequest(results_root=results, model_name="resnet50", manifest_path=manifest)).document[
        "default"
    ]
    assert entry["model"]["file"] == "resnet50.tflite"


def test_the_dashboard_ranks_untiered_devices_in_the_tier_derive_gives_them(published_results) -> None:
    from dashboard import analysis
    from harness import ranking

    results, _ = published_results
    stats = ranking.stats_of(load_rows(results))
    rankings = analysis.rank(stats, "mobilenet_v2", "inference_p50_us", ranking.Constraints(), {}, TieTest())
    assert [(r.tier, r.devices) for r in rankings] == [("mid", ("oneplus7", "pixel3"))]
