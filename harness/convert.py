"""`harness convert`: a Keras or SavedModel model into the variants the sweep measures, each judged.

The source is exported once to a SavedModel (a Keras 3 model through
`model.export()`: `tf.saved_model.save` on one writes a model without its
weights that converts "successfully" and outputs NaN), and every variant is
converted from that SavedModel. Every variant then runs here through the LiteRT
interpreter, on the eval data when given, and is compared with the source
model's own outputs computed by TensorFlow: the fp32 reference. A variant
beyond the thresholds, or whose outputs are not finite, is rejected with the
reason. A variant that fails to convert or to run is recorded as failed; the
others are still produced.

Outputs: OUT/<model>_<variant>.tflite (the names the sweep parses),
OUT/manifest.json (versioned, one entry per model converted into OUT),
OUT/<model>_convert.log (the converter's own output), and one Parquet file
per conversion under <results>/accuracy/ (see `read_accuracy`).
TensorFlow is imported only when a conversion runs.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import logging
import os
import re
import sys
import tempfile
import traceback
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from enum import Enum
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

import harness
from harness.atomic import write_atomically
from harness.convert_files import ACCURACY_SCHEMA_VERSION, read_manifest, write_accuracy, write_manifest
from harness.datasets import RANDOM, DataKind, Dataset, InputSpec, Preprocessing, load_data, random_data
from harness.digest import file_sha256
from harness.errors import InputFileError, MissingExtraError, ModelError, UsageError
from harness.locations import DEFAULT_RESULTS
from harness.outputs import dequantize, output_errors, quantize

if TYPE_CHECKING:
    from ai_edge_litert.interpreter import Interpreter

DEFAULT_CALIBRATION_SAMPLES = 200
MIN_CALIBRATION_SAMPLES = 100
DEFAULT_MAX_ACCURACY_DROP = 0.01
DEFAULT_MAX_MSE = 1e-5  # the seed practice's bar for a safe variant
EVAL_BATCH = 32
UNTRAINED_NOTE = "no accuracy: untrained weights"
NO_EVAL_NOTE = "no accuracy: no --eval data given"
RANDOM_CALIBRATION_WARNING = (
    "the int8 variant is calibrated on RANDOM data (--calibration random): its quantization ranges are "
    "guesses, so its outputs are unreliable; use it to measure latency only, never ship it"
)
NAN_REASON = "outputs NaN or infinite values where the fp32 reference does not"
WEIGHTLESS_ERROR = (
    "converted without its weights: it reads variables that nothing initializes (what a Keras 3 model "
    "saved with tf.saved_model.save becomes); re-export the model with model.export(DIR)"
)
REFERENCE = "the source model run by TensorFlow in float32"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")

log = logging.getLogger(__name__)


class Variant(str, Enum):
    FP32 = "fp32"
    FP16 = "fp16"  # float16 weights, float32 compute and I/O
    DYNAMIC = "dynamic"  # int8 weights, activations quantized on the fly, float I/O
    INT8 = "int8"  # full integer: int8 weights, activations, input and output

    @property
    def quantization(self) -> str | None:
        # The same names the sweep records for files named <model>_<variant>.tflite.
        return {"fp32": None, "fp16": "float16", "dynamic": "dynamic_range_int8", "int8": "full_int8"}[self.value]


ALL_VARIANTS = tuple(Variant)


class VariantStatus(str, Enum):
    OK = "ok"
    FAILED = "failed"  # did not convert, or LiteRT cannot run the result


def parse_variants(text: str) -> tuple[Variant, ...]:
    """'fp32,int8' -> (Variant.FP32, Variant.INT8), in the order given, without repeats."""
    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [name for name in names if name not in {v.value for v in Variant}]
    if unknown or not names:
        raise UsageError(
            f"--variants {text!r} names no variant or an unknown one ({', '.join(unknown)})",
            f"choose from {','.join(v.value for v in Variant)}",
        )
    return tuple(Variant(name) for name in dict.fromkeys(names))


@dataclass(frozen=True)
class Thresholds:
    """A variant is rejected beyond either; None disables that check."""

    max_accuracy_drop: float | None = DEFAULT_MAX_ACCURACY_DROP  # fraction of samples, e.g. 0.01
    max_mse: float | None = DEFAULT_MAX_MSE  # mean squared output error vs the fp32 reference


@dataclass(frozen=True)
class ConvertRequest:
    model_path: Path
    out_dir: Path
    variants: tuple[Variant, ...] = ALL_VARIANTS
    calibration: str | None = None  # DATA or "random"
    evaluation: str | None = None  # DATA
    preprocessing: Preprocessing | None = None  # for image folders, shared by both
    calibration_samples: int = DEFAULT_CALIBRATION_SAMPLES
    eval_samples: int | None = None  # None: every sample
    thresholds: Thresholds = Thresholds()
    untrained: bool = False  # weights=None models: run every variant, report no accuracy
    name: str | None = None  # default: the model file's or folder's name
    results_root: Path = DEFAULT_RESULTS


@dataclass(frozen=True)
class TensorInfo:
    name: str
    index: int
    shape: tuple[int, ...]
    shape_signature: tuple[int, ...]  # -1 for a dimension of any size
    dtype: str
    scale: float | None  # None for an unquantized tensor
    zero_point: int | None


@dataclass(frozen=True)
class Accuracy:
    """One variant on the eval data, compared with the fp32 reference."""

    samples: int
    labelled: bool
    accuracy: float | None  # top-1, when labels exist
    reference_accuracy: float | None
    accuracy_drop: float | None  # reference - variant with labels; 1 - agreement without
    agreement: float  # top-1 agreement with the reference
    mse: float
    max_abs_error: float
    cosine: float  # mean per-sample cosine similarity of the outputs


@dataclass(frozen=True)
class VariantResult:
    variant: Variant
    status: VariantStatus
    file: str | None = None
    sha256: str | None = None
    size_bytes: int | None = None
    inputs: tuple[TensorInfo, ...] = ()
    outputs: tuple[TensorInfo, ...] = ()
    op_histogram: dict[str, int] = field(default_factory=dict)
    float_ops: tuple[str, ...] = ()  # ops computing in float (beyond QUANTIZE/DEQUANTIZE)
    fully_int8: bool | None = None
    error: str | None = None
    accuracy: Accuracy | None = None
    accepted: bool | None = None  # None: not assessed (see reason)
    reason: str | None = None
    warning: str | None = None

    def to_json(self) -> dict[str, object]:
        out = {"variant": self.variant.value, "quantization": self.variant.quantization, **asdict(self)}
        return {**out, "variant": self.variant.value, "status": self.status.value}


@dataclass(frozen=True)
class ConversionResult:
    """What one conversion produced; `entry` is its manifest entry."""

    model_name: str
    conversion_id: str
    variants: tuple[VariantResult, ...]
    entry: dict[str, object]
    warnings: tuple[str, ...]
    manifest_path: Path
    accuracy_path: Path

    @property
    def failed(self) -> tuple[VariantResult, ...]:
        return tuple(v for v in self.variants if v.status is VariantStatus.FAILED)

    def to_json(self) -> dict[str, object]:
        return {**self.entry, "manifest": str(self.manifest_path), "accuracy_table": str(self.accuracy_path)}


CONVERT_EXTRA = "convert"
EXAMPLES_MODULES = ("tensorflow", "sklearn")  # the examples train the digits CNN on scikit-learn's digits
"""The optional part of tflite-farm (pyproject's extra) that brings TensorFlow and scikit-learn."""


def require_convert_extra(what: str, modules: tuple[str, ...] = ("tensorflow",)) -> None:
    """Stops `what` early, naming the install command, when the convert extra is not installed.

    A lab host that only sweeps and serves the dashboard installs tflite-farm without TensorFlow
    (hundreds of MB); only converting models and building the examples need it. find_spec looks the
    modules up without importing them, so the check costs nothing when they are there.
    """
    missing = [name for name in modules if importlib.util.find_spec(name) is None]
    if missing:
        raise MissingExtraError(
            f"{what} needs {', '.join(missing)}, which this installation of tflite-farm lacks",
            f"install tflite-farm with its '{CONVERT_EXTRA}' extra: pipx install --force 'CHECKOUT[{CONVERT_EXTRA}]' "
            f"(or 'tflite-farm[{CONVERT_EXTRA}] @ git+URL'), or pip install 'tflite-farm[{CONVERT_EXTRA}]'",
        )


def convert_model(request: ConvertRequest, say: Callable[[str], None] = lambda _: None) -> ConversionResult:
    """Convert, check and judge every requested variant; write files, manifest and accuracy rows."""
    require_convert_extra("converting a model")
    source_path = Path(request.model_path)
    if not source_path.exists():
        raise InputFileError(f"no such model: {source_path}", "pass a .keras file or a SavedModel folder")
    name = _model_name(request.name or (source_path.name if source_path.is_dir() else source_path.stem))
    if Variant.INT8 in request.variants and request.calibration is None:
        raise UsageError(
            "the int8 variant needs calibration data",
            "pass --calibration DATA (100 or more real samples), or --calibration random for a latency-only int8 model",
        )
    if request.calibration_samples < 1:
        raise UsageError("--calibration-samples must be at least 1", "e.g. --calibration-samples 200")
    out_dir = Path(request.out_dir)
    read_manifest(out_dir)  # an unreadable or newer manifest fails now, not after minutes of converting
    out_dir.mkdir(parents=True, exist_ok=True)
    converted_at = datetime.now(UTC)
    conversion_id = f"{converted_at:%Y%m%dT%H%M%S}-{name}-{uuid.uuid4().hex[:8]}"
    log_path = out_dir / f"{name}_convert.log"
    log_path.write_text(f"harness convert {source_path} ({conversion_id})\n", encoding="utf-8")
    warnings: list[str] = []

    say(f"loading {source_path} ...")
    with _opened_source(source_path, log_path) as source:
        calibration, evaluation = _load_datasets(request, source, warnings)
        reference = None
        if evaluation is not None:
            say(f"running the fp32 reference on {len(evaluation)} eval samples ...")
            reference = source.run(evaluation.x)
            if not np.isfinite(reference).all():
                raise ModelError(
                    f"{source_path} itself outputs NaN or infinite values on the eval data",
                    "check the model and the eval data's preprocessing before converting",
                )
        checks = _Checks(evaluation, reference, None if calibration is None else calibration.x[:1], request, log_path)
        results = []
        for variant in request.variants:
            say(f"converting {variant.value} ...")
            calibration_x = None
            if variant is Variant.INT8:
                assert calibration is not None  # checked on entry: int8 needs calibration data
                calibration_x = calibration.x
            flatbuffer_or_error = _converted(source, variant, calibration_x, log_path)
            if isinstance(flatbuffer_or_error, VariantResult):
                results.append(flatbuffer_or_error)
                continue
            if evaluation is not None:
                say(f"evaluating {variant.value} on {len(evaluation)} samples ...")
            results.append(_checked(variant, flatbuffer_or_error, checks, out_dir / f"{name}_{variant.value}.tflite"))

    random_calibration = calibration is not None and calibration.kind is DataKind.RANDOM
    if random_calibration:
        warnings.append(RANDOM_CALIBRATION_WARNING)
    warnings.extend(r.warning for r in results if r.warning)
    note = UNTRAINED_NOTE if request.untrained else (NO_EVAL_NOTE if evaluation is None else None)
    entry: dict[str, object] = {
        "model_name": name,
        "conversion_id": conversion_id,
        "converted_at": converted_at.isoformat(),
        "harness_version": harness.__version__,
        "converter": _versions(source.format),
        "source": {"path": str(source_path), "format": source.format, "sha256": source.sha256},
        "calibration": None
        if calibration is None
        else {**calibration.describe(), "warning": RANDOM_CALIBRATION_WARNING if random_calibration else None},
        "evaluation": None
        if evaluation is None
        else {
            # Absolute, so the sweep finds the samples (its fixed numerics inputs) from any folder.
            **evaluation.describe(),
            "source": str(Path(evaluation.source).resolve()),
            "reference": REFERENCE,
            "reference_accuracy": None if request.untrained else _top1(reference, evaluation.y),
        },
        "preprocessing": None if request.preprocessing is None else request.preprocessing.to_json(),
        "thresholds": asdict(request.thresholds),
        "accuracy_note": note,
        "warnings": warnings,
        "converter_log": log_path.name,
        "variants": {r.variant.value: r.to_json() for r in results},
    }
    manifest_path, removed = _update_manifest(out_dir, name, entry, results)
    warnings.extend(f"removed stale {path.name} (not produced by this conversion)" for path in removed)
    accuracy_path = _write_accuracy_rows(request, entry, results, converted_at, manifest_path)
    return ConversionResult(name, conversion_id, tuple(results), entry, tuple(warnings), manifest_path, accuracy_path)


# -- the source model ------------------------------------------------------------


@dataclass(frozen=True)
class _Source:
    format: str  # "keras" | "saved_model"
    sha256: str
    saved_model_dir: Path
    inputs: tuple[InputSpec, ...]
    output_names: tuple[str, ...]
    loaded: Any  # the loaded SavedModel: its signature's variables live as long as it does

    @property
    def signature(self) -> Any:
        return self.loaded.signatures["serving_default"]

    def run(self, x: np.ndarray) -> np.ndarray:
        """The single output for inputs x, computed by TensorFlow in batches."""
        import tensorflow as tf

        [model_input] = self.inputs
        [output] = self.output_names
        signature = self.signature
        parts = [
            signature(**{model_input.name: tf.constant(x[i : i + EVAL_BATCH])})[output].numpy()
            for i in range(0, len(x), EVAL_BATCH)
        ]
        return np.concatenate(parts).astype(np.float32)


@contextlib.contextmanager
def _opened_source(path: Path, log_path: Path) -> Iterator[_Source]:
    if path.is_dir():
        if not (path / "saved_model.pb").is_file():
            raise ModelError(
                f"{path} is a folder but not a SavedModel (no saved_model.pb)",
                "pass a .keras file or a folder written by model.export(DIR)",
            )
        yield _load_saved_model(path, "saved_model", _tree_sha256(path), log_path)
        return
    if path.suffix not in (".keras", ".h5"):
        raise ModelError(
            f"{path} is not a model: expected a .keras (or .h5) file or a SavedModel folder",
            "save the model with model.save('model.keras') or model.export(DIR)",
        )
    with tempfile.TemporaryDirectory(prefix="harness-convert-") as folder:
        with _captured(log_path):
            _, keras = _tensorflow()
            try:
                model = keras.saving.load_model(path, compile=False)
            except Exception as error:  # Keras raises many types for a file that is not a model
                _log_traceback(log_path, error)
                raise ModelError(
                    f"{path} is not a loadable Keras model ({_first_line(error)})",
                    "check the file, or export the model with model.export(DIR) and convert that folder",
                ) from error
            try:
                # model.export, not tf.saved_model.save: only export writes a Keras 3 model's weights.
                model.export(folder, format="tf_saved_model", verbose=False)
            except Exception as error:  # a model Keras cannot trace fails in many ways
                _log_traceback(log_path, error)
                raise ModelError(
                    f"{path} cannot be exported for conversion ({_first_line(error)})",
                    "build the model on a keras.Input of fixed shape and save it again",
                ) from error
        yield _load_saved_model(Path(folder), "keras", file_sha256(path), log_path)


def _load_saved_model(folder: Path, fmt: str, sha256: str, log_path: Path) -> _Source:
    with _captured(log_path):
        tf, _ = _tensorflow()
        try:
            loaded = tf.saved_model.load(str(folder))
        except Exception as error:  # corrupt protos and missing variables surface as many types
            _log_traceback(log_path, error)
            raise ModelError(
                f"{folder} is not a loadable SavedModel ({_first_line(error)})", "re-export it with model.export(DIR)"
            ) from error
    if "serving_default" not in loaded.signatures:
        raise ModelError(
            f"{folder} has no serving_default signature (it has {sorted(loaded.signatures) or 'none'})",
            "export it with model.export(DIR), which writes one",
        )
    signature = loaded.signatures["serving_default"]
    specs = signature.structured_input_signature[1]
    inputs = tuple(
        InputSpec(name=key, shape=tuple(spec.shape.as_list()), dtype=spec.dtype.as_numpy_dtype.__name__)
        for key, spec in sorted(specs.items())
    )
    return _Source(
        format=fmt,
        sha256=sha256,
        saved_model_dir=folder,
        inputs=inputs,
        output_names=tuple(sorted(signature.structured_outputs)),
        loaded=loaded,
    )


def _load_datasets(
    request: ConvertRequest, source: _Source, warnings: list[str]
) -> tuple[Dataset | None, Dataset | None]:
    wants_data = request.evaluation is not None or request.calibration is not None
    if wants_data and len(source.inputs) != 1:
        raise UsageError(
            f"calibration and evaluation handle one input, but the model has {len(source.inputs)} "
            f"({', '.join(i.name for i in source.inputs)})",
            "convert it without --calibration/--eval and without the int8 variant",
        )
    calibration = evaluation = None
    if request.calibration is not None and Variant.INT8 not in request.variants:
        warnings.append("--calibration is used by the int8 variant only, which was not requested")
    elif request.calibration == RANDOM:
        calibration = random_data(source.inputs[0], request.calibration_samples)
    elif request.calibration is not None:
        calibration = load_data(
            request.calibration,
            source.inputs[0],
            request.preprocessing,
            purpose="--calibration",
            limit=request.calibration_samples,
        )
        if len(calibration) < MIN_CALIBRATION_SAMPLES:
            warnings.append(
                f"int8 is calibrated on only {len(calibration)} samples (fewer than "
                f"{MIN_CALIBRATION_SAMPLES}): its quantization ranges may miss real inputs"
            )
    if request.evaluation is not None:
        if len(source.output_names) != 1:
            raise UsageError(
                f"accuracy evaluation compares one output, but the model has {len(source.output_names)}",
                "convert it without --eval",
            )
        evaluation = load_data(
            request.evaluation, source.inputs[0], request.preprocessing, purpose="--eval", limit=request.eval_samples
        )
        classes = _output_classes(source)
        if evaluation.y is not None and classes is not None and int(evaluation.y.max()) >= classes:
            raise InputFileError(
                f"--eval {request.evaluation} holds class id {int(evaluation.y.max())}, "
                f"but the model outputs {classes} classes",
                "use class ids 0..N-1 in the model's output order",
            )
        if evaluation.y is None and not request.untrained:
            warnings.append(
                "the eval data has no labels: accuracy is judged by top-1 agreement with the fp32 reference only"
            )
    if request.preprocessing is not None and all(
        data is None or data.kind is not DataKind.IMAGES for data in (calibration, evaluation)
    ):
        raise UsageError(
            "--mean/--std/--image-size apply to image folders, and no image folder is used",
            "store already preprocessed inputs in the .npz, or drop the preprocessing flags",
        )
    return calibration, evaluation


def _output_classes(source: _Source) -> int | None:
    spec = source.signature.structured_outputs[source.output_names[0]]
    dims = spec.shape.as_list()
    return dims[-1] if dims else None


# -- one variant -----------------------------------------------------------------


@dataclass(frozen=True, eq=False)  # holds numpy arrays
class _Checks:
    """What every converted variant is run on and judged against."""

    evaluation: Dataset | None
    reference: np.ndarray | None  # the source model's outputs on evaluation.x
    smoke_input: np.ndarray | None  # one calibration sample, run when there is no eval data
    request: ConvertRequest
    log_path: Path  # LiteRT announces its delegates on stderr


def _converted(
    source: _Source, variant: Variant, calibration_x: np.ndarray | None, log_path: Path
) -> bytes | VariantResult:
    """The variant's flatbuffer, or its failure as a result."""
    try:
        with _captured(log_path):
            return _convert(source.saved_model_dir, variant, calibration_x)
    except Exception as error:  # the converter reports failures as many exception types
        _log_traceback(log_path, error)
        return VariantResult(variant, VariantStatus.FAILED, error=f"conversion failed: {_converter_message(error)}")


def _checked(variant: Variant, flatbuffer: bytes, checks: _Checks, path: Path) -> VariantResult:
    """Run the variant through LiteRT, judge it, and write it to path (unless LiteRT cannot run it).

    A variant that cannot run on a zero input is failed; one that runs but fails
    on the data (e.g. ids beyond an embedding table) is written and rejected.
    """
    try:
        with _captured(checks.log_path):
            inputs, outputs = _signature(flatbuffer)
            host_outputs(flatbuffer, None)
    except Exception as error:  # LiteRT raises RuntimeError/ValueError for models it cannot run
        _log_traceback(checks.log_path, error)
        return VariantResult(
            variant, VariantStatus.FAILED, error=f"converted, but LiteRT cannot run it: {_first_line(error)}"
        )
    histogram, float_ops, no_float_tensor = _graph_facts(flatbuffer)
    if "READ_VARIABLE" in histogram and "ASSIGN_VARIABLE" not in histogram:
        # Its outputs are whatever memory held: NaN one run, 1e17 the next. Never hand it to the sweep.
        return VariantResult(variant, VariantStatus.FAILED, error=WEIGHTLESS_ERROR)
    fully_int8 = no_float_tensor and all(t.dtype == "int8" for t in inputs + outputs)
    accuracy, accepted, reason = _judge(flatbuffer, checks)
    warning = None
    if variant is Variant.INT8 and not fully_int8:
        warning = (
            f"the int8 variant still computes in float ({', '.join(float_ops) or 'float tensors'}): "
            "integer-only accelerators (NPUs) will reject it or fall back to the CPU"
        )
    _write_bytes(path, flatbuffer)
    return VariantResult(
        variant,
        VariantStatus.OK,
        file=path.name,
        sha256=hashlib.sha256(flatbuffer).hexdigest(),
        size_bytes=len(flatbuffer),
        inputs=inputs,
        outputs=outputs,
        op_histogram=histogram,
        float_ops=float_ops,
        fully_int8=fully_int8,
        accuracy=accuracy,
        accepted=accepted,
        reason=reason,
        warning=warning,
    )


def _convert(saved_model_dir: Path, variant: Variant, calibration: np.ndarray | None) -> bytes:
    tf, _ = _tensorflow()
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model_dir))
    if variant is Variant.FP16:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif variant is Variant.DYNAMIC:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif variant is Variant.INT8:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        assert calibration is not None  # convert_model passes the calibration samples for int8
        samples = calibration
        converter.representative_dataset = lambda: ([sample[None]] for sample in samples)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    flatbuffer: bytes = converter.convert()
    return flatbuffer


