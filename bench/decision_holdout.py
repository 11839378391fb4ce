"""Are the policy's choices right on a fresh measurement? A hold-out test of the decisions.

On the four shipped virtual phones (one private farm), with the demo's example models
(digits_cnn and MobileNetV2 224, each in fp32/fp16/dynamic/int8; built once into
demo/demo-models in the user's state folder by `harness demo` or by this script), cpu/xnnpack x 1/2 threads:

  A  sweep, 3 interleaved repetitions, seed 1          -> policy A
  C  sweep, 3 repetitions then --until-decided, seed 3 -> policy C
  B  sweep, 3 repetitions, seed 2                      -> the hold-out

For each device and model of B: the configuration the policy has it run (its tier's
chain, walked past what failed there) over the best configuration measured in B
(medians of the repetitions), as `harness policy coverage` computes it.
Goal: >= 95% of device-models within 10% of the best, none worse than 1.25x, no
failed choice. The device time each deriving sweep spent (sum of case durations, and
wall time) is printed beside its figures. Exit status 1 when a goal is missed.

Usage: .venv/bin/python bench/decision_holdout.py [--models DIR] [--max-repetitions 10] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

from harness import sweep
from harness.coverage import coverage
from harness.demo import DEMO_SUBDIR
from harness.locations import user_state_dir
from harness.phone.discovery import discover, select
from harness.phone.profiles import load_farm, load_tiers
from harness.policy import DeriveRequest, derive, load_rows
from harness.store import ResultsStore
from harness.virtual_farm import farm as farm_lib

REPO = Path(__file__).resolve().parent.parent
DEMO_MODELS = user_state_dir() / DEMO_SUBDIR / "demo-models"  # where `harness demo` leaves them
WITHIN, WORST = 1.10, 1.25
GOAL_SHARE = 0.95


def example_models(folder: Path) -> Path:
    """The demo's converted example models (converting them once takes about a minute)."""
    if (folder / "manifest.json").is_file():
        return folder
    from harness.convert import convert_model
    from harness.examples import build_examples

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    examples = build_examples(folder.parent / "examples")
    for request in examples.conversion_requests(folder, folder.parent / "demo-results"):
        convert_model(request)
    return folder


def sweep_run(
    store: ResultsStore,
    models: list[sweep.ModelArtifact],
    seed: int,
    until_decided: bool,
    max_repetitions: int,
    label: str,
) -> tuple[str, float, float]:
    """(run id, device seconds, wall seconds) of one sweep of every shipped phone."""
    devices = select(discover(load_farm(), load_tiers()).entries, "all")
    params = sweep.SweepParams(
        delegates=("cpu", "xnnpack"),
        threads=(1, 2),
        repetitions=3,
        num_runs=20,
        warmup_runs=1,
        warmup_min_secs=0.05,
        min_secs=0.2,
        seed=seed,
        until_decided=until_decided,
        max_repetitions=max_repetitions,
        thermal_threshold_c=90.0,
        thermal_max_wait_s=2.0,
    )
    run_id = sweep.new_run_id()
    binaries = sweep.build_binaries({}, store.root / "runs" / run_id)
    print(f"sweep {label} (seed {seed}{', --until-decided' if until_decided else ''}) ...", file=sys.stderr)
    summary = sweep.run_sweep(devices, models, params, binaries, store, run_id=run_id, show_progress=False)
    rows = store.read([run_id])
    return run_id, float(rows["duration_s"].sum()), summary.wall_s


def evaluate(results: Path, derive_run: str, holdout_run: str) -> list[tuple[str, str, float | None, str]]:
    """(device, model, chosen p50 / best p50 in the hold-out, what coverage says) per device and model."""
    derived_rows, holdout_rows = load_rows(results, [derive_run]), load_rows(results, [holdout_run])
    out = []
    for model in sorted(derived_rows["model_name"].unique()):
        policy = derive(DeriveRequest(results_root=results, run_ids=(derive_run,), model_name=model), derived_rows)
        report = coverage(policy.document, holdout_rows, policy.accuracy)
        for device in report.devices:
            ratio = None
            if device.runs_p50_us and device.best_p50_us and not device.failed_before:
                ratio = device.runs_p50_us / device.best_p50_us
            out.append((device.device_model, model, ratio, device.describe()))
    return out


def summarise(name: str, figures: list[tuple[str, str, float | None, str]], device_s: float, wall_s: float) -> bool:
    ratios = [ratio for _, _, ratio, _ in figures]
    within = sum(1 for r in ratios if r is not None and r <= WITHIN) / len(ratios)
    worst = max((r for r in ratios if r is not None), default=float("nan"))
    failed = sum(1 for r in ratios if r is None)
    met = within >= GOAL_SHARE and worst <= WORST and failed == 0
    print(
        f"{name}: {within:.0%} of {len(ratios)} device-models within {WITHIN - 1:.0%} of the best, "
        f"worst x{worst:.2f}, {failed} failed choice(s); deriving sweep {device_s:.0f} device-seconds, "
        f"{wall_s:.0f} s wall: {'meets' if met else 'MISSES'} the goal"
    )
    return met


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=Path, default=DEMO_MODELS, help="A folder of converted models.")
    parser.add_argument("--max-repetitions", type=int, default=10)
    parser.add_argument("--keep", type=Path, help="Keep the results here (default: a temporary folder).")
    args = parser.parse_args()
    models = sweep.collect_models([example_models(args.models)])
    work = Path(tempfile.mkdtemp(prefix="holdout-"))
    results = args.keep or work / "results"
    store = ResultsStore(results)
    saved = os.environ.get(farm_lib.ENV_ADB_PORT)
    farm_lib.start_private(work / "farm")
    try:
        run_a, device_a, wall_a = sweep_run(store, models, 1, False, args.max_repetitions, "A")
        run_c, device_c, wall_c = sweep_run(store, models, 3, True, args.max_repetitions, "C")
        run_b, _, _ = sweep_run(store, models, 2, False, args.max_repetitions, "B (hold-out)")
    finally:
        farm_lib.stop_private(work / "farm")
        if saved is None:
            os.environ.pop(farm_lib.ENV_ADB_PORT, None)
        else:
            os.environ[farm_lib.ENV_ADB_PORT] = saved
    fixed = evaluate(results, run_a, run_b)
    decided = evaluate(results, run_c, run_b)
    print(f"{'device':<26} {'model':<13} {'3 repetitions':>14} {'until-decided':>14}")
    for (device, model, ratio_a, _), (_, _, ratio_c, _) in zip(fixed, decided, strict=False):
        shown = [f"x{r:.2f}" if r is not None else "failed" for r in (ratio_a, ratio_c)]
        print(f"{device:<26} {model:<13} {shown[0]:>14} {shown[1]:>14}")
    met = summarise("3 repetitions", fixed, device_a, wall_a)
    met = summarise("--until-decided", decided, device_c, wall_c) and met
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
