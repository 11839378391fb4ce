"""Records shared across the harness: frozen dataclasses, units in field names."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import Enum


class Delegate(str, Enum):
    """Delegates the sweep knows how to request; parsed logs may name others."""

    CPU = "cpu"
    XNNPACK = "xnnpack"
    GPU = "gpu"
    NNAPI = "nnapi"
    HEXAGON = "hexagon"


class ErrorType(str, Enum):
    """Why a benchmark run produced no (complete) measurement."""

    CRASH = "crash"  # killed by a signal: segfault, abort, ...
    NOT_EXECUTABLE = "not_executable"  # wrong ABI or no exec permission
    MODEL_LOAD_FAILED = "model_load_failed"  # missing or corrupt model file
    UNSUPPORTED_OP = "unsupported_op"  # builtin op too new or unresolved custom op
    ALLOCATE_FAILED = "allocate_failed"  # AllocateTensors failed
    DELEGATE_FAILED = "delegate_failed"  # the requested delegate could not be applied
    PERF_OPTION_FAILED = "perf_option_failed"  # a row marked 'failed!' in the multi-option summary
    BENCHMARK_FAILED = "benchmark_failed"  # the tool said it failed, for another reason
    TRUNCATED = "truncated"  # output ends before the benchmark summary
    GARBAGE = "garbage"  # input is not text output of a benchmark tool


@dataclass(frozen=True)
class BenchmarkRun:
    """One benchmark run as read from benchmark_model (or compatible) output.

    Every field is None when the output does not state it. Memory figures are
    the benchmark process's RSS high-water mark as the tool reports it, not the
    model's own footprint.
    """

    init_us: float | None = None
    first_inference_us: float | None = None
    warmup_avg_us: float | None = None
    inference_avg_us: float | None = None
    inference_std_us: float | None = None
    inference_min_us: float | None = None
    inference_max_us: float | None = None
    inference_p50_us: float | None = None
    inference_p95_us: float | None = None
    num_runs: int | None = None
    memory_init_mb: float | None = None
    memory_overall_mb: float | None = None
    memory_peak_mb: float | None = None
    model_size_mb: float | None = None
    num_threads: int | None = None
    delegate: str | None = None
    delegate_applied: bool | None = None
    delegated_kernels: int | None = None
    delegated_nodes: int | None = None
    total_nodes: int | None = None
    perf_option: str | None = None
    error: str | None = None
    error_type: ErrorType | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_json(self) -> dict[str, object]:
        out = dataclasses.asdict(self)
        if self.error_type is not None:
            out["error_type"] = self.error_type.value
        return out
