"""Reader of the BenchmarkResult file LiteRT's benchmark tool writes with --result_file_path.

The file carries the run's numbers at float precision (the stdout block rounds
latencies to 0.01 ms), and nothing else: no delegation lines, no failures, no
version. So a run is read from both and merged: numbers from the file, facts
from stdout. Like harness.benchlog, the reader never raises on bad input.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from harness.records import BenchmarkRun, ErrorType
from harness.runner.result_proto import benchmark_result_class

# BenchmarkResult LatencyMetrics field (ms) -> BenchmarkRun field (us). p5 has no column.
_LATENCY_FIELDS = (
    ("init_ms", "init_us"),
    ("first_inference_ms", "first_inference_us"),
    ("average_warm_up_ms", "warmup_avg_us"),
    ("avg_ms", "inference_avg_us"),
    ("stddev_ms", "inference_std_us"),
    ("min_ms", "inference_min_us"),
    ("max_ms", "inference_max_us"),
    ("median_ms", "inference_p50_us"),
    ("p95_ms", "inference_p95_us"),
)
# Fields a result file states more precisely than stdout; merge_result takes these.
MEASURED_FIELDS = (
    *(name for _, name in _LATENCY_FIELDS),
    "inference_count",
    "warmup_count",
    "memory_init_mb",
    "memory_overall_mb",
    "memory_peak_mb",
    "model_size_mb",
)
# Statistics of the measured loop: meaningless when it ran zero times.
_INFERENCE_FIELDS = frozenset(("avg_ms", "stddev_ms", "min_ms", "max_ms", "median_ms", "p95_ms"))


def read_benchmark_result(data: bytes) -> BenchmarkRun:
    """The run a serialized BenchmarkResult describes; a run with error/error_type when it is not one."""
    try:
        message_class: Any = benchmark_result_class()  # generated at run time: protobuf ships no types for it
        result = message_class.FromString(bytes(data))
    except Exception as exc:  # noqa: BLE001 - DecodeError and friends: garbage is data, not a crash
        return _garbage(f"not a BenchmarkResult message ({type(exc).__name__}: {exc})")
    if not result.HasField("latency_metrics"):
        return _garbage("BenchmarkResult without latency metrics")
    values: dict[str, Any] = {}  # BenchmarkRun fields
    misc = result.misc_metrics
    no_inference = misc.HasField("num_runs") and misc.num_runs == 0
    latency = result.latency_metrics
    for proto_name, run_name in _LATENCY_FIELDS:
        if latency.HasField(proto_name) and not (no_inference and proto_name in _INFERENCE_FIELDS):
            values[run_name] = getattr(latency, proto_name) * 1000.0
    memory = result.memory_metrics
    if memory.HasField("init_footprint_kb"):
        values["memory_init_mb"] = memory.init_footprint_kb / 1024.0
    if memory.HasField("overall_footprint_kb"):
        values["memory_overall_mb"] = memory.overall_footprint_kb / 1024.0
    if memory.HasField("peak_mem_mb") and memory.peak_mem_mb > 0:
        values["memory_peak_mb"] = float(memory.peak_mem_mb)
    if misc.HasField("num_runs"):
        values["inference_count"] = misc.num_runs
    if misc.HasField("num_warmup_runs"):
        values["warmup_count"] = misc.num_warmup_runs
    if misc.HasField("model_size_mb") and misc.model_size_mb > 0:
        values["model_size_mb"] = float(misc.model_size_mb)
    return BenchmarkRun(**values)


def _garbage(message: str) -> BenchmarkRun:
    return BenchmarkRun(error=message, error_type=ErrorType.GARBAGE)


def merge_result(stdout_run: BenchmarkRun, file_run: BenchmarkRun) -> BenchmarkRun:
    """`stdout_run` with the result file's numbers where the file states them.

    Everything only stdout knows (delegation, failures, threads, version) is
    kept from `stdout_run`; a file that could not be read changes nothing.
    """
    if not file_run.ok:
        return stdout_run
    changes = {name: getattr(file_run, name) for name in MEASURED_FIELDS if getattr(file_run, name) is not None}
    return dataclasses.replace(stdout_run, **changes)
