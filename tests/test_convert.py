"""`harness convert`: real Keras models converted by the real TFLiteConverter and run by LiteRT.

The digits example (a CNN trained here on scikit-learn's bundled digits) is
the tiny real model: converting it into all four variants checks files,
sha256, dtypes, int8-ness and real accuracy. Smaller purpose-built models
cover what the digits model cannot: an op without an int8 kernel, a
calibration that crashes the int8 conversion, the tf.saved_model.save trap.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st
from tiers import slow_fixture

from harness.commands.convert import convert_command, examples_command
from harness.convert import (
    RANDOM_CALIBRATION_WARNING,
    UNTRAINED_NOTE,
    WEIGHTLESS_ERROR,
    Accuracy,
    ConvertRequest,
    Thresholds,
    Variant,
    VariantStatus,
    compare,
    convert_model,
    gate,
    parse_variants,
)
from harness.convert_files import read_accuracy, read_manifest
from harness.datasets import InputSpec, Preprocessing, load_data
from harness.errors import InputFileError, ModelError, SchemaError, UsageError
from harness.examples import build_examples
from harness.sweep import collect_models

pytestmark = pytest.mark.filterwarnings(
    # Keras's own training loop trips numpy 2's copy-keyword deprecation; not ours to fix.
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"
)

DIGITS_INPUT = InputSpec(name="digit", shape=(None, 8, 8, 1), dtype="float32")


def _keras():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    return keras


@slow_fixture(scope="module")
def examples(tmp_path_factory: pytest.TempPathFactory):
    return build_examples(tmp_path_factory.mktemp("examples"))


@pytest.fixture(scope="module")
def digits(digits_converted):
    """The digits example converted into all four variants (tests/conftest.py), judged on its held-out digits."""
    return digits_converted


def _by_variant(result):
    return {v.variant: v for v in result.variants}


def test_all_four_variants_are_written_with_their_sha256_dtypes_and_int8ness(digits) -> None:
    out_dir = digits.manifest_path.parent
    variants = _by_variant(digits)
    assert list(variants) == list(Variant)
    for variant, result in variants.items():
        assert result.status is VariantStatus.OK, result.error
        content = (out_dir / result.file).read_bytes()
        assert result.file == f"digits_cnn_{variant.value}.tflite"
        assert result.sha256 == hashlib.sha256(content).hexdigest()
        assert result.size_bytes == len(content)
    for variant in (Variant.FP32, Variant.FP16, Variant.DYNAMIC):
        assert [t.dtype for t in variants[variant].inputs + variants[variant].outputs] == ["float32", "float32"]
        assert variants[variant].fully_int8 is False
    int8 = variants[Variant.INT8]
    assert [t.dtype for t in int8.inputs + int8.outputs] == ["int8", "int8"]
    assert all(t.scale and t.scale > 0 and t.zero_point is not None for t in int8.inputs + int8.outputs)
    assert int8.fully_int8 is True and int8.float_ops == () and int8.warning is None
    assert "CONV_2D" in int8.op_histogram
    # fp16 halves the float32 weights; int8 weights shrink them to about a quarter.
    sizes = {v: r.size_bytes for v, r in variants.items()}
    assert sizes[Variant.FP32] > sizes[Variant.FP16] > sizes[Variant.DYNAMIC]
    assert sizes[Variant.INT8] < sizes[Variant.FP16]
    # The sweep reads the same folder: names, variants and sha256 line up with the manifest.
    swept = {(m.name, m.variant): m.sha256 for m in collect_models([out_dir])}
    assert swept == {("digits_cnn", v.value): r.sha256 for v, r in variants.items()}


def test_the_sweep_trusts_the_manifest_over_file_names(digits, tmp_path: Path) -> None:
    folder = tmp_path / "renamed"
    shutil.copytree(digits.manifest_path.parent, folder)
    (folder / "digits_cnn_fp16.tflite").rename(folder / "half.tflite")
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["models"]["digits_cnn"]["variants"]["fp16"]["file"] = "half.tflite"
    (folder / "manifest.json").write_text(json.dumps(manifest))
    half = next(m for m in collect_models([folder]) if m.path.name == "half.tflite")
    assert (half.name, half.variant, half.quantization) == ("digits_cnn", "fp16", "float16")


def test_digits_example_reaches_its_real_accuracy_in_every_variant(digits) -> None:
    evaluation = digits.entry["evaluation"]
    assert evaluation["samples"] == 360 and evaluation["labels"] is True
    assert evaluation["reference_accuracy"] >= 0.95
    for result in digits.variants:
        figures = result.accuracy
        print(
            f"{result.variant.value}: top-1 {figures.accuracy:.4f} agreement {figures.agreement:.4f} "
            f"mse {figures.mse:.2e} max_abs {figures.max_abs_error:.2e} cosine {figures.cosine:.6f} "
            f"size {result.size_bytes} B"
        )
        assert result.accepted is True, result.reason
        assert figures.accuracy >= 0.95
        assert figures.reference_accuracy - figures.accuracy <= 0.01
        assert figures.agreement >= 0.98 and figures.cosine > 0.999
    fp32 = _by_variant(digits)[Variant.FP32].accuracy
    assert fp32.mse < 1e-10 and fp32.agreement == 1.0  # the fp32 variant is the source model


def test_manifest_and_accuracy_table_record_the_conversion(digits) -> None:
    document = read_manifest(digits.manifest_path.parent)
    assert document["schema_version"] == 1
    entry = document["models"]["digits_cnn"]
    assert entry == json.loads(json.dumps(digits.entry))
    assert entry["converter"]["tensorflow"] and entry["converter"]["litert"]
    assert len(entry["source"]["sha256"]) == 64
    int8 = entry["variants"]["int8"]
    assert int8["quantization"] == "full_int8" and int8["inputs"][0]["dtype"] == "int8"
    assert entry["calibration"]["samples"] == 200 and entry["calibration"]["warning"] is None
    assert (digits.manifest_path.parent / entry["converter_log"]).is_file()

    rows = read_accuracy(digits.accuracy_path.parent.parent)
    assert list(rows["variant"]) == ["fp32", "fp16", "dynamic", "int8"]
    assert set(rows["conversion_id"]) == {digits.conversion_id}
    assert rows["accepted"].all() and (rows["status"] == "ok").all()
    assert list(rows["sha256"]) == [v.sha256 for v in digits.variants]
    assert rows["accuracy"].min() >= 0.95


def test_int8_calibrated_on_data_of_the_wrong_range_is_rejected(examples, tmp_path: Path) -> None:
    with np.load(examples.digits_calibration) as data:
        wrong = data["x"] * 100.0  # pixels in [0, 100] instead of [0, 1]
    np.savez(tmp_path / "wrong_range.npz", x=wrong)
    result = convert_model(
        ConvertRequest(
            model_path=examples.digits_model,
            out_dir=tmp_path / "models",
            variants=(Variant.INT8,),
            calibration=str(tmp_path / "wrong_range.npz"),
            evaluation=str(examples.digits_eval),
            results_root=tmp_path / "results",
        )
    )
    [int8] = result.variants
    assert int8.status is VariantStatus.OK
    assert int8.accepted is False
    assert int8.reason is not None
    assert int8.accuracy is not None
    assert "top-1 accuracy drop" in int8.reason and "output MSE" in int8.reason
    assert int8.accuracy.accuracy is not None and int8.accuracy.accuracy < 0.9
    assert read_accuracy(tmp_path / "results")["accepted"].tolist() == [False]


def test_image_folder_shares_its_preprocessing_between_calibration_and_eval(examples, tmp_path: Path) -> None:
    # The digit PNGs hold round(pixel * 255): mean 0 and std 255 give back the digits model's [0, 1] inputs.
    spec = Preprocessing(mean=(0.0,), std=(255.0,))
    result = convert_model(
        ConvertRequest(
            model_path=examples.digits_model,
            out_dir=tmp_path / "models",
            variants=(Variant.FP32, Variant.INT8),
            calibration=str(examples.digit_images),
            evaluation=str(examples.digit_images),
            preprocessing=spec,
            results_root=tmp_path / "results",
        )
    )
    entry: dict[str, Any] = result.entry  # the manifest entry: a JSON document
    assert entry["preprocessing"]["std"] == [255.0]
    assert entry["evaluation"]["class_names"] == [str(i) for i in range(10)]
    assert entry["calibration"]["samples"] == 120
    for variant in result.variants:
        assert variant.accuracy is not None
        assert variant.accuracy.accuracy is not None
        assert variant.accuracy.accuracy >= 0.9 and variant.accepted, variant.reason


def test_eval_without_labels_is_judged_by_agreement(examples, tmp_path: Path) -> None:
    with np.load(examples.digits_eval) as data:
        np.savez(tmp_path / "unlabeled.npz", x=data["x"])
    result = convert_model(
        ConvertRequest(
            model_path=examples.digits_model,
            out_dir=tmp_path / "models",
            variants=(Variant.DYNAMIC,),
            evaluation=str(tmp_path / "unlabeled.npz"),
            results_root=tmp_path / "results",
        )
    )
    [dynamic] = result.variants
    assert dynamic.accuracy is not None
    assert dynamic.accuracy.accuracy is None and dynamic.accuracy.labelled is False
    assert dynamic.accuracy.accuracy_drop == pytest.approx(1.0 - dynamic.accuracy.agreement)
    assert dynamic.accepted is True
    assert any("no labels" in w for w in result.warnings)


def test_cli_random_calibration_is_loud_and_untrained_weights_report_no_accuracy(examples, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        convert_command,
        [
            str(examples.digits_model),
            "--variants",
            "fp32,int8",
            "--calibration",
            "random",
            "--eval",
            str(examples.digits_eval),
            "--untrained",
            "--out",
            str(tmp_path / "models"),
            "--results",
            str(tmp_path / "results"),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output + result.stderr
    entry = json.loads(result.stdout)
    assert entry["accuracy_note"] == UNTRAINED_NOTE
    assert entry["calibration"]["kind"] == "random"
    assert entry["calibration"]["warning"] == RANDOM_CALIBRATION_WARNING
    assert RANDOM_CALIBRATION_WARNING in entry["warnings"]
    assert f"WARNING: {RANDOM_CALIBRATION_WARNING}" in result.stderr
    assert entry["evaluation"]["reference_accuracy"] is None
    for variant in entry["variants"].values():
        assert variant["status"] == "ok" and variant["accuracy"] is None
        assert variant["accepted"] is None and variant["reason"] == UNTRAINED_NOTE
    assert read_manifest(tmp_path / "models")["models"]["digits_cnn"]["accuracy_note"] == UNTRAINED_NOTE


def test_cli_examples_lists_the_example_files(examples) -> None:
    # The folder was built by the fixture: the command reuses every file and only reports them.
    result = CliRunner().invoke(examples_command, ["--out", str(examples.folder), "--json"])
    assert result.exit_code == 0, result.output + result.stderr
    listed = json.loads(result.stdout)
    assert listed["digits_model"] == str(examples.digits_model)
    assert listed["mobilenet_preprocessing"]["mean"] == [127.5]
    assert all(Path(listed[key]).exists() for key in ("digits_model", "mobilenet_model", "digit_images"))


def _embedding_saved_model(folder: Path) -> Path:
    """Token ids (int32, < 20) -> Embedding -> Dense, exported as a SavedModel."""
    keras = _keras()
    inputs = keras.Input((4,), dtype="int32", name="ids")
    outputs = keras.layers.Dense(2)(keras.layers.Flatten()(keras.layers.Embedding(20, 3)(inputs)))
    keras.Model(inputs, outputs).export(folder, format="tf_saved_model", verbose=False)
    return folder


@pytest.mark.slow  # imports TensorFlow and converts
def test_cli_records_a_variant_that_fails_to_convert_and_writes_the_others(tmp_path: Path) -> None:
    model = _embedding_saved_model(tmp_path / "embedding")
    # Ids beyond the table make the int8 calibration run fail inside the converter; fp32 never runs the model.
    np.savez(tmp_path / "ids.npz", x=np.random.default_rng(0).integers(50, 100, (120, 4)).astype(np.int32))
    out_dir = tmp_path / "models"
    out_dir.mkdir()
    (out_dir / "embedding_int8.tflite").write_bytes(b"left over from an older conversion")
    result = CliRunner().invoke(
        convert_command,
        [
            str(model),
            "--variants",
            "fp32,int8",
            "--calibration",
            str(tmp_path / "ids.npz"),
            "--out",
            str(out_dir),
            "--results",
            str(tmp_path / "results"),
        ],
    )
    assert result.exit_code == 1, result.output + result.stderr
    assert "1 variant(s) failed (int8)" in result.stderr
    entry = read_manifest(out_dir)["models"]["embedding"]
    assert entry["source"]["format"] == "saved_model"
    # fp32 converted and runs, but the same ids break its GATHER: written, and rejected for it.
    fp32 = entry["variants"]["fp32"]
    assert fp32["status"] == "ok" and fp32["accepted"] is False
    assert fp32["reason"].startswith("LiteRT fails on the calibration data: gather index out of bounds")
    failed = entry["variants"]["int8"]
    assert failed["status"] == "failed" and failed["file"] is None
    assert failed["error"].startswith("conversion failed:") and "gather index out of bounds" in failed["error"]
    assert sorted(p.name for p in out_dir.glob("*.tflite")) == ["embedding_fp32.tflite"]
    rows = read_accuracy(tmp_path / "results")
    assert rows.set_index("variant")["status"].to_dict() == {"fp32": "ok", "int8": "failed"}


@pytest.mark.slow  # imports TensorFlow and converts
def test_int8_that_keeps_float_ops_is_not_fully_int8(tmp_path: Path) -> None:
    keras = _keras()
    inputs = keras.Input((8,), name="x")
    outputs = keras.ops.sin(keras.layers.Dense(4)(inputs))  # SIN has no int8 kernel
    keras.Model(inputs, outputs).export(tmp_path / "sine", format="tf_saved_model", verbose=False)
    np.savez(tmp_path / "calibration.npz", x=np.random.default_rng(0).uniform(-1, 1, (100, 8)).astype(np.float32))
    result = convert_model(
        ConvertRequest(
            model_path=tmp_path / "sine",
            out_dir=tmp_path / "models",
            variants=(Variant.INT8,),
            calibration=str(tmp_path / "calibration.npz"),
            results_root=tmp_path / "results",
        )
    )
    [int8] = result.variants
    assert int8.status is VariantStatus.OK
    assert [t.dtype for t in int8.inputs + int8.outputs] == ["int8", "int8"]
    assert int8.fully_int8 is False and int8.float_ops == ("SIN",)
    assert int8.warning is not None
    assert "SIN" in int8.warning and int8.warning in result.warnings


@pytest.mark.slow  # imports TensorFlow and converts
def test_op_the_runtime_lacks_fails_with_the_converters_own_words(tmp_path: Path) -> None:
    keras = _keras()
    inputs = keras.Input((8,), name="x")
    keras.Model(inputs, keras.ops.erf(inputs)).export(tmp_path / "erf", format="tf_saved_model", verbose=False)
    result = convert_model(
        ConvertRequest(
            model_path=tmp_path / "erf",
            out_dir=tmp_path / "models",
            variants=(Variant.FP32, Variant.FP16),
            results_root=tmp_path / "results",
        )
    )
    for variant in result.variants:
        assert variant.status is VariantStatus.FAILED
        assert variant.error is not None
        assert variant.error.startswith("conversion failed: 'tf.Erf' op is neither a custom op nor a flex op")
        assert "TF Select ops: Erf" in variant.error and "func.func" not in variant.error
    assert read_accuracy(tmp_path / "results")["status"].tolist() == ["failed", "failed"]


@pytest.mark.slow  # imports TensorFlow and converts
def test_weightless_saved_model_from_tf_saved_model_save_is_a_failed_variant(tmp_path: Path) -> None:
    import tensorflow as tf

    keras = _keras()
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4), keras.layers.Dense(3)])
    tf.saved_model.save(model, str(tmp_path / "trap"))  # the Keras 3 mistake the issue warns about
    result = convert_model(
        ConvertRequest(
            model_path=tmp_path / "trap",
            out_dir=tmp_path / "models",
            variants=(Variant.FP32,),
            results_root=tmp_path / "results",
        )
    )
    [fp32] = result.variants
    assert fp32.status is VariantStatus.FAILED and fp32.error == WEIGHTLESS_ERROR
    assert not list((tmp_path / "models").glob("*.tflite"))


@pytest.mark.slow  # imports TensorFlow and converts
def test_source_model_that_outputs_nan_on_the_eval_data_is_a_clear_error(tmp_path: Path) -> None:
    keras = _keras()
    inputs = keras.Input((8,), name="x")
    keras.Model(inputs, keras.ops.log(inputs)).export(tmp_path / "log", format="tf_saved_model", verbose=False)
    np.savez(tmp_path / "eval.npz", x=-np.ones((4, 8), np.float32))
    with pytest.raises(ModelError, match="itself outputs NaN"):
        convert_model(
            ConvertRequest(
                model_path=tmp_path / "log",
                out_dir=tmp_path / "models",
                variants=(Variant.FP32,),
                evaluation=str(tmp_path / "eval.npz"),
                results_root=tmp_path / "results",
            )
        )


@pytest.mark.parametrize(
    ("make", "error", "words"),
    [
        (lambda d: d / "missing.keras", InputFileError, "no such model"),
        pytest.param(
            lambda d: _write(d / "notes.keras", b"not a zip"),
            ModelError,
            "not a loadable Keras model",
            marks=pytest.mark.slow,
        ),  # Keras itself reads it: imports TensorFlow
        (lambda d: _write(d / "model.onnx", b"\x08\x01"), ModelError, "not a model"),
        (lambda d: (d / "empty").mkdir() or d / "empty", ModelError, "not a SavedModel"),
    ],
)
def test_bad_model_paths_are_clear_errors(tmp_path: Path, make, error, words) -> None:
    with pytest.raises(error, match=words) as caught:
        convert_model(
            ConvertRequest(
                model_path=make(tmp_path),
                out_dir=tmp_path / "out",
                variants=(Variant.FP32,),
                results_root=tmp_path / "results",
            )
        )
    assert caught.value.fix
    if error is ModelError and "Keras" in words:
        # The one-line message keeps its cause: chained, and the whole traceback in the convert log.
        assert caught.value.__cause__ is not None
        assert "Traceback (most recent call last)" in (tmp_path / "out" / "notes_convert.log").read_text()


def _write(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    return path


def test_calibration_of_the_wrong_shape_fails_before_converting(examples, tmp_path: Path) -> None:
    np.savez(tmp_path / "flat.npz", x=np.zeros((120, 64), np.float32))
    with pytest.raises(InputFileError, match=r"takes \(N, 8, 8, 1\)") as caught:
        convert_model(
            ConvertRequest(
                model_path=examples.digits_model,
                out_dir=tmp_path / "out",
                calibration=str(tmp_path / "flat.npz"),
                results_root=tmp_path / "results",
            )
        )
    assert caught.value.fix is not None
    assert "reshape x" in caught.value.fix
    assert not list((tmp_path / "out").glob("*.tflite"))


def test_int8_without_calibration_data_is_a_usage_error(examples, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="needs calibration data") as caught:
        convert_model(
            ConvertRequest(model_path=examples.digits_model, out_dir=tmp_path, results_root=tmp_path / "results")
        )
    assert caught.value.fix is not None
    assert "--calibration random" in caught.value.fix


@pytest.mark.parametrize(
    ("arrays", "words"),
    [
        ({"x": np.zeros((5, 8, 8, 1), np.uint8)}, "is floating point"),
        ({"x": np.zeros((5, 8, 8), np.float32)}, r"has shape \(5, 8, 8\)"),
        ({"x": np.full((5, 8, 8, 1), np.nan, np.float32)}, "NaN"),
        ({"images": np.zeros((5, 8, 8, 1), np.float32)}, "has no array 'x'"),
        ({"x": np.zeros((5, 8, 8, 1), np.float32), "y": np.zeros(4, np.int64)}, "one class id per sample"),
        ({"x": np.zeros((5, 8, 8, 1), np.float32), "y": np.zeros(5, np.float32)}, "not integer class ids"),
    ],
)
def test_npz_data_that_does_not_fit_the_model_is_refused(tmp_path: Path, arrays, words) -> None:
    np.savez(tmp_path / "data.npz", **arrays)
    with pytest.raises(InputFileError, match=words):
        load_data(str(tmp_path / "data.npz"), DIGITS_INPUT, None, purpose="--calibration")


def test_image_folder_data_needs_preprocessing_and_readable_images(tmp_path: Path) -> None:
    from PIL import Image

    folder = tmp_path / "images"
    folder.mkdir()
    Image.fromarray(np.full((4, 6, 3), 200, np.uint8)).save(folder / "a.png")
    spec = InputSpec(name="image", shape=(None, 2, 3, 3), dtype="float32")
    with pytest.raises(UsageError, match="--mean and --std"):
        load_data(str(folder), spec, None, purpose="--eval")
    data = load_data(str(folder), spec, Preprocessing(mean=(100.0, 0.0, 200.0), std=(50.0,)), purpose="--eval")
    assert data.y is None and data.x.shape == (1, 2, 3, 3)  # loose images: unlabeled, resized
    assert data.x[0, 0, 0].tolist() == [2.0, 4.0, 0.0]
    (folder / "b.png").write_bytes(b"not a png")
    with pytest.raises(InputFileError, match="cannot read image"):
        load_data(str(folder), spec, Preprocessing(mean=(0.0,), std=(1.0,)), purpose="--eval")


def test_newer_manifest_is_refused(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text(json.dumps({"schema_version": 2, "models": {}}))
    with pytest.raises(SchemaError, match="manifest v2"):
        read_manifest(tmp_path)


def test_unknown_variant_is_a_usage_error() -> None:
    assert parse_variants("int8, fp32,int8") == (Variant.INT8, Variant.FP32)
    with pytest.raises(UsageError, match="fp8"):
        parse_variants("fp32,fp8")


@given(st.lists(st.lists(st.floats(-10, 10), min_size=3, max_size=3), min_size=1, max_size=20))
def test_a_variant_identical_to_the_reference_is_accepted(rows: list[list[float]]) -> None:
    outputs = np.array(rows, np.float32)
    figures = compare(outputs, outputs, labels=None)
    assert figures.mse == 0.0 and figures.max_abs_error == 0.0 and figures.agreement == 1.0
    assert figures.cosine == pytest.approx(1.0)
    assert gate(figures, Thresholds(max_accuracy_drop=0.0, max_mse=0.0)) == (True, None)


def test_gate_names_every_threshold_crossed() -> None:
    figures = Accuracy(
        samples=10,
        labelled=True,
        accuracy=0.8,
        reference_accuracy=0.9,
        accuracy_drop=0.1,
        agreement=0.85,
        mse=2e-5,
        max_abs_error=0.1,
        cosine=0.99,
    )
    accepted, reason = gate(figures, Thresholds(max_accuracy_drop=0.01, max_mse=1e-5))
    assert not accepted and reason == "top-1 accuracy drop 0.1000 > 0.01; output MSE 2e-05 > 1e-05"
    assert gate(figures, Thresholds(max_accuracy_drop=None, max_mse=None)) == (True, None)
