"""`harness demo`: the pipeline end to end on the virtual farm, started and stopped here.

Runs on its own adb server port and state folder, so it never touches a
user's adb server or phones, and stops every process it started (device
processes by pid, the adb server with kill-server on its own port) even when
interrupted.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

from harness import ranking, sweep
from harness.convert import convert_model
from harness.coverage import coverage
from harness.examples import build_examples
from harness.numerics import NumericsGate
from harness.phone.discovery import discover, select
from harness.phone.profiles import load_farm, load_tiers
from harness.policy import DeriveRequest, derive, load_rows, write_policy
from harness.records import config_label
from harness.store import ResultsStore
from harness.virtual_farm import farm as farm_lib

DEMO_SUBDIR = "demo"
"""The demo's work folder in the user's state folder: the examples, their variants and its private farm."""

# 2 models x 4 variants x 4 delegates x 2 thread counts x 3 interleaved repetitions on 4 phones:
# 3 repetitions is the fewest that lets the rankings make a statistical claim (harness.stats).
# The virtual Pixel runs the LiteRT 2.x dialect (farm.toml): it has no plain-CPU path there (skipped)
# and no NPU (its npu cases fail honestly); the classic phones cannot ask for an NPU (skipped).
DEMO_PARAMS = sweep.SweepParams(
    delegates=("cpu", "xnnpack", "gpu", "npu"),
    threads=(1, 2),
    repetitions=3,
    num_runs=10,
    warmup_runs=1,
    warmup_min_secs=0.05,
    min_secs=0.15,
    case_timeout_s=120.0,
    thermal_threshold_c=60.0,
    thermal_max_wait_s=10.0,
)


@contextlib.contextmanager
def virtual_farm(state_dir: Path, say: Callable[[str], None]) -> Iterator[None]:
    """The shipped virtual phones on a private adb server, stopped again whatever happens."""
    saved = os.environ.get(farm_lib.ENV_ADB_PORT)
    try:
        state = farm_lib.start_private(state_dir)
        say(f"started {len(state.devices)} virtual devices on adb server port {state.adb_server_port}")
        yield
    finally:
        farm_lib.stop_private(state_dir)
        if saved is None:
            os.environ.pop(farm_lib.ENV_ADB_PORT, None)
        else:
            os.environ[farm_lib.ENV_ADB_PORT] = saved
        say("virtual farm stopped")


def run_demo(results_dir: Path, cache_dir: Path, say: Callable[[str], None]) -> sweep.SweepSummary:
    # TensorFlow's C++ start-up chatter (oneDNN, CUDA probes) would bury the demo's output.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    say("building the examples (digits CNN trained on scikit-learn's digits, untrained MobileNetV2) ...")
    examples = build_examples(cache_dir / "examples")
    models_dir = cache_dir / "demo-models"
    for request in examples.conversion_requests(models_dir, results_dir):
        result = convert_model(request)
        verdicts = ", ".join(
            f"{v.variant.value} "
            f"{'accepted' if v.accepted else 'rejected' if v.accepted is False else v.reason or v.status.value}"
            for v in result.variants
        )
        say(f"  converted {request.model_path.name}: {verdicts}")
    store = ResultsStore(results_dir)
    with virtual_farm(cache_dir / "demo-farm", say):
        found = discover(load_farm(), load_tiers())
        devices = select(found.entries, "all")
        for entry in devices:
            assert entry.facts is not None  # select() returns usable devices only, which answered
            say(f"  {entry.serial:<18} {entry.facts.info.model:<12} tier {entry.tier} ({entry.tier_rule})")
        run_id = sweep.new_run_id()
        binaries = sweep.build_binaries({}, store.root / "runs" / run_id)
        say(
            f"sweeping {len(DEMO_PARAMS.delegates) * len(DEMO_PARAMS.threads)} configurations on "
            f"{len(devices)} devices ..."
        )
        return sweep.run_sweep(
            devices,
            sweep.collect_models([models_dir]),
            DEMO_PARAMS,
            binaries,
            store,
            argv=["harness", "demo"],
            run_id=run_id,
        )


def best_per_device(store: ResultsStore, run_id: str) -> list[str]:
    """Per phone and model: the fastest configuration by median latency among those that ran ok with outputs
    within the numerics gate, what failed, and what computed wrong outputs (or, unchecked there, did on another
    phone: ranking.outputs_wrong)."""
    rows = store.read([run_id])
    stats = ranking.stats_of(rows)
    gate = NumericsGate()
    wrong_files = {
        model_name: ranking.wrong_outputs(stats[stats["model_name"] == model_name], gate)
        for model_name in stats["model_name"].unique()
    }
    lines = []
    for (model, tier, model_name), group in stats.groupby(["device_model", "tier", "model_name"], dropna=False):
        ran = [c for c in group.to_dict("records") if c["ok_rows"]]
        wrong = [c for c in ran if ranking.outputs_wrong(c, gate, wrong_files[model_name])]
        usable = [c for c in ran if not c["failures"] and c not in wrong]
        of_model = rows[(rows["device_model"] == model) & (rows["model_name"] == model_name)]
        failed = of_model[of_model["status"] != "ok"]["status"].value_counts().to_dict()
        best = "no successful case"
        if usable:
            top = min(usable, key=lambda c: c["inference_p50_us"])
            p50_us = top["inference_p50_us"]
            latency = f"{p50_us / 1000:.2f} ms" if p50_us >= 1000 else f"{p50_us:.0f} us"
            best = f"best {config_label(top['variant'], top['delegate'], top['num_threads'])}: p50 {latency}"
        outputs = (
            f"; wrong outputs: {', '.join(config_label(c['variant'], c['delegate'], c['num_threads']) for c in wrong)}"
            if wrong
            else ""
        )
        lines.append(f"  {model:<12} {tier:<5} {model_name:<13} {best}; not ok: {failed or 'none'}{outputs}")
    return lines


def write_policies(results_dir: Path, run_id: str) -> list[str]:
    """One policy per model of the run under results/policy/, each with its coverage report."""
    rows = load_rows(results_dir, [run_id])
    lines = []
    for model_name in sorted(rows["model_name"].unique()):
        derived = derive(DeriveRequest(results_root=results_dir, run_ids=(run_id,), model_name=model_name), rows)
        path = write_policy(derived.document, results_dir / "policy" / f"{model_name}.json")
        lines += [*derived.lines(), f"  wrote {path}", *coverage(derived.document, rows, derived.accuracy).lines()]
    return lines
