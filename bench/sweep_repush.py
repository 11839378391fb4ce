"""Does a second sweep on the same device push the model again?

Starts its own adb server on a free port and one fresh virtual device
(default profile: mid_nothing_phone_1), then runs the same sweep twice, as
two `harness run` invocations would: a new run id each time, the runner
built into each run's folder, the sample model (MobileNetV2 0.35 @128, built
once into .cache/models/) x xnnpack x 1 thread, min_secs=0.5 (0.2 with
--quick). Reports each run's bytes_pushed (SweepSummary) and, from the
device's own log (one `push PATH` line per sync SEND it completed), which
files arrived and their sizes, so model bytes and binary bytes are told
apart. Target: the second run pushes 0 model bytes.

Usage: .venv/bin/python bench/sweep_repush.py [--quick] [--profile FILE]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

from sample_model import sample_model  # bench/: the scripts run from there

from harness import sweep
from harness.config import packaged_defaults
from harness.digest import file_sha256
from harness.phone.device import remote_path_for
from harness.phone.discovery import discover, select
from harness.phone.profiles import AdbServer, load_tiers
from harness.store import ResultsStore
from harness.virtual_farm import farm as farm_lib

REPO = Path(__file__).resolve().parent.parent
MODEL_CACHE = REPO / ".cache" / "models"
_PUSH = re.compile(r" push (\S+) \(\d+\)$", re.MULTILINE)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="min_secs 0.2 instead of 0.5")
    parser.add_argument("--profile", type=Path, default=packaged_defaults() / "virtual" / "mid_nothing_phone_1.toml")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="sweep-repush-"))
    profiles = work / "profiles"
    profiles.mkdir()
    shutil.copy(args.profile, profiles / args.profile.name)
    state_dir = work / "state"
    try:
        model = sample_model(MODEL_CACHE, work / "model-build.log")
        state = farm_lib.start_private(state_dir, profiles)
        port = state.adb_server_port
        device_log = Path(state.devices[0].log_path)
        devices = select(discover([AdbServer("127.0.0.1", port)], load_tiers()).entries, "all")
        store = ResultsStore(work / "results")
        models = sweep.collect_models([model])
        params = sweep.SweepParams(
            repetitions=1, delegates=("xnnpack",), threads=(1,), min_secs=0.2 if args.quick else 0.5
        )
        model_remote = remote_path_for(models[0].sha256, model.name)

        runs = []
        for _ in range(2):
            run_id = sweep.new_run_id()
            binaries = sweep.build_binaries({}, store.root / "runs" / run_id)
            offset = device_log.stat().st_size
            summary = sweep.run_sweep(
                devices, models, params, binaries, store, argv=sys.argv, run_id=run_id, show_progress=False
            )
            pushes = _PUSH.findall(device_log.read_text(errors="replace")[offset:])
            binary = binaries.by_abi["x86_64"][0]  # the classic runner
            sizes = {
                model_remote: model.stat().st_size,
                remote_path_for(file_sha256(binary), binary.name): binary.stat().st_size,
            }
            runs.append((summary, binary, pushes, sizes))

        entry = devices[0]
        print(f"host: {os.cpu_count()} CPUs; adb server port {port}")
        assert entry.facts is not None
        print(f"device: {entry.facts.info.model} ({entry.serial}, profile {args.profile.name}), fresh sandbox")
        print(f"model: {model.name} ({model.stat().st_size} bytes, sha256 {models[0].sha256[:16]}...)")
        print(
            f"sweep: delegates {params.delegates} x threads {params.threads}, min_secs={params.min_secs:g}; "
            "each run gets a new run id and its own runner build (runs/<run_id>/bin), as 'harness run' does"
        )
        print()
        model_bytes = []
        for number, (summary, binary, pushes, sizes) in enumerate(runs, 1):
            model_bytes.append(pushes.count(model_remote) * model.stat().st_size)
            print(
                f"run {number} ({summary.run_id}): bytes_pushed {summary.bytes_pushed}, statuses {summary.statuses}, "
                f"sweep wall {summary.wall_s:.2f} s; binary sha256 {file_sha256(binary)[:16]}..."
            )
            for path in pushes:
                print(f"  device log: push {path} ({sizes.get(path, '?')} bytes)")
            if not pushes:
                print("  device log: no push")
            logged = sum(sizes.get(path, 0) for path in pushes)
            print(
                f"  device log total {logged} bytes ({'equals' if logged == summary.bytes_pushed else 'DIFFERS from'} bytes_pushed)"
            )
        met = model_bytes[1] == 0
        print()
        print(
            f"model bytes pushed: run 1 {model_bytes[0]}, run 2 {model_bytes[1]}  "
            f"(target: run 2 pushes 0 model bytes: {'met' if met else 'NOT met'})"
        )
    finally:
        farm_lib.stop_private(state_dir)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