def _signature(flatbuffer: bytes) -> tuple[tuple[TensorInfo, ...], tuple[TensorInfo, ...]]:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=flatbuffer)
    return (
        tuple(_tensor_info(d) for d in interpreter.get_input_details()),
        tuple(_tensor_info(d) for d in interpreter.get_output_details()),
    )


def _tensor_info(detail: Mapping[str, Any]) -> TensorInfo:
    scale, zero_point = detail["quantization"]
    quantized = scale != 0.0
    return TensorInfo(
        name=detail["name"],
        index=int(detail["index"]),
        shape=tuple(int(d) for d in detail["shape"]),
        shape_signature=tuple(int(d) for d in detail["shape_signature"]),
        dtype=np.dtype(detail["dtype"]).name,
        scale=float(scale) if quantized else None,
        zero_point=int(zero_point) if quantized else None,
    )


def host_outputs(flatbuffer: bytes, x: np.ndarray | None) -> np.ndarray:
    """The first output for inputs x (float, dequantized), or for one zero input when x is None.

    Quantized inputs and outputs use the tensors' own scale and zero point.
    Batches of EVAL_BATCH when the batch dimension is free, else one by one.
    """
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=flatbuffer, num_threads=os.cpu_count())
    details = interpreter.get_input_details()
    if x is None:
        feeds = [np.zeros(d["shape"], d["dtype"]) for d in details]
        interpreter.allocate_tensors()
        for detail, feed in zip(details, feeds, strict=False):
            interpreter.set_tensor(detail["index"], feed)
        interpreter.invoke()
        return _first_output(interpreter)
    [detail] = details
    batch = EVAL_BATCH if detail["shape_signature"][0] == -1 else 1
    parts = []
    allocated = None
    for start in range(0, len(x), batch):
        chunk = x[start : start + batch]
        if allocated != len(chunk):
            if batch > 1:
                interpreter.resize_tensor_input(detail["index"], [len(chunk), *detail["shape"][1:]])
            interpreter.allocate_tensors()
            allocated = len(chunk)
        interpreter.set_tensor(detail["index"], quantize(chunk, detail))
        interpreter.invoke()
        parts.append(_first_output(interpreter))
    return np.concatenate(parts)


