"""Numerics on every cell: fixed inputs per model file, the phone's outputs against the host's.

For each model file of a sweep the harness writes fixed inputs once, in benchmark_model's
`--input_layer_value_files` format (one raw tensor per file, in the tensor's own dtype:
quantized inputs through their scale and zero point), and computes the reference outputs on
this host for the same inputs: the model's fp32 sibling from the same convert manifest, or,
without one, the file itself; on LiteRT's plain CPU kernels, one thread. The inputs are
samples of the convert manifest's evaluation data when the file came from `harness convert`
and that data can be found, else seeded random values over each input's range.

Every case then runs on those inputs with `--output_filepath`; the sweep pulls the file and
`judge`s it: outputs dequantized with their tensors' own scale and zero point, compared with
the reference (harness.outputs), and held against a NumericsGate. A binary that ignores the
flags or writes no file gives `not_checked` with the reason, never a false `ok`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from harness.atomic import write_atomically
from harness.outputs import (
    OutputErrors,
    dequantize,
    output_errors,
    quantize,
    relative_error,
)
from harness.records import NumericsReference, NumericsStatus
from harness.stats import Row, figures

if TYPE_CHECKING:
    from ai_edge_litert.interpreter import Interpreter

RANDOM_RANGE = (-1.0, 1.0)  # float inputs without evaluation data
UNCONSUMED = re.compile(r"Unconsumed cmdline flags:(.*)")
NUMERICS_FLAGS = ("--input_layer_value_files", "--output_filepath")


@dataclass(frozen=True)
class NumericsGate:
    """When a phone's outputs count as wrong (documented defaults, the same for every decision).

    - relative error: the largest |output - reference| over the reference's largest magnitude;
    - cosine: of the output vector with the reference's (mean over samples);
    - for probability outputs (a softmax), the pair TFLite's Delegate Performance Benchmark
      accepts MobileNet on a delegate with: symmetric KL divergence and MSE.
    A quantized variant against its fp32 sibling differs by its quantization error, which the
    convert step's accuracy gate already judged; these limits catch what is far beyond it.
    """

    max_output_error: float = 0.25
    min_output_cosine: float = 0.95
    max_sym_kl: float = 5.5
    max_mse: float = 0.003

    def judge(
        self, relative_error: float | None, cosine: float | None, sym_kl: float | None, mse: float | None
    ) -> tuple[NumericsStatus, str | None]:
        """ok, or mismatch with what broke which limit (figures that were not measured are skipped)."""
        broken = []
        if relative_error is not None and not relative_error <= self.max_output_error:
            broken.append(f"output error {relative_error:.3g} of the reference's range > {self.max_output_error:g}")
        if cosine is not None and not cosine >= self.min_output_cosine:
            broken.append(f"cosine {cosine:.3f} < {self.min_output_cosine:g}")
        if sym_kl is not None and not sym_kl < self.max_sym_kl:
            broken.append(f"symmetric KL {sym_kl:.3g} >= {self.max_sym_kl:g}")
        if sym_kl is not None and mse is not None and not mse < self.max_mse:
            broken.append(f"MSE {mse:.3g} >= {self.max_mse:g} (probabilities)")
        return (NumericsStatus.MISMATCH, "; ".join(broken)) if broken else (NumericsStatus.OK, None)

    def describe(self) -> dict[str, float]:
        return {
            "max_output_error": self.max_output_error,
            "min_output_cosine": self.min_output_cosine,
            "max_sym_kl": self.max_sym_kl,
            "max_mse": self.max_mse,
        }


@dataclass(frozen=True)
class CellNumerics:
    """One configuration's numerics on one device, over its ok repetitions (a device_stats row)."""

    status: NumericsStatus | None  # None: nothing ran ok there
    reason: str | None  # what broke the gate, or why not checked
    relative_error: float | None  # the worst figures of the repetitions
    cosine: float | None
    top1_agreement: float | None
    sym_kl: float | None
    mse: float | None
    reference: str | None

    @property
    def mismatch(self) -> bool:
        return self.status is NumericsStatus.MISMATCH

    def figures(self) -> dict[str, float]:
        """The measured figures, by name (for evidence and tables)."""
        named = {
            "output_relative_error": self.relative_error,
            "output_cosine": self.cosine,
            "output_top1_agreement": self.top1_agreement,
            "output_sym_kl": self.sym_kl,
            "output_mse": self.mse,
        }
        return {name: value for name, value in named.items() if value is not None}

    def describe(self) -> str:
        if self.status is None:
            return "no ok run"
        if self.status is NumericsStatus.NOT_CHECKED:
            return f"not checked: {self.reason}"
        if self.status is NumericsStatus.MISMATCH:
            return f"mismatch: {self.reason}"
        shown = [f"cosine {self.cosine:.4f}"] if self.cosine is not None else []
        if self.relative_error is not None:
            shown.append(f"error {self.relative_error:.3g} of range")
        return f"ok ({', '.join(shown)}) against {self.reference}"


