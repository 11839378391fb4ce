"""Which benchmark program a binary is (harness.dialect), from its own words, and how it asks for delegates."""

from __future__ import annotations

from pathlib import Path

import pytest
from fixture_paths import BENCHMARK_LOGS

from harness.dialect import NPU_PERFORMANCE_MODE, DialectCache, delegate_args, detect
from harness.records import BenchmarkDialect, Delegate
from harness.runner_zipapp import build_runner

TEXTS = Path(__file__).resolve().parent / "data" / "benchmark_texts"
SHARED_LOGS = BENCHMARK_LOGS


@pytest.mark.parametrize("path", sorted(TEXTS.glob("*.txt")), ids=lambda p: p.stem)
def test_captured_outputs_name_their_dialect(path: Path) -> None:
    expected = BenchmarkDialect(path.stem.split("_", 1)[0])
    assert detect(path.read_text()) is expected


@pytest.mark.parametrize("path", sorted(SHARED_LOGS.glob("*.txt")), ids=lambda p: p.stem)
def test_every_real_classic_output_is_classic(path: Path) -> None:
    text = path.read_text(errors="replace")
    found = detect(text)
    # A log cut before any dialect-specific line (a crash at start-up) shows no dialect: None, never LiteRT.
    assert found is BenchmarkDialect.CLASSIC or (found is None and "Inference timings" not in text)


def test_text_of_neither_tool_is_no_dialect() -> None:
    assert detect("") is None
    assert detect("/system/bin/sh: ./benchmark_model: not executable: 64-bit ELF file\n") is None
    assert detect("usage: ls [-ACDHLRSZacdfhiklmnpqrstuwx1] [FILE...]") is None


@pytest.mark.parametrize("dialect", list(BenchmarkDialect))
@pytest.mark.slow  # builds and launches the runners
def test_the_runners_help_names_their_dialect(dialect: BenchmarkDialect, tmp_path: Path) -> None:
    import subprocess
    import sys

    runner = build_runner(tmp_path / dialect.value, dialect.value)
    result = subprocess.run([sys.executable, str(runner), "--help"], capture_output=True, text=True, timeout=120)
    assert detect(result.stdout + result.stderr) is dialect


def test_each_dialect_asks_for_what_it_can_and_says_why_not_for_the_rest() -> None:
    assert delegate_args(BenchmarkDialect.CLASSIC, "xnnpack").flags == ("--use_xnnpack=true",)
    assert delegate_args(BenchmarkDialect.CLASSIC, "cpu").flags == ("--use_xnnpack=false",)
    assert delegate_args(BenchmarkDialect.LITERT, "xnnpack").flags == ("--use_cpu=true",)
    assert delegate_args(BenchmarkDialect.LITERT, "gpu").flags == ("--use_gpu=true",)
    npu = delegate_args(BenchmarkDialect.LITERT, "npu", "/data/local/tmp/harness/npu-1")
    # The whole graph on the NPU or a failure, never a CPU number under the NPU's name.
    assert {"--use_npu=true", "--use_cpu=false", "--require_full_delegation=true"} <= set(npu.flags)
    assert "--dispatch_library_path=/data/local/tmp/harness/npu-1" in npu.flags
    assert "--compiler_plugin_library_path=/data/local/tmp/harness/npu-1" in npu.flags
    assert npu.performance_mode == NPU_PERFORMANCE_MODE and npu.cannot is None
    assert not any(flag.startswith("--dispatch") for flag in delegate_args(BenchmarkDialect.LITERT, "npu").flags)
    for dialect, delegate, words in (
        (BenchmarkDialect.CLASSIC, "npu", "--dialect litert"),
        (BenchmarkDialect.LITERT, "cpu", "XNNPACK only"),
        (BenchmarkDialect.LITERT, "nnapi", "no NNAPI path"),
    ):
        args = delegate_args(dialect, delegate)
        assert args.flags == () and words in (args.cannot or "")
    # Every delegate the sweep can ask for has an answer in both dialects.
    for dialect in BenchmarkDialect:
        for delegate in (d for d in Delegate if d is not Delegate.HEXAGON):
            args = delegate_args(dialect, delegate.value)
            assert bool(args.flags) != bool(args.cannot)


def test_the_cache_remembers_per_sha256_and_survives_damage(tmp_path: Path) -> None:
    path = tmp_path / "dialects.json"
    cache = DialectCache(path)
    assert cache.get("a" * 64) is None
    cache.put("a" * 64, BenchmarkDialect.LITERT)
    cache.put("b" * 64, BenchmarkDialect.CLASSIC)
    again = DialectCache(path)
    assert again.get("a" * 64) is BenchmarkDialect.LITERT and again.get("b" * 64) is BenchmarkDialect.CLASSIC
    path.write_text("{not json")
    assert DialectCache(path).get("a" * 64) is None  # asked again, never an error
    DialectCache(path).put("c" * 64, BenchmarkDialect.LITERT)
    assert DialectCache(path).get("c" * 64) is BenchmarkDialect.LITERT
