"""Explicit delegates: loading their libraries and reporting what they took.

A delegate is only ever reported as applied when the interpreter's graph
shows it: the summary lines are derived from the delegate kernels that
appear in the node list, never assumed from the flags.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from ai_edge_litert.interpreter import Delegate, Interpreter, load_delegate

from harness.runner.report import Log


@dataclass(frozen=True)
class ExternalDelegate:
    name: str  # as benchmark_model's delegate provider names it in messages
    library: str  # the library benchmark_model would use on a phone
    library_env: str  # a library (host path) the virtual device offers, tried first

    def candidates(self) -> list[str]:
        first = os.environ.get(self.library_env)
        return [first, self.library] if first else [self.library]


GPU = ExternalDelegate("GPU", "libtensorflowlite_gpu_delegate.so", "HARNESS_GPU_DELEGATE_LIBRARY")
NNAPI = ExternalDelegate("NNAPI", "libneuralnetworks.so", "HARNESS_NNAPI_LIBRARY")


@contextmanager
def _quiet_half_built_delegates() -> Iterator[None]:
    """Hides the noise of a Delegate whose library failed to load.

    ai_edge_litert's Delegate.__del__ then runs on a half-built object and
    raises, which Python prints as an 'Exception ignored' traceback; the load
    failure itself is already reported as a warning.
    """
    previous = sys.unraisablehook

    def hook(unraisable: Any) -> None:
        if getattr(unraisable.object, "__qualname__", "") != "Delegate.__del__":
            previous(unraisable)

    sys.unraisablehook = hook
    try:
        yield
    finally:
        sys.unraisablehook = previous


def load(spec: ExternalDelegate, log: Log) -> Delegate | None:
    """The first candidate library that loads as a TFLite external delegate."""
    with _quiet_half_built_delegates():
        for library in spec.candidates():
            try:
                return load_delegate(library)
            except (OSError, AttributeError, ValueError, RuntimeError) as exc:
                reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
                log.warn(f"Could not load {spec.name} delegate library {library}: {reason}")
    return None


def delegation_summary(name: str, interpreter: Interpreter, first_new_node: int) -> str:
    """What benchmark_model says after applying a delegate, judged from the graph.

    The delegate's kernels are the DELEGATE nodes it added (from index
    `first_new_node` on). The graph runs completely on it when a single kernel
    produces every graph output from nothing that a CPU node computes.
    """
    # _get_ops_details is the interpreter's only view of the node list.
    nodes = interpreter._get_ops_details()  # noqa: SLF001
    kernels = [n for n in nodes[first_new_node:] if n["op_name"] == "DELEGATE"]
    cpu_outputs = {int(t) for n in nodes if n["op_name"] != "DELEGATE" for t in n["outputs"]}
    graph_outputs = {d["index"] for d in interpreter.get_output_details()}
    if len(kernels) == 1:
        kernel_inputs = {int(t) for t in kernels[0]["inputs"]}
        kernel_outputs = {int(t) for t in kernels[0]["outputs"]}
        if graph_outputs <= kernel_outputs and not kernel_inputs & cpu_outputs:
            return (
                f"Explicitly applied {name} delegate, and the model graph will be completely executed by the delegate."
            )
    if kernels:
        return (
            f"Explicitly applied {name} delegate, and the model graph will be partially "
            f"executed by the delegate w/ {len(kernels)} delegate kernels."
        )
    return f"Though {name} delegate is explicitly applied, the model graph will not be executed by the delegate."


def node_count(interpreter: Interpreter) -> int:
    return len(interpreter._get_ops_details())  # noqa: SLF001


def apply(interpreter: Interpreter, delegate: Delegate) -> None:
    """Interpreter(experimental_delegates=...)'s own loop, for one delegate.

    Applying them one at a time, after the model has loaded, gives the real
    tool's order of messages and lets a failure name its delegate. Raises
    what ModifyGraphWithDelegate raises (RuntimeError) when it fails.
    """
    interpreter._interpreter.ModifyGraphWithDelegate(  # noqa: SLF001
        delegate._get_native_delegate_pointer()  # noqa: SLF001
    )
    # Interpreter.__del__ frees the interpreter before its delegates: keep it there.
    interpreter._delegates.append(delegate)  # noqa: SLF001
