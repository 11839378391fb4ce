"""Sweeps in both benchmark dialects on the virtual farm: the LiteRT 2.x tool for real, NPUs honestly."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

import pandas as pd
from tiers import slow_fixture

from harness import sweep
from harness.benchtool import RUNNER_NAMES, BenchmarkBinaries
from harness.config import packaged_defaults
from harness.locations import user_cache_dir
from harness.phone.discovery import discover, select
from harness.phone.profiles import AdbServer, load_tiers
from harness.policy import DeriveRequest, derive
from harness.ranking import ExclusionKind, rank_tiers, stats_of
from harness.records import BenchmarkDialect
from harness.runner_zipapp import build_runner
from harness.store import ResultsStore
from harness.sweep import LITERT_NOT_CHECKED
from harness.virtual_farm import farm as farm_lib
from harness.virtual_farm.server import Fault

SHIPPED = packaged_defaults() / "virtual"
QUICK: dict[str, Any] = dict(num_runs=3, warmup_runs=1, min_secs=0.05, thermal_threshold_c=90.0, thermal_max_wait_s=2.0)
LOW = (SHIPPED / "low_galaxy_a03.toml").read_text()
TWIN_MODEL = "Virtual Galaxy A03 LiteRT"


@slow_fixture(scope="module")
def farm(tmp_path_factory):
    """The low phone, its twin under another product model, and the Pixel, on a private adb server."""
    base = tmp_path_factory.mktemp("dialects")
    folder = base / "profiles"
    folder.mkdir()
    twin = LOW.replace('name = "galaxy-a03"', 'name = "galaxy-a03-twin"').replace(
        '"Virtual Galaxy A03"', f'"{TWIN_MODEL}"'
    )
    assert TWIN_MODEL in twin
    (folder / "low.toml").write_text(LOW)
    (folder / "twin.toml").write_text(twin)
    (folder / "high.toml").write_text((SHIPPED / "high_pixel_8_pro.toml").read_text())
    state = farm_lib.start_private(base / "state", folder)
    try:
        yield base / "state", state.adb_server_port
    finally:
        farm_lib.stop_private(base / "state")


def _devices(farm, *names: str):
    state_dir, port = farm
    found = discover([AdbServer("127.0.0.1", port)], load_tiers())
    farm_state = farm_lib.load_state(state_dir)
    assert farm_state is not None
    serials = [farm_lib.find_device(farm_state, name).serial for name in names]
    return select(found.entries, ",".join(serials)), serials


def _farm_file(folder: Path, text: str) -> Path:
    path = folder / "farm.toml"
    path.write_text("schema_version = 1\n" + text)
    return path


def _sweep(devices, models, params, binaries: BenchmarkBinaries, tmp_path: Path):
    store = ResultsStore(tmp_path / "results")
    summary = sweep.run_sweep(devices, models, params, binaries, store, show_progress=False)
    return store, store.read([summary.run_id])


def test_one_model_on_a_classic_and_a_litert_phone_measures_alike(farm, tmp_path: Path, tiny_models) -> None:
    devices, (low, twin) = _devices(farm, "galaxy-a03", "galaxy-a03-twin")
    rule = _farm_file(tmp_path, f'[[dialects]]\ndialect = "litert"\nmodels = ["{TWIN_MODEL}"]\n')
    binaries = sweep.build_binaries({}, tmp_path / "bin", rule)
    params = sweep.SweepParams(
        delegates=("xnnpack",), threads=(1,), repetitions=5, **{**QUICK, "num_runs": 20, "min_secs": 0.2}
    )
    store, rows = _sweep(devices, sweep.collect_models([tiny_models["conv_ms"]]), params, binaries, tmp_path)

    assert set(rows["status"]) == {"ok"}, rows["error_message"].tolist()
    by_serial = {serial: group for serial, group in rows.groupby("serial")}
    assert set(by_serial[low]["bench_dialect"]) == {"classic"} and set(by_serial[twin]["bench_dialect"]) == {"litert"}
    assert set(by_serial[twin]["bench_binary_name"]) == {RUNNER_NAMES[BenchmarkDialect.LITERT]}
    # The LiteRT rows' median and p95 come from the tool's BenchmarkResult file (its printed block has neither).
    assert by_serial[twin]["inference_p50_us"].notna().all() and by_serial[twin]["inference_p95_us"].notna().all()
    for path in by_serial[twin]["raw_log_path"]:
        assert "--result_file_path=" in (store.root / path).read_text()
    # Same phone, same model, same XNNPACK kernels through two APIs, interleaved on one host: one instrument
    # reading in us and the other in ms would be 1000x apart; noise and API overhead stay well inside 2x.
    classic = statistics.median(by_serial[low]["inference_p50_us"])
    litert = statistics.median(by_serial[twin]["inference_p50_us"])
    assert 0.5 < litert / classic < 2.0, (classic, litert)


def test_npu_and_delegates_a_program_cannot_ask_for_are_stored_honestly(farm, tmp_path: Path, tiny_models) -> None:
    devices, (pixel, low) = _devices(farm, "pixel-8-pro", "galaxy-a03")
    libraries = tmp_path / "npu"
    libraries.mkdir()
    for name in ("libLiteRtDispatch_GoogleTensor.so", "libLiteRtCompilerPlugin_GoogleTensor.so"):
        (libraries / name).write_bytes(name.encode() * 100)
    farm_file = _farm_file(
        tmp_path,
        '[[dialects]]\ndialect = "litert"\nmodels = ["Virtual Pixel 8 Pro"]\n\n'
        '[npu.google_tensor]\nsocs = ["Tensor G*"]\n'
        'libraries = ["npu/libLiteRtDispatch_GoogleTensor.so", '
        '"npu/libLiteRtCompilerPlugin_GoogleTensor.so"]\n',
    )
    binaries = sweep.build_binaries({}, tmp_path / "bin", farm_file)
    params = sweep.SweepParams(delegates=("cpu", "xnnpack", "nnapi", "npu"), threads=(1,), repetitions=1, **QUICK)
    store, rows = _sweep(devices, sweep.collect_models([tiny_models["dense"]]), params, binaries, tmp_path)

    def row(serial: str, delegate: str):
        (found,) = rows[(rows["serial"] == serial) & (rows["delegate"] == delegate)].itertuples()
        return found

    npu = row(pixel, "npu")
    assert (npu.status, npu.error_type) == ("delegate_failed", "delegate_failed")
    assert pd.isna(npu.inference_avg_us) and pd.isna(npu.inference_p50_us)
    assert (npu.bench_dialect, npu.performance_mode) == ("litert", "burst")
    log = (store.root / npu.raw_log_path).read_text()
    assert "--use_npu=true" in log and "--use_cpu=false" in log and "--require_full_delegation=true" in log
    folder = log.split("--dispatch_library_path=")[1].split()[0]
    assert folder.startswith("/data/local/tmp/harness/npu-") and f"LD_LIBRARY_PATH={folder}" in log
    # The libraries went to that one folder on the phone, under their own names.
    from harness.phone.device import Phone

    phone = Phone(devices[0].server, pixel)
    assert sorted(phone.check_output(f"ls {folder}").split()) == [
        "libLiteRtCompilerPlugin_GoogleTensor.so",
        "libLiteRtDispatch_GoogleTensor.so",
    ]

    for serial, delegate, words in (
        (pixel, "cpu", "XNNPACK only"),
        (pixel, "nnapi", "no NNAPI path"),
        (low, "npu", "--dialect litert"),
    ):
        skipped = row(serial, delegate)
        assert (skipped.status, skipped.error_type) == ("skipped", "unsupported_by_binary")
        assert words in skipped.error_message
    xnnpack = row(pixel, "xnnpack")
    assert xnnpack.status == "ok" and pd.isna(xnnpack.performance_mode)
    assert (xnnpack.numerics_status, xnnpack.numerics_reason) == ("not_checked", LITERT_NOT_CHECKED)
    assert row(low, "xnnpack").numerics_status != "not_checked"  # the classic tool's outputs are checked

    # The policy: the Pixel's tier could not measure plain CPU, so its chain ends on the default's CPU entry
    # (measured on the classic phone) and says so; the default is not blocked by the Pixel's skipped CPU rows.
    document = derive(DeriveRequest(results_root=store.root)).document
    high = next(t for t in document["tiers"] if t["name"] == "high")
    chain = [high["choice"], *high["fallbacks"]]
    assert high["choice"]["delegate"] == "xnnpack" and chain[-1] == {**document["default"]}
    assert any("plain CPU was not measured on this tier" in note for note in high["evidence"]["notes"])
    assert document["default"]["delegate"] == "cpu"
    assert set(document["source"]["bench_binaries"]) == {
        f"{name}@{sha}"
        for name, sha in zip(rows["bench_binary_name"], rows["bench_binary_sha256"], strict=False)
        if isinstance(sha, str)
    }


def test_a_binary_is_asked_once_what_it_is_and_the_answer_is_kept(farm, tmp_path: Path, tiny_models) -> None:
    devices, _ = _devices(farm, "galaxy-a03")
    configured = build_runner(tmp_path / "my_benchmark_model", "classic")  # not one the harness built: ask it
    mystery = tmp_path / "mystery"
    mystery.write_text("#!/system/bin/sh\necho hello\n")
    params = sweep.SweepParams(delegates=("xnnpack",), threads=(1,), repetitions=1, **QUICK)
    models = sweep.collect_models([tiny_models["dense"]])
    no_rules = _farm_file(tmp_path, "")

    _, rows = _sweep(
        devices, models, params, sweep.build_binaries({"x86_64": (configured,)}, tmp_path, no_rules), tmp_path / "a"
    )
    assert set(rows["status"]) == {"ok"} and set(rows["bench_dialect"]) == {"classic"}
    known = json.loads((user_cache_dir() / "dialects.json").read_text())["binaries"]
    assert known[rows["bench_binary_sha256"].iloc[0]] == "classic"

    _, rows = _sweep(
        devices, models, params, sweep.build_binaries({"x86_64": (mystery,)}, tmp_path, no_rules), tmp_path / "b"
    )
    assert (rows["status"].iloc[0], rows["error_type"].iloc[0]) == ("failed", "unknown_binary")
    assert "mystery" in rows["error_message"].iloc[0] and rows["bench_binary_sha256"].isna().all()

    wants_litert = _farm_file(tmp_path, '[[dialects]]\ndialect = "litert"\nsocs = ["T606"]\n')
    _, rows = _sweep(
        devices, models, params, sweep.build_binaries({"x86_64": (configured,)}, tmp_path, wants_litert), tmp_path / "c"
    )
    assert (rows["status"].iloc[0], rows["error_type"].iloc[0]) == ("skipped", "no_binary")
    assert "harness binaries fetch --abi x86_64 --dialect litert" in rows["error_message"].iloc[0]


def test_outputs_wrong_on_a_classic_phone_keep_the_same_file_from_winning_unchecked(
    farm, tmp_path: Path, digits_converted
) -> None:
    """Fast but wrong never wins, even where the outputs cannot be checked: the LiteRT tool saves none, so
    the same model file on the same delegate computing wrong outputs on another phone rules it out there."""
    devices, (pixel, low) = _devices(farm, "pixel-8-pro", "galaxy-a03")
    state_dir, _ = farm
    fp32 = next(
        digits_converted.manifest_path.parent / v.file for v in digits_converted.variants if v.variant.value == "fp32"
    )
    farm_lib.fault(low, Fault.CORRUPT_OUTPUTS, None, state_dir, command="xnnpack")
    try:
        params = sweep.SweepParams(delegates=("cpu", "xnnpack"), threads=(1,), repetitions=1, **QUICK)
        _, rows = _sweep(
            devices, sweep.collect_models([fp32]), params, sweep.build_binaries({}, tmp_path / "bin"), tmp_path
        )
    finally:
        farm_lib.fault(low, Fault.THAW, None, state_dir)
    checked = rows.set_index(["serial", "delegate"])["numerics_status"]
    assert checked[(low, "xnnpack")] == "mismatch" and checked[(pixel, "xnnpack")] == "not_checked"

    (high,) = rank_tiers(stats_of(rows), "digits_cnn", tier_order=("high",))[:1]
    assert high.tier == "high" and not high.candidates
    (excluded,) = [e for e in high.excluded if e.config.delegate == "xnnpack"]
    assert excluded.constraint is ExclusionKind.NUMERICS
    assert (
        "not checked on Virtual Pixel 8 Pro" in excluded.reason
        and "wrong outputs on Virtual Galaxy A03" in excluded.reason
    )