def cell_numerics(row: Row, gate: NumericsGate) -> CellNumerics:
    """`gate` applied to a device_stats row's worst figures: decisions re-judge stored figures, so the
    limits of `policy derive` (not those of the sweep) decide. Outputs that could not be read as the
    model's (a file of the wrong size) are a mismatch whatever the limits."""

    def value(name: str) -> Any:
        item = row.get(name)
        return None if item is None or (isinstance(item, float) and math.isnan(item)) else item

    reference = value("numerics_reference")
    reference = None if reference is None else str(getattr(reference, "value", reference))
    if not value("ok_rows"):
        return CellNumerics(None, None, None, None, None, None, None, reference)
    pairs = row.get("reps_output_error_pairs")  # per ok repetition: [max abs error, reference's max magnitude]
    pairs = [figures(pair) for pair in pairs] if isinstance(pairs, Iterable) else []
    errors = [relative_error(*pair) for pair in pairs if len(pair) == 2]
    worst_error = max(errors) if errors else None
    cosine, top1, sym_kl, rmse = (
        value(n) for n in ("output_cosine", "output_top1_agreement", "output_sym_kl", "output_rmse")
    )
    mse = None if rmse is None else float(rmse) * float(rmse)  # inf past float range, where ** raises
    measured = (worst_error, cosine, top1, sym_kl, mse if sym_kl is not None else None)
    if value("numerics_unreadable_rows"):
        return CellNumerics(NumericsStatus.MISMATCH, str(value("numerics_unreadable_reason")), *measured, reference)
    if not value("numerics_checked_rows"):
        why = value("numerics_unchecked_reason") or "no numerics recorded (rows of an older harness or another tool)"
        return CellNumerics(NumericsStatus.NOT_CHECKED, str(why), *measured, reference)
    status, reason = gate.judge(worst_error, cosine, sym_kl, mse)
    return CellNumerics(status, reason, *measured, reference)


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int, ...]
    dtype: str
    quantization: tuple[float, int]

    @property
    def detail(self) -> dict[str, object]:
        return {"dtype": self.dtype, "quantization": self.quantization}

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * np.dtype(self.dtype).itemsize


@dataclass(frozen=True, eq=False)  # holds numpy arrays
class ModelNumerics:
    """One model file's fixed inputs (files on this host) and the reference outputs for them."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    sample_files: tuple[tuple[Path, ...], ...]  # per sample, one value file per input (content-addressed)
    references: tuple[tuple[np.ndarray, ...], ...]  # per sample, the reference's outputs (floats)
    reference: NumericsReference
    input_source: str  # where the inputs came from, for people
    unavailable: str | None = None  # why this file cannot be checked (then everything above is empty)

    def flags(self, sample: int, remote_files: Sequence[str], output_path: str) -> tuple[str, ...]:
        """benchmark_model's flags that feed sample `sample` (pushed to `remote_files`) and save the outputs."""
        names = ",".join(spec.name for spec in self.inputs)
        shapes = ":".join(",".join(str(d) for d in spec.shape) for spec in self.inputs)
        # The tool splits each item at its one unescaped ':'; a ':' in a name or path is written '::'.
        files = ",".join(
            f"{_escaped(spec.name)}:{_escaped(path)}" for spec, path in zip(self.inputs, remote_files, strict=False)
        )
        return (
            f"--input_layer={names}",
            f"--input_layer_shape={shapes}",
            f"--input_layer_value_files={files}",
            f"--output_filepath={output_path}",
        )


def _escaped(text: str) -> str:
    return text.replace(":", "::")


def unavailable(reason: str) -> ModelNumerics:
    return ModelNumerics((), (), (), (), NumericsReference.SELF, "", reason)


