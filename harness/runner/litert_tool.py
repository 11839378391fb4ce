"""The LiteRT 2.x benchmark tool (`//litert/tools:benchmark_model`) for virtual devices.

Imitates benchmark_litert_model{_main}.cc at google-ai-edge/LiteRT
f67457790c9c2ab67347d6fe53270e8d3df20868 on ai_edge_litert's CompiledModel:
same flags, same order of steps, same LITERT_LOG lines (`SEVERITY: [file:line]
message`, with upstream's file and line) and the same BENCHMARK RESULTS block
and BenchmarkResult file. Everything goes to stdout, runtime lines included
(see native_log), so the harness reads one stream as it does for the classic
runner.

Acceleration is never invented. The real CompiledModel decides and its real
errors are reported through the tool's "Failed to compile model." path (exit
code 1). On a virtual phone (HARNESS_DEVICE_DELEGATES set) a request for an
NPU or GPU the phone's profile does not offer fails the way a phone without
that hardware fails, before any timing: no such accelerator is registered,
so compiling fails. This gate is needed because this host's LiteRT would
otherwise answer NPU|CPU by silently running everything on the CPU, which
would give a phone without an NPU an "npu" number. Flags that only tune
hardware the host lacks (GPU backend, vendor NPU options, perfetto, the
profiler, model runtime info) are accepted and echoed like the real tool but
change nothing here.
"""

from __future__ import annotations

import os
import signal
import sys
import time

import ai_edge_litert
import numpy as np
from ai_edge_litert.compiled_model import CompiledModel
from ai_edge_litert.environment import Environment
from ai_edge_litert.hardware_accelerator import HardwareAccelerator
from ai_edge_litert.options import CpuOptions, GpuOptions, Options

from harness.runner import memory
from harness.runner.flags import BenchmarkFailed, validate_memory_interval
from harness.runner.inputs import random_data
from harness.runner.litert_flags import (
    LiteRtParams,
    log_litert_params,
    parse_litert_flags,
    without_vendor_flags,
)
from harness.runner.loop import RunStats, run_loop
from harness.runner.native_log import native_log_relayed
from harness.runner.report import Log, fmt_num

DELEGATES_ENV = "HARNESS_DEVICE_DELEGATES"
_CC = "benchmark_litert_model.cc"
_H = "benchmark_litert_model.h"
_GPU_PRECISIONS = ("auto", "fp16", "fp32")


def main(argv: list[str] | None = None) -> int:
    """benchmark_litert_model_main.cc's Main: the process exit code."""
    # Memory deltas are measured from after the imports, as in runner.benchmark.
    baseline_kb = memory.high_water_mark_kb()
    if hasattr(signal, "SIGPIPE"):
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    args = sys.argv[1:] if argv is None else argv
    log = Log(sys.stdout)
    has_help = any(arg in ("--help", "-h") for arg in args)
    if has_help:
        # No vendor (Abseil) flags are compiled into this runner: the header lists none.
        log.line("\n  NPU Vendor Flags from LiteRT:\n")
    log.info("STARTING!")
    try:
        _benchmark(without_vendor_flags(args), log, baseline_kb)
    except BenchmarkFailed as failure:
        for line in failure.lines:
            log.error(line)
        if has_help:
            return 0
        log.error("Benchmarking failed.")
        return 1
    return 0


def _litert_log(log: Log, severity: str, where: str, message: str) -> None:
    """LITERT_LOG: `SEVERITY: [file:line] message` (where = `file:line`)."""
    log.line(f"{severity}: [{where}] {message}")


def _abort(log: Log, where: str, message: str) -> None:
    """LITERT_LOG(ERROR) then std::abort(): the process dies of SIGABRT, output already flushed."""
    _litert_log(log, "ERROR", where, message)
    sys.stdout.flush()
    os.abort()


def _failed(log: Log, where: str, *lines: str) -> BenchmarkFailed:
    """A failed LITERT_ASSIGN_OR_RETURN: the error status, its causes on `└ ` lines."""
    _litert_log(log, "ERROR", where, "")
    for line in lines:
        log.line(f"\u2514 {line}")
    return BenchmarkFailed()


