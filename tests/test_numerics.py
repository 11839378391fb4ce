"""Numerics on every cell: fixed inputs per model, the phone's outputs against the host's reference,
the gate every decision applies, and the virtual farm's `corrupt-outputs` fault end to end."""

from __future__ import annotations

import hashlib
import io
import shutil
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest
from tiers import slow_fixture

from dashboard.data import RESULTS_ENV
from harness import sweep
from harness.benchtool import BenchmarkBinaries
from harness.config import packaged_defaults
from harness.convert import ConversionResult, compare, host_outputs
from harness.coverage import coverage
from harness.errors import UsageError
from harness.examples import Examples
from harness.numerics import NumericsGate, judge, prepare, unconsumed_flags
from harness.outputs import output_errors
from harness.phone.discovery import discover
from harness.phone.profiles import AdbServer, load_tiers
from harness.policy import DeriveRequest, derive
from harness.records import BenchmarkDialect, NumericsReference, NumericsStatus
from harness.runner.inputs import split_name_and_value_file
from harness.runner_zipapp import build_runner
from harness.store import ResultsStore
from harness.virtual_farm import farm as farm_lib
from harness.virtual_farm.server import Fault

SHIPPED = packaged_defaults() / "virtual"
EXTRA_SAMPLES = 3  # --numerics-samples: four inputs per configuration
QUICK: dict[str, Any] = dict(
    delegates=("cpu", "xnnpack"),
    threads=(1,),
    repetitions=1,
    num_runs=3,
    warmup_runs=1,
    min_secs=0.05,
    warmup_min_secs=0.0,
    thermal_threshold_c=90.0,
    thermal_max_wait_s=2.0,
)
APP = Path(__file__).resolve().parents[1] / "dashboard" / "app.py"


def _models(digits: ConversionResult) -> dict[str, Path]:
    folder = digits.manifest_path.parent
    models: dict[str, Path] = {}
    for v in digits.variants:
        assert v.file is not None  # every variant of the digits example converts
        models[v.variant.value] = folder / v.file
    return models


# --- inputs, references and the gate on this host -----------------------------------------


def test_inputs_come_from_the_evaluation_data_and_the_reference_is_the_fp32_sibling(
    digits_converted: ConversionResult, digits_example: Examples, tmp_path: Path
) -> None:
    int8 = _models(digits_converted)["int8"]
    checks = prepare(int8, "digits_cnn", int8.parent, samples=2, seed=0, cache_dir=tmp_path)

    assert checks.unavailable is None
    assert checks.reference is NumericsReference.FP32_SIBLING
    assert checks.input_source == "evaluation data digits_eval.npz"
    [spec] = checks.inputs
    assert spec.dtype == "int8"  # a fully int8 model takes int8 inputs: the files hold them in its own dtype
    digits = np.load(digits_example.digits_eval)["x"]
    scale, zero_point = spec.quantization
    quantized = {np.clip(np.round(x / scale) + zero_point, -128, 127).astype(np.int8).tobytes() for x in digits}
    for [path] in checks.sample_files:
        assert path.read_bytes() in quantized  # held-out digits, through the input's own scale and zero point
        assert path.name == f"{hashlib.sha256(path.read_bytes()).hexdigest()}.bin"  # content-addressed
    # The reference is the fp32 model's output for the same digits, a probability vector per sample.
    assert [r[0].shape for r in checks.references] == [(1, 10), (1, 10)]
    assert np.allclose([r[0].sum() for r in checks.references], 1.0, atol=1e-5)


def test_the_flags_escape_colons_the_way_benchmark_model_splits_them(
    digits_converted: ConversionResult, tmp_path: Path
) -> None:
    fp32 = _models(digits_converted)["fp32"]
    checks = prepare(fp32, "digits_cnn", fp32.parent, samples=1, seed=0, cache_dir=tmp_path)
    flags = dict(f[2:].split("=", 1) for f in checks.flags(0, ["/data/local/tmp/in:1.bin"], "/data/out.bin"))

    [spec] = checks.inputs
    assert ":" in spec.name  # "serving_default_digit:0"
    assert flags["input_layer"] == spec.name
    assert flags["input_layer_shape"] == "1,8,8,1"
    assert split_name_and_value_file(flags["input_layer_value_files"]) == (spec.name, "/data/local/tmp/in:1.bin")
    assert flags["output_filepath"] == "/data/out.bin"


