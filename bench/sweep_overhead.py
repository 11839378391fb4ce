"""Harness overhead of a sweep on one virtual device.

Starts its own adb server on a free port and one virtual device (default
profile: mid_nothing_phone_1, one benchmark at a time as `harness farm up`
runs it), then sweeps the sample model (MobileNetV2 0.35 @128, built once
into .cache/models/) over 2 delegates x 2 thread counts with min_secs=2, the
other SweepParams left at their defaults (thermal wait, power sampling on).

Figure: sweep wall time (run_sweep's own clock, the SweepSummary's wall_s)
divided by the time spent inside the benchmark processes. The latter is the
sum of the `wall=` figures of the device's `exit pid=... command=...--graph=...`
log lines: the device measures each benchmark shell (nsenter, mksh, the
python3 shim and the runner) from just before it starts to just after it
exits and its output is drained, so adb and the sweep's own work are outside
it, while entering the sandbox and the runner's Python start-up are inside (a
native benchmark_model would start faster). There is no CPU figure per shell. As a cross-check it also prints
a lower bound taken from the runner's own output: Init + warmup count x avg
+ measured count x avg. Target: ratio <= 1.05.

Where the rest goes: the sweep thread's time is split by wrapping (only in
this process) the harness functions it calls; a call made inside another
timed call counts for the outer one.

With --numerics-cost it instead measures what the numerics check (fixed inputs, the
outputs pulled and compared with the host's reference, harness.numerics) adds: four
sweeps in the order off, on, on, off (so a drift of the machine cancels), and the
added cost (wall with - wall without) / wall with. Target: <= 5%.

Usage: .venv/bin/python bench/sweep_overhead.py [--quick] [--min-secs 2] [--repetitions 2] [--profile FILE]
       .venv/bin/python bench/sweep_overhead.py --numerics-cost [--min-secs 1] [--numerics-samples 0]
"""

from __future__ import annotations

import argparse
import functools
import os
import re
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

from sample_model import sample_model  # bench/: the scripts run from there

from harness import numerics, sweep
from harness.config import packaged_defaults
from harness.phone import power, thermal
from harness.phone.device import Phone
from harness.phone.discovery import discover, select
from harness.phone.profiles import AdbServer, load_tiers
from harness.store import ResultsStore
from harness.virtual_farm import farm as farm_lib

REPO = Path(__file__).resolve().parent.parent
MODEL_CACHE = REPO / ".cache" / "models"
TARGET = 1.05
NUMERICS_TARGET = 0.05
# One per shell the phone ran (no CPU figure: the shell is reaped by asyncio); the benchmark ones pass a --graph.
_EXIT = re.compile(r"exit pid=\d+ code=-?\d+ ()wall=([0-9.]+)s command=.*--graph=")
_COUNT_AVG = re.compile(r"count=(\d+)\b.*?\bavg=([0-9.e+-]+)")
_INIT = re.compile(r"Inference timings in us: Init: ([0-9.e+-]+)")


class PhaseClock:
    """Wall time of the sweep's device thread per phase of its work.

    Nested timed calls count for the outermost one, so phases never overlap.
    Calls from the power sampler's background thread are only counted: they
    cost host CPU, not sweep-thread time.
    """

    def __init__(self) -> None:
        self.seconds: Counter = Counter()
        self.calls: Counter = Counter()
        self.background_calls = 0
        self._local = threading.local()
        self._originals: list[tuple[object, str, object]] = []

    def wrap(self, owner: object, name: str, phase) -> None:
        original = getattr(owner, name)
        phase_of = phase if callable(phase) else (lambda *args: phase)

        @functools.wraps(original)
        def timed(*args, **kwargs):
            if threading.current_thread().name.startswith("power-"):
                self.background_calls += 1
                return original(*args, **kwargs)
            if getattr(self._local, "busy", False):
                return original(*args, **kwargs)
            self._local.busy = True
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                label = phase_of(*args)
                self.seconds[label] += time.perf_counter() - started
                self.calls[label] += 1
                self._local.busy = False

        self._originals.append((owner, name, original))
        setattr(owner, name, timed)

    def restore(self) -> None:
        for owner, name, original in reversed(self._originals):
            setattr(owner, name, original)


def shell_phase(phone: Phone, command: str, *rest) -> str:
    return "benchmark command (adb shell, incl. process)" if "benchmark_model" in command else "other shell round trips"


def runner_lower_bound_s(raw_log: str) -> float:
    """Init + warmup count x avg + measured count x avg, from the runner's own output."""
    init = _INIT.search(raw_log)
    loops = _COUNT_AVG.findall(raw_log)
    return (float(init.group(1)) if init else 0.0) / 1e6 + sum(int(count) * float(avg) for count, avg in loops) / 1e6