def _first_output(interpreter: Interpreter) -> np.ndarray:
    detail = interpreter.get_output_details()[0]
    return dequantize(interpreter.get_tensor(detail["index"]), detail)


def _graph_facts(flatbuffer: bytes) -> tuple[dict[str, int], tuple[str, ...], bool]:
    """(op histogram, ops computing in float, whether no tensor is float) read from the flatbuffer."""
    from ai_edge_litert import schema_py_generated as schema

    op_names = {code: key for key, code in vars(schema.BuiltinOperator).items() if not key.startswith("_")}
    float_types = {
        schema.TensorType.FLOAT32,
        schema.TensorType.FLOAT16,
        schema.TensorType.FLOAT64,
        schema.TensorType.BFLOAT16,
    }
    model = schema.ModelT.InitFromPackedBuf(flatbuffer, 0)
    histogram: Counter[str] = Counter()
    float_ops: set[str] = set()
    has_float = False
    for subgraph in model.subgraphs:
        tensors = subgraph.tensors or []
        has_float |= any(t.type in float_types for t in tensors)
        for op in subgraph.operators or []:
            code = model.operatorCodes[op.opcodeIndex]
            # Codes above 127 live in builtinCode only; deprecatedBuiltinCode caps at 127.
            builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
            name = (
                f"CUSTOM:{code.customCode.decode()}"
                if builtin == schema.BuiltinOperator.CUSTOM
                else op_names.get(builtin, f"BUILTIN_{builtin}")
            )
            histogram[name] += 1
            touched = [
                i
                for i in [
                    *(op.inputs if op.inputs is not None else []),
                    *(op.outputs if op.outputs is not None else []),
                ]
                if i >= 0
            ]
            if name not in ("QUANTIZE", "DEQUANTIZE") and any(tensors[i].type in float_types for i in touched):
                float_ops.add(name)
    return dict(sorted(histogram.items())), tuple(sorted(float_ops)), not has_float