def test_without_a_manifest_inputs_are_seeded_random_and_the_file_is_its_own_reference(
    tiny_models: dict[str, Path], digits_converted: ConversionResult, tmp_path: Path
) -> None:
    dense = prepare(tiny_models["dense"], "dense", None, samples=2, seed=7, cache_dir=tmp_path / "a")
    again = prepare(tiny_models["dense"], "dense", None, samples=2, seed=7, cache_dir=tmp_path / "b")
    other = prepare(tiny_models["dense"], "dense", None, samples=2, seed=8, cache_dir=tmp_path / "c")

    assert dense.reference is NumericsReference.SELF
    assert dense.input_source == "random values, seed 7"
    assert [p.name for s in dense.sample_files for p in s] == [p.name for s in again.sample_files for p in s]
    assert [p.name for s in dense.sample_files for p in s] != [p.name for s in other.sample_files for p in s]
    values = np.frombuffer(dense.sample_files[0][0].read_bytes(), np.float32)
    assert values.shape == (8,) and (values >= -1).all() and (values <= 1).all() and values.std() > 0.1

    # A quantized input without evaluation data: random integers over its whole quantized range.
    lone = tmp_path / "lone_int8.tflite"
    shutil.copy(_models(digits_converted)["int8"], lone)
    int8 = prepare(lone, "lone_int8", None, samples=1, seed=0, cache_dir=tmp_path / "d")
    assert int8.reference is NumericsReference.SELF
    raw = np.frombuffer(int8.sample_files[0][0].read_bytes(), np.int8)
    assert raw.size == 64 and raw.min() < -100 and raw.max() > 100


def test_judge_takes_dequantized_outputs_and_refuses_a_file_of_the_wrong_size(
    digits_converted: ConversionResult, tmp_path: Path
) -> None:
    int8 = _models(digits_converted)["int8"]
    checks = prepare(int8, "digits_cnn", int8.parent, samples=1, seed=0, cache_dir=tmp_path)
    [spec] = checks.outputs
    scale, zero_point = spec.quantization
    reference = checks.references[0][0]
    faithful = np.clip(np.round(reference / scale) + zero_point, -128, 127).astype(np.int8).tobytes()

    errors, status, reason = judge(checks, [faithful], NumericsGate())
    assert status is NumericsStatus.OK and reason is None
    assert errors is not None
    assert errors.max_abs_error <= scale + 1e-7  # only the output's own rounding (and clipping at 1.0)
    assert errors.top1_agreement == 1.0

    errors, status, reason = judge(checks, [faithful[::-1]], NumericsGate())
    assert status is NumericsStatus.MISMATCH and reason is not None and "cosine" in reason

    errors, status, reason = judge(checks, [faithful + b"\0"], NumericsGate())
    assert (errors, status) == (None, NumericsStatus.MISMATCH)
    assert reason == "the output file holds 11 bytes; the model's outputs are 10"


@pytest.mark.parametrize(
    ("figures", "broken"),
    [
        ((0.1, 0.99, None, None), None),
        ((0.3, 0.99, None, None), "output error 0.3 of the reference's range > 0.25"),
        ((0.1, 0.9, None, None), "cosine 0.900 < 0.95"),
        ((0.1, 0.99, 6.0, 0.001), "symmetric KL 6 >= 5.5"),
        ((0.1, 0.99, 1.0, 0.004), "MSE 0.004 >= 0.003 (probabilities)"),
        ((0.1, 0.99, None, 0.5), None),  # MSE limits probabilities only (the DPB pair), not logits
        (
            (float("nan"), float("nan"), None, None),
            "output error nan of the reference's range > 0.25; cosine nan < 0.95",
        ),
    ],
)
def test_the_gate_names_each_limit_it_breaks(figures: tuple, broken: str | None) -> None:
    status, reason = NumericsGate().judge(*figures)
    assert reason == broken
    assert status is (NumericsStatus.OK if broken is None else NumericsStatus.MISMATCH)


def test_output_errors_of_probabilities_include_symmetric_kl() -> None:
    reference = [[np.array([[0.7, 0.2, 0.1]])]]
    errors = output_errors([[np.array([[0.7, 0.2, 0.1]])]], reference)
    assert (errors.max_abs_error, errors.sym_kl, errors.cosine, errors.top1_agreement) == (0.0, 0.0, 1.0, 1.0)
    swapped = output_errors([[np.array([[0.1, 0.2, 0.7]])]], reference)
    assert swapped.sym_kl == pytest.approx(2 * 0.6 * np.log(7), rel=1e-6)
    assert swapped.top1_agreement == 0.0
    logits = output_errors([[np.array([[3.0, -1.0]])]], [[np.array([[2.0, -1.0]])]])
    assert logits.sym_kl is None and logits.relative_error == pytest.approx(1 / 2)