def prepare(
    model_path: Path, model_name: str, manifest_dir: Path | None, samples: int, seed: int, cache_dir: Path
) -> ModelNumerics:
    """The fixed inputs of `model_path` written under `cache_dir`, and the reference outputs for them."""
    from ai_edge_litert.interpreter import Interpreter

    try:
        interpreter = Interpreter(model_path=str(model_path))
    except (ValueError, RuntimeError) as error:
        return unavailable(f"the host's LiteRT cannot load {model_path.name} ({error})")
    inputs = tuple(_spec(d) for d in interpreter.get_input_details())
    outputs = tuple(_spec(d) for d in interpreter.get_output_details())
    if any(np.dtype(spec.dtype).kind in "SUO" for spec in (*inputs, *outputs)):
        return unavailable("string tensors are not compared")
    if any("," in spec.name for spec in inputs):
        return unavailable("an input name holds ',', which --input_layer cannot pass")
    manifest = _manifest_facts(manifest_dir, model_name)
    sibling = manifest.get("fp32")
    reference_path = sibling if sibling is not None and sibling.is_file() else model_path
    reference_kind = (
        NumericsReference.FP32_SIBLING
        if reference_path != model_path or manifest.get("variant_of", {}).get(model_path.name) == "fp32"
        else NumericsReference.SELF
    )
    floats, source = _float_samples(inputs, manifest, samples, seed)
    reference = Interpreter(model_path=str(reference_path), num_threads=1, experimental_op_resolver_type=_plain_cpu())
    reference_inputs = tuple(_spec(d) for d in reference.get_input_details())
    if [s.shape for s in reference_inputs] != [s.shape for s in inputs]:
        reference, reference_inputs, reference_kind = (
            Interpreter(model_path=str(model_path), num_threads=1, experimental_op_resolver_type=_plain_cpu()),
            inputs,
            NumericsReference.SELF,
        )
    sample_files, references = [], []
    for sample in floats:
        files = []
        for spec, values in zip(inputs, sample, strict=False):
            data = quantize(values, spec.detail).tobytes()
            files.append(_content_file(cache_dir, data))
        sample_files.append(tuple(files))
        references.append(_run(reference, reference_inputs, sample))
    return ModelNumerics(inputs, outputs, tuple(sample_files), tuple(references), reference_kind, source)


def judge(
    numerics: ModelNumerics, device_outputs: Sequence[bytes], gate: NumericsGate
) -> tuple[OutputErrors | None, NumericsStatus, str | None]:
    """The pulled output files of samples 0..n-1 against the references: (errors, status, reason)."""
    if numerics.unavailable:
        return None, NumericsStatus.NOT_CHECKED, numerics.unavailable
    decoded = []
    expected = sum(spec.nbytes for spec in numerics.outputs)
    for data in device_outputs:
        if len(data) != expected:
            return (
                None,
                NumericsStatus.MISMATCH,
                (f"the output file holds {len(data)} bytes; the model's outputs are {expected}"),
            )
        decoded.append(_decode(numerics.outputs, data))
    errors = output_errors(decoded, numerics.references[: len(decoded)])
    status, reason = gate.judge(errors.relative_error, errors.cosine, errors.sym_kl, errors.mse)
    return errors, status, reason


def unconsumed_flags(output: str) -> str | None:
    """The numerics flags a binary reported it did not use ("Unconsumed cmdline flags: ..."), if any."""
    for match in UNCONSUMED.finditer(output):
        ignored = [flag for flag in NUMERICS_FLAGS if flag in match.group(1)]
        if ignored:
            return ", ".join(ignored)
    return None


def _decode(specs: Sequence[TensorSpec], data: bytes) -> tuple[np.ndarray, ...]:
    out, offset = [], 0
    for spec in specs:
        values = np.frombuffer(data, dtype=spec.dtype, count=int(np.prod(spec.shape, dtype=np.int64)), offset=offset)
        out.append(dequantize(values.reshape(spec.shape), spec.detail))
        offset += spec.nbytes
    return tuple(out)


def _run(interpreter: Interpreter, specs: Sequence[TensorSpec], sample: Sequence[np.ndarray]) -> tuple[np.ndarray, ...]:
    interpreter.allocate_tensors()
    for detail, spec, values in zip(interpreter.get_input_details(), specs, sample, strict=False):
        interpreter.set_tensor(detail["index"], quantize(values, spec.detail))
    interpreter.invoke()
    return tuple(dequantize(interpreter.get_tensor(d["index"]), d) for d in interpreter.get_output_details())


def _plain_cpu() -> object:
    from ai_edge_litert.interpreter import OpResolverType

    return OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES


