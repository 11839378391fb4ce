"""Pure parser of TensorFlow Lite benchmark output, every generation.

`parse_log(text)` turns whatever a benchmark tool printed (or whatever a user
pasted from a terminal, logcat, Android Studio or a bug report) into one
`BenchmarkRun` per run. It never raises on bad input: garbage gives an empty
list or a run whose `error` says what was wrong.

Formats read (see design.md, "benchmark_model output"):
- `benchmark_model` of every TF/LiteRT generation, with or without `INFO: `
  prefixes, logcat (threadtime, brief) and Android Studio prefixes;
- the old `Average inference timings in us: Warmup: .., Init: .., no stats: ..`;
- `benchmark_model_performance_options` (one run per option, plus the
  `Summary of All Runs w/ Different Performance Options` table);
- the LiteRT `benchmark_litert_model` `BENCHMARK RESULTS` block (ms -> us).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from harness.records import BenchmarkRun, Delegate, ErrorType

# Lines longer than this are not benchmark output (real lines are < 1 KiB);
# skipping them keeps 10 MB of single-line noise linear-time.
_MAX_LINE_CHARS = 8192
VERSION_ECHO = "benchmark binary version"
"""Key of the parameter-echo line `Benchmark binary version: [...]`, which the project's runner prints."""

_NUM = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"

# --- line prefixes --------------------------------------------------------
_LOGCAT_THREADTIME = re.compile(r"^\d\d-\d\d\s+\d\d:\d\d:\d\d\.\d+\s+\d+\s+\d+\s+([VDIWEFA])\s+[^:]*?:\s?")
# Android Studio (Flamingo+): "2023-05-31 10:38:42.583 22206-22206 tflite  org.pkg  I  msg"
_STUDIO_NEW = re.compile(r"^\d{4}-\d\d-\d\d\s+\d\d:\d\d:\d\d\.\d+\s+\d+-\d+\s+\S+\s+\S+\s+([VDIWEFA])\s+")
# Android Studio (older): "2019-11-07 10:38:42.583 22206-22206/org.pkg I/tflite: msg"
_STUDIO_OLD = re.compile(r"^\d{4}-\d\d-\d\d\s+\d\d:\d\d:\d\d\.\d+\s+\d+-\d+/\S+\s+([VDIWEFA])/[^:]*:\s?")
_LOGCAT_BRIEF = re.compile(r"^([VDIWEFA])/[^(:]+\(\s*\d+\):\s?")
_LEVEL_PREFIX = re.compile(r"^(INFO|WARN|WARNING|ERROR|VERBOSE|FATAL|DEBUG):\s?")
# LiteRT logs "INFO: [benchmark_litert_model.h:73] msg".
_SOURCE_LOCATION = re.compile(r"^\[[\w./-]+:\d+\]\s?")

# --- content ---------------------------------------------------------------
_PARAM_ECHO = re.compile(r"^(#?[A-Za-z][\w #()./-]*?)\s*:\s*\[(.*)\]\s*$")
_COMMAND_FLAG = re.compile(r"--([a-z][a-z0-9_]*)=(\"[^\"]*\"|'[^']*'|[^\s'\"]+)")
_COMMAND_FLAGS_OF_INTEREST = (
    "--graph=",
    "--num_threads=",
    "--use_gpu=",
    "--use_nnapi=",
    "--use_xnnpack=",
    "--use_hexagon=",
)
_KEY_VALUE = re.compile(r"(\w+)=(" + _NUM + r")(\(all same\))?")
_INIT_SESSION = re.compile(r"Initialized session in (" + _NUM + r")\s*ms")
_MODEL_SIZE = re.compile(r"The input model file size \(MB\):\s*(" + _NUM + ")")
_SUMMARY = re.compile(r"^(?:Average )?[Ii]nference timings in us:\s*(.*)$")
_SUMMARY_FIELD = re.compile(r"([A-Za-z][A-Za-z ()]*?):\s*(" + _NUM + ")")
_MEMORY_DELTA = re.compile(
    r"(?:Memory footprint delta from the start of the tool|Peak memory footprint) \(MB\):"
    r"\s*init=(" + _NUM + r")\s+overall=(" + _NUM + ")"
)
_MEMORY_PERIODIC = re.compile(r"Overall peak memory footprint \(MB\) via periodic monitoring:\s*(" + _NUM + ")")
_EXPLICIT_APPLIED = re.compile(
    r"Explicitly applied (\w+) delegate, and the model graph will be (completely|partially)"
    r" executed by the delegate(?: w/ (\d+) delegate kernels)?"
)
_NOT_EXECUTED = re.compile(r"Though (\w+) delegate is explicitly applied, the model graph will not be executed")
_FAILED_APPLY = re.compile(r"Failed to apply (\w+) delegate")
_REPLACING = re.compile(
    r"Replacing (\d+) out of (\d+) node\(s\) with delegate \((\w+)\) node"
    r"(?:, yielding (\d+) partitions)?"
)
_NODES_DELEGATED = re.compile(r"(\w+) delegate: (\d+) nodes delegated out of (\d+) nodes(?: with (\d+) partitions)?")
_GPU_KERNELS = re.compile(r"Created (\d+) GPU delegate kernels")
_PERF_ROW = re.compile(r"^(\S.*?):\s+(count=.*|failed!)\s*$")
_LITERT_LINE = re.compile(r"^([A-Za-z][A-Za-z ()]*?):\s+(" + _NUM + r")(?:\s*(ms|MB))?(?:\s*\((\d+) runs\))?")

