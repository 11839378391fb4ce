"""The benchmark output parser against real captured outputs and constructed ones."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from fixture_paths import BENCHMARK_LOGS
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.benchlog import parse_log
from harness.commands import main
from harness.records import BenchmarkRun, ErrorType

FIXTURES = BENCHMARK_LOGS
FIXTURE_FILES = sorted(FIXTURES.glob("*.txt"))
VERBATIM_MARKER = "# ---- verbatim text below this line ----"


def verbatim(path: Path) -> str:
    text = path.read_text(encoding="utf-8")
    return text.split(VERBATIM_MARKER + "\n", 1)[1]


def expected_runs(path: Path) -> list[dict]:
    data = json.loads(path.with_suffix(".expected.json").read_text(encoding="utf-8"))
    return data.get("runs", [data])


def fixture_id(path: Path) -> str:
    return path.name.split("_", 1)[0]


# Where a fixture's hand-read value is not derivable from its verbatim text, the
# parser reports what the text says; each entry quotes the fixture's own note.
TEXT_SAYS_OTHERWISE = {
    # "delegate known only from the command line in the header ... a text-only
    # parser would say cpu/unknown"
    ("02", 0, "delegate"): "cpu",
    # "num_threads=4 only on the command line echoed in the text ...; a parser
    # reading the echoed command may report 4"
    ("16", 0, "num_threads"): 4,
}

# Captures cut off by the excerpt tool: the expected file says error=null, the
# parser (per the issue: "output that ends before a summary" is a failure)
# reports a truncated run, never anything more specific.
TRUNCATED_BY_CAPTURE = {("07", 1), ("22", 0)}

EXPECTED_ERROR_TYPES = {
    "04": ErrorType.DELEGATE_FAILED,
    "11": ErrorType.UNSUPPORTED_OP,
    "12": ErrorType.DELEGATE_FAILED,
    "26": ErrorType.CRASH,
}


def close(actual: float | None, expected: float | None) -> bool:
    if expected is None or actual is None:
        return actual is None and expected is None
    return math.isclose(actual, expected, rel_tol=0.005, abs_tol=1e-9)


@pytest.mark.parametrize("path", FIXTURE_FILES, ids=fixture_id)
def test_shared_fixture_matches_hand_read_values(path: Path) -> None:
    runs = parse_log(verbatim(path))
    expected = expected_runs(path)
    assert len(runs) == len(expected)
    fid = fixture_id(path)
    for index, (run, want) in enumerate(zip(runs, expected, strict=False)):
        where = f"{path.name} run {index}"
        init_ms = None if run.init_us is None else run.init_us / 1000
        assert close(init_ms, want["init_ms"]), where
        for key in ("first_inference_us", "warmup_avg_us", "inference_avg_us", "inference_std_us"):
            assert close(getattr(run, key), want[key]), f"{where}: {key}"
        assert run.inference_count == want["num_runs"], where
        # The old 'Peak memory footprint' line is the same quantity as the newer delta line.
        memory_init = want["memory_init_mb"] if want["memory_init_mb"] is not None else want["peak_memory_init_mb"]
        memory_overall = (
            want["memory_overall_mb"] if want["memory_overall_mb"] is not None else want["peak_memory_overall_mb"]
        )
        assert close(run.memory_init_mb, memory_init), where
        assert close(run.memory_overall_mb, memory_overall), where
        for key in ("num_threads", "delegate", "delegate_applied"):
            assert getattr(run, key) == TEXT_SAYS_OTHERWISE.get((fid, index, key), want[key]), f"{where}: {key}"
        if want["error"] is None:
            if (fid, index) in TRUNCATED_BY_CAPTURE:
                assert run.error_type is ErrorType.TRUNCATED, where
            else:
                assert run.error is None, f"{where}: {run.error}"
        else:
            assert run.error, where
            assert run.error_type is EXPECTED_ERROR_TYPES[fid], where


def test_every_fixture_has_an_expectation() -> None:
    assert len(FIXTURE_FILES) >= 15
    for path in FIXTURE_FILES:
        assert path.with_suffix(".expected.json").exists()


def test_error_messages_carry_the_cause() -> None:
    by_id = {fixture_id(path): parse_log(verbatim(path)) for path in FIXTURE_FILES}
    assert by_id["04"][0].error is not None
    assert by_id["11"][0].error is not None
    assert by_id["12"][0].error is not None
    assert "ANEURALNETWORKS_OP_FAILED" in by_id["04"][0].error
    assert "'MUL' version '5'" in by_id["11"][0].error
    assert "hexagon_nn_config failed" in by_id["12"][0].error
    assert by_id["26"][0].error == "Segmentation fault"


def test_perf_options_rows_name_their_option() -> None:
    runs = parse_log(verbatim(FIXTURES / "19_perf_options_summary_three_quantizations.txt"))
    expected = expected_runs(FIXTURES / "19_perf_options_summary_three_quantizations.txt")
    assert [run.perf_option for run in runs] == [want["_perf_option"] for want in expected]
    assert runs[0].inference_min_us == 30791 and runs[0].inference_max_us == 37476


# --- formats no shared fixture covers, written after the tools' source -------

LITERT_BLOCK = """\
INFO: [benchmark_litert_model.cc:131] Loading model from: /data/local/tmp/m.tflite
INFO: Initialized session in 41.2ms.
INFO: Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
INFO: count=23 first=30218 curr=21655 min=20712 max=30218 avg=21922.3 std=1897 p5=20712 median=21563 p95=23001

