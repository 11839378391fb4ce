"""Model inputs and outputs as numbers: (de)quantizing with a tensor's own scale and zero point, and
how far one set of outputs is from a reference set. Used by `harness convert` (variants against the
float model) and by the sweep (a phone's outputs against the host's)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

# Outputs that sum to 1 within this and lie in [0, 1] are probabilities (a softmax), for the KL figure.
_PROBABILITY_SUM_TOLERANCE = 1e-2
_KL_EPSILON = 1e-7


def quantize(x: np.ndarray, detail: Mapping[str, Any]) -> np.ndarray:
    """Float values as the tensor takes them: through its scale and zero point when it is quantized."""
    scale, zero_point = detail["quantization"]
    dtype = np.dtype(detail["dtype"])
    if scale == 0.0 or dtype.kind == "f":
        return x.astype(dtype, copy=False)
    info = np.iinfo(dtype)
    quantized: np.ndarray = np.clip(np.round(x / scale) + zero_point, info.min, info.max).astype(dtype)
    return quantized


def dequantize(values: np.ndarray, detail: Mapping[str, Any]) -> np.ndarray:
    """A tensor's values as floats: through its scale and zero point when it is quantized."""
    scale, zero_point = detail["quantization"]
    if scale == 0.0:
        return values.astype(np.float32)
    floats: np.ndarray = ((values.astype(np.float32) - zero_point) * scale).astype(np.float32)
    return floats


@dataclass(frozen=True)
class OutputErrors:
    """Outputs against reference outputs for the same inputs, all figures on dequantized floats.

    `top1_agreement` only when the first output is a class-score vector, `sym_kl` only when
    the first output is a probability vector; `reference_max_abs` scales max_abs_error.
    """

    max_abs_error: float
    rmse: float
    cosine: float  # mean over samples
    top1_agreement: float | None
    sym_kl: float | None
    reference_max_abs: float

    @property
    def mse(self) -> float:
        return self.rmse * self.rmse  # inf past float range, where ** raises

    @property
    def relative_error(self) -> float:
        return relative_error(self.max_abs_error, self.reference_max_abs)


def relative_error(max_abs_error: float, reference_max_abs: float) -> float:
    """The largest absolute error over the reference's largest magnitude (what the numerics gate limits)."""
    if reference_max_abs == 0:
        return 0.0 if max_abs_error == 0 else math.inf
    return float(max_abs_error) / float(reference_max_abs)  # Python floats: inf past the range, no warning


def output_errors(outputs: Sequence[Sequence[np.ndarray]], reference: Sequence[Sequence[np.ndarray]]) -> OutputErrors:
    """`outputs[sample][tensor]` against `reference[sample][tensor]` (same shapes)."""
    out = np.stack([np.concatenate([np.ravel(t).astype(np.float64) for t in sample]) for sample in outputs])
    ref = np.stack([np.concatenate([np.ravel(t).astype(np.float64) for t in sample]) for sample in reference])
    difference = out - ref
    with np.errstate(invalid="ignore", over="ignore"):
        norms = np.linalg.norm(out, axis=1) * np.linalg.norm(ref, axis=1)
        both_zero = (np.linalg.norm(out, axis=1) == 0) & (np.linalg.norm(ref, axis=1) == 0)
        cosine = np.where(norms > 0, (out * ref).sum(axis=1) / np.where(norms > 0, norms, 1.0), both_zero * 1.0)
        max_abs = float(np.abs(difference).max()) if difference.size else 0.0
        rmse = float(np.sqrt((difference**2).mean())) if difference.size else 0.0
    first_out = np.stack([np.ravel(sample[0]).astype(np.float64) for sample in outputs])
    first_ref = np.stack([np.ravel(sample[0]).astype(np.float64) for sample in reference])
    top1 = None
    if first_ref.shape[1] >= 2:
        top1 = float((first_out.argmax(axis=1) == first_ref.argmax(axis=1)).mean())
    sym_kl = _symmetric_kl(first_out, first_ref) if _probabilities(first_ref) else None
    return OutputErrors(
        max_abs_error=_finite_or_inf(max_abs),
        rmse=_finite_or_inf(rmse),
        cosine=float(np.nan_to_num(cosine, nan=-1.0).mean()),
        top1_agreement=top1,
        sym_kl=sym_kl,
        reference_max_abs=float(np.abs(ref).max()) if ref.size else 0.0,
    )


def _probabilities(rows: np.ndarray) -> bool:
    return bool(
        rows.shape[1] >= 2
        and (rows >= 0).all()
        and (rows <= 1).all()
        and np.allclose(rows.sum(axis=1), 1.0, atol=_PROBABILITY_SUM_TOLERANCE)
    )


def _symmetric_kl(out: np.ndarray, ref: np.ndarray) -> float:
    """KL(ref || out) + KL(out || ref), mean over samples; outputs that are no distribution count as far."""
    p = np.clip(np.nan_to_num(ref, nan=0.0), _KL_EPSILON, 1.0)
    q = np.clip(np.nan_to_num(out, nan=0.0), _KL_EPSILON, 1.0)
    p, q = p / p.sum(axis=1, keepdims=True), q / q.sum(axis=1, keepdims=True)
    return float((np.sum(p * np.log(p / q), axis=1) + np.sum(q * np.log(q / p), axis=1)).mean())


def _finite_or_inf(value: float) -> float:
    return value if math.isfinite(value) else math.inf
