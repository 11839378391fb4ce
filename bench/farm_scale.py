"""The harness's own cost as a lab grows: 8, 16 and 32 virtual phones on one adb server.

For each phone count it starts a fresh private farm (its own adb server on a
free port) of that many virtual phones, copies of the shipped profiles
(device_profiles/virtual/*.toml) renamed `<name>-NN`, in parallel mode, so
no phone's benchmark waits for another's and the harness really drives all of
them at once. Every phone gets the same light cases on a tiny conv model
(bench/sweep_scaling.py builds and caches it): delegates x threads at a
short min_secs, numerics check and thermal reads at their defaults. An
untimed sweep first pushes the binaries and the model, so no timed sweep pays
for pushes. Then, per phone count and round, a sweep with power sampling and
the same sweep without it.

What is measured (CPU seconds, not wall time: the machine is shared):
- harness CPU: this process's user+sys time (getrusage RUSAGE_SELF, all its
  threads) around run_sweep. The virtual phones and the benchmark programs
  run in other processes and are not in it. Given per case and per
  device-minute (phones x sweep wall / 60).
- adb server CPU: utime+stime of the private adb server (its /proc/PID/stat)
  around the same sweep.
- power sampling: CPU time of the sampler threads themselves
  (time.thread_time around PowerSampler._run, wrapped here only), as a share
  of one core per sampled phone (sampler CPU / phone-seconds sampled), with
  the samples per second each phone actually got. The sweep without power
  gives the marginal cost too (harness CPU with - without, over phone-seconds),
  which also counts what sampling costs other threads (GIL, allocation).

Goals (issue 15): harness CPU per case flat within 1.2x from the smallest to
the largest lab; power sampling <= 2% of one core per phone.

Usage: .venv/bin/python bench/farm_scale.py [--phones 8,16,32] [--rounds 1] [--min-secs 0.3]
           [--delegates cpu,xnnpack] [--threads 1] [--repetitions 1] [--no-baseline] [--json]
       .venv/bin/python bench/farm_scale.py --table-from SAVED.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from sweep_scaling import ensure_model  # noqa: E402  (bench/ is the script's folder)

from harness import sweep
from harness.config import packaged_defaults
from harness.phone import power
from harness.phone.discovery import discover, select
from harness.phone.profiles import AdbServer, load_tiers
from harness.store import ResultsStore
from harness.virtual_farm import farm as farm_lib

GOAL_FLAT = 1.2
GOAL_POWER_SHARE = 0.02
_TICKS = os.sysconf("SC_CLK_TCK")


def renamed_profiles(folder: Path, count: int) -> Path:
    """`count` copies of the shipped profiles, round robin, each with its own [device] name."""
    shipped = sorted((packaged_defaults() / "virtual").glob("*.toml"))
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        source = shipped[i % len(shipped)]
        text = source.read_text()
        text, renamed = re.subn(r'(?m)^name = "([^"]+)"', rf'name = "\g<1>-{i:02d}"', text, count=1)
        assert renamed == 1, f"{source} has no [device] name line"
        (folder / f"{i:02d}_{source.name}").write_text(text)
    return folder


def adb_server_pid(port: int) -> int | None:
    """The adb server listening on this port (`adb -L tcp:PORT fork-server server ...`)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"fork-server" in argv and f"tcp:{port}".encode() in argv:
            return int(entry.name)
    return None