# -- accuracy --------------------------------------------------------------------


def _judge(flatbuffer: bytes, checks: _Checks) -> tuple[Accuracy | None, bool | None, str | None]:
    """(figures, accepted, reason) from running the variant on the eval data (or one calibration sample).

    Failing on the data or non-finite outputs always reject; untrained weights report no figures.
    """
    evaluation = checks.evaluation
    data, what = (evaluation.x, "eval data") if evaluation is not None else (checks.smoke_input, "calibration data")
    if data is not None:
        try:
            with _captured(checks.log_path):
                outputs = host_outputs(flatbuffer, data)
        except Exception as error:  # LiteRT raises RuntimeError/ValueError when an input breaks a kernel
            _log_traceback(checks.log_path, error)
            return None, False, f"LiteRT fails on the {what}: {_first_line(error)}"
        if not np.isfinite(outputs).all():
            return None, False, NAN_REASON
    if checks.request.untrained:
        return None, None, UNTRAINED_NOTE
    if evaluation is None or checks.reference is None:
        return None, None, NO_EVAL_NOTE
    accuracy = compare(outputs, checks.reference, evaluation.y)
    accepted, reason = gate(accuracy, checks.request.thresholds)
    return accuracy, accepted, reason


def compare(outputs: np.ndarray, reference: np.ndarray, labels: np.ndarray | None) -> Accuracy:
    """A variant's outputs against the fp32 reference's (and the labels, when there are any)."""
    errors = output_errors([[o] for o in outputs], [[r] for r in reference])
    agreement = 1.0 if errors.top1_agreement is None else errors.top1_agreement
    accuracy = _top1(outputs, labels)
    reference_accuracy = _top1(reference, labels)
    drop = reference_accuracy - accuracy if accuracy is not None and reference_accuracy is not None else 1.0 - agreement
    return Accuracy(
        samples=len(outputs),
        labelled=labels is not None,
        accuracy=accuracy,
        reference_accuracy=reference_accuracy,
        accuracy_drop=float(drop),
        agreement=agreement,
        mse=errors.mse,
        max_abs_error=errors.max_abs_error,
        cosine=errors.cosine,
    )