def _benchmark(argv: list[str], log: Log, baseline_kb: int | None) -> None:
    params = validate_memory_interval(parse_litert_flags(argv, log), log)
    log_litert_params(params, log)
    monitor = None
    if params.report_peak_memory_footprint:
        monitor = memory.PeakMemoryMonitor(params.memory_footprint_check_interval_ms)
        monitor.start()
    model_size_mb = _model_file_size(params.graph, log) / 1e6

    init_start_ns = time.perf_counter_ns()
    session = _init(params, log)
    init_kb = memory.high_water_mark_kb()
    startup_us = (time.perf_counter_ns() - init_start_ns) // 1000
    if model_size_mb > 0:
        log.info(f"The input model file size (MB): {fmt_num(model_size_mb)}")
    else:
        log.warn("Failed to get the input model file size.")
    log.info(f"Initialized session in {fmt_num(startup_us / 1e3)}ms.")

    input_bytes = session.prepare_inputs(params)
    if params.dry_run:
        warmup_runs, warmup_min_secs, num_runs, min_secs = 0, -1.0, 0, -1.0
    else:
        warmup_runs, warmup_min_secs = params.warmup_runs, params.warmup_min_secs
        num_runs, min_secs = params.num_runs, params.min_secs
    warmup = run_loop(
        session.run, warmup_runs, warmup_min_secs, params.max_secs, params.run_delay, params.run_frequency, log
    )
    if warmup.error is not None:
        raise BenchmarkFailed()
    regular = run_loop(session.run, num_runs, min_secs, params.max_secs, params.run_delay, params.run_frequency, log)
    overall_kb = memory.high_water_mark_kb()
    peak_mb = monitor.stop() if monitor is not None else None
    memory_kb = None
    if baseline_kb is not None and init_kb is not None and overall_kb is not None:
        memory_kb = (init_kb - baseline_kb, overall_kb - baseline_kb)
    _on_benchmark_end(
        params,
        log,
        session.signature,
        model_size_mb,
        startup_us,
        input_bytes,
        warmup.stats,
        regular.stats,
        memory_kb,
        peak_mb,
    )
    if regular.error is not None:
        raise BenchmarkFailed()


def _model_file_size(graph: str, log: Log) -> int:
    """MayGetModelFileSize: `fd:FD:OFFSET:SIZE` or the file's size; -1 when unknown."""
    parts = graph.split(":")
    if parts[0] == "fd":
        if len(parts) != 4 or not parts[3].lstrip("+-").isdigit():
            _litert_log(log, "ERROR", f"{_H}:309", f"Failed to parse model file size: {graph}")
            return -1
        return int(parts[3])
    return os.path.getsize(graph) if os.path.isfile(graph) else -1


class _Session:
    """The compiled model, its signature and buffers: what Init leaves for the run."""

    def __init__(self, model: CompiledModel, signature: str, index: int) -> None:
        self.model = model
        self.signature = signature
        self.index = index
        self.inputs = model.create_input_buffers(index)
        self.outputs = model.create_output_buffers(index)
        self.value_ranges: dict[str, tuple[float, float]] = {}

    def run(self) -> None:
        self.model.run_by_index(self.index, self.inputs, self.outputs)

    def prepare_inputs(self, params: LiteRtParams) -> int:
        """PrepareInputData: random values (within --input_layer_value_range); the input bytes."""
        details = self.model.get_input_tensor_details(self.signature)
        names = self.model.get_signature_list()[self.signature]["inputs"]
        rng = np.random.default_rng()
        total = 0
        for name, buffer in zip(names, self.inputs, strict=False):
            detail = details[name]
            dtype = np.dtype(detail["dtype"])
            value_range = self.value_ranges.get(name)
            if value_range is not None and dtype.kind in "fc":
                data = rng.uniform(*value_range, size=tuple(detail["shape"])).astype(dtype)
            else:
                int_range = (int(value_range[0]), int(value_range[1])) if value_range else None
                data = random_data(rng, dtype.type, tuple(int(d) for d in detail["shape"]), int_range)
            buffer.write(data)
            total += data.nbytes
        return total


def _value_ranges(text: str, log: Log) -> dict[str, tuple[float, float]]:
    """PopulateInputValueRanges."""
    ranges: dict[str, tuple[float, float]] = {}
    for item in text.split(":"):
        parts = item.split(",")
        if len(parts) != 3:
            _litert_log(log, "ERROR", f"{_CC}:323", f"Wrong input value range item specified: {item}")
            raise BenchmarkFailed()
        try:
            low, high = float(parts[1]), float(parts[2])
        except ValueError:
            low, high = 1.0, 0.0
        if low > high:
            _litert_log(
                log, "ERROR", f"{_CC}:333", f"Wrong low and high value of the input value range specified: {item}"
            )
            raise BenchmarkFailed()
        ranges[parts[0]] = (low, high)
    return ranges