def _spec(detail: Mapping[str, Any]) -> TensorSpec:
    scale, zero_point = detail["quantization"]
    return TensorSpec(
        str(detail["name"]),
        tuple(int(d) for d in detail["shape"]),
        np.dtype(detail["dtype"]).name,
        (float(scale), int(zero_point)),
    )


def _content_file(folder: Path, data: bytes) -> Path:
    import hashlib

    path = folder / f"{hashlib.sha256(data).hexdigest()}.bin"
    if not path.is_file():
        write_atomically(path, lambda out: out.write(data))
    return path


def _manifest_facts(manifest_dir: Path | None, model_name: str) -> dict[str, Any]:
    """From a convert manifest: the fp32 sibling's path, the evaluation data, the preprocessing."""
    if manifest_dir is None or not (manifest_dir / "manifest.json").is_file():
        return {}
    document = json.loads((manifest_dir / "manifest.json").read_text(encoding="utf-8"))
    entry = document.get("models", {}).get(model_name)
    if not isinstance(entry, dict):
        return {}
    variants = entry.get("variants", {})
    fp32 = variants.get("fp32", {})
    return {
        "fp32": manifest_dir / fp32["file"] if fp32.get("file") and fp32.get("status") == "ok" else None,
        "variant_of": {v["file"]: v["variant"] for v in variants.values() if v.get("file")},
        "evaluation": entry.get("evaluation"),
        "preprocessing": entry.get("preprocessing"),
        "manifest_dir": manifest_dir,
    }


def _float_samples(
    inputs: Sequence[TensorSpec], manifest: Mapping[str, Any], samples: int, seed: int
) -> tuple[list[tuple[np.ndarray, ...]], str]:
    """`samples` float input sets: the evaluation data's first samples, else seeded random values."""
    evaluation = manifest.get("evaluation")
    if evaluation and len(inputs) == 1:
        source = _find(evaluation.get("source"), manifest.get("manifest_dir"))
        if source is not None:
            loaded = _evaluation_samples(source, inputs[0], manifest.get("preprocessing"), samples)
            if loaded is not None:
                return [(x,) for x in loaded], f"evaluation data {source.name}"
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(samples):
        sample = []
        for spec in inputs:
            dtype = np.dtype(spec.dtype)
            scale, zero_point = spec.quantization
            if dtype.kind in "iu":
                info = np.iinfo(dtype)
                ints = rng.integers(info.min, info.max, size=spec.shape, endpoint=True)
                # Quantized inputs in their quantized range: the floats those integers stand for.
                sample.append(((ints - zero_point) * scale).astype(np.float32) if scale else ints.astype(dtype))
            elif dtype.kind == "b":
                sample.append(rng.integers(0, 1, size=spec.shape, endpoint=True).astype(bool))
            else:
                sample.append(rng.uniform(*RANDOM_RANGE, size=spec.shape).astype(np.float32))
        out.append(tuple(sample))
    return out, f"random values, seed {seed}"


def _find(source: object, manifest_dir: Path | None) -> Path | None:
    """The evaluation data as the manifest names it: absolute, from here, or from the manifest's folder up."""
    if not isinstance(source, str):
        return None
    path = Path(source)
    candidates = [path] if path.is_absolute() else [path, *(base / path for base in _ancestors(manifest_dir))]
    return next((c for c in candidates if c.exists()), None)


def _ancestors(folder: Path | None) -> list[Path]:
    return [] if folder is None else [folder, *folder.resolve().parents]


def _evaluation_samples(
    source: Path, spec: TensorSpec, preprocessing: Mapping[str, Any] | None, samples: int
) -> list[np.ndarray] | None:
    from harness.datasets import InputSpec, Preprocessing, load_data
    from harness.errors import HarnessError

    float_spec = InputSpec(spec.name, (None, *spec.shape[1:]), "float32")
    prep = None
    if preprocessing:
        size = preprocessing.get("size")
        prep = Preprocessing(tuple(preprocessing["mean"]), tuple(preprocessing["std"]), tuple(size) if size else None)
    try:
        data = load_data(str(source), float_spec, prep, purpose="numerics inputs", limit=samples)
    except HarnessError:
        return None
    if len(data) < samples:
        return None
    return [data.x[i : i + 1].astype(np.float32).reshape(spec.shape) for i in range(samples)]


def finite(value: float | None) -> float | None:
    """A figure for a results column: non-finite figures (an output of NaN) become the worst finite value."""
    if value is None:
        return None
    return value if math.isfinite(value) else float(np.finfo(np.float64).max)