def numerics_cost(
    devices, models, binaries, store: ResultsStore, repetitions: int, min_secs: float, numerics_samples: int
) -> int:
    """Sweeps off, on, on, off: the wall time the numerics check adds, and where it goes."""
    clock = PhaseClock()
    clock.wrap(Phone, "pull", "numerics: pull the output file")
    clock.wrap(sweep, "prepare_numerics", "numerics: inputs and host reference")
    clock.wrap(numerics, "judge", "numerics: compare with the reference")
    walls: dict[bool, list[float]] = {False: [], True: []}
    cases = 0
    try:
        for check in (False, True, True, False):
            params = sweep.SweepParams(
                delegates=("cpu", "xnnpack"),
                threads=(1, 2),
                repetitions=repetitions,
                min_secs=min_secs,
                check_numerics=check,
                numerics_samples=numerics_samples,
            )
            summary = sweep.run_sweep(devices, models, params, binaries, store, show_progress=False)
            walls[check].append(summary.wall_s)
            cases = summary.cases_total
            statuses = store.read([summary.run_id])["numerics_status"].value_counts().to_dict()
            print(
                f"numerics {'on ' if check else 'off'}: {summary.cases_total} cases in {summary.wall_s:7.2f} s; "
                f"statuses {summary.statuses}; numerics {statuses}"
            )
    finally:
        clock.restore()
    off, on = sum(walls[False]), sum(walls[True])
    added = (on - off) / on
    print()
    print("numerics work (both 'on' sweeps):")
    for phase, seconds in clock.seconds.most_common():
        print(
            f"  {phase:<40} {seconds:7.2f} s  {clock.calls[phase]:3d} call(s), {seconds / clock.calls[phase] * 1000:8.1f} ms each"
        )
    print(f"sweep wall, numerics off (2 sweeps of {cases} cases)  {off:8.2f} s")
    print(f"sweep wall, numerics on  (2 sweeps of {cases} cases)  {on:8.2f} s")
    print(
        f"added cost (on - off) / on                        {added:8.1%}  (target <= {NUMERICS_TARGET:.0%}: "
        f"{'met' if added <= NUMERICS_TARGET else 'NOT met'})"
    )
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--quick", action="store_true", help="one repetition (4 cases) instead of two; the one-time push weighs more"
    )
    parser.add_argument("--min-secs", type=float, default=2.0)
    parser.add_argument("--repetitions", type=int, default=2)
    parser.add_argument("--profile", type=Path, default=packaged_defaults() / "virtual" / "mid_nothing_phone_1.toml")
    parser.add_argument(
        "--numerics-cost",
        action="store_true",
        help="measure what the numerics check adds (four sweeps: off, on, on, off)",
    )
    parser.add_argument("--numerics-samples", type=int, default=0, help="with --numerics-cost: harness run's option")
    args = parser.parse_args()
    repetitions = 1 if args.quick else args.repetitions

    work = Path(tempfile.mkdtemp(prefix="sweep-overhead-"))
    profiles = work / "profiles"
    profiles.mkdir()
    shutil.copy(args.profile, profiles / args.profile.name)
    state_dir = work / "state"
    clock = PhaseClock()
    try:
        model = sample_model(MODEL_CACHE, work / "model-build.log")
        state = farm_lib.start_private(state_dir, profiles)
        port = state.adb_server_port
        device_log = Path(state.devices[0].log_path)

        started = time.perf_counter()
        devices = select(discover([AdbServer("127.0.0.1", port)], load_tiers()).entries, "all")
        discovery_s = time.perf_counter() - started
        store = ResultsStore(work / "results")
        run_id = sweep.new_run_id()
        started = time.perf_counter()
        binaries = sweep.build_binaries({}, store.root / "runs" / run_id)
        models = sweep.collect_models([model])
        prepare_s = time.perf_counter() - started
        if args.numerics_cost:
            return numerics_cost(devices, models, binaries, store, repetitions, args.min_secs, args.numerics_samples)
        params = sweep.SweepParams(
            delegates=("cpu", "xnnpack"), threads=(1, 2), repetitions=repetitions, min_secs=args.min_secs
        )

        clock.wrap(Phone, "ensure_file", "push check / push (sha256sum, sync)")
        clock.wrap(Phone, "shell", shell_phase)
        clock.wrap(thermal, "wait_until_cool", "thermal: wait until cool (incl. read)")
        clock.wrap(thermal, "hottest_c", "thermal: end temperature read")
        clock.wrap(power.PowerSampler, "start", "power sampler start/stop")
        clock.wrap(power.PowerSampler, "stop", "power sampler start/stop")
        clock.wrap(ResultsStore, "append", "results store (Parquet append, manifest)")
        clock.wrap(ResultsStore, "write_run_manifest", "results store (Parquet append, manifest)")
        clock.wrap(sweep, "parse_log", "parse benchmark log")
        clock.wrap(sweep, "file_sha256", "local sha256 of the binary")

        load_before = os.getloadavg()
        log_offset = device_log.stat().st_size
        summary = sweep.run_sweep(
            devices, models, params, binaries, store, argv=sys.argv, run_id=run_id, show_progress=False
        )
        clock.restore()
        load_after = os.getloadavg()
        device_text = device_log.read_text(errors="replace")[log_offset:]
        exits = [(float(cpu) if cpu else float("nan"), float(wall)) for cpu, wall in _EXIT.findall(device_text)]
        lock_waits = device_text.count("waiting for the host benchmark lock")
        rows = store.read([run_id]).sort_values("started_at")

        inside_s = sum(wall for _, wall in exits)
        ratio = summary.wall_s / inside_s
        entry = devices[0]
        print(
            f"host: {os.cpu_count()} CPUs; python {sys.version.split()[0]}; adb server port {port}; load average (1/5/15 min) "
            f"{load_before[0]:.2f}/{load_before[1]:.2f}/{load_before[2]:.2f} before the sweep, "
            f"{load_after[0]:.2f}/{load_after[1]:.2f}/{load_after[2]:.2f} after (other users of the machine count too)"
        )
        assert entry.facts is not None
        print(
            f"device: {entry.facts.info.model} ({entry.serial}, profile {args.profile.name}, one benchmark at a time)"
        )
        print(f"model: {model.name} ({model.stat().st_size / 1e6:.2f} MB)")
        print(
            f"params: delegates {params.delegates} x threads {params.threads} x {params.repetitions} repetition(s) = "
            f"{summary.cases_total} cases; min_secs={params.min_secs:g} num_runs={params.num_runs} warmup_runs={params.warmup_runs} "
            f"(runner default warmup_min_secs=0.5); thermal threshold {params.thermal_threshold_c:g} C (max wait "
            f"{params.thermal_max_wait_s:g} s); power sampling {'on' if params.measure_power else 'off'}"
        )
        print(f"statuses: {summary.statuses}; bytes pushed {summary.bytes_pushed}")
        print(f"outside the sweep wall: discovery {discovery_s:.2f} s, runner build + model sha256 {prepare_s:.2f} s")
        print()
        print(
            f"{'case':<16} {'sweep row s':>11} {'process wall s':>14} {'process cpu s':>13} {'runner lower bound s':>20} {'temp start C':>12}"
        )
        for (_, row), (cpu, wall) in zip(rows.iterrows(), exits, strict=False):
            raw = (store.root / row["raw_log_path"]).read_text(errors="replace")
            label = f"{row['delegate']} x{row['num_threads']} r{row['repetition']}"
            print(
                f"{label:<16} {row['duration_s']:>11.2f} {wall:>14.2f} {cpu:>13.2f} {runner_lower_bound_s(raw):>20.2f} {row['temp_start_c']:>12.1f}"
            )
        if len(exits) != len(rows):
            print(
                f"note: {len(exits)} process exits in the device log for {len(rows)} rows; the table pairs them in order"
            )
        lower_s = sum(
            runner_lower_bound_s((store.root / path).read_text(errors="replace")) for path in rows["raw_log_path"]
        )
        print()
        print("sweep thread's wall time by phase:")
        for phase, seconds in clock.seconds.most_common():
            print(
                f"  {phase:<46} {seconds:7.2f} s  {clock.calls[phase]:3d} call(s), {seconds / clock.calls[phase] * 1000:8.1f} ms each"
            )
        print(
            f"  {'unaccounted (raw log write, thread start, ...)':<46} {summary.wall_s - sum(clock.seconds.values()):7.2f} s"
        )
        print(
            f"  shell round trips from the power sampler's thread: {clock.background_calls} (it streams; 0 expected); "
            f"host benchmark lock waits: {lock_waits}"
        )
        print()
        print(f"sweep wall time                               {summary.wall_s:8.2f} s")
        print(f"inside the benchmark processes (device log)   {inside_s:8.2f} s")
        print(f"runner's own lower bound (init + loops)       {lower_s:8.2f} s")
        print(
            f"overhead ratio wall / inside                  {ratio:8.3f}  (target <= {TARGET}: {'met' if ratio <= TARGET else 'NOT met'})"
        )
        print(
            f"ratio wall / runner lower bound               {summary.wall_s / lower_s:8.3f}  (for reference; counts runner start-up as overhead)"
        )
    finally:
        clock.restore()
        farm_lib.stop_private(state_dir)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