INFO: Running benchmark for at least 50 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
INFO: count=50 first=21533 curr=21017 min=20544 max=23876 avg=21347.1 std=611 p5=20601 median=21222 p95=22514

INFO: [benchmark_litert_model.h:72]
========== BENCHMARK RESULTS ==========
INFO: [benchmark_litert_model.h:73] Model initialization: 41.20 ms
INFO: [benchmark_litert_model.h:74] Warmup (first):       30.22 ms
INFO: [benchmark_litert_model.h:76] Warmup (avg):         21.92 ms (23 runs)
INFO: [benchmark_litert_model.h:78] Inference (avg):      21.35 ms (50 runs)
INFO: [benchmark_litert_model.h:82] Inference (min):      20.54 ms
INFO: [benchmark_litert_model.h:84] Inference (max):      23.88 ms
INFO: [benchmark_litert_model.h:86] Inference (std):      0.61
INFO: [benchmark_litert_model.h:92] Throughput:           112.40 MB/s
INFO: [benchmark_litert_model.h:101]
Memory Usage:
INFO: [benchmark_litert_model.h:102] Init footprint:       6.12 MB
INFO: [benchmark_litert_model.h:104] Overall footprint:    38.50 MB
INFO: [benchmark_litert_model.h:109] Peak memory:          44.75 MB
INFO: [benchmark_litert_model.h:115] ======================================
"""


def test_litert_results_block_in_ms_becomes_us() -> None:
    [run] = parse_log(LITERT_BLOCK)
    assert run.ok
    assert close(run.init_us, 41200) and close(run.first_inference_us, 30220)
    assert close(run.warmup_avg_us, 21920) and close(run.inference_avg_us, 21350)
    assert close(run.inference_min_us, 20540) and close(run.inference_max_us, 23880)
    assert close(run.inference_std_us, 610)
    assert run.inference_count == 50
    assert (run.memory_init_mb, run.memory_overall_mb, run.memory_peak_mb) == (6.12, 38.5, 44.75)
    assert run.inference_p50_us == 21222 and run.inference_p95_us == 22514


def test_litert_block_after_classic_summary_is_the_same_run() -> None:
    classic = "INFO: Inference timings in us: Init: 41213, First inference: 30218, Warmup (avg): 21922.3, Inference (avg): 21347.1\n"
    lines = LITERT_BLOCK.splitlines(keepends=True)
    text = "".join(lines[:7]) + classic + "".join(lines[7:])
    [run] = parse_log(text)
    assert run.inference_avg_us == 21347.1  # the precise classic figure wins over 21.35 ms
    assert run.init_us == 41213


def test_litert_block_alone() -> None:
    block = LITERT_BLOCK.split("INFO: [benchmark_litert_model.h:72]\n", 1)[1]
    runs = parse_log(block + block)
    assert len(runs) == 2 and all(run.ok and run.inference_count == 50 for run in runs)


ANDROID_STUDIO_NEW = """\
2024-02-11 09:15:02.114  8123-8123  tflite                  org.tensorflow.lite.benchmark        I  Num threads: [2]
2024-02-11 09:15:02.120  8123-8123  tflite                  org.tensorflow.lite.benchmark        I  Use xnnpack: [1]
2024-02-11 09:15:02.233  8123-8123  tflite                  org.tensorflow.lite.benchmark        I  Explicitly applied XNNPACK delegate, and the model graph will be partially executed by the delegate w/ 3 delegate kernels.
2024-02-11 09:15:03.901  8123-8123  tflite                  org.tensorflow.lite.benchmark        I  count=50 first=5123 curr=5001 min=4950 max=5400 avg=5050.5 std=80
2024-02-11 09:15:03.902  8123-8123  tflite                  org.tensorflow.lite.benchmark        I  Inference timings in us: Init: 8123, First inference: 9001, Warmup (avg): 5500, Inference (avg): 5050.5
"""

ANDROID_STUDIO_OLD = """\
2019-11-07 10:38:42.583 22206-22206/org.tensorflow.lite.benchmark I/tflite: Use gpu: [1]
2019-11-07 10:38:42.590 22206-22206/org.tensorflow.lite.benchmark I/tflite: Replacing 60 out of 66 node(s) with delegate (TfLiteGpuDelegateV2) node, yielding 2 partitions.
2019-11-07 10:38:44.001 22206-22206/org.tensorflow.lite.benchmark I/tflite: Inference timings in us: Init: 512000, First inference: 20000, Warmup (avg): 15000, Inference (avg): 14000
"""

LOGCAT_BRIEF = """\
I/tflite  (12836): Num threads: [4]
I/tflite  (12836): Inference timings in us: Init: 36618, First inference: 1530248, Warmup (avg): 1.53025e+06, Inference (avg): 1.49712e+06
"""


def test_android_studio_logcat_new_format() -> None:
    [run] = parse_log(ANDROID_STUDIO_NEW)
    assert run.ok and run.num_threads == 2 and run.delegate == "xnnpack"
    assert run.delegate_applied is True and run.delegated_kernels == 3
    assert run.inference_count == 50 and run.inference_avg_us == 5050.5


def test_android_studio_logcat_old_format_and_replacing_line() -> None:
    [run] = parse_log(ANDROID_STUDIO_OLD)
    assert run.delegate == "gpu"
    assert (run.delegated_nodes, run.total_nodes, run.delegated_kernels) == (60, 66, 2)
    assert run.init_us == 512000


def test_logcat_brief_format_and_scientific_notation() -> None:
    [run] = parse_log(LOGCAT_BRIEF)
    assert run.num_threads == 4 and run.inference_avg_us == 1497120.0


def test_all_same_stats_and_periodic_peak_memory() -> None:
    text = """\
