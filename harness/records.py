"""Records shared across the harness: frozen dataclasses, units in field names."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import types
import typing
from dataclasses import dataclass
from datetime import UTC, datetime
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
    NPU = "npu"  # a vendor NPU through LiteRT 2.x's dispatch libraries (the LiteRT benchmark dialect only)
    HEXAGON = "hexagon"


class BenchmarkDialect(str, Enum):
    """Which benchmark program measured a row; both are named `benchmark_model` on a phone."""

    CLASSIC = "classic"  # TensorFlow Lite's //tensorflow/lite/tools/benchmark:benchmark_model
    LITERT = "litert"  # LiteRT 2.x's //litert/tools:benchmark_model (CompiledModel API)


class ErrorType(str, Enum):
    """Why a benchmark run produced no (complete) measurement: what the parser reads in the
    tool's output, then what the sweep sees around it."""

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
    # Seen by the sweep, not in the output:
    EXIT_CODE = "exit_code"  # non-zero exit with a complete summary
    TIMEOUT = "timeout"  # the case exceeded its wall-clock limit and was killed
    NO_BINARY = "no_binary"  # no benchmark binary for the phone's ABI (or for the dialect farm.toml asks of it)
    UNKNOWN_BINARY = "unknown_binary"  # a binary whose --help shows neither benchmark_model dialect
    UNSUPPORTED_BY_BINARY = "unsupported_by_binary"  # the phone's benchmark program cannot ask for that delegate
    PUSH_FAILED = "push_failed"  # the phone refused the files (full, read-only)
    DEVICE_LOST = "device_lost"  # the transport to the phone broke
    POWER_CONTROL_FAILED = "power_control_failed"  # the phone refused `dumpsys battery unplug`
    LEASED = "leased"  # another sweep held the phone's lease (harness.phone.lease): skipped, --resume runs it


class RepetitionReason(str, Enum):
    """Why a repetition ran: planned (--repetitions), or added because the order was still undecided."""

    PLANNED = "planned"
    UNTIL_DECIDED = "until_decided"


class NumericsStatus(str, Enum):
    """Whether a case's outputs agreed with the host's reference for the same inputs (harness.numerics)."""

    OK = "ok"
    MISMATCH = "mismatch"
    NOT_CHECKED = "not_checked"  # numerics_reason says why


class NumericsReference(str, Enum):
    """What a case's outputs were compared with, on the host's plain CPU kernels, one thread."""

    FP32_SIBLING = "fp32_sibling"  # the model's fp32 variant of the same convert manifest
    SELF = "self"  # the variant itself (no known fp32 sibling)


class DeviceKind(str, Enum):
    """What a phone reports about itself: a real phone, or an emulator / virtual farm device."""

    PHYSICAL = "physical"
    VIRTUAL = "virtual"


class PowerMethod(str, Enum):
    """Where a row's power figures come from."""

    FUEL_GAUGE = "fuel_gauge"  # the phone's battery gauge: measured
    MODEL = "model"  # a virtual device's documented power model: never a measurement

    @property
    def measured(self) -> bool:
        return self is PowerMethod.FUEL_GAUGE


class ClockMethod(str, Enum):
    """Where a row's CPU clock figures come from."""

    SYSFS = "sysfs"  # the phone's cpufreq files: what its governor set
    MODEL = "model"  # a virtual device's utilisation model: the profile's clocks, never throttled


class TemperatureMethod(str, Enum):
    """Where a row's temperatures come from."""

    SENSOR = "sensor"  # the phone's thermal zones
    MODEL = "model"  # a virtual device's model (never a measurement; it never slows the benchmark)


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
    inference_count: int | None = None  # `count=` of the measured loop, not the requested --num_runs
    warmup_count: int | None = None  # `count=` of the warmup loop
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
    binary_version: str | None = None  # when the tool prints one
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


def config_label(variant: str, delegate: str, num_threads: int) -> str:
    """How a configuration is named wherever a person reads one: `fp16/xnnpack/x2`."""
    return f"{variant}/{delegate.value if isinstance(delegate, Enum) else delegate}/x{num_threads}"


CONFIG_LABEL_SQL = "variant || '/' || delegate || '/x' || num_threads"
"""config_label as a SQL expression over result columns."""