# Failure markers, most specific cause first: the first class that matches in a
# run decides its error_type.
_FAILURES: tuple[tuple[ErrorType, re.Pattern[str]], ...] = (
    (
        ErrorType.NOT_EXECUTABLE,
        re.compile(r"not executable: \d+-bit ELF file|can't execute:|cannot execute binary file"),
    ),
    (
        ErrorType.CRASH,
        re.compile(
            r"^(?:Segmentation fault|Aborted|Bus error|Illegal instruction|Killed)\b"
            r"|Fatal signal \d+ \(SIG\w+\)"
        ),
    ),
    (
        ErrorType.MODEL_LOAD_FAILED,
        re.compile(
            r"Could not open '.*'|Failed to mmap model|not a valid Flatbuffer buffer"
            r"|Failed to load model|Model provided has model identifier"
        ),
    ),
    (
        ErrorType.UNSUPPORTED_OP,
        re.compile(
            r"Didn't find op for builtin opcode|Encountered unresolved custom op"
            r"|Op builtin_code out of range|Unsupported custom op"
        ),
    ),
    (ErrorType.ALLOCATE_FAILED, re.compile(r"Failed to allocate tensors")),
    (ErrorType.DELEGATE_FAILED, _FAILED_APPLY),
    (
        ErrorType.BENCHMARK_FAILED,
        re.compile(
            r"Benchmarking failed|Failed to initialize the interpreter"
            r"|Error while running a single-option run|Failed to compile model"
        ),
    ),
)
_FAILURE_RANK = {error_type: rank for rank, (error_type, _) in enumerate(_FAILURES)}
# A 'failed!' summary row says less than the run's own output, when that was captured.
_FAILURE_RANK[ErrorType.PERF_OPTION_FAILED] = len(_FAILURES)

# ERROR lines that only restate a failure already reported by a better line.
_GENERIC_ERROR = re.compile(
    r"^(?:Restored original execution plan|Node number \d+ \(.*\) failed to (?:prepare|invoke)"
    r"|Delegate kernel was not initialized|Registration failed|Benchmarking failed)"
)

_DELEGATE_NODE_NAMES = {
    "tflitexnnpackdelegate": Delegate.XNNPACK.value,
    "tflitegpudelegate": Delegate.GPU.value,
    "tflitegpudelegatev2": Delegate.GPU.value,
    "tflitennapidelegate": Delegate.NNAPI.value,
    "tflitehexagondelegate": Delegate.HEXAGON.value,
}


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _int(value: float | None) -> int | None:
    return None if value is None else int(round(value))


def _truthy(text: str) -> bool | None:
    lowered = text.strip().strip("'\"").lower()
    if lowered in ("1", "true", "yes"):
        return True
    if lowered in ("0", "false", "no"):
        return False
    return None


def _delegate_name(raw: str) -> str:
    lowered = raw.lower()
    if lowered in _DELEGATE_NODE_NAMES:
        return _DELEGATE_NODE_NAMES[lowered]
    return lowered


@dataclass
class _CountLine:
    """One `count=...` statistics line and the loop it belongs to."""

    loop_index: int  # how many `Running benchmark for at least` markers preceded it
    values: dict[str, float]