INFO: STARTING!
INFO: Num threads: [1]
INFO: Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
INFO: count=3 curr=1000(all same)

INFO: Running benchmark for at least 5 iterations and at least 0 seconds but terminate if exceeding 150 seconds.
INFO: count=5 curr=1200(all same)

INFO: Inference timings in us: Init: 900, First inference: 1000, Warmup (avg): 1000, Inference (avg): 1200
INFO: Memory footprint delta from the start of the tool (MB): init=1.5 overall=3.25
INFO: Overall peak memory footprint (MB) via periodic monitoring: 40.125
"""
    [run] = parse_log(text)
    assert run.inference_count == 5 and run.inference_std_us == 0
    assert run.inference_min_us == run.inference_max_us == run.inference_p50_us == 1200
    assert (run.memory_init_mb, run.memory_overall_mb, run.memory_peak_mb) == (1.5, 3.25, 40.125)


def test_delegate_not_executed_is_not_applied() -> None:
    text = """\
STARTING!
Use gpu: [1]
Though GPU delegate is explicitly applied, the model graph will not be executed by the delegate.
Inference timings in us: Init: 100, First inference: 200, Warmup (avg): 150, Inference (avg): 140
"""
    [run] = parse_log(text)
    assert run.ok and run.delegate == "gpu" and run.delegate_applied is False


@pytest.mark.parametrize(
    ("line", "error_type"),
    [
        ("/system/bin/sh: /data/local/tmp/benchmark_model: not executable: 64-bit ELF file", ErrorType.NOT_EXECUTABLE),
        ("ERROR: Failed to allocate tensors!", ErrorType.ALLOCATE_FAILED),
        ("ERROR: Encountered unresolved custom op: MyOp.", ErrorType.UNSUPPORTED_OP),
        ("ERROR: Could not open '/data/local/tmp/missing.tflite'.", ErrorType.MODEL_LOAD_FAILED),
        ("ERROR: The model is not a valid Flatbuffer buffer", ErrorType.MODEL_LOAD_FAILED),
        ("ERROR: Failed to apply GPU delegate.", ErrorType.DELEGATE_FAILED),
        ("F libc    : Fatal signal 11 (SIGSEGV), code 1 (SEGV_MAPERR), fault addr 0x0", ErrorType.CRASH),
        ("ERROR: something unexpected went wrong", ErrorType.BENCHMARK_FAILED),
    ],
)
def test_failure_classes(line: str, error_type: ErrorType) -> None:
    [run] = parse_log(f"STARTING!\nNum threads: [4]\nLoaded model m.tflite\n{line}\nBenchmarking failed.\n")
    assert run.error_type is error_type
    assert run.num_threads == 4 and run.inference_avg_us is None


def test_unknown_error_line_is_the_detail_of_a_generic_failure() -> None:
    [run] = parse_log("STARTING!\nERROR: something unexpected went wrong\nBenchmarking failed.\n")
    assert run.error == "Benchmarking failed: something unexpected went wrong"


def test_output_ending_before_summary_is_truncated() -> None:
    [run] = parse_log(
        "STARTING!\nNum threads: [2]\nInitialized session in 3.5ms.\nRunning benchmark for at least 1 iterations\n"
    )
    assert run.error_type is ErrorType.TRUNCATED and run.init_us == 3500


PERF_OPTIONS_FULL = """\
INFO: The list of TFLite runtime options to be benchmarked: [cpu,gpu]
INFO: Log parameter values verbosely: [0]
INFO: Num threads: [2]
INFO: Graph: [m.tflite]
INFO: Use xnnpack: [1]
INFO: Loaded model m.tflite
INFO: Initialized session in 2.1ms.
INFO: Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
INFO: count=100 first=6000 curr=5000 min=4900 max=6000 avg=5010 std=40

