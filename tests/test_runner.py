"""The benchmark_model-compatible runner, run for real on tiny real models.

Every run is a subprocess (`python -m harness.runner`, or the zipapp executed
as a file) with few runs and no minimum durations, so each takes well under
two seconds.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from tiers import slow_fixture

from harness.runner.inputs import split_name_and_value_file
from harness.runner.loop import RunStats, run_loop
from harness.runner.report import Log, fmt_num
from harness.runner_zipapp import SHEBANG, build_runner

REPO = Path(__file__).resolve().parent.parent
FAST = ("--num_runs=3", "--min_secs=0", "--warmup_runs=1", "--warmup_min_secs=0")
_RUNNER_ENV = ("HARNESS_GPU_DELEGATE_LIBRARY", "HARNESS_NNAPI_LIBRARY")


@dataclass(frozen=True)
class Outcome:
    code: int
    stdout: str
    stderr: str

    @property
    def lines(self) -> list[str]:
        return self.stdout.splitlines()

    def counts(self) -> list[int]:
        """`count=` of the warmup and the measured loop, in that order."""
        return [int(m) for m in re.findall(r"^INFO: count=(\d+)", self.stdout, re.M)]

    def inference_avg(self) -> str:
        match = re.search(r"Inference \(avg\): (\S+)$", self.stdout, re.M)
        assert match, self.stdout
        return match.group(1)


Runner = Callable[..., Outcome]


def _env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _RUNNER_ENV}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    # The zipapp's `#!/usr/bin/env python3` must find this Python (numpy, LiteRT).
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.update(extra)
    return env


def _run(command: list[str], env: dict[str, str] | None, cwd: Path | None) -> Outcome:
    done = subprocess.run(command, capture_output=True, text=True, env=_env(env or {}), cwd=cwd or REPO, timeout=60)
    return Outcome(done.returncode, done.stdout, done.stderr)


def run_module(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> Outcome:
    return _run([sys.executable, "-m", "harness.runner", *args], env, cwd)


@slow_fixture(scope="session")
def zipapp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_runner(tmp_path_factory.mktemp("runner") / "benchmark_model")


@pytest.fixture(params=["module", "zipapp"])
def runner(request: pytest.FixtureRequest, zipapp: Path) -> Runner:
    if request.param == "module":
        return run_module

    def run_zipapp(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> Outcome:
        return _run([str(zipapp), *args], env, cwd)

    return run_zipapp


def assert_failed(outcome: Outcome, *tail: str) -> None:
    """Exit 1, no traceback, and the output ends with `tail` + Benchmarking failed."""
    assert outcome.code == 1, outcome.stdout + outcome.stderr
    assert "Traceback" not in outcome.stdout + outcome.stderr
    assert "Exception ignored" not in outcome.stderr
    expected = [f"ERROR: {line}" for line in (*tail, "Benchmarking failed.")]
    assert outcome.lines[-len(expected) :] == expected, outcome.stdout


# --- a successful run --------------------------------------------------------


def test_run_prints_benchmark_model_output(runner: Runner, tiny_models: dict[str, Path]) -> None:
    graph = tiny_models["dense"]
    out = runner(f"--graph={graph}", "--num_threads=2", *FAST)

    assert out.code == 0, out.stdout + out.stderr
    lines = out.lines
    assert all(re.match(r"(INFO|WARN|ERROR): ", line) for line in lines if line), out.stdout
    assert lines[:2] == ["INFO: STARTING!", "INFO: Log parameter values verbosely: [0]"]
    in_order = [
        "INFO: Min num runs: [3]",
        "INFO: Min runs duration (seconds): [0]",
        "INFO: Num threads: [2]",
        "INFO: Min warmup runs: [1]",
        "INFO: Min warmup runs duration (seconds): [0]",
        f"INFO: Graph: [{graph}]",
        "INFO: #threads used for CPU inference: [2]",
        f"INFO: Loaded model {graph}",
        "INFO: Created TensorFlow Lite XNNPACK delegate for CPU.",
        f"INFO: The input model file size (MB): {fmt_num(graph.stat().st_size / 1e6)}",
        "INFO: Running benchmark for at least 1 iterations and at least 0 seconds but "
        "terminate if exceeding 150 seconds.",
        "INFO: Running benchmark for at least 3 iterations and at least 0 seconds but "
        "terminate if exceeding 150 seconds.",
        "INFO: Note: as the benchmark tool itself affects memory footprint, the following is "
        "only APPROXIMATE to the actual memory footprint of the model at runtime. Take the "
        "information at your discretion.",
    ]
    positions = [lines.index(line) for line in in_order]
    assert positions == sorted(positions)
    assert re.search(r"^INFO: Initialized session in [\d.]+ms\.$", out.stdout, re.M)
    # Each count line is followed by an empty line, as std::endl inside the message leaves.
    count_lines = [i for i, line in enumerate(lines) if line.startswith("INFO: count=")]
    assert len(count_lines) == 2 and all(lines[i + 1] == "" for i in count_lines)
    assert out.counts() == [1, 3]
    summary = re.search(
        r"^INFO: Inference timings in us: Init: (\d+), First inference: (\d+), "
        r"Warmup \(avg\): (\S+), Inference \(avg\): (\S+)$",
        out.stdout,
        re.M,
    )
    assert summary, out.stdout
    assert re.search(
        r"^INFO: Memory footprint delta from the start of the tool \(MB\): init=\S+ overall=\S+$",
        out.stdout,
        re.M,
    )
    assert "periodic monitoring" not in out.stdout


def test_count_line_figures_match_the_summary(tiny_models: dict[str, Path]) -> None:
    out = run_module(
        f"--graph={tiny_models['conv']}", "--num_runs=4", "--min_secs=0", "--warmup_runs=2", "--warmup_min_secs=0"
    )
    assert out.code == 0, out.stdout
    measured = [line for line in out.lines if line.startswith("INFO: count=")][1]
    fields = dict(re.findall(r"(\w+)=(\S+)", measured))
    if "avg" in fields:
        assert fields["avg"] == out.inference_avg()
    else:  # every run took the same whole number of microseconds
        assert fields["curr"].removesuffix("(all same)") == out.inference_avg()


def test_zipapp_is_reproducible_and_holds_only_the_runner(tmp_path: Path) -> None:
    first = build_runner(tmp_path / "a" / "benchmark_model")
    second = build_runner(tmp_path / "b" / "benchmark_model")

    assert first.read_bytes() == second.read_bytes()
    assert first.read_bytes().startswith(SHEBANG) and SHEBANG == b"#!/usr/bin/env python3\n"
    assert first.stat().st_mode & 0o777 == 0o755
    with zipfile.ZipFile(first) as archive:
        names = archive.namelist()
        assert names[:2] == ["__main__.py", "harness/__init__.py"]
        assert all(name.startswith("harness/runner/") for name in names[2:])
        assert "harness/runner/benchmark.py" in names
        assert {info.date_time for info in archive.infolist()} == {(1980, 1, 1, 0, 0, 0)}


@pytest.mark.slow  # launches the runner (LiteRT import) in a subprocess
def test_runner_imports_nothing_heavy() -> None:
    # What is imported, not how long it took: an import time bound fails on a loaded machine.
    probe = (
        "import sys\n"
        "before = set(sys.modules)\n"
        "import harness.runner.benchmark\n"
        "print(sorted({'tensorflow', 'keras', 'pandas', 'pyarrow'} & set(sys.modules)))\n"
        "new = {name.partition('.')[0] for name in set(sys.modules) - before}\n"
        "print(sorted(new - set(sys.stdlib_module_names)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=_env({}), cwd=REPO, check=True
    )
    heavy, third_party = done.stdout.splitlines()
    assert heavy == "[]"
    assert third_party == "['ai_edge_litert', 'harness', 'numpy']"


# --- flags -------------------------------------------------------------------


def test_set_flags_are_echoed_with_their_real_names(tiny_models: dict[str, Path]) -> None:
    out = run_module(
        f"--graph={tiny_models['dense']}",
        *FAST,
        "--max_secs=30",
        "--run_delay=0.001",
        "--use_xnnpack=true",
        "--report_peak_memory_footprint=true",
        "--memory_footprint_check_interval_ms=10",
    )
    assert out.code == 0, out.stdout
    for line in (
        "INFO: Max runs duration (seconds): [30]",
        "INFO: Inter-run delay (seconds): [0.001]",
        "INFO: Report the peak memory footprint: [1]",
        "INFO: Memory footprint check interval (ms): [10]",
        "INFO: Use xnnpack: [1]",
        "INFO: Explicitly applied XNNPACK delegate, and the model graph will be completely executed by the delegate.",
    ):
        assert line in out.lines
    assert "Num threads" not in out.stdout  # not set, not echoed
    peak = re.search(r"^INFO: Overall peak memory footprint \(MB\) via periodic monitoring: (\S+)$", out.stdout, re.M)
    assert peak and float(peak.group(1)) > 0


def test_without_xnnpack_no_delegate_is_created(tiny_models: dict[str, Path]) -> None:
    out = run_module(f"--graph={tiny_models['dense']}", *FAST, "--use_xnnpack=false")
    assert out.code == 0, out.stdout
    assert "INFO: Use xnnpack: [0]" in out.lines
    assert "XNNPACK" not in out.stdout + out.stderr


def test_unknown_and_duplicate_flags_are_reported_and_skipped(tiny_models: dict[str, Path]) -> None:
    out = run_module(f"--graph={tiny_models['dense']}", *FAST, "--bogus=1", "--num_runs=9")
    assert out.code == 0, out.stdout
    assert out.lines[1] == "WARN: Unconsumed cmdline flags: --bogus=1 --num_runs=9"
    assert out.counts()[1] == 3  # the first --num_runs wins, as in the real tool


def test_op_profiling_is_declined_with_a_warning(tiny_models: dict[str, Path]) -> None:
    out = run_module(f"--graph={tiny_models['dense']}", *FAST, "--enable_op_profiling=true")
    assert out.code == 0
    assert "INFO: Enable op profiling: [1]" in out.lines
    assert any(line.startswith("WARN: Op profiling is not supported") for line in out.lines)


@pytest.mark.parametrize(
    ("args", "tail"),
    [
        (("--num_runs=abc",), "Failed to parse flag 'num_runs' against argv '--num_runs=abc'"),
        (("--use_gpu=yes",), "Failed to parse flag 'use_gpu' against argv '--use_gpu=yes'"),
    ],
)
def test_unparsable_flag_fails_with_usage(args: tuple[str, ...], tail: str, tiny_models: dict[str, Path]) -> None:
    out = run_module(f"--graph={tiny_models['dense']}", *args)
    assert out.code == 1
    assert f"ERROR: {tail}" in out.lines
    assert "ERROR: usage: benchmark_model <flags>" in out.lines
    assert out.lines[-1] == "ERROR: Benchmarking failed."


@pytest.mark.slow  # launches the runner (LiteRT import) in a subprocess
def test_missing_graph_flag_fails() -> None:
    assert_failed(run_module(*FAST), "Please specify the name of your TF Lite input file with --graph")


# --- loop semantics ----------------------------------------------------------


def test_num_runs_is_the_number_of_runs_when_no_duration_is_asked(tiny_models: dict[str, Path]) -> None:
    out = run_module(
        f"--graph={tiny_models['dense']}", "--num_runs=7", "--min_secs=0", "--warmup_runs=4", "--warmup_min_secs=0"
    )
    assert out.code == 0
    assert out.counts() == [4, 7]


def test_min_secs_extends_the_loop_beyond_num_runs(tiny_models: dict[str, Path]) -> None:
    out = run_module(
        f"--graph={tiny_models['dense']}",
        "--num_runs=1",
        "--min_secs=0.3",
        "--run_delay=0.01",
        "--warmup_runs=1",
        "--warmup_min_secs=0",
    )
    assert out.code == 0
    # Every run sleeps 10 ms, so 0.3 s holds at most 31 of them.
    assert 1 < out.counts()[1] <= 31


def test_max_secs_stops_the_loop_before_num_runs(tiny_models: dict[str, Path]) -> None:
    out = run_module(
        f"--graph={tiny_models['dense']}",
        "--num_runs=1000",
        "--min_secs=0",
        "--max_secs=0.2",
        "--run_delay=0.01",
        "--warmup_runs=1",
        "--warmup_min_secs=0",
    )
    assert out.code == 0
    assert 1 <= out.counts()[1] <= 22


def _quiet_log() -> Log:
    return Log(io.StringIO())


class FakeClock:
    """perf_counter_ns and sleep on a clock that moves only when told: the loop's pacing
    is then exact, whatever else the machine is doing."""

    def __init__(self) -> None:
        self.ns = 1_000_000_000_000
        self.sleeps: list[float] = []

    def perf_counter_ns(self) -> int:
        return self.ns

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.ns += round(seconds * 1e9)

    def work(self, seconds: float) -> Callable[[], None]:
        def invoke() -> None:
            self.ns += round(seconds * 1e9)

        return invoke


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(time, "perf_counter_ns", fake.perf_counter_ns)
    monkeypatch.setattr(time, "sleep", fake.sleep)
    return fake


def test_run_delay_sleeps_between_runs(clock: FakeClock) -> None:
    result = run_loop(clock.work(0.005), 5, 0.0, 150.0, 0.02, -1.0, _quiet_log())
    assert result.stats.count == 5
    assert result.stats.avg == 5000
    assert clock.sleeps == [0.02] * 5  # the delay after every run, whatever the run took


def test_run_frequency_paces_runs_and_overrides_run_delay(clock: FakeClock) -> None:
    run_loop(clock.work(0.005), 5, 0.0, 150.0, 1.0, 50.0, _quiet_log())
    # 50 Hz: each sleep tops the 5 ms run up to the 20 ms period; the 1 s run_delay is ignored.
    assert clock.sleeps == pytest.approx([0.015] * 5, abs=1e-6)


def test_invoke_failure_is_recorded_and_the_loop_goes_on() -> None:
    calls = []

    def failing() -> None:
        calls.append(1)
        raise RuntimeError("Node number 3 (ADD) failed to invoke.")

    stream = io.StringIO()
    result = run_loop(failing, 3, 0.0, 150.0, -1.0, -1.0, Log(stream))
    assert len(calls) == 3 and result.stats.count == 3
    assert isinstance(result.error, RuntimeError)
    assert "ERROR: Node number 3 (ADD) failed to invoke.\n" in stream.getvalue()


@pytest.mark.parametrize(
    ("samples", "line"),
    [
        ((1, 2, 3, 4, 100), "count=5 first=1 curr=100 min=1 max=100 avg=22 std=39 p5=1 median=3 p95=100"),
        ((7, 7, 7), "count=3 curr=7(all same) p5=7 median=7 p95=7"),
        ((1357602,), "count=1 curr=1357602 p5=1357602 median=1357602 p95=1357602"),
        ((), "count=0 p5=0 median=0 p95=0"),
        (
            (1240000, 1240541),
            "count=2 first=1240000 curr=1240541 min=1240000 max=1240541 "
            "avg=1.24027e+06 std=270 p5=1240000 median=1240541 p95=1240541",
        ),
    ],
)
def test_stat_lines_are_formatted_like_the_real_tool(samples: tuple[int, ...], line: str) -> None:
    assert RunStats.of(samples).summary() == line


# --- inputs and outputs ------------------------------------------------------


def _reference_output(model: Path, inputs: np.ndarray) -> bytes:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(model), num_threads=1)
    detail = interpreter.get_input_details()[0]
    interpreter.resize_tensor_input(detail["index"], list(inputs.shape))
    interpreter.allocate_tensors()
    interpreter.set_tensor(detail["index"], inputs)
    interpreter.invoke()
    return b"".join(interpreter.get_tensor(out["index"]).tobytes() for out in interpreter.get_output_details())


def _input_name(model: Path) -> str:
    from ai_edge_litert.interpreter import Interpreter

    return str(Interpreter(model_path=str(model)).get_input_details()[0]["name"])


@pytest.mark.parametrize(("model", "shape"), [("dense", (1, 8)), ("dense", (3, 8)), ("conv", (2, 20, 20, 3))])
def test_output_file_holds_the_outputs_for_the_given_inputs(
    model: str, shape: tuple[int, ...], tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    graph = tiny_models[model]
    inputs = np.random.default_rng(7).uniform(-1, 1, size=shape).astype(np.float32)
    value_file = tmp_path / "input.bin"
    value_file.write_bytes(inputs.tobytes())
    name = _input_name(graph)
    out_file = tmp_path / "out.bin"

    out = run_module(
        f"--graph={graph}",
        *FAST,
        "--num_threads=1",
        f"--input_layer={name}",
        f"--input_layer_shape={','.join(map(str, shape))}",
        f"--input_layer_value_files={_escaped(name)}:{value_file}",
        f"--output_filepath={out_file}",
    )

    assert out.code == 0, out.stdout
    assert f"INFO: Output file path: [{out_file}]" in out.lines
    assert out_file.read_bytes() == _reference_output(graph, inputs)


def _escaped(name: str) -> str:
    """As benchmark_model wants a name in --input_layer_value_files: each ':' doubled."""
    return name.replace(":", "::")


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ("x:/data/in.bin", ("x", "/data/in.bin")),
        ("serving_default_x::0:/data/in.bin", ("serving_default_x:0", "/data/in.bin")),
        ("a::b::c:/p::q", ("a:b:c", "/p:q")),
        ("serving_default_x:0:/data/in.bin", None),  # two delimiters: the name's ':' was not doubled
        ("no_delimiter", None),
        ("only::escaped", None),
    ],
)
def test_value_file_items_split_as_the_real_tool_does(item: str, expected: tuple[str, str] | None) -> None:
    assert split_name_and_value_file(item) == expected


def test_an_unescaped_name_with_a_colon_is_refused(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    graph = tiny_models["dense"]
    name = _input_name(graph)
    assert ":" in name  # converted models name tensors "serving_default_<name>:0"
    value_file = tmp_path / "in.bin"
    value_file.write_bytes(b"\0" * 32)
    out = run_module(
        f"--graph={graph}",
        *FAST,
        f"--input_layer={name}",
        "--input_layer_shape=1,8",
        f"--input_layer_value_files={name}:{value_file}",
    )
    assert_failed(out, f"Wrong input value file item specified: {name}:{value_file}")


def test_value_file_of_the_wrong_size_fails(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    graph = tiny_models["dense"]
    name = _input_name(graph)
    value_file = tmp_path / "short.bin"
    value_file.write_bytes(b"\0" * 12)
    out = run_module(
        f"--graph={graph}",
        *FAST,
        f"--input_layer={name}",
        "--input_layer_shape=1,8",
        f"--input_layer_value_files={_escaped(name)}:{value_file}",
    )
    assert_failed(out, f"The size of {value_file} is 12 bytes. It should be 32 bytes.")


def test_input_flags_must_agree(tiny_models: dict[str, Path]) -> None:
    out = run_module(f"--graph={tiny_models['dense']}", *FAST, "--input_layer=a,b", "--input_layer_shape=1,8")
    assert_failed(
        out,
        "The number of items in --input_layer_shape (1,8, with 1 items) must match the number "
        "of items in --input_layer (a,b, with 2 items). For example "
        "--input_layer=input1,input2 --input_layer_shape=1,224,224,4:1,20",
    )


# --- paths ------------------------------------------------------------------------------
# The runner takes paths as they are: on a virtual phone it runs inside the phone's sandbox, whose
# namespaces confine it (tests/test_virtual_farm.py, the escape test), not a path translation.


def test_paths_are_used_as_given(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    folder = tmp_path / "data/local/tmp"
    folder.mkdir(parents=True)
    shutil.copy(tiny_models["dense"], folder / "m.tflite")
    inputs = np.linspace(-1, 1, 8, dtype=np.float32).reshape(1, 8)
    (folder / "in.bin").write_bytes(inputs.tobytes())
    name = _input_name(tiny_models["dense"])

    out = run_module(
        f"--graph={folder}/m.tflite",
        f"--output_filepath={folder}/out.bin",
        f"--input_layer={name}",
        "--input_layer_shape=1,8",
        f"--input_layer_value_files={_escaped(name)}:{folder}/in.bin",
        "--num_threads=1",
        *FAST,
    )

    assert out.code == 0, out.stdout
    assert f"INFO: Graph: [{folder}/m.tflite]" in out.lines
    assert f"INFO: Loaded model {folder}/m.tflite" in out.lines
    assert f"INFO: Output file path: [{folder}/out.bin]" in out.lines
    expected = _reference_output(tiny_models["dense"], inputs)
    assert (folder / "out.bin").read_bytes() == expected


def test_relative_paths_resolve_against_the_working_directory(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    shutil.copy(tiny_models["dense"], tmp_path / "m.tflite")
    out = run_module("--graph=m.tflite", *FAST, cwd=tmp_path)
    assert out.code == 0, out.stdout


# --- failures ----------------------------------------------------------------


def test_missing_model_fails_like_benchmark_model(runner: Runner, tmp_path: Path) -> None:
    graph = tmp_path / "nope.tflite"
    assert_failed(runner(f"--graph={graph}", *FAST), f"Could not open '{graph}'.", f"Failed to mmap model {graph}")


@pytest.mark.parametrize("damage", ["random", "truncated"])
def test_corrupt_model_fails_like_benchmark_model(damage: str, tiny_models: dict[str, Path], tmp_path: Path) -> None:
    graph = tmp_path / "bad.tflite"
    good = tiny_models["conv"].read_bytes()
    graph.write_bytes(np.random.default_rng(1).bytes(2000) if damage == "random" else good[: len(good) // 2])
    assert_failed(
        run_module(f"--graph={graph}", *FAST),
        "The model is not a valid Flatbuffer buffer",
        f"Failed to mmap model {graph}",
    )


def test_unresolved_custom_op_fails_like_benchmark_model(tiny_models: dict[str, Path]) -> None:
    graph = tiny_models["custom_op"]
    out = run_module(f"--graph={graph}", *FAST)
    assert f"INFO: Loaded model {graph}" in out.lines
    assert_failed(
        out,
        "Encountered unresolved custom op: HarnessUnknownOp.",
        "Node number 0 (HarnessUnknownOp) failed to prepare.",
        "Failed to allocate tensors!",
    )


@pytest.mark.parametrize(
    ("flag", "name", "env_var"),
    [
        ("--use_gpu=true", "GPU", "HARNESS_GPU_DELEGATE_LIBRARY"),
        ("--use_nnapi=true", "NNAPI", "HARNESS_NNAPI_LIBRARY"),
    ],
)
def test_unavailable_delegate_fails_instead_of_running_on_cpu(
    flag: str, name: str, env_var: str, tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    missing = tmp_path / "libnothing.so"
    out = run_module(f"--graph={tiny_models['dense']}", *FAST, flag, env={env_var: str(missing)})
    warning = f"WARN: Could not load {name} delegate library {missing}"
    assert any(line.startswith(warning) for line in out.lines)
    assert_failed(out, f"Failed to apply {name} delegate.")
    assert "count=" not in out.stdout


_FAKE_DELEGATE_C = r"""
#include <stdint.h>
#include <stdlib.h>
/* TfLiteDelegate as tensorflow/lite/core/c/common.h lays it out. */
typedef struct TfLiteDelegate {
  void* data_;
  int (*Prepare)(void* context, struct TfLiteDelegate* delegate);
  void* CopyFromBufferHandle;
  void* CopyToBufferHandle;
  void* FreeBufferHandle;
  int64_t flags;
  void* opaque_delegate_builder;
} TfLiteDelegate;
/* Claims no node; PREPARE_STATUS 1 (kTfLiteError) makes applying it fail. */
static int prepare(void* context, TfLiteDelegate* delegate) { return PREPARE_STATUS; }
TfLiteDelegate* tflite_plugin_create_delegate(char** keys, char** values, size_t n,
                                              void (*report_error)(const char*)) {
  TfLiteDelegate* delegate = calloc(1, sizeof(TfLiteDelegate));
  delegate->Prepare = prepare;
  return delegate;
}
void tflite_plugin_destroy_delegate(TfLiteDelegate* delegate) { free(delegate); }
"""


@slow_fixture(scope="session")
def fake_delegates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """External delegate libraries that load but take nothing ('idle') or fail ('failing')."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.skip("no C compiler to build a stand-in delegate library")
    folder = tmp_path_factory.mktemp("delegates")
    source = folder / "delegate.c"
    source.write_text(_FAKE_DELEGATE_C)
    libraries = {}
    for name, status in (("idle", 0), ("failing", 1)):
        libraries[name] = folder / f"lib{name}.so"
        subprocess.run(
            [compiler, "-shared", "-fPIC", f"-DPREPARE_STATUS={status}", "-o", str(libraries[name]), str(source)],
            check=True,
        )
    return libraries