def test_a_binary_that_reports_the_flags_unconsumed_is_recognised() -> None:
    output = "INFO: STARTING!\nWARNING: Unconsumed cmdline flags: --output_filepath=/x --input_layer_value_files=a:b\n"
    assert unconsumed_flags(output) == "--input_layer_value_files, --output_filepath"
    assert unconsumed_flags("WARNING: Unconsumed cmdline flags: --foo=1\n") is None
    assert unconsumed_flags("INFO: STARTING!\n") is None


# --- on the virtual farm ------------------------------------------------------------------


@slow_fixture(scope="module")
def mid_farm(tmp_path_factory):
    """Two mid-tier phones on a farm of their own; `corrupt-outputs xnnpack` on the second."""
    base = tmp_path_factory.mktemp("numerics_farm")
    folder = base / "profiles"
    folder.mkdir()
    mid = (SHIPPED / "mid_nothing_phone_1.toml").read_text()
    twin = mid.replace('name = "nothing-phone-1"', 'name = "nothing-phone-1-b"').replace(
        "Virtual Nothing Phone (1)", "Virtual Nothing Phone (1) B"
    )
    assert twin != mid
    (folder / "mid.toml").write_text(mid)
    (folder / "twin.toml").write_text(twin)
    state = farm_lib.start_private(base / "state", folder)
    try:
        serials = {d.name: d.serial for d in state.devices}
        farm_lib.fault(serials["nothing-phone-1-b"], Fault.CORRUPT_OUTPUTS, None, base / "state", command="xnnpack")
        yield {
            "state": base / "state",
            "port": state.adb_server_port,
            "healthy": serials["nothing-phone-1"],
            "buggy": serials["nothing-phone-1-b"],
            "base": base,
        }
    finally:
        farm_lib.stop_private(base / "state")


def _devices(mid_farm):
    return discover((AdbServer("127.0.0.1", mid_farm["port"]),), load_tiers()).entries


@pytest.fixture(scope="module")
def swept(mid_farm, digits_converted: ConversionResult):
    """The digits variants on both phones, cpu and xnnpack, with three more numerics samples."""
    store = ResultsStore(mid_farm["base"] / "results")
    models = sweep.collect_models([digits_converted.manifest_path.parent])
    params = sweep.SweepParams(**QUICK, numerics_samples=EXTRA_SAMPLES)
    run_id = sweep.new_run_id()
    binaries = sweep.build_binaries({}, store.root / "runs" / run_id)
    summary = sweep.run_sweep(_devices(mid_farm), models, params, binaries, store, run_id=run_id, show_progress=False)
    assert summary.cases_ok == summary.cases_total == 16
    return store, store.read()


def test_the_fault_is_in_the_phones_state_and_needs_a_delegate(mid_farm) -> None:
    reply = farm_lib.fault(mid_farm["buggy"], Fault.CORRUPT_OUTPUTS, None, mid_farm["state"], command="xnnpack")
    assert reply["corrupt_outputs"] == ["xnnpack"]
    with pytest.raises(UsageError, match="'corrupt-outputs' needs a delegate, got 'tpu'"):
        farm_lib.fault(mid_farm["buggy"], Fault.CORRUPT_OUTPUTS, None, mid_farm["state"], command="tpu")


def test_on_device_errors_agree_with_the_convert_time_host_figures_for_the_same_inputs(
    swept, mid_farm, digits_converted: ConversionResult, digits_example: Examples
) -> None:
    store, rows = swept
    models = _models(digits_converted)
    [run_id] = rows["run_id"].unique()
    numerics = store.read_run_manifest(run_id)["numerics"]["models"]["digits_cnn_fp32.tflite"]
    assert len(numerics["sample_files"]) == 1 + EXTRA_SAMPLES
    inputs = np.stack(
        [
            np.frombuffer((store.numerics_dir(run_id) / name).read_bytes(), np.float32).reshape(8, 8, 1)
            for [name] in numerics["sample_files"]
        ]
    )  # the digits every variant ran on
    reference = host_outputs(models["fp32"].read_bytes(), inputs)
    healthy = rows[rows["serial"] == mid_farm["healthy"]]
    for variant in ("fp16", "dynamic", "int8"):
        host = compare(host_outputs(models[variant].read_bytes(), inputs), reference, None)  # as convert does
        for delegate in ("cpu", "xnnpack"):
            [row] = healthy[(healthy["variant"] == variant) & (healthy["delegate"] == delegate)].to_dict("records")
            assert row["numerics_status"] == "ok", row["numerics_reason"]
            assert row["numerics_reference"] == "fp32_sibling"
            # On xnnpack the phone runs the kernels `harness convert` ran on this host: the same figures. LiteRT's
            # plain CPU kernels round int8 a little differently: within a few output steps (1/256 each).
            tolerance = 1e-6 if delegate == "xnnpack" else 3 / 256
            assert row["output_max_abs_error"] == pytest.approx(host.max_abs_error, abs=tolerance)
            assert row["output_cosine"] == pytest.approx(host.cosine, abs=1e-4)
            assert row["output_rmse"] ** 2 == pytest.approx(host.mse, abs=1e-5)
            assert row["output_top1_agreement"] == host.agreement
    [fp32_xnnpack] = healthy[(healthy["variant"] == "fp32") & (healthy["delegate"] == "xnnpack")].to_dict("records")
    assert fp32_xnnpack["numerics_status"] == "ok"
    assert fp32_xnnpack["output_max_abs_error"] < 1e-5 and fp32_xnnpack["output_cosine"] > 0.99999