def _init(params: LiteRtParams, log: Log) -> _Session:
    """BenchmarkLiteRtModel::Init."""
    value_ranges = _value_ranges(params.input_layer_value_range, log) if params.input_layer_value_range else {}
    env_paths = {}
    if params.use_npu:
        _litert_log(log, "INFO", f"{_CC}:270", f"dispatch_library_path: {params.dispatch_library_path}")
        _litert_log(log, "INFO", f"{_CC}:274", f"compiler_plugin_library_path: {params.compiler_plugin_library_path}")
        _litert_log(log, "INFO", f"{_CC}:277", f"compiler_cache_path: {params.compiler_cache_path}")
        # The Python environment has no compiler cache option: the cache path is only logged.
        env_paths = {
            "dispatch_library_path": params.dispatch_library_path or "",
            "compiler_plugin_path": params.compiler_plugin_library_path or "",
        }
    with native_log_relayed(log):
        environment = Environment.create(
            runtime_path=os.path.dirname(os.path.abspath(ai_edge_litert.__file__)),
            **env_paths,
        )

    _litert_log(log, "INFO", f"{_CC}:305", f"Loading model from: {params.graph}")
    graph = params.graph
    if graph is None or not os.path.isfile(graph) or not os.access(graph, os.R_OK):
        # What the runtime reports before Model::CreateFromFile fails.
        log.error(f"Could not open '{params.graph}'.")
        raise _failed(log, f"{_CC}:306", "Failed to load model from file", "Failed to load model.")

    options = _compiled_model_options(params, log)
    missing = _hardware_missing_on_device(params)
    if missing is not None:
        raise _failed(
            log,
            f"{_CC}:364",
            f"No {missing.upper()} accelerator is registered: this device has no {missing.upper()} "
            f"({DELEGATES_ENV}={os.environ.get(DELEGATES_ENV, '')})",
            "Failed to compile model.",
        )
    try:
        with native_log_relayed(log):
            model = CompiledModel.from_file(graph, environment=environment, options=options)
    except (RuntimeError, ValueError) as exc:
        lines = [line.lstrip("\u2514 ").strip() for line in str(exc).splitlines()]
        lines = [line for line in lines if line and not line.startswith("ERROR: [")]
        if any("Failed to load model" in line for line in lines):
            raise _failed(log, f"{_CC}:306", *lines, "Failed to load model.") from None
        raise _failed(log, f"{_CC}:364", *lines, "Failed to compile model.") from None

    signatures = list(model.get_signature_list())
    index = model.get_signature_index(params.signature_to_run_for) if params.signature_to_run_for else 0
    if not 0 <= index < len(signatures):
        raise _failed(log, f"{_CC}:391", "Signature not found", "Failed to get current signature key.")
    try:
        session = _Session(model, signatures[index], index)
    except (RuntimeError, ValueError) as exc:
        raise _failed(log, f"{_CC}:406", str(exc), "Failed to create input buffer.") from None
    session.value_ranges = value_ranges
    return session


def requested_accelerators(params: LiteRtParams) -> HardwareAccelerator:
    """GetRequestedHardwareAccelerators, as a HardwareAccelerator bit set."""
    accelerators = HardwareAccelerator(0)
    if params.use_npu:
        accelerators |= HardwareAccelerator.NPU
    if params.use_gpu:
        accelerators |= HardwareAccelerator.GPU
    if params.use_cpu or not params.require_full_delegation:
        accelerators |= HardwareAccelerator.CPU
    return accelerators


def _compiled_model_options(params: LiteRtParams, log: Log) -> Options:
    """CreateCompiledModelOptions, including its two std::abort()s."""
    if params.use_cpu and params.require_full_delegation:
        _abort(log, f"{_CC}:110", "Requesting full delegation and CPU acceleration are incompatible.")
    accelerators = requested_accelerators(params)
    gpu_options = None
    if params.use_gpu:
        if params.gpu_precision not in _GPU_PRECISIONS:
            _abort(log, f"{_CC}:180", f"Invalid gpu-precision: {params.gpu_precision}")
        gpu_options = GpuOptions(
            benchmark_mode=True,
            enforce_f32=params.gpu_precision == "fp32",
            constant_tensor_sharing=params.enable_weight_sharing,
        )
    cpu_options = None
    if accelerators & HardwareAccelerator.CPU and (params.num_threads > 0 or params.xnnpack_weight_cache_file_path):
        cpu_options = CpuOptions(
            num_threads=max(params.num_threads, 0),
            xnnpack_weight_cache_path=params.xnnpack_weight_cache_file_path,
        )
    return Options(hardware_accelerators=accelerators, cpu_options=cpu_options, gpu_options=gpu_options)


def _hardware_missing_on_device(params: LiteRtParams) -> str | None:
    """ "npu" / "gpu" when asked for but absent from this virtual phone's profile; None otherwise."""
    offered = os.environ.get(DELEGATES_ENV)
    if offered is None:
        return None
    names = {name.strip().lower() for name in offered.split(",")}
    for requested, name in ((params.use_npu, "npu"), (params.use_gpu, "gpu")):
        if requested and name not in names:
            return name
    return None