def test_loaded_delegate_is_reported_by_what_it_took(
    fake_delegates: dict[str, Path], tiny_models: dict[str, Path]
) -> None:
    out = run_module(
        f"--graph={tiny_models['dense']}",
        *FAST,
        "--use_gpu=true",
        env={"HARNESS_GPU_DELEGATE_LIBRARY": str(fake_delegates["idle"])},
    )
    assert out.code == 0, out.stdout
    assert (
        "INFO: Though GPU delegate is explicitly applied, the model graph will not be executed by the delegate."
    ) in out.lines


def test_delegate_that_fails_to_apply_fails_the_run(
    fake_delegates: dict[str, Path], tiny_models: dict[str, Path]
) -> None:
    out = run_module(
        f"--graph={tiny_models['dense']}",
        *FAST,
        "--use_nnapi=true",
        env={"HARNESS_NNAPI_LIBRARY": str(fake_delegates["failing"])},
    )
    assert_failed(
        out, "Restored original execution plan after delegate application failure.", "Failed to apply NNAPI delegate."
    )


# --- round trip through the harness's parser ----------------------------------


def test_output_parses_into_one_run_with_the_printed_figures(tiny_models: dict[str, Path]) -> None:
    from harness.benchlog import parse_log

    out = run_module(
        f"--graph={tiny_models['conv']}",
        "--num_threads=2",
        "--num_runs=6",
        "--min_secs=0",
        "--warmup_runs=1",
        "--warmup_min_secs=0",
    )
    assert out.code == 0, out.stdout

    runs = parse_log(out.stdout)

    assert len(runs) == 1
    run = runs[0]
    assert run.ok and run.error_type is None
    assert run.inference_count == out.counts()[1] == 6
    assert run.inference_avg_us == float(out.inference_avg())
    assert run.num_threads == 2
    init_us = re.search(r"Init: (\d+),", out.stdout)
    assert init_us and run.init_us == float(init_us.group(1))


@pytest.mark.parametrize(
    ("case", "error_type"),
    [
        ("missing", "model_load_failed"),
        ("corrupt", "model_load_failed"),
        ("custom_op", "unsupported_op"),
        ("gpu", "delegate_failed"),
    ],
)
def test_failures_parse_into_a_run_with_an_error_type(
    case: str, error_type: str, tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    from harness.benchlog import parse_log

    corrupt = tmp_path / "corrupt.tflite"
    corrupt.write_bytes(b"\x00not a model" * 50)
    args = {
        "missing": [f"--graph={tmp_path / 'nope.tflite'}"],
        "corrupt": [f"--graph={corrupt}"],
        "custom_op": [f"--graph={tiny_models['custom_op']}"],
        "gpu": [f"--graph={tiny_models['dense']}", "--use_gpu=true"],
    }[case]
    out = run_module(*args, *FAST)
    assert out.code == 1

    runs = parse_log(out.stdout)

    assert len(runs) == 1
    assert not runs[0].ok
    assert runs[0].error_type is not None and runs[0].error_type.value == error_type