def test_the_buggy_phones_xnnpack_cells_are_mismatches(swept, mid_farm) -> None:
    _, rows = swept
    buggy = rows[rows["serial"] == mid_farm["buggy"]]
    by_delegate = buggy.groupby("delegate")["numerics_status"].agg(set).to_dict()
    assert by_delegate == {"cpu": {"ok"}, "xnnpack": {"mismatch"}}
    reasons = buggy.loc[buggy["delegate"] == "xnnpack", "numerics_reason"]
    assert reasons.str.contains("cosine").all()
    # Timing is untouched: a wrong delegate is as fast as ever, which is exactly the danger.
    assert (buggy.loc[buggy["delegate"] == "xnnpack", "status"] == "ok").all()


def test_the_mid_tier_chain_holds_no_xnnpack_and_coverage_has_no_failed_choice(swept, mid_farm) -> None:
    store, rows = swept
    derived = derive(DeriveRequest(results_root=store.root, model_name="digits_cnn"), rows)
    measured = [t for t in derived.document["tiers"] if t["evidence"].get("devices")]
    assert {t["name"] for t in measured} == {"mid"}  # one tier, maybe several rules: all share one chain
    mid = measured[0]
    chain = [mid["choice"], *mid["fallbacks"]]
    assert [e["delegate"] for e in chain] == ["cpu"]
    excluded = {e["config"]: e for e in mid["evidence"]["excluded"] if e["kind"] == "numerics"}
    assert set(excluded) == {f"{v}/xnnpack/x1" for v in ("fp32", "fp16", "dynamic", "int8")}
    assert all("on Virtual Nothing Phone (1) B" in e["reason"] for e in excluded.values())
    assert "Virtual Nothing Phone (1) B" in str(excluded["fp32/xnnpack/x1"]["reason"])
    numerics = mid["evidence"]["numerics"]
    assert {v["status"] for v in numerics.values()} == {"ok"}
    assert derived.document["objective"]["numerics_gate"] == NumericsGate().describe()

    report = coverage(derived.document, rows, derived.accuracy)
    assert report.failed_choices == 0
    assert {(d.runs_config or "").split("/")[1] for d in report.devices} == {"cpu"}
    assert all((d.best_config or "").split("/")[1] == "cpu" or d.serial == mid_farm["healthy"] for d in report.devices)

    # The limits of the derive, not those of the sweep, decide: a stricter one rules int8 out everywhere.
    strict = NumericsGate(max_output_error=0.001)
    stricter = derive(DeriveRequest(results_root=store.root, model_name="digits_cnn", numerics_gate=strict), rows)
    mid = next(t for t in stricter.document["tiers"] if t["evidence"].get("devices"))
    reasons = {e["config"]: e["reason"] for e in mid["evidence"]["excluded"] if e["kind"] == "numerics"}
    assert "output error" in reasons["int8/cpu/x1"] and "> 0.001 on Virtual Nothing Phone (1)" in reasons["int8/cpu/x1"]
    assert "fp32/cpu/x1" not in reasons
    assert stricter.document["objective"]["numerics_gate"]["max_output_error"] == 0.001