@dataclass
class _RunBuilder:
    """Mutable accumulator for one run; frozen into a BenchmarkRun at the end."""

    command: dict[str, str] = field(default_factory=dict)
    echoed: dict[str, str] = field(default_factory=dict)
    has_content: bool = False
    has_summary: bool = False
    # benchmark_litert_model prints the classic summary line *and* its own block
    # for the same run, so each kind only starts a new run when repeated.
    has_classic_summary: bool = False
    has_litert_block: bool = False
    loaded_model: bool = False
    loop_markers: int = 0
    count_lines: list[_CountLine] = field(default_factory=list)
    summary: dict[str, float] = field(default_factory=dict)
    session_init_ms: float | None = None
    model_size_mb: float | None = None
    memory_init_mb: float | None = None
    memory_overall_mb: float | None = None
    memory_peak_mb: float | None = None
    inference_count: int | None = None  # LiteRT block states it directly
    min_us: float | None = None
    max_us: float | None = None
    std_us: float | None = None
    applied_delegate: str | None = None
    delegate_applied: bool | None = None
    xnnpack_created: bool = False
    delegated_kernels: int | None = None
    delegated_nodes: int | None = None
    total_nodes: int | None = None
    perf_option: str | None = None
    perf_row_delegate: str | None = None
    perf_row_threads: int | None = None
    failure: tuple[ErrorType, str] | None = None
    failure_detail: str | None = None
    errors: list[str] = field(default_factory=list)

    @property
    def has_results(self) -> bool:
        return self.has_summary or bool(self.count_lines) or self.session_init_ms is not None

    @property
    def past_parameters(self) -> bool:
        """True once the run printed anything that comes after its parameter echo."""
        return self.has_results or self.loaded_model or self.failure is not None or self.loop_markers > 0

    def note_failure(self, error_type: ErrorType, message: str) -> None:
        if self.failure is None or _FAILURE_RANK[error_type] < _FAILURE_RANK[self.failure[0]]:
            self.failure = (error_type, message)

    # -- requested parameters: echoed values win over a pasted command line --
    def _flag(self, echo_keys: tuple[str, ...], command_key: str) -> str | None:
        for key in echo_keys:
            if key in self.echoed:
                return self.echoed[key]
        return self.command.get(command_key)

    def requested_threads(self) -> int | None:
        raw = self._flag(("num threads", "#threads used for cpu inference"), "num_threads")
        if raw is None:
            return self.perf_row_threads
        value = _number(raw.strip("'\""))
        return None if value is None or value < 1 else int(value)

    def requested(self, name: str) -> bool | None:
        raw = self._flag((f"use {name}",), f"use_{name}")
        return None if raw is None else _truthy(raw)

    def delegate(self) -> str:
        if self.perf_row_delegate is not None:
            return self.perf_row_delegate
        if self.applied_delegate is not None:
            return self.applied_delegate
        for accelerator in (Delegate.GPU.value, Delegate.NNAPI.value, Delegate.HEXAGON.value):
            if self.requested(accelerator):
                return accelerator
        xnnpack = self.requested("xnnpack")
        if xnnpack is not None:
            return Delegate.XNNPACK.value if xnnpack else Delegate.CPU.value
        if self.xnnpack_created:
            return Delegate.XNNPACK.value
        return Delegate.CPU.value

    def measured(self) -> dict[str, float] | None:
        """The count line of the measured loop (the second `Running benchmark`)."""
        complete = [line for line in self.count_lines if _is_complete(line.values)]
        if not complete:
            return None
        if self.loop_markers == 0:
            # Tail-only pastes: the last stats line before the summary is the measured loop.
            return complete[-1].values if self.has_summary or len(complete) > 1 else None
        after_second = [line for line in complete if line.loop_index >= 2]
        return after_second[-1].values if after_second else None

    def warmup(self) -> dict[str, float] | None:
        """The count line of the warmup loop (after the first `Running benchmark`, before the second)."""
        complete = [line for line in self.count_lines if line.loop_index == 1 and _is_complete(line.values)]
        return complete[-1].values if complete and self.loop_markers >= 2 else None

    def build(self) -> BenchmarkRun:
        measured = self.measured() or {}
        delegate = self.delegate()
        applied = self.delegate_applied
        if applied is None and delegate == Delegate.XNNPACK.value and self.xnnpack_created:
            applied = True  # the default XNNPACK delegate is applied when created
        if self.failure is not None and self.failure[0] is ErrorType.DELEGATE_FAILED:
            applied = False

        init_us = self.summary.get("init")
        if init_us is None and self.session_init_ms is not None:
            init_us = self.session_init_ms * 1000.0
        inference_avg = self.summary.get("inference", measured.get("avg"))

        error: str | None = None
        error_type: ErrorType | None = None
        if not self.has_summary:
            if self.failure is not None:
                error_type, error = self.failure
                if self.failure_detail and error_type in (
                    ErrorType.DELEGATE_FAILED,
                    ErrorType.BENCHMARK_FAILED,
                ):
                    error = f"{error}: {self.failure_detail}"
            else:
                error_type = ErrorType.TRUNCATED
                error = "output ends before the benchmark summary"
                if self.errors:
                    error += f" (last error: {self.errors[-1]})"

        return BenchmarkRun(
            init_us=init_us,
            first_inference_us=self.summary.get("first inference"),
            warmup_avg_us=self.summary.get("warmup"),
            inference_avg_us=inference_avg,
            inference_std_us=self.std_us if self.std_us is not None else measured.get("std"),
            inference_min_us=self.min_us if self.min_us is not None else measured.get("min"),
            inference_max_us=self.max_us if self.max_us is not None else measured.get("max"),
            inference_p50_us=measured.get("median"),
            inference_p95_us=measured.get("p95"),
            inference_count=self.inference_count if self.inference_count is not None else _int(measured.get("count")),
            warmup_count=_int((self.warmup() or {}).get("count")),
            memory_init_mb=self.memory_init_mb,
            memory_overall_mb=self.memory_overall_mb,
            memory_peak_mb=self.memory_peak_mb,
            model_size_mb=self.model_size_mb,
            num_threads=self.requested_threads(),
            delegate=delegate,
            delegate_applied=applied,
            delegated_kernels=self.delegated_kernels,
            delegated_nodes=self.delegated_nodes,
            total_nodes=self.total_nodes,
            perf_option=self.perf_option,
            binary_version=self.echoed.get(VERSION_ECHO),
            error=error,
            error_type=error_type,
        )


