"""benchmark_model's command-line flags: names, defaults, parsing and echo.

Parsing follows tflite::Flags::Parse: only `--name=value` is recognised, each
flag takes the first argument that matches it, and whatever is left over is
reported as unconsumed instead of failing the run. The machinery is driven by
a table of Flags and a frozen Params dataclass, so each dialect of the tool
(classic benchmark_model here, LiteRT 2.x in litert_flags) only declares its
own table.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, TypeVar

from harness.runner.report import Log, fmt_num

Value = int | float | bool | str | None


class MemoryParams(Protocol):
    """What validate_memory_interval needs of a dialect's frozen Params dataclass."""

    __dataclass_fields__: ClassVar[dict[str, dataclasses.Field[Any]]]

    @property
    def report_peak_memory_footprint(self) -> bool: ...

    @property
    def memory_footprint_check_interval_ms(self) -> int: ...


ParamsT = TypeVar("ParamsT", bound=MemoryParams)

_INT = re.compile(r"[+-]?\d+")
_FLOAT = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_INT32_MAX = 2**31 - 1
DEFAULT_MEMORY_CHECK_INTERVAL_MS = 50
_TYPE_NAMES = {int: "int32", float: "float", bool: "bool", str: "string"}


class BenchmarkFailed(Exception):
    """The run cannot go on; `lines` are printed as `ERROR:` lines, in order.

    Local to the runner (not harness.errors) because the packaged runner
    carries only harness/__init__.py and harness/runner/.
    """

    def __init__(self, *lines: str) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


@dataclass(frozen=True)
class Flag:
    name: str
    kind: type
    usage: str

    @property
    def attr(self) -> str:
        """The Params attribute: LiteRT has a hyphenated flag (`gpu-precision`)."""
        return self.name.replace("-", "_")


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
        "maximum number of seconds to rerun for, potentially making the actual number of runs to be less than num_runs",
    ),
    Flag("run_delay", float, "delay between runs in seconds"),
    Flag(
        "run_frequency",
        float,
        "Execute at a fixed frequency, instead of a fixed delay. If set, this will override run_delay.",
    ),
    Flag("num_threads", int, "number of threads"),
    Flag("warmup_runs", int, "minimum number of runs performed on initialization, see also warmup_min_secs"),
    Flag(
        "warmup_min_secs",
        float,
        "minimum number of seconds to rerun for, potentially making the actual number of "
        "warm-up runs to be greater than warmup_runs",
    ),
    Flag("verbose", bool, "Whether to log parameters whose values are not set."),
    Flag(
        "report_peak_memory_footprint",
        bool,
        "Report the peak memory footprint by periodically checking the memory footprint.",
    ),
    Flag(
        "memory_footprint_check_interval_ms",
        int,
        "The interval in millisecond between two consecutive memory footprint checks.",
    ),
    Flag("graph", str, "graph file name"),
    Flag("input_layer", str, "input layer names"),
    Flag("input_layer_shape", str, "input layer shape"),
    Flag("input_layer_value_range", str, "value range for integer input layers, e.g. input1,1,2:input2,0,254"),
    Flag("input_layer_value_files", str, "binary value file per input layer, e.g. input1:file_path1,input2:file_path2"),
    Flag("enable_op_profiling", bool, "enable op profiling"),
    Flag("output_filepath", str, "File path to export the raw bytes of every output tensor, in output order"),
    Flag("use_gpu", bool, "use gpu"),
    Flag("use_nnapi", bool, "use nnapi delegate api"),
    Flag("use_xnnpack", bool, "explicitly apply the XNNPACK delegate"),
)

# (flag, label) in the order LogParams echoes them: BenchmarkModel's own
# flags, then BenchmarkTfLiteModel's, then the delegate providers' (the
# default provider echoes num_threads a second time).
ECHOED: tuple[tuple[str, str], ...] = (
    ("num_runs", "Min num runs"),
    ("min_secs", "Min runs duration (seconds)"),
    ("max_secs", "Max runs duration (seconds)"),
    ("run_delay", "Inter-run delay (seconds)"),
    ("run_frequency", "Number of prorated runs per second"),
    ("num_threads", "Num threads"),
    ("warmup_runs", "Min warmup runs"),
    ("warmup_min_secs", "Min warmup runs duration (seconds)"),
    ("report_peak_memory_footprint", "Report the peak memory footprint"),
    ("memory_footprint_check_interval_ms", "Memory footprint check interval (ms)"),
    ("graph", "Graph"),
    ("input_layer", "Input layers"),
    ("input_layer_shape", "Input shapes"),
    ("input_layer_value_range", "Input value ranges"),
    ("input_layer_value_files", "Input value files"),
    ("enable_op_profiling", "Enable op profiling"),
    ("output_filepath", "Output file path"),
    ("num_threads", "#threads used for CPU inference"),
    ("use_gpu", "Use gpu"),
    ("use_nnapi", "Use NNAPI"),
    ("use_xnnpack", "Use xnnpack"),
)


