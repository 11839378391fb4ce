"""The runner's LiteRT 2.x dialect and the BenchmarkResult file, run for real on tiny real models.

Every run executes the LiteRT zipapp as a file, as a virtual phone does, with
few runs and no minimum durations.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from tiers import slow_fixture

from harness.benchlog import parse_log
from harness.benchresult import merge_result, read_benchmark_result
from harness.records import BenchmarkRun, ErrorType
from harness.runner.result_proto import ProtoSyntaxError, message_classes, parse_proto
from harness.runner_zipapp import SHEBANG, build_runner
from harness.virtual_farm.shell_service import delegate_of

REPO = Path(__file__).resolve().parent.parent
FAST = ("--num_runs=3", "--min_secs=0", "--warmup_runs=1", "--warmup_min_secs=0")
DELEGATES_ENV = "HARNESS_DEVICE_DELEGATES"
# The printed block rounds milliseconds to 2 decimals.
PRINT_ROUNDING_US = (
    5.0 + 0.01
)  # half of the block's 0.01 ms, plus the proto's float32 error (0.075 ms is 0.07499... there)

# (message, field, number, type) of tflite/tools/benchmark/proto/benchmark_result.proto
# at google-ai-edge/LiteRT f67457790c9c2ab67347d6fe53270e8d3df20868.
UPSTREAM_FIELDS = {
    ("LatencyMetrics", "avg_ms", 1, "float"),
    ("LatencyMetrics", "min_ms", 2, "float"),
    ("LatencyMetrics", "max_ms", 3, "float"),
    ("LatencyMetrics", "stddev_ms", 4, "float"),
    ("LatencyMetrics", "median_ms", 5, "float"),
    ("LatencyMetrics", "p5_ms", 6, "float"),
    ("LatencyMetrics", "p95_ms", 7, "float"),
    ("LatencyMetrics", "init_ms", 8, "float"),
    ("LatencyMetrics", "first_inference_ms", 9, "float"),
    ("LatencyMetrics", "average_warm_up_ms", 10, "float"),
    ("MemoryMetrics", "init_footprint_kb", 1, "int64"),
    ("MemoryMetrics", "overall_footprint_kb", 2, "int64"),
    ("MemoryMetrics", "peak_mem_mb", 3, "float"),
    ("MiscMetrics", "model_size_mb", 1, "float"),
    ("MiscMetrics", "num_runs", 2, "int32"),
    ("MiscMetrics", "num_warmup_runs", 3, "int32"),
    ("MiscMetrics", "model_throughput_in_mb_per_sec", 4, "float"),
    ("BenchmarkResult", "name", 1, "string"),
    ("BenchmarkResult", "latency_metrics", 2, "LatencyMetrics"),
    ("BenchmarkResult", "memory_metrics", 3, "MemoryMetrics"),
    ("BenchmarkResult", "misc_metrics", 4, "MiscMetrics"),
}


@dataclass(frozen=True)
class Outcome:
    code: int
    stdout: str
    stderr: str

    @property
    def lines(self) -> list[str]:
        return self.stdout.splitlines()


@slow_fixture(scope="module")
def litert_zipapp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_runner(tmp_path_factory.mktemp("litert") / "benchmark_model", dialect="litert")


@pytest.fixture
def run(litert_zipapp: Path):
    def run_tool(*args: str, env: dict[str, str] | None = None) -> Outcome:
        environ = {k: v for k, v in os.environ.items() if k != DELEGATES_ENV}
        # The zipapp's `#!/usr/bin/env python3` must find this Python (numpy, LiteRT, protobuf).
        environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), environ.get("PATH", "")])
        environ.update(env or {})
        done = subprocess.run(
            [str(litert_zipapp), *args], check=False, capture_output=True, text=True, env=environ, timeout=60
        )
        return Outcome(done.returncode, done.stdout, done.stderr)

    return run_tool


def test_block_and_result_file_agree(run, tiny_models: dict[str, Path], tmp_path: Path) -> None:
    folder = tmp_path / "data/local/tmp"
    folder.mkdir(parents=True)
    (folder / "m.tflite").write_bytes(tiny_models["conv"].read_bytes())
    out = run(
        f"--graph={folder}/m.tflite",
        "--num_threads=2",
        f"--result_file_path={folder}/r.pb",
        *FAST,
        env={DELEGATES_ENV: "xnnpack"},
    )

    assert out.code == 0, out.stdout + out.stderr
    assert out.lines[0] == "INFO: STARTING!"
    assert f"INFO: [benchmark_litert_model.cc:305] Loading model from: {folder}/m.tflite" in out.lines
    assert "INFO: [benchmark_litert_model.h:89] " in out.lines
    assert "========== BENCHMARK RESULTS ==========" in out.lines
    assert f"INFO: [benchmark_litert_model.h:181] Saved benchmark result to: {folder}/r.pb" in out.lines
    [printed] = parse_log(out.stdout)
    from_file = read_benchmark_result((folder / "r.pb").read_bytes())
    assert printed.ok and from_file.ok, (printed, from_file)
    for name in (
        "init_us",
        "first_inference_us",
        "warmup_avg_us",
        "inference_avg_us",
        "inference_min_us",
        "inference_max_us",
        "inference_std_us",
    ):
        assert getattr(printed, name) == pytest.approx(getattr(from_file, name), abs=PRINT_ROUNDING_US), name
    assert printed.inference_count == from_file.inference_count == 3
    assert printed.warmup_count == from_file.warmup_count == 1
    # printed with 2 decimals: off by at most half a hundredth, which 13.875 -> "13.88" reaches exactly
    print_rounding_mb = 0.005 + 1e-9
    assert printed.memory_init_mb == pytest.approx(from_file.memory_init_mb, abs=print_rounding_mb)
    assert printed.memory_overall_mb == pytest.approx(from_file.memory_overall_mb, abs=print_rounding_mb)
    assert from_file.inference_min_us is not None and from_file.inference_p50_us is not None
    assert from_file.inference_p95_us is not None
    assert from_file.inference_min_us <= from_file.inference_p50_us <= from_file.inference_p95_us

    merged = merge_result(printed, from_file)
    assert merged.inference_avg_us == from_file.inference_avg_us
    assert merged.delegate == printed.delegate and merged.error is None


def test_help_prints_vendor_header_and_usage_then_exits_0(run) -> None:
    out = run("--help")

    assert out.code == 0, out.stdout + out.stderr
    assert out.lines[:4] == ["", "  NPU Vendor Flags from LiteRT:", "", "INFO: STARTING!"]
    assert "ERROR: usage: benchmark_model <flags>" in out.lines
    assert "Benchmarking failed." not in out.stdout
    for flag in ("--use_cpu=true", "--use_npu=false", "--gpu-precision=auto", "--result_file_path="):
        assert any(line.startswith(f"\t{flag} ") for line in out.lines), flag


def test_cpu_with_full_delegation_aborts(run, tiny_models: dict[str, Path]) -> None:
    out = run(f"--graph={tiny_models['dense']}", "--require_full_delegation=true", *FAST)

    assert out.code == -signal.SIGABRT
    assert out.lines[-1] == (
        "ERROR: [benchmark_litert_model.cc:110] Requesting full delegation and CPU acceleration are incompatible."
    )


def test_invalid_gpu_precision_aborts(run, tiny_models: dict[str, Path]) -> None:
    out = run(f"--graph={tiny_models['dense']}", "--use_gpu=true", "--gpu-precision=int4", *FAST)

    assert out.code == -signal.SIGABRT
    assert out.lines[-1] == "ERROR: [benchmark_litert_model.cc:180] Invalid gpu-precision: int4"


def test_npu_on_a_phone_without_npu_fails_without_numbers(run, tiny_models: dict[str, Path]) -> None:
    # NPU|CPU: the host's LiteRT would quietly run it all on the CPU.
    out = run(f"--graph={tiny_models['dense']}", "--use_npu=true", *FAST, env={DELEGATES_ENV: "xnnpack,gpu"})

    assert out.code == 1, out.stdout + out.stderr
    assert "INFO: [benchmark_litert_model.cc:270] dispatch_library_path: " in out.lines
    assert out.lines[-2:] == ["\u2514 Failed to compile model.", "ERROR: Benchmarking failed."]
    assert "count=" not in out.stdout and "BENCHMARK RESULTS" not in out.stdout
    [parsed] = parse_log(out.stdout)
    assert parsed.error_type is ErrorType.BENCHMARK_FAILED and parsed.inference_avg_us is None


def test_unknown_flag_is_a_warning_and_vendor_flags_are_taken_out(run, tiny_models: dict[str, Path]) -> None:
    out = run(f"--graph={tiny_models['dense']}", "--no_such_flag=1", "--qualcomm_log_level=off", *FAST)

    assert out.code == 0, out.stdout + out.stderr
    assert out.lines[1] == "WARN: Unconsumed cmdline flags: --no_such_flag=1"


def test_missing_model_fails_to_load(run, tmp_path: Path) -> None:
    out = run(f"--graph={tmp_path}/absent.tflite", *FAST)

    assert out.code == 1
    assert f"ERROR: Could not open '{tmp_path}/absent.tflite'." in out.lines
    assert out.lines[-2:] == ["\u2514 Failed to load model.", "ERROR: Benchmarking failed."]
    [parsed] = parse_log(out.stdout)
    assert parsed.error_type is ErrorType.MODEL_LOAD_FAILED


def test_proto_matches_upstream() -> None:
    names = {
        value: key.lower().removeprefix("type_")
        for key, value in __import__("google.protobuf.descriptor_pb2", fromlist=["x"]).FieldDescriptorProto.Type.items()
    }
    found = set()
    for message_name, cls in message_classes().items():
        for field in cls.DESCRIPTOR.fields:
            kind = field.message_type.name if field.message_type else names[field.type]
            found.add((message_name, field.name, field.number, kind))
    assert found == UPSTREAM_FIELDS
    assert message_classes()["BenchmarkResult"].DESCRIPTOR.full_name == "tflite.tools.benchmark.BenchmarkResult"


@pytest.mark.parametrize(
    "text",
    [
        'syntax = "proto3"; message A { optional int32 x = 1; }',
        'syntax = "proto2"; message A { repeated int32 x = 1; }',
        'syntax = "proto2"; enum E { A = 0; }',
        'syntax = "proto2"; message A { optional B x = 1; }',
        'syntax = "proto2"; message A { optional int32 x = 1 [default = 2]; }',
    ],
)
def test_proto_parser_rejects_unsupported_syntax(text: str) -> None:
    with pytest.raises(ProtoSyntaxError):
        parse_proto(text)


def test_reader_never_raises_on_garbage() -> None:
    for data in (b"\xff\xff\xff", b"", b"INFO: STARTING!\n"):
        run = read_benchmark_result(data)
        assert run.error_type is ErrorType.GARBAGE and run.inference_avg_us is None
    stdout_run = BenchmarkRun(inference_avg_us=10.0, delegate="xnnpack")
    assert merge_result(stdout_run, read_benchmark_result(b"\xff")) == stdout_run


def test_both_dialects_build_deterministically_and_differ(tmp_path: Path) -> None:
    builds = {
        dialect: [build_runner(tmp_path / f"{dialect}{n}", dialect=dialect).read_bytes() for n in (1, 2)]
        for dialect in ("classic", "litert")
    }
    assert builds["classic"][0] == builds["classic"][1]
    assert builds["litert"][0] == builds["litert"][1]
    assert builds["classic"][0] != builds["litert"][0]
    assert builds["litert"][0].startswith(SHEBANG)
    with zipfile.ZipFile(tmp_path / "litert1") as archive:
        assert "harness/runner/benchmark_result.proto" in archive.namelist()
    with pytest.raises(ValueError, match="unknown runner dialect"):
        build_runner(tmp_path / "x", dialect="tflite3")


def test_delegate_of_reads_litert_flags() -> None:
    assert delegate_of({"use_npu": "true", "use_cpu": "true"}) == "npu"
    assert delegate_of({"use_gpu": "true"}) == "gpu"
    assert delegate_of({"use_cpu": "true"}) == "xnnpack"
    assert delegate_of({"num_threads": "2"}) == "cpu"
