"""Does the runner measure what the interpreter really takes?

Compares, on a MobileNetV2-sized model, the runner's `Inference (avg)` (run
as a subprocess, exactly as a device runs it) with invoke() timed in this
process on an ai_edge_litert Interpreter with the same thread count and op
resolver. The two are interleaved round by round, alternating which goes
first, so that drift on the machine hits both alike. Target: the median
runner/in-process ratio within [0.97, 1.03] for every thread count.

    .venv/bin/python bench/runner_fidelity.py [--rounds 9] [--num-runs 200] [--threads 1 2]

The model is built once (keras.applications.MobileNetV2, weights=None,
224x224x3) and cached under .cache/. It is built in a child process so that
TensorFlow never loads into the process that measures.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MODEL = REPO / ".cache" / "mobilenet_v2_224.tflite"
TARGET = (0.97, 1.03)
_INFERENCE_AVG = re.compile(r"Inference \(avg\): ([0-9.e+]+)")


def build_model(path: Path) -> None:
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    import tensorflow as tf

    model = keras.applications.MobileNetV2(weights=None, input_shape=(224, 224, 3))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    tmp.replace(path)


def ensure_model() -> Path:
    if not MODEL.exists():
        print(f"building {MODEL} (TensorFlow, once)...", flush=True)
        subprocess.run([sys.executable, __file__, "build-model"], check=True, stdout=subprocess.DEVNULL)
    return MODEL


def runner_avg_us(model: Path, threads: int, num_runs: int, warmup_runs: int) -> float:
    """The runner's `Inference (avg)`, run as a device runs it."""
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "harness.runner",
            f"--graph={model}",
            f"--num_threads={threads}",
            f"--num_runs={num_runs}",
            f"--warmup_runs={warmup_runs}",
            "--min_secs=0",
            "--warmup_min_secs=0",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    match = _INFERENCE_AVG.search(completed.stdout)
    if completed.returncode != 0 or match is None:
        raise SystemExit(f"runner failed ({completed.returncode}):\n{completed.stdout}{completed.stderr}")
    return float(match.group(1))


def in_process_avg_us(model: Path, threads: int, num_runs: int, warmup_runs: int) -> float:
    """invoke() timed here: same thread count, same (default, XNNPACK) resolver."""
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interpreter = Interpreter(
        model_path=str(model),
        num_threads=threads,
        experimental_op_resolver_type=OpResolverType.AUTO,
    )
    interpreter.allocate_tensors()
    for detail in interpreter.get_input_details():
        shape = tuple(detail["shape"])
        data = np.random.default_rng().uniform(-0.5, 0.5, size=shape).astype(detail["dtype"])
        interpreter.set_tensor(detail["index"], data)
    for _ in range(warmup_runs):
        interpreter.invoke()
    total_ns = 0
    for _ in range(num_runs):
        start = time.perf_counter_ns()
        interpreter.invoke()
        total_ns += time.perf_counter_ns() - start
    return total_ns / num_runs / 1000.0


def measure(model: Path, threads: int, rounds: int, num_runs: int, warmup_runs: int) -> float:
    """Prints one line per round; returns the median runner/in-process ratio."""
    ratios = []
    print(f"\nthreads={threads}  ({rounds} rounds x {num_runs} runs, {warmup_runs} warmup runs)")
    print(f"{'round':>5} {'runner us':>12} {'in-process us':>14} {'ratio':>7}")
    for round_no in range(rounds):
        if round_no % 2 == 0:
            runner = runner_avg_us(model, threads, num_runs, warmup_runs)
            direct = in_process_avg_us(model, threads, num_runs, warmup_runs)
        else:
            direct = in_process_avg_us(model, threads, num_runs, warmup_runs)
            runner = runner_avg_us(model, threads, num_runs, warmup_runs)
        ratios.append(runner / direct)
        print(f"{round_no + 1:>5} {runner:>12.1f} {direct:>14.1f} {ratios[-1]:>7.3f}", flush=True)
    median = statistics.median(ratios)
    verdict = "within" if TARGET[0] <= median <= TARGET[1] else "OUTSIDE"
    print(f"median ratio runner/in-process: {median:.3f} ({verdict} target {TARGET[0]}-{TARGET[1]})")
    return median


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", nargs="?", choices=["build-model"], help=argparse.SUPPRESS)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--num-runs", type=int, default=200)
    parser.add_argument("--warmup-runs", type=int, default=5)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    if args.command == "build-model":
        build_model(MODEL)
        return 0
    model = ensure_model()
    print(f"model: {model} ({model.stat().st_size / 1e6:.1f} MB)")
    medians = [measure(model, threads, args.rounds, args.num_runs, args.warmup_runs) for threads in args.threads]
    return 0 if all(TARGET[0] <= m <= TARGET[1] for m in medians) else 1


if __name__ == "__main__":
    sys.exit(main())