INFO: Running benchmark for at least 50 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
INFO: count=200 first=5000 curr=5000 min=4900 max=5300 avg=5005.5 std=30

INFO: Inference timings in us: Init: 2100, First inference: 6000, Warmup (avg): 5010, Inference (avg): 5005.5
INFO: Log parameter values verbosely: [0]
INFO: Num threads: [1]
INFO: Graph: [m.tflite]
INFO: Use gpu: [1]
INFO: Loaded model m.tflite
ERROR: Failed to apply GPU delegate.
INFO: Log parameter values verbosely: [0]
INFO: Num threads: [1]
INFO: Graph: [m.tflite]
INFO: Loaded model m.tflite
INFO: Initialized session in 1.9ms.
INFO: Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
INFO: count=60 first=9000 curr=8000 min=7900 max=9000 avg=8010 std=50

INFO: Running benchmark for at least 50 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
INFO: count=125 first=8000 curr=8000 min=7900 max=8300 avg=8004 std=20

INFO: Inference timings in us: Init: 1900, First inference: 9000, Warmup (avg): 8010, Inference (avg): 8004
INFO:
==============Summary of All Runs w/ Different Performance Options==============
INFO: cpu w/ 2 threads (xnnpack): count=200 first=5000 curr=5000 min=4900 max=5300 avg=5005.5 std=30
INFO:           cpu w/ 1 threads: count=125 first=8000 curr=8000 min=7900 max=8300 avg=8004 std=20
INFO:                gpu-default:  failed!
"""


def test_perf_options_runs_merge_with_their_summary_rows() -> None:
    runs = parse_log(PERF_OPTIONS_FULL)
    assert [(run.delegate, run.num_threads, run.perf_option) for run in runs] == [
        ("xnnpack", 2, "cpu w/ 2 threads (xnnpack)"),
        ("gpu", 1, "gpu-default"),
        ("cpu", 1, "cpu w/ 1 threads"),
    ]
    assert runs[0].ok and runs[0].inference_count == 200 and runs[0].init_us == 2100
    assert runs[1].error_type is ErrorType.DELEGATE_FAILED and runs[1].delegate_applied is False
    assert runs[1].inference_avg_us is None and runs[1].init_us is None
    assert runs[2].ok and runs[2].inference_avg_us == 8004 and runs[2].init_us == 1900


def test_failed_perf_option_row_alone() -> None:
    [run] = parse_log(
        "==============Summary of All Runs w/ Different Performance Options==============\n"
        "INFO:      nnapi(w/o accel name):  failed!\n"
    )
    assert run.delegate == "nnapi" and run.error_type is ErrorType.PERF_OPTION_FAILED


# --- garbage in ------------------------------------------------------------


def test_empty_and_prose_give_no_runs() -> None:
    assert parse_log("") == []
    assert parse_log(b"") == []
    assert parse_log("hello world\nnothing to see here\n") == []


def test_binary_input_is_reported_not_raised() -> None:
    [run] = parse_log(bytes(range(256)) * 64)
    assert run.error_type is ErrorType.GARBAGE


def test_ten_megabytes_of_noise() -> None:
    import random

    rng = random.Random(7)
    alphabet = "abcdefgh =:[]()0123456789.e+-\n"
    noise = "".join(rng.choice(alphabet) for _ in range(1_000_000)) * 10
    runs = parse_log(noise)
    assert all(isinstance(run, BenchmarkRun) for run in runs)
    one_line = "x" * 10_000_000
    assert parse_log(one_line) == []


def _json_safe(runs: list[BenchmarkRun]) -> None:
    json.dumps([run.to_json() for run in runs], allow_nan=False)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=2000))
def test_random_text_never_raises(text: str) -> None:
    _json_safe(parse_log(text))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2000))
def test_random_bytes_never_raise(data: bytes) -> None:
    _json_safe(parse_log(data))


_FIXTURE_LINES = [line for path in FIXTURE_FILES for line in verbatim(path).splitlines()]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.sampled_from(_FIXTURE_LINES), max_size=60),
    st.lists(st.tuples(st.integers(0, 59), st.integers(0, 200), st.text(max_size=8)), max_size=10),
)
def test_shuffled_and_mutated_fixture_lines_never_raise(lines: list[str], edits) -> None:
    mutated = list(lines)
    for index, cut, insert in edits:
        if mutated:
            target = index % len(mutated)
            line = mutated[target]
            mutated[target] = line[:cut] + insert + line[cut + len(insert) :]
    _json_safe(parse_log("\n".join(mutated)))


@pytest.mark.parametrize("path", FIXTURE_FILES, ids=fixture_id)
def test_every_truncation_of_a_fixture_parses(path: Path) -> None:
    text = verbatim(path)
    for end in range(0, len(text), max(1, len(text) // 40)):
        _json_safe(parse_log(text[:end]))


# --- CLI --------------------------------------------------------------------


def test_cli_parse_log_json(tmp_path: Path) -> None:
    log = tmp_path / "run.txt"
    log.write_text(verbatim(FIXTURES / "16_ti_am62x_cpu_no_xnnpack_p5_median.txt"))
    result = CliRunner().invoke(main, ["parse-log", str(log), "--json"])
    assert result.exit_code == 0, result.output
    [run] = json.loads(result.output)
    assert set(run) >= {
        "init_us",
        "first_inference_us",
        "warmup_avg_us",
        "inference_avg_us",
        "inference_std_us",
        "inference_min_us",
        "inference_max_us",
        "inference_p50_us",
        "inference_p95_us",
        "inference_count",
        "warmup_count",
        "binary_version",
        "memory_init_mb",
        "memory_overall_mb",
        "memory_peak_mb",
        "model_size_mb",
        "num_threads",
        "delegate",
        "delegate_applied",
        "delegated_kernels",
        "delegated_nodes",
        "total_nodes",
        "perf_option",
        "error",
    }
    assert run["inference_p50_us"] == 1239807 and run["model_size_mb"] == 67.3128


def test_cli_parse_log_table_and_missing_file(tmp_path: Path) -> None:
    log = tmp_path / "fail.txt"
    log.write_text(verbatim(FIXTURES / "04_lp6m_yolov5s_int8_nnapi_qtidefault_fail.txt"))
    result = CliRunner().invoke(main, ["parse-log", str(log)])
    assert result.exit_code == 0
    assert "ANEURALNETWORKS_OP_FAILED" in result.output
    missing = CliRunner().invoke(main, ["parse-log", str(tmp_path / "nope.txt")])
    assert missing.exit_code == 2
    assert re.search(r"no such file: .*nope\.txt: pass the path", missing.output)


def test_measured_and_warmup_counts_come_from_their_own_loops() -> None:
    # Fixture 09: the warmup loop printed count=37, the measured loop count=74.
    [run] = parse_log(verbatim(FIXTURES / "09_tf73862_host_build_info_prefix_xnnpack.txt"))
    assert (run.warmup_count, run.inference_count) == (37, 74)
    assert run.binary_version is None  # the classic tool prints no version


def test_the_runners_version_line_is_read_as_the_binary_version() -> None:
    text = (
        "INFO: STARTING!\nINFO: Log parameter values verbosely: [0]\nINFO: Graph: [m.tflite]\n"
        "INFO: Benchmark binary version: [tflite-farm runner 0.1.0, ai-edge-litert 2.3.0]\n"
        "INFO: Loaded model m.tflite\nINFO: Running benchmark for at least 1 iterations\n"
        "INFO: count=5 first=3 curr=2 min=2 max=3 avg=2.4 std=0\n"
        "INFO: Running benchmark for at least 50 iterations\n"
        "INFO: count=50 first=3 curr=2 min=2 max=3 avg=2.2 std=0\n"
        "INFO: Inference timings in us: Init: 10, First inference: 3, Warmup (avg): 2.4, Inference (avg): 2.2\n"
    )
    [run] = parse_log(text)
    assert run.ok and run.binary_version == "tflite-farm runner 0.1.0, ai-edge-litert 2.3.0"
    assert (run.warmup_count, run.inference_count) == (5, 50)