@dataclass(frozen=True)
class Params:
    num_runs: int = 50
    min_secs: float = 1.0
    max_secs: float = 150.0
    run_delay: float = -1.0
    run_frequency: float = -1.0
    num_threads: int = -1
    warmup_runs: int = 1
    warmup_min_secs: float = 0.5
    verbose: bool = False
    report_peak_memory_footprint: bool = False
    memory_footprint_check_interval_ms: int = DEFAULT_MEMORY_CHECK_INTERVAL_MS
    graph: str = ""
    input_layer: str = ""
    input_layer_shape: str = ""
    input_layer_value_range: str = ""
    input_layer_value_files: str = ""
    enable_op_profiling: bool = False
    output_filepath: str = ""
    use_gpu: bool = False
    use_nnapi: bool = False
    # None (not False) when unset: XNNPACK then runs as LiteRT's default delegate.
    use_xnnpack: bool | None = None
    # Flags given on the command line: LogParams echoes only these (unless verbose).
    given: frozenset[str] = frozenset()


def _parse_value(kind: type, text: str) -> Value:
    """The value of `text` for a flag of `kind`, or None when it does not parse."""
    if kind is bool:
        return {"true": True, "1": True, "false": False, "0": False}.get(text)
    if kind is int:
        if not _INT.fullmatch(text) or abs(int(text)) > _INT32_MAX:
            return None
        return int(text)
    if kind is float:
        return float(text) if _FLOAT.fullmatch(text) else None
    return text


def usage(table: tuple[Flag, ...] = FLAGS, defaults: object = None) -> str:
    """Flags::Usage's table (both dialects' binaries are named benchmark_model)."""
    defaults = Params() if defaults is None else defaults
    names = [f"--{flag.name}={_display_default(getattr(defaults, flag.attr))}" for flag in table]
    width = max(len(name) for name in names)
    rows = ["usage: benchmark_model <flags>", "Flags:"]
    for flag, name in zip(table, names, strict=False):
        rows.append(f"\t{name.ljust(width)}\t{_TYPE_NAMES[flag.kind]}\toptional\t{flag.usage}")
    return "\n".join(rows)


def _display_default(value: Value) -> str:
    if isinstance(value, bool) or value is None:
        return "true" if value else "false"
    return _echo(value)


def parse_flags(argv: list[str], log: Log) -> Params:
    """Params from `argv` (without the program name), as benchmark_model reads them.

    Raises BenchmarkFailed when a value does not parse or --help is asked for.
    """
    values = parse_values(argv, FLAGS, Params(), log)
    return Params(**values, given=frozenset(values))  # type: ignore[arg-type]


def parse_values(argv: list[str], table: tuple[Flag, ...], defaults: object, log: Log) -> dict[str, Value]:
    """Params attribute -> value for the flags of `table` given in `argv`.

    Raises BenchmarkFailed (with the usage table) when a value does not parse
    or --help is asked for; warns about arguments no flag consumed.
    """
    unconsumed = list(argv)
    values: dict[str, Value] = {}
    errors: list[str] = []
    for flag in table:
        prefix = f"--{flag.name}="
        for i, arg in enumerate(unconsumed):
            if not arg.startswith(prefix):
                continue
            value = _parse_value(flag.kind, arg[len(prefix) :])
            if value is None:
                errors.append(f"Failed to parse flag '{flag.name}' against argv '{arg}'")
            else:
                values[flag.attr] = value
            del unconsumed[i]
            break
    if errors or (unconsumed and unconsumed[0] == "--help"):
        raise BenchmarkFailed(*errors, usage(table, defaults))
    if unconsumed:
        log.warn(f"Unconsumed cmdline flags: {' '.join(unconsumed)}")
    return values


def validate(params: Params, log: Log) -> Params:
    """BenchmarkModel::ValidateParams plus BenchmarkTfLiteModel's --graph check."""
    if not params.graph:
        raise BenchmarkFailed("Please specify the name of your TF Lite input file with --graph")
    return validate_memory_interval(params, log)


def validate_memory_interval(params: ParamsT, log: Log) -> ParamsT:
    """BenchmarkModel::ValidateParams, shared by both dialects."""
    interval = params.memory_footprint_check_interval_ms
    if params.report_peak_memory_footprint and interval <= 0:
        log.warn(
            f"--memory_footprint_check_interval_ms is set to {interval} (ms), This value is "
            f"invalid, and it will be set to the default value "
            f"{DEFAULT_MEMORY_CHECK_INTERVAL_MS} (ms)."
        )
        return dataclasses.replace(params, memory_footprint_check_interval_ms=DEFAULT_MEMORY_CHECK_INTERVAL_MS)
    return params


def _echo(value: Value) -> str:
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, float):
        return fmt_num(value)
    return str(value)


def echo_param(params: object, name: str, label: str, log: Log) -> None:
    """LOG_BENCHMARK_PARAM: `label: [value]` when the flag was given or --verbose is on."""
    if params.verbose or name in params.given:  # type: ignore[attr-defined]
        value = getattr(params, name)
        log.info(f"{label}: [{_echo(False if value is None else value)}]")


def log_params(params: Params, log: Log) -> None:
    """LogParams: the flags the user set (all of them with --verbose=true)."""
    log.info(f"Log parameter values verbosely: [{_echo(params.verbose)}]")
    for name, label in ECHOED:
        if name == "graph" or params.verbose or name in params.given:
            value = getattr(params, name)
            log.info(f"{label}: [{_echo(False if value is None else value)}]")
        if name == "graph":
            # The modern tool always echoes the signature; this runner always
            # runs the model's primary subgraph.
            log.info("Signature to run: []")
