"""Which benchmark program a binary is, and how each delegate is asked of it.

Two programs measure TFLite models on Android and both are called
`benchmark_model`: TensorFlow Lite's classic tool
(//tensorflow/lite/tools/benchmark) and LiteRT 2.x's CompiledModel tool
(//litert/tools:benchmark_model, benchmark_litert_model*.cc). Their flags
differ, so the harness tells them apart by the binary's own words (its --help
text, or the lines a run prints), never by a file name, and remembers the
answer per binary sha256 in the user's cache folder.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path

from harness.atomic import write_atomically
from harness.locations import user_cache_dir
from harness.records import BenchmarkDialect, Delegate

# Words only the LiteRT 2.x tool prints: its --help header and flags, its log
# lines' source file, its result block.
_LITERT_MARKERS = (
    "NPU Vendor Flags from LiteRT",
    "--use_npu",
    "--dispatch_library_path",
    "--compiler_plugin_library_path",
    "benchmark_litert_model",
    "========== BENCHMARK RESULTS ==========",
)
# Words only the classic tool prints: its delegate providers' flags and echoes,
# BenchmarkTfLiteModel's flags and its summary line.
_CLASSIC_MARKERS = (
    "--use_nnapi",
    "--use_xnnpack",
    "--input_layer_value_files",
    "--enable_op_profiling",
    "Use xnnpack: [",
    "Use NNAPI: [",
    "Inference timings in us:",
    "Average inference timings in us:",
)

NPU_LIBRARY_DIR_FLAGS = ("--dispatch_library_path", "--compiler_plugin_library_path")
NPU_PERFORMANCE_MODE = "burst"
"""What the LiteRT tool asks of every NPU vendor unless told otherwise (Qualcomm HTP burst, MediaTek
turbo boost, Google Tensor burst; benchmark_litert_model.cc CreateCompiledModelOptions). An app gets
the vendor's default mode unless it asks for the same."""

_CLASSIC_FLAGS = {
    Delegate.CPU: ("--use_xnnpack=false",),
    Delegate.XNNPACK: ("--use_xnnpack=true",),
    Delegate.GPU: ("--use_gpu=true",),
    Delegate.NNAPI: ("--use_nnapi=true",),
}
_LITERT_FLAGS = {
    Delegate.XNNPACK: ("--use_cpu=true",),  # LiteRT's CPU accelerator is XNNPACK
    # CPU stays on (the tool's default) for the ops the GPU cannot run, as the classic GPU delegate does.
    Delegate.GPU: ("--use_gpu=true",),
    # The whole graph on the NPU or a failure: the tool does not say how much of a graph an NPU took, and
    # with CPU fallback a phone whose NPU took nothing would report a CPU number as an NPU one.
    Delegate.NPU: ("--use_npu=true", "--use_cpu=false", "--require_full_delegation=true"),
}
_CANNOT = {
    (BenchmarkDialect.CLASSIC, Delegate.NPU): (
        "the classic benchmark_model reaches NPUs only through NNAPI; the npu delegate needs LiteRT 2.x's "
        "benchmark_model (harness binaries fetch --dialect litert, and a [[dialects]] rule for this phone in "
        "your farm.toml: 'harness init' writes one)"
    ),
    (BenchmarkDialect.LITERT, Delegate.CPU): (
        "LiteRT 2.x's benchmark_model runs the CPU through XNNPACK only; plain CPU kernels need the classic "
        "benchmark_model (measure this phone's xnnpack instead, or run it with the classic binary)"
    ),
    (BenchmarkDialect.LITERT, Delegate.NNAPI): (
        "LiteRT 2.x's benchmark_model has no NNAPI path (NNAPI is deprecated from Android 15); the nnapi "
        "delegate needs the classic benchmark_model"
    ),
}


def detect(text: str) -> BenchmarkDialect | None:
    """The dialect a binary's --help text or run output shows; None when it shows neither."""
    if any(marker in text for marker in _LITERT_MARKERS):
        return BenchmarkDialect.LITERT
    if any(marker in text for marker in _CLASSIC_MARKERS):
        return BenchmarkDialect.CLASSIC
    return None


@dataclass(frozen=True)
class DelegateArgs:
    """How one dialect asks for one delegate: its flags, or why it cannot."""

    flags: tuple[str, ...] = ()
    cannot: str | None = None  # the reason, when this binary cannot express the delegate
    performance_mode: str | None = None


def delegate_args(dialect: BenchmarkDialect, delegate: str, npu_library_dir: str | None = None) -> DelegateArgs:
    """The flags that make a binary of `dialect` run `delegate` (with `npu_library_dir` holding the phone's
    NPU dispatch and compiler-plugin libraries, when the farm configures some)."""
    key = Delegate(delegate)
    reason = _CANNOT.get((dialect, key))
    if reason is not None:
        return DelegateArgs(cannot=reason)
    if dialect is BenchmarkDialect.CLASSIC:
        return DelegateArgs(_CLASSIC_FLAGS[key])
    flags = _LITERT_FLAGS[key]
    if key is not Delegate.NPU:
        return DelegateArgs(flags)
    where = tuple(f"{flag}={npu_library_dir}" for flag in NPU_LIBRARY_DIR_FLAGS) if npu_library_dir else ()
    return DelegateArgs(flags + where, performance_mode=NPU_PERFORMANCE_MODE)


class DialectCache:
    """Binary sha256 -> dialect, as detected once; kept across runs in the user's cache folder.

    A lost or damaged cache only costs one `--help` per binary, so it is rebuilt, never an error.
    """

    VERSION = 1

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or user_cache_dir() / "dialects.json"
        self._lock = threading.Lock()

    def _read(self) -> dict[str, str]:
        try:
            document = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        if not isinstance(document, dict) or document.get("schema_version") != self.VERSION:
            return {}
        binaries = document.get("binaries")
        return {k: v for k, v in binaries.items() if isinstance(v, str)} if isinstance(binaries, dict) else {}

    def get(self, sha256: str) -> BenchmarkDialect | None:
        with self._lock:
            value = self._read().get(sha256)
        try:
            return BenchmarkDialect(value) if value else None
        except ValueError:
            return None

    def put(self, sha256: str, dialect: BenchmarkDialect) -> None:
        with self._lock:
            known = self._read()
            known[sha256] = dialect.value
            document = {"schema_version": self.VERSION, "binaries": dict(sorted(known.items()))}
            self.path.parent.mkdir(parents=True, exist_ok=True)
            payload = json.dumps(document, indent=1).encode()
            write_atomically(self.path, lambda out: out.write(payload))