def process_cpu_s(pid: int | None) -> float:
    if pid is None:
        return float("nan")
    raw = Path(f"/proc/{pid}/stat").read_bytes()
    fields = raw[raw.rindex(b")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime


def self_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class SamplerMeter:
    """CPU time and samples of every PowerSampler thread, by wrapping its loop (in this process only)."""

    def __init__(self) -> None:
        self.cpu_s = 0.0
        self.wall_s = 0.0
        self.samples = 0
        self.windows = 0
        self._original: Callable[[power.PowerSampler], None] = power.PowerSampler._run
        meter = self

        def measured(sampler: power.PowerSampler) -> None:
            cpu, wall = time.thread_time(), time.monotonic()
            try:
                meter._original(sampler)
            finally:
                # One sampler thread per phone at a time; the GIL makes += safe enough for counters.
                meter.cpu_s += time.thread_time() - cpu
                meter.wall_s += time.monotonic() - wall
                meter.samples += len(sampler._samples)
                meter.windows += 1

        # In place (mypy's method-assign would refuse `PowerSampler._run = ...`); restore() puts it back.
        setattr(power.PowerSampler, "_run", measured)  # noqa: B010

    def reset(self) -> None:
        self.cpu_s = self.wall_s = 0.0
        self.samples = self.windows = 0

    def restore(self) -> None:
        setattr(power.PowerSampler, "_run", self._original)  # noqa: B010 - see __init__


def measure(devices, models, params, binaries, store, adb_pid: int | None, meter: SamplerMeter) -> dict:
    meter.reset()
    adb_before, cpu_before = process_cpu_s(adb_pid), self_cpu_s()
    summary = sweep.run_sweep(devices, models, params, binaries, store, argv=sys.argv, show_progress=False)
    harness_cpu = self_cpu_s() - cpu_before
    adb_cpu = process_cpu_s(adb_pid) - adb_before
    device_minutes = len(devices) * summary.wall_s / 60
    return {
        "phones": len(devices),
        "power": params.measure_power,
        "cases": summary.cases_total,
        "cases_ok": summary.cases_ok,
        "statuses": summary.statuses,
        "wall_s": summary.wall_s,
        "harness_cpu_s": round(harness_cpu, 3),
        "harness_cpu_ms_per_case": round(1000 * harness_cpu / max(summary.cases_total, 1), 2),
        "harness_cpu_s_per_device_minute": round(harness_cpu / device_minutes, 4),
        "adb_server_cpu_s": round(adb_cpu, 3),
        "adb_server_cpu_ms_per_case": round(1000 * adb_cpu / max(summary.cases_total, 1), 2),
        "sampler_cpu_s": round(meter.cpu_s, 3),
        "sampled_phone_s": round(meter.wall_s, 2),
        "samples": meter.samples,
        "samples_per_s_per_phone": round(meter.samples / meter.wall_s, 2) if meter.wall_s else None,
        "sampler_share_of_core_per_phone": round(meter.cpu_s / meter.wall_s, 4) if meter.wall_s else None,
    }


def run_lab(count: int, args: argparse.Namespace, model: Path, work: Path, meter: SamplerMeter) -> list[dict]:
    lab = work / f"lab-{count}"
    state_dir = lab / "state"
    try:
        state = farm_lib.start_private(state_dir, renamed_profiles(lab / "profiles", count), parallel=True)
        port = state.adb_server_port
        adb_pid = adb_server_pid(port)
        devices = select(discover([AdbServer("127.0.0.1", port)], load_tiers()).entries, "all")
        if len(devices) != count:
            raise SystemExit(f"only {len(devices)} of {count} virtual phones were usable on port {port}")
        store = ResultsStore(lab / "results")
        binaries = sweep.build_binaries({}, lab / "bin")
        models = sweep.collect_models([model])
        common = dict(
            repetitions=args.repetitions,
            delegates=tuple(args.delegates.split(",")),
            threads=tuple(int(t) for t in args.threads.split(",")),
            min_secs=args.min_secs,
            warmup_min_secs=args.warmup_min_secs,
            num_runs=args.num_runs,
        )
        # Untimed: pushes the benchmark programs (each dialect's) and the model to every phone.
        sweep.run_sweep(
            devices,
            models,
            sweep.SweepParams(
                **dict(common, delegates=common["delegates"][:1], threads=common["threads"][:1], repetitions=1),
                measure_power=False,
                check_numerics=False,
            ),
            binaries,
            store,
            show_progress=False,
        )
        rows = []
        for _ in range(args.rounds):
            for with_power in (True, False) if args.baseline else (True,):
                params = sweep.SweepParams(**common, measure_power=with_power)
                rows.append(measure(devices, models, params, binaries, store, adb_pid, meter))
                print(
                    f"  {count} phones, power {'on ' if with_power else 'off'}: {rows[-1]['harness_cpu_ms_per_case']} ms "
                    f"harness CPU per case, wall {rows[-1]['wall_s']} s",
                    file=sys.stderr,
                    flush=True,
                )
        return rows
    finally:
        farm_lib.stop_private(state_dir)


def summarize(rows: list[dict], counts: list[int]) -> list[dict]:
    """Per phone count: medians over rounds, and the marginal cost of power sampling."""
    out = []
    for count in counts:
        on = [r for r in rows if r["phones"] == count and r["power"]]
        off = [r for r in rows if r["phones"] == count and not r["power"]]
        med = lambda key, rs=on: statistics.median(r[key] for r in rs) if rs else None  # noqa: E731
        item = {
            key: med(key)
            for key in (
                "wall_s",
                "harness_cpu_ms_per_case",
                "harness_cpu_s_per_device_minute",
                "adb_server_cpu_ms_per_case",
                "samples_per_s_per_phone",
                "sampler_share_of_core_per_phone",
            )
        }
        item["phones"] = count
        item["cases"] = on[0]["cases"] if on else None
        if off:
            item["no_power_harness_cpu_ms_per_case"] = med("harness_cpu_ms_per_case", off)
            item["no_power_adb_server_cpu_ms_per_case"] = med("adb_server_cpu_ms_per_case", off)
            # Marginal: what switching sampling on adds to the harness, per phone-second sampled.
            extra_s = statistics.median(r["harness_cpu_s"] for r in on) - statistics.median(
                r["harness_cpu_s"] for r in off
            )
            sampled = statistics.median(r["sampled_phone_s"] for r in on)
            item["power_marginal_share_of_core_per_phone"] = round(extra_s / sampled, 4) if sampled else None
            item["power_share_of_harness_cpu"] = round(extra_s / statistics.median(r["harness_cpu_s"] for r in on), 3)
        out.append(item)
    return out


def print_table(summary: list[dict], args: argparse.Namespace) -> None:
    def fmt(value, spec: str) -> str:
        return "-" if value is None else format(value, spec)

    load = getattr(args, "load_end", None) or os.getloadavg()[0]
    print(
        f"host: {os.cpu_count()} CPUs, load average {load:.2f} at the end (the machine is shared); "
        f"cases per phone: delegates {args.delegates} x threads {args.threads} x {args.repetitions} repetition(s), "
        f"min_secs={args.min_secs:g}, warmup_min_secs={args.warmup_min_secs:g}; farm in parallel mode; "
        f"medians of {args.rounds} round(s)"
    )
    print(
        f"{'phones':>6} {'cases':>5} {'wall s':>7} {'harness CPU':>11} {'harness CPU':>11} {'adb server':>10} "
        f"{'sampler':>8} {'samples':>7} {'no power':>8} {'no power':>8} {'power':>8} {'power':>7}"
    )
    print(
        f"{'':>6} {'':>5} {'':>7} {'ms/case':>11} {'s/dev-min':>11} {'ms/case':>10} "
        f"{'%core/ph':>8} {'/s/phone':>7} {'harn ms':>8} {'adb ms':>8} {'marg %c':>8} {'% harn':>7}"
    )
    for item in summary:
        share = item["sampler_share_of_core_per_phone"]
        marginal = item.get("power_marginal_share_of_core_per_phone")
        of_harness = item.get("power_share_of_harness_cpu")
        print(
            f"{item['phones']:>6} {fmt(item['cases'], 'd'):>5} {fmt(item['wall_s'], '.1f'):>7} "
            f"{fmt(item['harness_cpu_ms_per_case'], '.1f'):>11} {fmt(item['harness_cpu_s_per_device_minute'], '.3f'):>11} "
            f"{fmt(item['adb_server_cpu_ms_per_case'], '.1f'):>10} {fmt(share and 100 * share, '.2f'):>8} "
            f"{fmt(item['samples_per_s_per_phone'], '.1f'):>7} {fmt(item.get('no_power_harness_cpu_ms_per_case'), '.1f'):>8} "
            f"{fmt(item.get('no_power_adb_server_cpu_ms_per_case'), '.1f'):>8} "
            f"{fmt(marginal and 100 * marginal, '.2f'):>8} {fmt(of_harness and 100 * of_harness, '.0f'):>7}"
        )
    print(
        "harness CPU: this process's user+sys (all threads) around run_sweep, with power sampling; adb server: its "
        "/proc stat; sampler %core/ph: sampler threads' CPU / phone-seconds sampled; samples/s/phone: what the "
        "sampler got (asked: 10); marg %c: (harness CPU with - without power) / phone-seconds sampled; "
        "% harn: that difference as a share of the harness's CPU"
    )
    first, last = summary[0], summary[-1]
    flat = last["harness_cpu_ms_per_case"] / first["harness_cpu_ms_per_case"]
    worst = max(item["sampler_share_of_core_per_phone"] or 0 for item in summary)
    print(
        f"harness CPU per case, {last['phones']} / {first['phones']} phones: {flat:.2f}x "
        f"(goal <= {GOAL_FLAT}: {'met' if flat <= GOAL_FLAT else 'NOT met'}); power sampling at most "
        f"{100 * worst:.2f}% of one core per phone (goal <= {100 * GOAL_POWER_SHARE:g}%: "
        f"{'met' if worst <= GOAL_POWER_SHARE else 'NOT met'})"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--phones", default="8,16,32", help="phone counts, comma-separated")
    parser.add_argument("--rounds", type=int, default=1, help="timed sweeps of each kind per phone count")
    parser.add_argument("--repetitions", type=int, default=1, help="SweepParams.repetitions")
    parser.add_argument("--delegates", default="cpu,xnnpack")
    parser.add_argument("--threads", default="1")
    parser.add_argument("--min-secs", type=float, default=0.3)
    parser.add_argument("--warmup-min-secs", type=float, default=0.1)
    parser.add_argument("--num-runs", type=int, default=20)
    parser.add_argument(
        "--no-baseline",
        dest="baseline",
        action="store_false",
        help="skip the sweeps without power sampling (no marginal figure)",
    )
    parser.add_argument("--json", action="store_true", help="print every measurement and the summary as JSON")
    parser.add_argument("--table-from", type=Path, metavar="FILE", help="print the table of a saved --json output")
    args = parser.parse_args()
    if args.table_from:
        saved = json.loads(args.table_from.read_text())
        saved_args = parser.parse_args(saved["argv"][1:])
        saved_args.load_end = saved.get("load_end")
        print_table(saved["summary"], saved_args)
        return 0
    counts = [int(c) for c in args.phones.split(",")]

    work = Path(tempfile.mkdtemp(prefix="farm-scale-"))
    meter = SamplerMeter()
    try:
        model = ensure_model(work / "model-build.log")
        rows = [row for count in counts for row in run_lab(count, args, model, work, meter)]
    finally:
        meter.restore()
        shutil.rmtree(work, ignore_errors=True)
    summary = summarize(rows, counts)
    if args.json:
        print(
            json.dumps(
                {
                    "argv": sys.argv,
                    "cpus": os.cpu_count(),
                    "load_end": os.getloadavg()[0],
                    "measurements": rows,
                    "summary": summary,
                },
                indent=2,
            )
        )
    else:
        print_table(summary, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