def _is_complete(values: dict[str, float]) -> bool:
    """A stats line cut off mid-way (`max=3760` at the end of a paste) is not data."""
    if "avg" in values and "std" in values:
        return True
    return "curr" in values and (values.get("count") == 1 or values.get("all_same") == 1)


def _parse_count_line(message: str) -> dict[str, float]:
    values: dict[str, float] = {}
    for key, raw, all_same in _KEY_VALUE.findall(message):
        number = _number(raw)
        if number is not None:
            values[key] = number
        if all_same:
            values["all_same"] = 1
    if "curr" in values and ("all_same" in values or values.get("count") == 1):
        # Every sample equals `curr`: the tool omits what it would repeat.
        for key in ("first", "min", "max", "avg", "median", "p5", "p95"):
            values.setdefault(key, values["curr"])
        values.setdefault("std", 0.0)
    return values


def _strip_prefixes(line: str) -> tuple[str, bool]:
    """Return (message, is_error_level) with logcat/level/location prefixes removed."""
    message = line.strip()
    is_error = False
    for pattern in (_LOGCAT_THREADTIME, _STUDIO_NEW, _STUDIO_OLD, _LOGCAT_BRIEF):
        match = pattern.match(message)
        if match:
            is_error = match.group(1) in "EF"
            message = message[match.end() :]
            break
    match = _LEVEL_PREFIX.match(message)
    if match:
        is_error = is_error or match.group(1) in ("ERROR", "FATAL")
        message = message[match.end() :]
    match = _SOURCE_LOCATION.match(message)
    if match:
        message = message[match.end() :]
    return message.strip(), is_error


def _is_command_line(message: str) -> bool:
    if message.startswith("Unconsumed cmdline flags"):
        return False
    return any(flag in message for flag in _COMMAND_FLAGS_OF_INTEREST)


def _perf_row_target(name: str) -> tuple[str, int | None]:
    """Map a performance-option name to (delegate, threads)."""
    threads_match = re.search(r"w/ (\d+) threads", name)
    threads = int(threads_match.group(1)) if threads_match else None
    if "xnnpack" in name:
        return Delegate.XNNPACK.value, threads
    if name.startswith("gpu"):
        return Delegate.GPU.value, None
    if name.startswith("nnapi"):
        return Delegate.NNAPI.value, None
    if "hexagon" in name:
        return Delegate.HEXAGON.value, None
    if name.startswith("cpu"):
        return Delegate.CPU.value, threads
    return name.split("(")[0].strip().lower(), threads


def _looks_binary(text: str) -> bool:
    sample = text[:65536]
    if "\x00" in sample:
        return True
    unprintable = sum(1 for ch in sample if ch < " " and ch not in "\t\r\n\f\v" or ch == "\ufffd")
    return unprintable > len(sample) * 0.1