def _on_benchmark_end(
    params: LiteRtParams,
    log: Log,
    signature: str,
    model_size_mb: float,
    startup_us: int,
    input_bytes: int,
    warmup: RunStats,
    inference: RunStats,
    memory_kb: tuple[int, int] | None,
    peak_mb: float | None,
) -> None:
    """BenchmarkLoggingListener::OnBenchmarkEnd (benchmark_litert_model.h)."""

    def info(line: int, message: str) -> None:
        _litert_log(log, "INFO", f"{_H}:{line}", message)

    info(89, "\n========== BENCHMARK RESULTS ==========")
    if signature:
        info(91, f"Signature name:       {signature}")
    info(94, f"Model initialization: {startup_us / 1000.0:.2f} ms")
    info(95, f"Warmup (first):       {warmup.first / 1000.0:.2f} ms")
    info(97, f"Warmup (avg):         {warmup.avg / 1000.0:.2f} ms ({warmup.count} runs)")
    info(99, f"Inference (avg):      {inference.avg / 1000.0:.2f} ms ({inference.count} runs)")
    if inference.count > 0:
        info(103, f"Inference (min):      {inference.min / 1000.0:.2f} ms")
        info(105, f"Inference (max):      {inference.max / 1000.0:.2f} ms")
        info(107, f"Inference (std):      {inference.std / 1000.0:.2f}")
    else:
        info(110, "No inference runs were performed.")
    throughput = _throughput_mb_per_s(input_bytes, inference)
    if throughput > 0:
        info(115, f"Throughput:           {throughput:.2f} MB/s")
    else:
        info(117, "No throughput data available (throughput <= 0).")
    if memory_kb is not None:
        info(124, "\nMemory Usage:")
        info(125, f"Init footprint:       {memory_kb[0] / 1024.0:.2f} MB")
        info(127, f"Overall footprint:    {memory_kb[1] / 1024.0:.2f} MB")
        if peak_mb is not None and peak_mb > 0:
            info(132, f"Peak memory:          {peak_mb:.2f} MB")
        else:
            info(134, "Peak memory usage not available. (peak_mem_mb <= 0)")
    info(138, "======================================\n")
    if params.result_file_path:
        _save_result(
            params.result_file_path,
            log,
            model_size_mb,
            startup_us,
            throughput,
            warmup,
            inference,
            memory_kb,
            peak_mb,
        )


def _throughput_mb_per_s(input_bytes: int, inference: RunStats) -> float:
    """BenchmarkResults::throughput_MB_per_second, IEEE division included (0/0 is NaN)."""
    total_us = round(inference.avg * inference.count)
    bytes_done = input_bytes * inference.count * 1e6
    if total_us == 0:
        return float("nan") if bytes_done == 0 else float("inf")
    return bytes_done / total_us / (1024.0 * 1024.0)


def _save_result(
    user_path: str,
    log: Log,
    model_size_mb: float,
    startup_us: int,
    throughput: float,
    warmup: RunStats,
    inference: RunStats,
    memory_kb: tuple[int, int] | None,
    peak_mb: float | None,
) -> None:
    """--result_file_path: the serialized BenchmarkResult, as OnBenchmarkEnd writes it."""
    from harness.runner.result_proto import benchmark_result_class

    result = benchmark_result_class()()
    latency = result.latency_metrics
    latency.init_ms = startup_us / 1000.0
    latency.first_inference_ms = warmup.first / 1000.0
    latency.average_warm_up_ms = warmup.avg / 1000.0
    latency.min_ms = inference.min / 1000.0
    latency.max_ms = inference.max / 1000.0
    latency.stddev_ms = inference.std / 1000.0
    latency.avg_ms = inference.avg / 1000.0
    latency.median_ms = inference.median / 1000.0
    latency.p5_ms = inference.p5 / 1000.0
    latency.p95_ms = inference.p95 / 1000.0
    if memory_kb is not None:
        result.memory_metrics.init_footprint_kb = memory_kb[0]
        result.memory_metrics.overall_footprint_kb = memory_kb[1]
        if peak_mb is not None and peak_mb > 0:
            result.memory_metrics.peak_mem_mb = peak_mb
    misc = result.misc_metrics
    misc.model_size_mb = model_size_mb
    misc.num_runs = inference.count
    misc.num_warmup_runs = warmup.count
    misc.model_throughput_in_mb_per_sec = throughput
    try:
        # Opened first: the real tool logs "Saving" only once its ofstream is good.
        with open(user_path, "wb") as out:
            _litert_log(log, "INFO", f"{_H}:177", f"Saving benchmark result to: {user_path}")
            out.write(result.SerializeToString())
    except OSError:
        _litert_log(log, "ERROR", f"{_H}:184", f"Failed to save benchmark result to: {user_path}")
        return
    _litert_log(log, "INFO", f"{_H}:181", f"Saved benchmark result to: {user_path}")