def test_the_dashboard_names_the_wrong_cell_and_why(swept, mid_farm, monkeypatch: pytest.MonkeyPatch) -> None:
    store, _ = swept
    monkeypatch.setenv(RESULTS_ENV, str(store.root))
    app = AppTest.from_file(APP, default_timeout=60).run()
    app.switch_page("views/rankings.py").run()
    assert not app.exception, [e.message for e in app.exception]
    [error] = [e.value for e in app.error if "Wrong outputs" in e.value]
    assert "4 cell(s)" in error
    [table] = [t.value for t in app.dataframe if "why" in t.value.columns]
    assert set(table["config"]) == {f"{v}/xnnpack/x1" for v in ("fp32", "fp16", "dynamic", "int8")}
    assert set(table["device"]) == {"Virtual Nothing Phone (1) B"}
    assert table["why"].str.contains("cosine").all()
    excluded = [t.value for t in app.dataframe if "reason" in t.value.columns][0]
    assert excluded.loc[excluded["config"] == "int8/xnnpack/x1", "reason"].str.startswith("numerics:").all()

    app.switch_page("views/pareto.py").run()
    app.radio(key="pareto_error").set_value("output_error").run()
    assert not app.exception, [e.message for e in app.exception]
    front = [t.value for t in app.dataframe if "output_error" in t.value.columns][0]
    assert front["output_error"].notna().all()
    assert not front["config"].str.contains("xnnpack").any()


def _patched_runner(path: Path, file: str, old: bytes, new: bytes) -> Path:
    """The runner with one line of one of its modules changed: a stand-in for another benchmark_model build."""
    build_runner(path)
    data = path.read_bytes()
    start = data.index(b"PK\x03\x04")
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data[start:])) as source, zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            text = source.read(info)
            if info.filename.endswith(file):
                assert old in text
                text = text.replace(old, new)
            target.writestr(info, text)
    path.write_bytes(data[:start] + out.getvalue())
    return path


OLDER_BINARIES = {
    # Before July 2022 benchmark_model had no --output_filepath: it warns the flag was unconsumed, saves nothing.
    "unconsumed": (
        ("runner/flags.py", b'    Flag("output_filepath"', b'    Flag("not_yet_output_filepath"'),
        "the benchmark binary does not know --output_filepath",
    ),
    # A build that takes the flag and silently saves nothing.
    "silent": (
        ("runner/benchmark.py", b"    if params.output_filepath:", b"    if False:"),
        "the benchmark binary wrote no --output_filepath file",
    ),
}


@pytest.mark.parametrize("binary", sorted(OLDER_BINARIES))
def test_a_binary_that_saves_no_outputs_gives_not_checked_never_ok(
    binary: str, mid_farm, digits_converted: ConversionResult, tmp_path: Path
) -> None:
    patch, reason = OLDER_BINARIES[binary]
    store = ResultsStore(tmp_path / "results")
    models = [m for m in sweep.collect_models([digits_converted.manifest_path.parent]) if m.variant == "int8"]
    devices = [d for d in _devices(mid_farm) if d.serial == mid_farm["healthy"]]
    params = sweep.SweepParams(**{**QUICK, "delegates": ("cpu",)})
    older = _patched_runner(tmp_path / "benchmark_model", *patch)
    # Known to be classic: the stand-in's cut flag table cannot answer --help.
    binaries = BenchmarkBinaries({"x86_64": (older,)}, known={older: BenchmarkDialect.CLASSIC})
    summary = sweep.run_sweep(devices, models, params, binaries, store, show_progress=False)
    assert summary.cases_ok == 1, store.read()[["error_type", "error_message"]].to_dict("records")
    [row] = store.read().to_dict("records")
    assert row["numerics_status"] == "not_checked"
    assert reason in row["numerics_reason"]
    assert pd.isna(row["output_cosine"])


def test_no_numerics_leaves_every_row_not_checked(mid_farm, digits_converted: ConversionResult, tmp_path: Path) -> None:
    store = ResultsStore(tmp_path / "results")
    models = [m for m in sweep.collect_models([digits_converted.manifest_path.parent]) if m.variant == "fp16"]
    devices = [d for d in _devices(mid_farm) if d.serial == mid_farm["buggy"]]
    params = sweep.SweepParams(**{**QUICK, "delegates": ("xnnpack",)}, check_numerics=False)
    run_id = sweep.new_run_id()
    sweep.run_sweep(
        devices,
        models,
        params,
        sweep.build_binaries({}, store.root / "runs" / run_id),
        store,
        run_id=run_id,
        show_progress=False,
    )
    [row] = store.read().to_dict("records")
    assert row["numerics_status"] == "not_checked"
    assert row["numerics_reason"] == "numerics not asked for (harness run --no-numerics)"
    assert store.read_run_manifest(run_id)["numerics"] is None