class _Parser:
    def __init__(self) -> None:
        self.runs: list[_RunBuilder] = []
        self.current = _RunBuilder()
        self.command: dict[str, str] = {}
        self.in_perf_table = False
        self.in_litert_block = False
        # Runs since the last perf-options table, for matching its rows.
        self.table_candidates: list[_RunBuilder] = []

    def finish_current(self) -> None:
        if self.current.has_content:
            self.runs.append(self.current)
            self.table_candidates.append(self.current)
        self.current = _RunBuilder(command=dict(self.command))

    def feed(self, raw_line: str) -> None:
        if len(raw_line) > _MAX_LINE_CHARS:
            return
        message, is_error = _strip_prefixes(raw_line)
        if not message:
            return
        if self.in_perf_table:
            if self._perf_row(message):
                return
            self.in_perf_table = False
            self.table_candidates = []
        if self.in_litert_block and self._litert_line(message):
            return
        self._line(message, is_error)

    def _line(self, message: str, is_error: bool) -> None:
        run = self.current
        if "Summary of All Runs w/ Different Performance Options" in message:
            self.finish_current()
            self.in_perf_table = True
            return
        if "BENCHMARK RESULTS" in message and message.startswith("="):
            if run.has_litert_block:
                self.finish_current()
                run = self.current
            self.in_litert_block = True
            run.has_content = run.has_summary = run.has_litert_block = True
            return
        if message == "STARTING!":
            self.finish_current()
            self.current.has_content = True
            return
        if _is_command_line(message):
            if self.current.past_parameters:
                self.finish_current()
            self.command = {key: value.strip("'\"") for key, value in _COMMAND_FLAG.findall(message)}
            self.current.command = dict(self.command)
            return
        if message.startswith("count="):
            run.count_lines.append(_CountLine(run.loop_markers, _parse_count_line(message)))
            run.has_content = True
            return
        summary = _SUMMARY.match(message)
        if summary:
            self._summary(summary.group(1))
            return
        echo = _PARAM_ECHO.match(message)
        if echo:
            key = re.sub(r"\s+", " ", echo.group(1)).strip().lower()
            if run.past_parameters:
                # benchmark_model_performance_options prints no STARTING! between options.
                self.finish_current()
                run = self.current
            run.echoed[key] = echo.group(2)
            run.has_content = True
            return
        if message.startswith("Running benchmark for at least"):
            run.loop_markers += 1
            run.has_content = True
            return
        if message.startswith("Loaded model"):
            run.has_content = run.loaded_model = True
            return
        self._facts(run, message, is_error)

    def _facts(self, run: _RunBuilder, message: str, is_error: bool) -> None:
        match = _INIT_SESSION.search(message)
        if match:
            run.session_init_ms = _number(match.group(1))
            run.has_content = True
            return
        match = _MODEL_SIZE.search(message)
        if match:
            run.model_size_mb = _number(match.group(1))
            return
        match = _MEMORY_DELTA.search(message)
        if match:
            run.memory_init_mb = _number(match.group(1))
            run.memory_overall_mb = _number(match.group(2))
            return
        match = _MEMORY_PERIODIC.search(message)
        if match:
            run.memory_peak_mb = _number(match.group(1))
            return
        self._delegation(run, message)
        for error_type, pattern in _FAILURES:
            if pattern.search(message):
                run.note_failure(error_type, message.rstrip("."))
                run.has_content = True
                return
        if is_error and not _GENERIC_ERROR.match(message):
            run.errors.append(message)
            if run.failure_detail is None:
                run.failure_detail = message.rstrip(".")

    def _delegation(self, run: _RunBuilder, message: str) -> None:
        match = _EXPLICIT_APPLIED.search(message)
        if match:
            run.applied_delegate = _delegate_name(match.group(1))
            run.delegate_applied = True
            if match.group(3):
                run.delegated_kernels = int(match.group(3))
            run.has_content = True
            return
        match = _NOT_EXECUTED.search(message)
        if match:
            run.applied_delegate = _delegate_name(match.group(1))
            run.delegate_applied = False
            run.has_content = True
            return
        match = _REPLACING.search(message) or _NODES_DELEGATED.search(message)
        if match:
            if match.re is _REPLACING:
                replaced, total, name, partitions = match.groups()
            else:
                name, replaced, total, partitions = match.groups()
            run.delegated_nodes, run.total_nodes = int(replaced), int(total)
            if partitions:
                run.delegated_kernels = int(partitions)
            delegate = _delegate_name(name)
            if delegate == Delegate.XNNPACK.value:
                run.xnnpack_created = True
            run.has_content = True
            return
        if "Created TensorFlow Lite XNNPACK delegate for CPU" in message:
            run.xnnpack_created = True
            run.has_content = True
            return
        match = _GPU_KERNELS.search(message)
        if match:
            run.delegated_kernels = int(match.group(1))

    def _summary(self, body: str) -> None:
        if self.current.has_classic_summary:
            self.finish_current()
        run = self.current
        for label, raw in _SUMMARY_FIELD.findall(body):
            key = label.strip().lower()
            value = _number(raw)
            if value is None:
                continue
            if key in ("warmup (avg)", "warmup"):
                run.summary["warmup"] = value
            elif key in ("inference (avg)", "inference", "no stats"):
                run.summary["inference"] = value
            elif key in ("init", "first inference"):
                run.summary[key] = value
        run.has_summary = run.has_classic_summary = run.has_content = True

    def _perf_row(self, message: str) -> bool:
        match = _PERF_ROW.match(message)
        if not match:
            return False
        name, body = match.group(1).strip(), match.group(2)
        delegate, threads = _perf_row_target(name)
        target = next(
            (
                run
                for run in self.table_candidates
                if run.perf_option is None
                and run.delegate() == delegate
                and (threads is None or run.requested_threads() == threads)
            ),
            None,
        )
        if target is None:
            target = _RunBuilder(command=dict(self.command), has_content=True)
            target.perf_row_delegate, target.perf_row_threads = delegate, threads
            self.runs.append(target)
        target.perf_option = name
        if body.startswith("failed"):
            target.has_summary = False
            target.note_failure(ErrorType.PERF_OPTION_FAILED, f"performance option '{name}' failed")
            return True
        values = _parse_count_line(body)
        if _is_complete(values):
            target.has_summary = True
            target.summary.setdefault("inference", values.get("avg", values.get("curr", 0.0)))
            if not target.count_lines or target.measured() is None:
                target.count_lines.append(_CountLine(max(2, target.loop_markers), values))
        return True

    def _litert_line(self, message: str) -> bool:
        if set(message) == {"="}:
            self.in_litert_block = False
            return True
        match = _LITERT_LINE.match(message)
        if not match:
            return False
        label, raw, unit, count = match.groups()
        value = _number(raw)
        if value is None:
            return True
        run = self.current
        to_us = value * 1000.0  # LiteRT prints every latency in ms (std too, unlabelled)
        key = label.strip().lower()
        # setdefault: the classic summary line of the same run is more precise (us, not 0.01 ms).
        if key == "model initialization":
            run.summary.setdefault("init", to_us)
        elif key in ("warmup (first)", "first inference"):  # the code's label, its README's
            run.summary.setdefault("first inference", to_us)
        elif key == "warmup (avg)":
            run.summary.setdefault("warmup", to_us)
        elif key == "inference (avg)":
            run.summary.setdefault("inference", to_us)
            if count is not None:
                run.inference_count = int(count)
        elif key == "inference (min)":
            run.min_us = to_us
        elif key == "inference (max)":
            run.max_us = to_us
        elif key == "inference (std)":
            run.std_us = to_us
        elif key == "init footprint":
            run.memory_init_mb = value
        elif key == "overall footprint":
            run.memory_overall_mb = value
        elif key == "peak memory":
            run.memory_peak_mb = value
        return True

    def result(self) -> list[BenchmarkRun]:
        self.finish_current()
        return [run.build() for run in self.runs]


def _logical_lines(text: str) -> Iterator[str]:
    """Split into lines, joining shell `\\` continuations of pasted commands."""
    pending = ""
    for line in text.splitlines():
        if line.endswith("\\") and len(pending) < _MAX_LINE_CHARS:
            pending += line[:-1] + " "
            continue
        yield pending + line
        pending = ""
    if pending:
        yield pending


def parse_log(text: str | bytes) -> list[BenchmarkRun]:
    """Parse benchmark output into runs; never raises on bad input."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    parser = _Parser()
    for line in _logical_lines(text):
        parser.feed(line)
    runs = parser.result()
    if not runs and text and _looks_binary(text):
        return [
            BenchmarkRun(
                error="input is binary data, not benchmark output",
                error_type=ErrorType.GARBAGE,
            )
        ]
    return runs