def gate(accuracy: Accuracy, thresholds: Thresholds) -> tuple[bool, str | None]:
    """(accepted, reason): rejected when beyond --max-accuracy-drop or --max-mse."""
    reasons = []
    limit = thresholds.max_accuracy_drop
    if limit is not None and accuracy.accuracy_drop is not None and accuracy.accuracy_drop > limit:
        what = "top-1 accuracy drop" if accuracy.labelled else "top-1 disagreement with fp32 (no labels)"
        reasons.append(f"{what} {accuracy.accuracy_drop:.4f} > {limit:g}")
    if thresholds.max_mse is not None and accuracy.mse > thresholds.max_mse:
        reasons.append(f"output MSE {accuracy.mse:.3g} > {thresholds.max_mse:g}")
    return (not reasons, "; ".join(reasons) or None)


def _top1(outputs: np.ndarray | None, labels: np.ndarray | None) -> float | None:
    if outputs is None or labels is None:
        return None
    return float((outputs.reshape(len(outputs), -1).argmax(axis=1) == labels).mean())


# -- manifest and accuracy table -------------------------------------------------


def _update_manifest(
    out_dir: Path, name: str, entry: dict[str, object], results: Sequence[VariantResult]
) -> tuple[Path, list[Path]]:
    """Replace this model's entry; delete its files that the new entry no longer lists.

    The manifest is the truth about OUT: a variant that failed now, or was not
    requested this time, must not leave an older file for the sweep to pick up.
    """
    document = read_manifest(out_dir)
    listed_before = set(document["models"].get(name, {}).get("variants", {}))
    produced = {r.variant.value for r in results if r.status is VariantStatus.OK}
    removed = []
    # Only this model's own file names, never a path read from the manifest.
    for variant in Variant:
        path = out_dir / f"{name}_{variant.value}.tflite"
        stale = variant.value in listed_before or any(r.variant is variant for r in results)
        if stale and variant.value not in produced and path.is_file():
            path.unlink()
            removed.append(path)
    document["models"][name] = entry
    return write_manifest(out_dir, document), removed