SCHEMA_VERSION = 3
"""Version of the results schema (ResultRow / RESULTS_SCHEMA).

v3 (rows as in v2): a results file may be a compaction of a (run, device)'s files, which supersedes the
files its metadata lists (see harness.store, "Layout"); a v2 reader would count both after a crash, so it
must refuse v3 files rather than misread them.

Compatibility rule: adding a nullable column is compatible (files without it read it as
null; no version bump). A rename, a removal, a new required column or a change of what a
column means is a new version, with an upgrade step in store.UPGRADES that turns the
previous version's table into this one.
"""

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

    Field order is the column order of RESULTS_SCHEMA, which is derived from these
    annotations: `X | None` is a nullable column. Null means unknown or not measured,
    never a made-up value. Memory figures are the benchmark process's RSS high-water
    mark, not the model's footprint.
    """

    schema_version: int = SCHEMA_VERSION
    run_id: str
    case_id: str
    repetition: int
    repetition_reason: RepetitionReason | None = None  # None in rows of a harness before --until-decided
    started_at: datetime  # timezone-aware; normalised to UTC
    duration_s: float
    harness_version: str
    adb_server: str
    serial: str
    device_kind: DeviceKind | None = None  # None only in upgraded v1 rows that cannot tell
    device_model: str | None = None
    manufacturer: str | None = None
    soc: str | None = None  # the most specific SoC name the phone gives, for people
    soc_identities: tuple[str, ...] | None = None  # what tier rules matched (profiles.soc_identities)
    abi: str | None = None
    android_sdk: int | None = None
    ram_bytes: int | None = None
    tier: str | None = None
    build_fingerprint: str | None = None
    model_name: str
    variant: str
    quantization: str | None = None
    model_sha256: str
    model_size_bytes: int
    delegate: Delegate
    num_threads: int
    num_runs: int  # requested (--num_runs)
    warmup_runs: int  # requested (--warmup_runs)
    inference_count: int | None = None  # measured: the inferences the figures below summarise
    warmup_count: int | None = None  # measured: warmup inferences before them
    bench_binary_name: str | None = None
    bench_binary_sha256: str | None = None  # None: no binary reached the phone (skipped, push failed)
    bench_binary_version: str | None = None  # when the binary prints one
    bench_dialect: BenchmarkDialect | None = (
        None  # None: not known (rows of an older harness, skipped before detection)
    )
    # The accelerator's power/performance mode the benchmark asked for, when it asks for one (the LiteRT tool runs
    # NPUs in burst mode by default: faster than an app gets unless it asks for the same).
    performance_mode: str | None = None
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
    power_method: PowerMethod | None = None
    temp_start_c: float | None = None
    temp_end_c: float | None = None
    temperature_method: TemperatureMethod | None = None
    throttled: bool | None = None  # judged on sensor temperatures only
    # Sustained cases (harness run --sustained): one row per window of consecutive benchmark processes, no
    # cool-down between them; null in burst rows (harness.sustained).
    window_index: int | None = None
    window_start_s: float | None = None  # from the start of the case's first window
    window_s: float | None = None  # the window's length asked (--window): the tool's --min_secs and --max_secs
    target_fps: float | None = None  # the rate asked (--run_frequency); null: as fast as it goes
    cpu_cur_freq_khz: tuple[int, ...] | None = None  # each CPU cluster's scaling_cur_freq at the window's end
    cpu_avg_freq_khz: tuple[float, ...] | None = None  # each cluster's mean clock over the window (time_in_state)
    clock_method: ClockMethod | None = None
    # The outputs for the model's fixed inputs against the host's reference (harness.numerics); nullable
    # additions of schema v2, null in rows of a harness before them.
    output_max_abs_error: float | None = None
    output_rmse: float | None = None
    output_cosine: float | None = None
    output_top1_agreement: float | None = None  # the first output is a class-score vector
    output_sym_kl: float | None = None  # the first output is a probability vector
    output_reference_max_abs: float | None = None  # the reference's largest magnitude: scales the error
    numerics_reference: NumericsReference | None = None
    numerics_status: NumericsStatus | None = None
    numerics_reason: str | None = None  # why not checked, or what disagreed
    status: CaseStatus
    error_type: ErrorType | None = None
    error_message: str | None = None
    raw_log_path: str | None = None

    def __post_init__(self) -> None:
        # A naive datetime would be stored as if it were UTC: refuse the ambiguity.
        if self.started_at.tzinfo is None or self.started_at.utcoffset() is None:
            raise ValueError(f"started_at must be timezone-aware, got {self.started_at!r}")
        object.__setattr__(self, "started_at", self.started_at.astimezone(UTC))
        for name, enum in _ENUM_FIELDS.items():
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, enum(value))
        for name in _TUPLE_FIELDS:
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, tuple(value))

    def to_record(self) -> dict[str, object]:
        """The row as plain values, keyed and ordered like RESULTS_SCHEMA."""
        out: dict[str, object] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = value.value if isinstance(value, Enum) else list(value) if isinstance(value, tuple) else value
        return out


def _column_types() -> dict[str, tuple[type, bool]]:
    """ResultRow field -> (value type, nullable), from its annotations."""
    out = {}
    for name, hint in typing.get_type_hints(ResultRow).items():
        args = typing.get_args(hint)
        nullable = isinstance(hint, types.UnionType) and type(None) in args
        value_type = next(a for a in args if a is not type(None)) if nullable else hint
        out[name] = (value_type, nullable)
    return out


_ENUM_FIELDS: dict[str, type[Enum]] = {
    name: kind for name, (kind, _) in _column_types().items() if isinstance(kind, type) and issubclass(kind, Enum)
}
_TUPLE_FIELDS = tuple(name for name, (kind, _) in _column_types().items() if typing.get_origin(kind) is tuple)
ROW_FIELDS = tuple(f.name for f in dataclasses.fields(ResultRow))
MEASURED_COLUMNS = tuple(
    f.name
    for f in dataclasses.fields(BenchmarkRun)
    if f.name in ROW_FIELDS and f.name.endswith(("_us", "_mb", "_count"))
)
"""What a parsed BenchmarkRun contributes to a results row, under the same names (units in names)."""


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

    def arrow_type(kind: object) -> pyarrow.DataType:
        if kind is datetime:
            return pa.timestamp("us", tz="UTC")
        if typing.get_origin(kind) is tuple:
            return pa.list_(arrow_type(typing.get_args(kind)[0]))
        if isinstance(kind, type) and issubclass(kind, Enum):
            return pa.string()  # stored as its value
        return {bool: pa.bool_(), int: pa.int64(), float: pa.float64(), str: pa.string()}[kind]  # type: ignore[index]

    return pa.schema(
        [pa.field(name, arrow_type(kind), nullable=nullable) for name, (kind, nullable) in _column_types().items()],
        metadata={SCHEMA_VERSION_METADATA_KEY: str(SCHEMA_VERSION)},
    )


def __getattr__(name: str) -> pyarrow.Schema:
    # RESULTS_SCHEMA is built on first use so that importing records (the
    # parser, the device-side runner, the CLI) does not pay for pyarrow.
    if name == "RESULTS_SCHEMA":
        return _results_schema()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
