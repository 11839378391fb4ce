"""`harness demo`: the pipeline end to end on the virtual farm, started and stopped here.

Runs on its own adb server port and state folder, so it never touches a
user's adb server or phones, and stops every process it started (device
processes by pid, the adb server with kill-server on its own port) even when
interrupted.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import adbutils

from harness import sweep
from harness.discovery import discover, select
from harness.profiles import load_farm, load_tiers
from harness.samples import build_sample_model
from harness.store import ResultsStore
from harness.virtual import farm as farm_lib

DEMO_PARAMS = sweep.SweepParams(
    delegates=("cpu", "xnnpack", "gpu"), threads=(1, 2), repetitions=1,
    num_runs=20, warmup_runs=1, min_secs=0.5, case_timeout_s=120.0,
    thermal_threshold_c=60.0, thermal_max_wait_s=10.0,
)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def virtual_farm(state_dir: Path, say: Callable[[str], None]) -> Iterator[int]:
    """A virtual farm on a private adb server; yields the server's port."""
    port = _free_port()
    saved = os.environ.get(farm_lib.ENV_ADB_PORT)
    # Discovery finds "the" local adb server through this variable: make it ours.
    os.environ[farm_lib.ENV_ADB_PORT] = str(port)
    try:
        say(farm_lib.up(state_dir=state_dir, adb_port=port).message)
        yield port
    finally:
        farm_lib.down(state_dir=state_dir)
        subprocess.run([adbutils.adb_path(), "-P", str(port), "kill-server"],
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30)
        if saved is None:
            os.environ.pop(farm_lib.ENV_ADB_PORT, None)
        else:
            os.environ[farm_lib.ENV_ADB_PORT] = saved
        say("virtual farm stopped")


def run_demo(results_dir: Path, cache_dir: Path, say: Callable[[str], None]) -> sweep.SweepSummary:
    say("building the sample model (MobileNetV2 0.35 @128, untrained) ...")
    model = build_sample_model(cache_dir / "models")
    store = ResultsStore(results_dir)
    with virtual_farm(cache_dir / "demo-farm", say) as _port:
        found = discover(load_farm(), load_tiers())
        devices = select(found.entries, "all")
        for entry in devices:
            say(f"  {entry.serial:<18} {entry.facts.info.model:<12} tier {entry.tier} ({entry.tier_rule})")
        run_id = sweep.new_run_id()
        binaries = sweep.build_binaries({}, store.root / "runs" / run_id)
        say(f"sweeping {len(DEMO_PARAMS.delegates) * len(DEMO_PARAMS.threads)} configurations on {len(devices)} devices ...")
        return sweep.run_sweep(devices, sweep.collect_models([model]), DEMO_PARAMS, binaries, store,
                               argv=["harness", "demo"], run_id=run_id)


def best_per_device(store: ResultsStore, run_id: str) -> list[str]:
    """One line per device: its fastest configuration by median latency, and what failed."""
    rows = store.read([run_id])
    lines = []
    for (serial, model, tier), group in rows.groupby(["serial", "device_model", "tier"], dropna=False):
        ok = group[group["status"] == "ok"].sort_values("inference_p50_us")
        failed = group[group["status"] != "ok"]["status"].value_counts().to_dict()
        best = "no successful case"
        if len(ok):
            top = ok.iloc[0]
            best = (f"best {top['variant']}/{top['delegate']} x{top['num_threads']}: "
                    f"p50 {top['inference_p50_us'] / 1000:.2f} ms")
        lines.append(f"  {model:<12} tier {tier:<5} {best}; not ok: {failed or 'none'}")
    return lines