def _write_accuracy_rows(
    request: ConvertRequest,
    entry: Mapping[str, Any],
    results: Sequence[VariantResult],
    converted_at: datetime,
    manifest_path: Path,
) -> Path:
    calibration = entry["calibration"] or {}
    evaluation = entry["evaluation"] or {}
    rows = []
    for result in results:
        figures = asdict(result.accuracy) if result.accuracy else {}
        rows.append(
            {
                "schema_version": ACCURACY_SCHEMA_VERSION,
                "conversion_id": entry["conversion_id"],
                "converted_at": converted_at,
                "model_name": entry["model_name"],
                "source_sha256": entry["source"]["sha256"],
                "variant": result.variant.value,
                "quantization": result.variant.quantization,
                "status": result.status.value,
                "error_message": result.error,
                "file": result.file,
                "sha256": result.sha256,
                "size_bytes": result.size_bytes,
                "fully_int8": result.fully_int8,
                "eval_source": evaluation.get("source"),
                "eval_samples": evaluation.get("samples"),
                "labelled": figures.get("labelled"),
                "reference_accuracy": figures.get("reference_accuracy"),
                "accuracy": figures.get("accuracy"),
                "accuracy_drop": figures.get("accuracy_drop"),
                "agreement": figures.get("agreement"),
                "mse": figures.get("mse"),
                "max_abs_error": figures.get("max_abs_error"),
                "cosine": figures.get("cosine"),
                "max_accuracy_drop": request.thresholds.max_accuracy_drop,
                "max_mse": request.thresholds.max_mse,
                "accepted": result.accepted,
                "reason": result.reason,
                "calibration_source": calibration.get("source"),
                "calibration_samples": calibration.get("samples"),
                "untrained": request.untrained,
                "converter_version": entry["converter"]["tensorflow"],
                "harness_version": harness.__version__,
                "manifest_path": str(manifest_path),
            }
        )
    return write_accuracy(rows, Path(request.results_root), entry["conversion_id"])


