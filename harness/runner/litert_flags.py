"""The LiteRT 2.x benchmark tool's flags: BenchmarkModel's own plus BenchmarkLiteRtModel's.

Names, order, defaults and usage texts follow
litert/tools/benchmark_litert_model.h (DefaultParams, GetFlags) and
tflite/tools/benchmark/benchmark_model.cc (BenchmarkModel::GetFlags) at
google-ai-edge/LiteRT f67457790c9c2ab67347d6fe53270e8d3df20868.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.runner.flags import (
    DEFAULT_MEMORY_CHECK_INTERVAL_MS,
    Flag,
    echo_param,
    parse_values,
)
from harness.runner.report import Log

# The prefixes of the vendor (Abseil) flags that benchmark_litert_model_main.cc
# takes out of argv before the benchmark's own parser sees it.
VENDOR_FLAG_PREFIXES = ("qualcomm_", "mediatek_", "google_tensor_", "intel_openvino_", "samsung_")

FLAGS: tuple[Flag, ...] = (
    Flag("num_runs", int, "expected number of runs, see also min_secs, max_secs"),
    Flag(
        "min_secs",
        float,
        "minimum number of seconds to rerun for, potentially making the actual number of "
        "runs to be greater than num_runs",
    ),
    Flag(
        "max_secs",
        float,
        "maximum number of seconds to rerun for, potentially making the actual number of "
        "runs to be less than num_runs. Note if --max-secs is exceeded in the middle of a run, "
        "the benchmark will continue to the end of the run but will not start the next run.",
    ),
    Flag("run_delay", float, "delay between runs in seconds"),
    Flag(
        "run_frequency",
        float,
        "Execute at a fixed frequency, instead of a fixed delay.Note if the targeted rate per "
        "second cannot be reached, the benchmark would start the next run immediately, trying "
        "its best to catch up. If set, this will override run_delay.",
    ),
    Flag("num_threads", int, "number of threads"),
    Flag(
        "use_caching",
        bool,
        "Enable caching of prepacked weights matrices in matrix multiplication routines. "
        "Currently implies the use of the Ruy library.",
    ),
    Flag("benchmark_name", str, "benchmark name"),
    Flag("output_prefix", str, "benchmark output prefix"),
    Flag(
        "warmup_runs",
        int,
        "minimum number of runs performed on initialization, to allow performance "
        "characteristics to settle, see also warmup_min_secs",
    ),
    Flag(
        "warmup_min_secs",
        float,
        "minimum number of seconds to rerun for, potentially making the actual number of "
        "warm-up runs to be greater than warmup_runs",
    ),
    Flag(
        "verbose",
        bool,
        "Whether to log parameters whose values are not set. By default, only log those "
        "parameters that are set by parsing their values from the commandline flags.",
    ),
    Flag(
        "dry_run",
        bool,
        "Whether to run the tool just with simply loading the model, allocating tensors etc. "
        "but without actually invoking any op kernels.",
    ),
    Flag(
        "report_peak_memory_footprint",
        bool,
        "Report the peak memory footprint by periodically checking the memory footprint. "
        "Internally, a separate thread will be spawned for this periodic check. Therefore, "
        "the performance benchmark result could be affected.",
    ),
    Flag(
        "memory_footprint_check_interval_ms",
        int,
        "The interval in millisecond between two consecutive memory footprint checks. This "
        "is only used when --report_peak_memory_footprint is set to true.",
    ),
    Flag(
        "gpu_invoke_loop_times",
        int,
        "Number of GPU delegate invoke loop iterations. If > 0 then reported latency is "
        "divided by this number. Used only when TFLITE_GPU_ENABLE_INVOKE_LOOP is defined.",
    ),
    Flag("graph", str, "The path to the model file."),
    Flag("signature_to_run_for", str, "The signature to run for."),
    Flag("use_cpu", bool, "Whether to use CPU accelerator."),
    Flag("use_gpu", bool, "Whether to use GPU accelerator."),
    Flag("use_npu", bool, "Whether to use NPU accelerator."),
    Flag("dispatch_library_path", str, "Dispatch library path."),
    Flag("compiler_plugin_library_path", str, "Compiler plugin library path. Only for JIT compilation."),
    Flag("compiler_cache_path", str, "Compiler plugin cache path, used to store JIT-compiled models."),
    Flag("require_full_delegation", bool, "Whether to require full delegation."),
    Flag("use_profiler", bool, "Whether to use profiler."),
    Flag("enable_perfetto", bool, "Whether to enable perfetto tracing."),
    Flag("gpu_backend", str, "GPU backend to use when using GPU accelerator."),
    Flag("gpu-precision", str, "GPU precision option [auto|fp16|fp32]."),
    Flag("gpu_low_priority", bool, "Whether to use low priority for GPU accelerator."),
    Flag("result_file_path", str, "Path to save the benchmark result in binary proto format."),
    Flag("model_runtime_info_output_file", str, "Path to save the model runtime info in binary proto format."),
    Flag("mediatek_nerun_pilot_version", str, "Which version of the MediaTek NPU SDK to use."),
    Flag(
        "input_layer_value_range",
        str,
        "A map-like string representing value range for *integer* and *float* input layers. "
        "Each item is separated by ':', and the item value consists of input layer name and "
        "range values (both low and high are inclusive) separated by ',', e.g. "
        "input1,1.0,2.0:input2,0,254",
    ),
    Flag("enable_weight_sharing", bool, "Whether to enable weight (constant tensor) sharing."),
    Flag("convert_weights_on_gpu", bool, "Whether to convert weights on the GPU."),
    Flag("gpu_serialization_dir", str, "Path to the GPU shader serialization directory."),
    Flag("gpu_model_cache_key", str, "Model cache key for GPU shader serialization."),
    Flag("gpu_serialize_external_tensors", bool, "Whether to serialize external constant tensors in weight cache."),
    Flag("gpu_prefer_texture_weights", bool, "Whether to prefer texture weights for GPU."),
    Flag(
        "gpu_wait_for_weights_conversion_complete",
        bool,
        "Whether to block and wait for weights conversion on GPU complete.",
    ),
    Flag("gpu_cache_compiled_programs_only", bool, "Whether to cache only the compiled programs."),
    Flag(
        "xnnpack_weight_cache_file_path",
        str,
        "Path to an XNNPACK packed-weight cache file. Use ':memory' for an in-memory cache on supported builds.",
    ),
)

# BenchmarkLiteRtModel does not override LogParams: only the base flags are echoed.
ECHOED: tuple[tuple[str, str], ...] = (
    ("num_runs", "Min num runs"),
    ("min_secs", "Min runs duration (seconds)"),
    ("max_secs", "Max runs duration (seconds)"),
    ("run_delay", "Inter-run delay (seconds)"),
    ("run_frequency", "Number of prorated runs per second"),
    ("num_threads", "Num threads"),
    ("use_caching", "Use caching"),
    ("benchmark_name", "Benchmark name"),
    ("output_prefix", "Output prefix"),
    ("warmup_runs", "Min warmup runs"),
    ("warmup_min_secs", "Min warmup runs duration (seconds)"),
    ("dry_run", "Run w/o invoking kernels"),
    ("report_peak_memory_footprint", "Report the peak memory footprint"),
    ("memory_footprint_check_interval_ms", "Memory footprint check interval (ms)"),
)


@dataclass(frozen=True)
class LiteRtParams:
    num_runs: int = 50
    min_secs: float = 1.0
    max_secs: float = 150.0
    run_delay: float = -1.0
    run_frequency: float = -1.0
    num_threads: int = -1
    use_caching: bool = False
    benchmark_name: str = ""
    output_prefix: str = ""
    warmup_runs: int = 1
    warmup_min_secs: float = 0.5
    verbose: bool = False
    dry_run: bool = False
    report_peak_memory_footprint: bool = False
    memory_footprint_check_interval_ms: int = DEFAULT_MEMORY_CHECK_INTERVAL_MS
    gpu_invoke_loop_times: int = 1
    graph: str = ""
    signature_to_run_for: str = ""
    use_cpu: bool = True
    use_gpu: bool = False
    use_npu: bool = False
    dispatch_library_path: str = ""
    compiler_plugin_library_path: str = ""
    compiler_cache_path: str = ""
    require_full_delegation: bool = False
    use_profiler: bool = False
    enable_perfetto: bool = False
    gpu_backend: str = ""
    gpu_precision: str = "auto"
    gpu_low_priority: bool = False
    result_file_path: str = ""
    model_runtime_info_output_file: str = ""
    mediatek_nerun_pilot_version: str = "version8"
    input_layer_value_range: str = ""
    enable_weight_sharing: bool = False
    convert_weights_on_gpu: bool = False
    gpu_serialization_dir: str = ""
    gpu_model_cache_key: str = ""
    gpu_serialize_external_tensors: bool = False
    gpu_prefer_texture_weights: bool = False
    gpu_wait_for_weights_conversion_complete: bool = False
    gpu_cache_compiled_programs_only: bool = False
    xnnpack_weight_cache_file_path: str = ""
    # Flags given on the command line: LogParams echoes only these (unless verbose).
    given: frozenset[str] = frozenset()


def without_vendor_flags(argv: list[str]) -> list[str]:
    """argv as benchmark_litert_model_main.cc hands it on: vendor flags removed."""
    kept = []
    for arg in argv:
        name = arg
        if arg not in ("--", "-") and arg.startswith("-"):
            name = arg[2:] if arg.startswith("--") else arg[1:]
            name = name.split("=", 1)[0]
            if name.startswith(VENDOR_FLAG_PREFIXES):
                continue
        kept.append(arg)
    return kept


def parse_litert_flags(argv: list[str], log: Log) -> LiteRtParams:
    """LiteRtParams from `argv` (vendor flags already removed); see flags.parse_values."""
    values = parse_values(argv, FLAGS, LiteRtParams(), log)
    return LiteRtParams(**values, given=frozenset(values))  # type: ignore[arg-type]


def log_litert_params(params: LiteRtParams, log: Log) -> None:
    """BenchmarkModel::LogParams."""
    log.info(f"Log parameter values verbosely: [{int(params.verbose)}]")
    for name, label in ECHOED:
        echo_param(params, name, label, log)
