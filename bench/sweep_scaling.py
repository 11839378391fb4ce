"""Does a sweep on 4 virtual devices take as long as the same sweep on 1?

Starts its own adb server on a free port and the 4 shipped virtual devices
(device_profiles/virtual/) with parallel=True, so their benchmarks run at the
same time. Each device gets the same cases: a tiny conv model (built once
with TensorFlow in a child process, cached in .cache/models/) x cpu, xnnpack
x 1, 2 threads, min_secs=1 (0.5 with --quick), power sampling (unless
--no-power) and thermal waits at their defaults. The sweep on all 4 devices
is timed against the same sweep on 1 device of that farm (--single, default
the mid-tier nothing-phone-1), in ABBA order twice (1, 4, 4, 1, 1, 4, 4, 1
devices; --quick: 1, 4) so that drift on the machine hits both alike. The
binary and the model are pushed to every device beforehand, so no timed
sweep pays for pushes. Target: wall(4 devices) / wall(1 device) <= 1.15.

The loops are time-based (min_secs, warmup_min_secs): on a small host the 4
devices share the CPUs, so each inference gets slower while a case still
lasts about as long. The ratio therefore shows what parallel sweeping costs
in wall time, not that latencies measured in parallel are undisturbed (the
table of median latencies shows how much they are).

Usage: .venv/bin/python bench/sweep_scaling.py [--quick] [--min-secs 1] [--single NAME] [--no-power]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from harness import sweep
from harness.config import packaged_defaults
from harness.digest import file_sha256
from harness.phone.device import Phone
from harness.phone.discovery import discover, select
from harness.phone.profiles import AdbServer, load_tiers
from harness.store import ResultsStore
from harness.virtual_farm import farm as farm_lib

REPO = Path(__file__).resolve().parent.parent
MODEL = REPO / ".cache" / "models" / "bench_tiny_conv.tflite"
TARGET = 1.15
_EXIT_WALL = re.compile(r"exit pid=\d+ code=-?\d+ wall=([0-9.]+)s command=.*--graph=")


def build_model(path: Path) -> None:
    """32x32x3 -> conv 3x3x8 -> global average pool -> dense 10: tens of microseconds per inference."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    import tensorflow as tf

    model = keras.Sequential(
        [
            keras.Input((32, 32, 3)),
            keras.layers.Conv2D(8, 3, activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(10),
        ]
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".partial")
    tmp.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    tmp.replace(path)  # a killed build never leaves half a model under the cached name


def ensure_model(log_path: Path) -> Path:
    if not MODEL.exists():
        # A child process, so TensorFlow never loads into the process that measures.
        with open(log_path, "ab") as log:
            subprocess.run([sys.executable, __file__, "build-model"], cwd=REPO, stdout=log, stderr=log, check=True)
    return MODEL


def process_walls(logs: dict[str, Path], offsets: dict[str, int]) -> dict[str, list[float]]:
    """Per device, `wall=` of every benchmark process it ran since its offset."""
    return {
        serial: [float(wall) for wall in _EXIT_WALL.findall(path.read_text(errors="replace")[offsets[serial] :])]
        for serial, path in logs.items()
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", nargs="?", choices=["build-model"], help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="min_secs 0.5 and one sweep of each kind")
    parser.add_argument("--min-secs", type=float, default=None, help="default 1 (0.5 with --quick)")
    parser.add_argument(
        "--single", default="nothing-phone-1", help="[device] name of the profile the 1-device sweep uses"
    )
    parser.add_argument(
        "--no-power",
        action="store_true",
        help="no power sampling (one shell stream per case and device, ~10 samples a second)",
    )
    args = parser.parse_args()
    if args.command == "build-model":
        build_model(MODEL)
        return 0
    min_secs = args.min_secs if args.min_secs is not None else (0.5 if args.quick else 1.0)
    order = (1, 4) if args.quick else (1, 4, 4, 1) * 2

    work = Path(tempfile.mkdtemp(prefix="sweep-scaling-"))
    state_dir = work / "state"
    try:
        model = ensure_model(work / "model-build.log")
        load_before = os.getloadavg()
        state = farm_lib.start_private(state_dir, packaged_defaults() / "virtual", parallel=True)
        port = state.adb_server_port
        logs = {d.serial: Path(d.log_path) for d in state.devices}
        devices = select(discover([AdbServer("127.0.0.1", port)], load_tiers()).entries, "all")
        # By profile name: serials follow random ports, so their order would pick a different device each time.
        single = [entry for entry in devices if entry.serial == farm_lib.find_device(state, args.single).serial]
        store = ResultsStore(work / "results")
        binaries = sweep.build_binaries({}, work / "bin")
        models = sweep.collect_models([model])
        for entry in devices:
            phone = Phone(entry.server, entry.serial)
            runner = binaries.by_abi["x86_64"][0]  # the classic runner
            phone.ensure_file(runner, file_sha256(runner), mode=0o755)
            phone.ensure_file(model, models[0].sha256)
        params = sweep.SweepParams(
            repetitions=1,
            delegates=("cpu", "xnnpack"),
            threads=(1, 2),
            min_secs=min_secs,
            measure_power=not args.no_power,
        )

        walls: dict[int, list[float]] = {1: [], 4: []}
        inside: dict[int, list[float]] = {1: [], 4: []}
        outside: dict[int, list[float]] = {1: [], 4: []}
        latency: dict[int, dict[str, list[float]]] = {1: {}, 4: {}}
        pushed = 0
        statuses: list[str] = []
        for count in order:
            chosen = devices if count == 4 else single
            offsets = {serial: path.stat().st_size for serial, path in logs.items()}
            summary = sweep.run_sweep(chosen, models, params, binaries, store, argv=sys.argv, show_progress=False)
            statuses.append(f"{count} device(s): {summary.statuses}")
            walls[count].append(summary.wall_s)
            per_device = process_walls(logs, offsets)
            inside[count] += [wall for walls_of in per_device.values() for wall in walls_of]
            # The sweep lasts as long as its slowest device: what its processes did not take is harness time.
            outside[count].append(summary.wall_s - max(sum(walls_of) for walls_of in per_device.values()))
            pushed += summary.bytes_pushed
            for _, row in store.read([summary.run_id]).iterrows():
                latency[count].setdefault(f"{row['delegate']} x{row['num_threads']}", []).append(
                    row["inference_avg_us"]
                )
        load_after = os.getloadavg()

        one, four = statistics.fmean(walls[1]), statistics.fmean(walls[4])
        ratio = four / one
        print(
            f"host: {os.cpu_count()} CPUs; load average (1/5/15 min) {load_before[0]:.2f}/{load_before[1]:.2f}/{load_before[2]:.2f} "
            f"before the farm started, {load_after[0]:.2f}/{load_after[1]:.2f}/{load_after[2]:.2f} at the end "
            "(other users of the machine count too)"
        )
        print(
            f"farm: {len(devices)} virtual devices, parallel=True (benchmarks of different devices run at the same time), adb server port {port}"
        )
        for entry in devices:
            assert entry.facts is not None
            info = entry.facts.info
            print(
                f"  {entry.serial:<18} {info.model:<12} {len(info.cores)} cores, tier {entry.tier}{'  <- the 1-device sweep' if entry in single else ''}"
            )
        print(f"model: {model.name} ({model.stat().st_size} bytes; conv 3x3x8 on 32x32x3, global pool, dense 10)")
        print(
            f"cases per device: delegates {params.delegates} x threads {params.threads} = 4; min_secs={params.min_secs:g}, "
            f"num_runs={params.num_runs}, warmup_runs={params.warmup_runs} (runner default warmup_min_secs=0.5), "
            f"power sampling {'off' if args.no_power else 'on'}, thermal threshold {params.thermal_threshold_c:g} C"
        )
        print(
            "loops are time-based, so a case lasts about min_secs + warmup_min_secs + start-up whatever the contention: "
            f"with {len(devices)} devices on {os.cpu_count()} CPUs each inference is slower, the case is not longer"
        )
        print(f"case statuses per sweep: {'; '.join(statuses)}")
        print(
            f"order of sweeps (devices): {', '.join(map(str, order))}; files pushed to every device beforehand "
            f"(bytes pushed by the timed sweeps: {pushed})"
        )
        print()
        print(
            f"{'devices':>7} {'sweep wall s (each)':>20} {'mean':>6} {'process wall s per case (median)':>33} {'outside processes s (mean)':>27}"
        )
        for count in (1, 4):
            each = ", ".join(f"{wall:.2f}" for wall in walls[count])
            print(
                f"{count:>7} {each:>20} {statistics.fmean(walls[count]):>6.2f} {statistics.median(inside[count]):>33.2f} "
                f"{statistics.fmean(outside[count]):>27.2f}"
            )
        print("(outside processes: sweep wall minus the slowest device's summed process walls from its log)")
        print()
        print(f"{'config':<12} {'median inference_avg_us, 1 device':>34} {'4 devices':>10}")
        for config in sorted(latency[1]):
            print(
                f"{config:<12} {statistics.median(latency[1][config]):>34.1f} {statistics.median(latency[4][config]):>10.1f}"
            )
        print()
        print(
            f"wall ratio 4 devices / 1 device: {ratio:.3f}  (target <= {TARGET}: {'met' if ratio <= TARGET else 'NOT met'})"
        )
    finally:
        farm_lib.stop_private(state_dir)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