# -- helpers ---------------------------------------------------------------------


def _tensorflow() -> tuple[Any, Any]:
    # TensorFlow's C++ start-up chatter goes to the converter log; imported here only.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import tensorflow as tf

    return tf, keras


def _versions(source_format: str) -> dict[str, str | None]:
    import tensorflow as tf

    keras_version = metadata.version("keras") if source_format == "keras" else None
    return {"tensorflow": tf.__version__, "keras": keras_version, "litert": metadata.version("ai-edge-litert")}


def _log_traceback(log_path: Path, error: BaseException) -> None:
    """The whole traceback of a failure the user sees in one line, in the convert log, for whoever debugs it."""
    with open(log_path, "a", encoding="utf-8", errors="replace") as log:
        log.write("".join(traceback.format_exception(error)))


@contextlib.contextmanager
def _captured(log_path: Path) -> Iterator[None]:
    """Send everything printed meanwhile (Python, and C++ on fds 1 and 2) to log_path.

    The converter and Keras print signatures and MLIR diagnostics to stdout,
    which is reserved for the command's data (--json).
    """
    sys.stdout.flush()
    sys.stderr.flush()
    with open(log_path, "a", encoding="utf-8", errors="replace") as log:
        saved = os.dup(1), os.dup(2)
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
                yield
        finally:
            log.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def _model_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise UsageError(
            f"{name!r} cannot name a model's files", "give one with --name using letters, digits, '.', '_' and '-'"
        )
    return name


def _converter_message(error: BaseException) -> str:
    """The MLIR diagnostics' own words ("'tf.Erf' op is neither a custom op nor a flex op"),
    without the pages of source locations and IR around them."""
    lines = str(error).splitlines()
    found = [line.rsplit("): ", 1)[-1].split("error: ", 1)[-1].strip() for line in lines if "error: " in line]
    found += [line.strip() for line in lines if line.startswith("TF Select ops:")]
    found = [line for line in dict.fromkeys(found) if line]
    return "; ".join(found)[:500] if found else _first_line(error)


def _first_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0][:500]


def _tree_sha256(folder: Path) -> str:
    """sha256 over a folder's files: each relative path and its content's sha256, in path order."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(f"{path.relative_to(folder).as_posix()}\0{file_sha256(path)}\n".encode())
    return digest.hexdigest()


def _write_bytes(path: Path, content: bytes) -> None:
    write_atomically(path, lambda out: out.write(content))
