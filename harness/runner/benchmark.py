"""benchmark_model for x86_64 virtual devices, on the LiteRT interpreter.

Same flags, same flow (BenchmarkModel::Run / BenchmarkTfLiteModel::Init) and
same output lines as TensorFlow Lite's benchmark_model, so that everything
downstream parses one format. Kept to numpy and ai_edge_litert so it starts
in a fraction of a second on a device's Python.
"""

from __future__ import annotations

import os
import re
import signal
import sys
import time

import numpy as np
from ai_edge_litert import __version__ as litert_version
from ai_edge_litert.interpreter import Interpreter, OpResolverType

from harness import __version__
from harness.runner import delegates, memory
from harness.runner.flags import BenchmarkFailed, Params, log_params, parse_flags, validate
from harness.runner.inputs import InputLayer, parse_input_layers, random_data, read_value_file
from harness.runner.loop import run_loop
from harness.runner.native_log import native_log_relayed
from harness.runner.report import Log, fmt_num

# Runtime messages are several reporter messages glued together; these are
# the seams between them ("...model?Registration failed.", "...custom op: X.\n
# See instructions: URL Node number 0 (X) failed to prepare.").
_MESSAGE_SEAMS = re.compile(r"\n|(?<=[.?!])(?=[A-Z])|\s(?=Node number \d+ \()")
_MODEL_NOT_LOADED = "The model allocation is null/empty"


def main(argv: list[str] | None = None) -> int:
    # Memory deltas are measured from here, after this program's imports
    # (Python, numpy, LiteRT already loaded): the real tool's "start of the
    # tool" likewise has its code loaded, and the figures then show what the
    # model and the interpreter add.
    baseline_kb = memory.high_water_mark_kb()
    if hasattr(signal, "SIGPIPE"):
        # A closed output pipe ends the process as it ends the C++ tool,
        # instead of a Python traceback.
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    log = Log(sys.stdout)
    log.info("STARTING!")
    try:
        _benchmark(sys.argv[1:] if argv is None else argv, log, baseline_kb)
    except BenchmarkFailed as failure:
        for line in failure.lines:
            log.error(line)
        log.error("Benchmarking failed.")
        return 1
    except Exception as exc:  # noqa: BLE001 - a runner bug is still one parseable failure
        log.error(f"{type(exc).__name__}: {exc}")
        log.error("Benchmarking failed.")
        return 1
    return 0


def _benchmark(argv: list[str], log: Log, baseline_kb: int | None) -> None:
    params = validate(parse_flags(argv, log), log)
    layers = parse_input_layers(params)
    log_params(params, log)
    # Rows from different builds are never compared as one series: say which build this is.
    log.info(f"Benchmark binary version: [tflite-farm runner {__version__}, ai-edge-litert {litert_version}]")
    if params.enable_op_profiling:
        log.warn("Op profiling is not supported by this runner; benchmarking without it.")

    monitor = None
    if params.report_peak_memory_footprint:
        monitor = memory.PeakMemoryMonitor(params.memory_footprint_check_interval_ms)
        monitor.start()
    graph = params.graph
    model_size_mb = os.path.getsize(graph) / 1e6 if graph and os.path.isfile(graph) else -1.0

    init_start_ns = time.perf_counter_ns()
    interpreter = _init(params, layers, graph, log)
    init_kb = memory.high_water_mark_kb()
    startup_us = (time.perf_counter_ns() - init_start_ns) // 1000
    if model_size_mb > 0:
        log.info(f"The input model file size (MB): {fmt_num(model_size_mb)}")
    else:
        log.warn("Failed to get the input model file size.")
    log.info(f"Initialized session in {fmt_num(startup_us / 1e3)}ms.")

    _fill_inputs(interpreter, layers)
    invoke = interpreter.invoke
    warmup = run_loop(
        invoke,
        params.warmup_runs,
        params.warmup_min_secs,
        params.max_secs,
        params.run_delay,
        params.run_frequency,
        log,
    )
    if warmup.error is not None:
        raise BenchmarkFailed()
    regular = run_loop(
        invoke,
        params.num_runs,
        params.min_secs,
        params.max_secs,
        params.run_delay,
        params.run_frequency,
        log,
    )
    overall_kb = memory.high_water_mark_kb()
    peak_mb = monitor.stop() if monitor is not None else None

    log.info(
        f"Inference timings in us: Init: {startup_us}, First inference: {warmup.stats.first}, "
        f"Warmup (avg): {fmt_num(warmup.stats.avg)}, Inference (avg): {fmt_num(regular.stats.avg)}"
    )
    if baseline_kb is not None and init_kb is not None and overall_kb is not None:
        log.info(
            "Note: as the benchmark tool itself affects memory footprint, the following is only "
            "APPROXIMATE to the actual memory footprint of the model at runtime. Take the "
            "information at your discretion."
        )
        log.info(
            f"Memory footprint delta from the start of the tool (MB): "
            f"init={fmt_num((init_kb - baseline_kb) / 1024.0)} "
            f"overall={fmt_num((overall_kb - baseline_kb) / 1024.0)}"
        )
        if peak_mb is not None:
            log.info(f"Overall peak memory footprint (MB) via periodic monitoring: {fmt_num(peak_mb)}")
    if params.output_filepath:
        _write_outputs(interpreter, params.output_filepath)
    if regular.error is not None:
        raise BenchmarkFailed()


