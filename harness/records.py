"""Records shared across the harness: frozen dataclasses, units in field names."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import Enum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pyarrow


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


SCHEMA_VERSION = 1
"""Version of the results schema (ResultRow / RESULTS_SCHEMA); bump it with an upgrade in store.UPGRADES."""

SCHEMA_VERSION_METADATA_KEY = "tflite_farm.schema_version"


class CaseStatus(str, Enum):
    """How one repetition of one case ended; every status is a stored row."""

    OK = "ok"
    FAILED = "failed"
    DELEGATE_FAILED = "delegate_failed"
    TIMEOUT = "timeout"
    DEVICE_LOST = "device_lost"
    SKIPPED = "skipped"


@dataclass(frozen=True, kw_only=True)
class ResultRow:
    """One row of the results dataset: one (run, device, case, repetition).

    Field order is the column order of RESULTS_SCHEMA. Optional fields are the
    ones a failed, timed-out or skipped case may not have. Memory figures are
    the benchmark process's RSS high-water mark, not the model's footprint.
    """

    schema_version: int = SCHEMA_VERSION
    run_id: str
    case_id: str
    repetition: int
    started_at: datetime  # timezone-aware; normalised to UTC
    duration_s: float
    harness_version: str
    adb_server: str
    serial: str
    device_model: str
    manufacturer: str
    soc: str | None = None  # ro.soc.model exists only from Android 12
    abi: str
    android_sdk: int
    ram_bytes: int | None = None
    tier: str | None = None
    build_fingerprint: str | None = None
    model_name: str
    variant: str
    quantization: str | None = None
    model_sha256: str
    model_size_bytes: int
    delegate: str
    num_threads: int
    num_runs: int
    warmup_runs: int
    bench_binary_sha256: str
    init_us: float | None = None
    first_inference_us: float | None = None
    warmup_avg_us: float | None = None
    inference_avg_us: float | None = None
    inference_std_us: float | None = None
    inference_min_us: float | None = None
    inference_max_us: float | None = None
    inference_p50_us: float | None = None
    inference_p95_us: float | None = None
    memory_init_mb: float | None = None
    memory_overall_mb: float | None = None
    memory_peak_mb: float | None = None
    delegated_fraction: float | None = None
    avg_power_mw: float | None = None
    energy_mj_per_inference: float | None = None
    power_method: str | None = None
    temp_start_c: float | None = None
    temp_end_c: float | None = None
    throttled: bool | None = None
    status: CaseStatus
    error_type: str | None = None
    error_message: str | None = None
    raw_log_path: str | None = None

    def __post_init__(self) -> None:
        # A naive datetime would be stored as if it were UTC: refuse the ambiguity.
        if self.started_at.tzinfo is None or self.started_at.utcoffset() is None:
            raise ValueError(f"started_at must be timezone-aware, got {self.started_at!r}")
        object.__setattr__(self, "started_at", self.started_at.astimezone(timezone.utc))
        object.__setattr__(self, "status", CaseStatus(self.status))

    def to_record(self) -> dict[str, object]:
        """The row as plain values, keyed and ordered like RESULTS_SCHEMA."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["status"] = self.status.value
        return out


def case_id_for(
    serial: str,
    model_sha256: str,
    delegate: str,
    num_threads: int,
    benchmark_args: tuple[str, ...],
) -> str:
    """Stable id of one benchmark configuration on one device.

    The same inputs give the same id in every process and run, so `--resume`
    and comparisons across runs can match cases. Argument order is kept, not
    sorted: sorting would make ("--a", "x", "--b", "y") equal ("--a", "y", "--b", "x").
    """
    canonical = json.dumps(
        {
            "serial": serial,
            "model_sha256": model_sha256,
            "delegate": delegate.value if isinstance(delegate, Enum) else delegate,
            "num_threads": int(num_threads),
            "benchmark_args": list(benchmark_args),
        },
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=True,
    )
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()[:16]


@functools.cache
def _results_schema() -> pyarrow.Schema:
    import pyarrow as pa

    def required(name: str, type_: pyarrow.DataType) -> pyarrow.Field:
        return pa.field(name, type_, nullable=False)

    def optional(name: str, type_: pyarrow.DataType) -> pyarrow.Field:
        return pa.field(name, type_, nullable=True)

    i64, f64, text = pa.int64(), pa.float64(), pa.string()
    return pa.schema(
        [
            required("schema_version", i64),
            required("run_id", text),
            required("case_id", text),
            required("repetition", i64),
            required("started_at", pa.timestamp("us", tz="UTC")),
            required("duration_s", f64),
            required("harness_version", text),
            required("adb_server", text),
            required("serial", text),
            required("device_model", text),
            required("manufacturer", text),
            optional("soc", text),
            required("abi", text),
            required("android_sdk", i64),
            optional("ram_bytes", i64),
            optional("tier", text),
            optional("build_fingerprint", text),
            required("model_name", text),
            required("variant", text),
            optional("quantization", text),
            required("model_sha256", text),
            required("model_size_bytes", i64),
            required("delegate", text),
            required("num_threads", i64),
            required("num_runs", i64),
            required("warmup_runs", i64),
            required("bench_binary_sha256", text),
            optional("init_us", f64),
            optional("first_inference_us", f64),
            optional("warmup_avg_us", f64),
            optional("inference_avg_us", f64),
            optional("inference_std_us", f64),
            optional("inference_min_us", f64),
            optional("inference_max_us", f64),
            optional("inference_p50_us", f64),
            optional("inference_p95_us", f64),
            optional("memory_init_mb", f64),
            optional("memory_overall_mb", f64),
            optional("memory_peak_mb", f64),
            optional("delegated_fraction", f64),
            optional("avg_power_mw", f64),
            optional("energy_mj_per_inference", f64),
            optional("power_method", text),
            optional("temp_start_c", f64),
            optional("temp_end_c", f64),
            optional("throttled", pa.bool_()),
            required("status", text),
            optional("error_type", text),
            optional("error_message", text),
            optional("raw_log_path", text),
        ],
        metadata={SCHEMA_VERSION_METADATA_KEY: str(SCHEMA_VERSION)},
    )


def __getattr__(name: str) -> object:
    # RESULTS_SCHEMA is built on first use so that importing records (the
    # parser, the device-side runner, the CLI) does not pay for pyarrow.
    if name == "RESULTS_SCHEMA":
        return _results_schema()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