def _error_lines(exc: BaseException) -> list[str]:
    """The runtime's message(s) in `exc`, one per line as its error reporter logs them."""
    lines = [part.strip() for part in _MESSAGE_SEAMS.split(str(exc))]
    # The custom-op hint is a continuation line, not a message of its own.
    return [line for line in lines if line and not line.startswith("See instructions:")]


def _init(params: Params, layers: tuple[InputLayer, ...], graph: str | None, log: Log) -> Interpreter:
    """BenchmarkTfLiteModel::Init: load, build, delegate, resize, allocate."""
    user_graph = params.graph
    resolver = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES if params.use_xnnpack is False else OpResolverType.AUTO
    # -1 (the default) lets the runtime decide; LiteRT spells that None.
    num_threads = params.num_threads if params.num_threads > 0 else None
    if graph is None:
        raise BenchmarkFailed(f"Could not open '{user_graph}'.", f"Failed to mmap model {user_graph}")
    try:
        with native_log_relayed(log):
            interpreter = Interpreter(model_path=graph, num_threads=num_threads, experimental_op_resolver_type=resolver)
    except ValueError as exc:
        message = str(exc)
        if message.startswith("Could not open") or not os.path.exists(graph):
            raise BenchmarkFailed(f"Could not open '{user_graph}'.", f"Failed to mmap model {user_graph}") from None
        if _MODEL_NOT_LOADED in message or "Flatbuffer" in message:
            lines = [line for line in _error_lines(exc) if _MODEL_NOT_LOADED not in line]
            raise BenchmarkFailed(*lines, f"Failed to mmap model {user_graph}") from None
        # The file is a model, but the interpreter could not be built from it.
        log.info(f"Loaded model {user_graph}")
        raise BenchmarkFailed(*_error_lines(exc), "Failed to initialize the interpreter") from None
    log.info(f"Loaded model {user_graph}")

    for requested, spec in ((params.use_gpu, delegates.GPU), (params.use_nnapi, delegates.NNAPI)):
        if not requested:
            continue
        delegate = delegates.load(spec, log)
        if delegate is None:
            raise BenchmarkFailed(f"Failed to apply {spec.name} delegate.")
        first_new_node = delegates.node_count(interpreter)
        try:
            with native_log_relayed(log):
                delegates.apply(interpreter, delegate)
        except (ValueError, RuntimeError) as exc:
            raise BenchmarkFailed(*_error_lines(exc), f"Failed to apply {spec.name} delegate.") from None
        log.info(delegates.delegation_summary(spec.name, interpreter, first_new_node))

    _resize_inputs(interpreter, layers, log)
    before_allocation = delegates.node_count(interpreter)
    try:
        with native_log_relayed(log):
            interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        raise BenchmarkFailed(*_error_lines(exc), "Failed to allocate tensors!") from None
    if params.use_xnnpack:
        # Explicit XNNPACK is LiteRT's default delegate, applied while allocating.
        log.info(delegates.delegation_summary("XNNPACK", interpreter, before_allocation))
    return interpreter


def _resize_inputs(interpreter: Interpreter, layers: tuple[InputLayer, ...], log: Log) -> None:
    if not layers:
        return
    details = interpreter.get_input_details()
    if len(layers) != len(details):
        raise BenchmarkFailed(f"Inputs mismatch: Model inputs #:{len(layers)} expected: {len(details)}")
    for layer, detail in zip(layers, details, strict=False):
        index = detail["index"]
        if layer.name != detail["name"]:
            log.warn(f"Tensor # {index} is named {detail['name']} but flags call it {layer.name}")
        if np.dtype(detail["dtype"]).kind not in "SUO" and len(layer.shape) != len(detail["shape"]):
            raise BenchmarkFailed(f"Input tensor #{index} should have {len(detail['shape'])} dimensions!")
    for layer, detail in zip(layers, details, strict=False):
        if np.dtype(detail["dtype"]).kind not in "SUO":
            try:
                interpreter.resize_tensor_input(detail["index"], list(layer.shape))
            except (ValueError, RuntimeError) as exc:
                raise BenchmarkFailed(*_error_lines(exc)) from None


def _fill_inputs(interpreter: Interpreter, layers: tuple[InputLayer, ...]) -> None:
    """PrepareInputData + ResetInputsAndOutputs, done once before the loops."""
    rng = np.random.default_rng()
    for position, detail in enumerate(interpreter.get_input_details()):
        layer = layers[position] if layers else None
        shape = tuple(int(d) for d in detail["shape"])
        if layer is not None and layer.value_file is not None:
            data = read_value_file(layer.value_file, layer.value_file, detail["dtype"], shape)
        else:
            data = random_data(rng, detail["dtype"], shape, layer.value_range if layer else None)
        interpreter.set_tensor(detail["index"], data)


def _write_outputs(interpreter: Interpreter, user_path: str) -> None:
    """--output_filepath: every output tensor's raw bytes, in output order."""
    try:
        with open(user_path, "wb") as out:
            for detail in interpreter.get_output_details():
                out.write(interpreter.get_tensor(detail["index"]).tobytes())
        return
    except OSError:
        pass
    raise BenchmarkFailed(f"Failed to write the outputs to {user_path}")
