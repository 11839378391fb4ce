"""Spike for issue 18: can a real sandbox (bubblewrap, mksh, toybox) replace the emulated shell?

One run, repetitions interleaved, ratios only (the machine is shared and noisy):

(a) fidelity: the runner zipapp on the same model, outside any sandbox versus inside a phone's sandbox
    (entered with nsenter, `sh -c`), once with the generated /sys/devices/system/cpu (the profile's 8
    cores and modelled clocks) and once with the host's own cpu tree bound in. Ratio of medians of
    `Inference (avg)`, per thread count. Target: [0.97, 1.03]. Also prints what the runner (XNNPACK's
    cpuinfo) reads about CPUs inside and outside.
(b) per command: the harness's shell commands in the real sandbox versus the emulated shell (in
    process, as a virtual phone runs them), median milliseconds; and a projection of
    bench/sweep_overhead.py's ratio: that script's own measurement (with the emulator), plus every
    shell round trip of its sweep times the per-command difference. Target: <= 1.05.
(c) the power sampler: CPU share of one core taken by power.stream_command's loop at 10 Hz in the
    sandbox's mksh versus in the emulator, and the cost of one CPU-accounting walk over the sandbox's
    processes (what the power model would read every 0.5 s tick). Target (this spike's own: the issue
    names none): the sampler plus the walk take at most 5% of one core.

    PYTHONPATH=. .venv/bin/python bench/sandbox_spike.py [--rounds 7] [--num-runs 600] [--skip-sweep]

Figures are printed last; exit status 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from harness.phone.facts import BATCHED_FACTS_COMMAND
from harness.phone.power import stream_command
from harness.phone.thermal import ZONES_COMMAND
from harness.runner_zipapp import build_runner
from harness.virtual_farm.bwrap_sandbox import (
    SHELL_ENV,
    PhoneSandbox,
    SandboxSpec,
    check_available,
    populate_system_bin,
    write_generated,
)
from harness.virtual_farm.device import VirtualDevice
from harness.virtual_farm.device_model import CpuAccounting, DeviceModel
from harness.virtual_farm.procfs import generated_files
from harness.virtual_farm.profile import load_profile
from harness.virtual_farm.shell import Session
from harness.virtual_farm.shell_io import BufferSink, ShellIO, Source

REPO = Path(__file__).resolve().parent.parent
PROFILE = REPO / "device_profiles/virtual/mid_nothing_phone_1.toml"
FIDELITY = (0.97, 1.03)
SWEEP_TARGET = 1.05
CONTROL = "outside again (A/A control)"
SAMPLER_TARGET = 0.05
TMP = "/data/local/tmp"
_INFERENCE_AVG = re.compile(r"Inference \(avg\): ([0-9.e+]+)")
_LOOP_MEDIAN = re.compile(r"count=\d+ .*\bmedian=([0-9.e+]+)")


def sample_model_path() -> Path:
    """The bench's sample model (MobileNetV2 0.35 @128), from this tree's cache or main's, else built."""
    for cache in (REPO / ".cache/models", Path("/work/main/.cache/models")):
        path = cache / "mobilenet_v2_035_128_fp32.tflite"
        if path.is_file():
            return path
    sys.path.insert(0, str(REPO / "bench"))
    from sample_model import build_sample_model

    return build_sample_model(REPO / ".cache/models")


class Phone:
    """One sandbox with its generated files rewritten every 0.5 s, as the model's tick will."""

    def __init__(self, folder: Path, real_cpu_tree: bool) -> None:
        profile = load_profile(PROFILE)
        self.accounting = CpuAccounting()
        self.model = DeviceModel(profile, self.accounting)
        self.files = generated_files(profile, self.model, self.accounting)
        self.spec = SandboxSpec(folder, profile.storage_quota_bytes, real_cpu_tree=real_cpu_tree)
        populate_system_bin(self.spec)
        write_generated(self.spec.generated, self.files)
        self.sandbox = PhoneSandbox(self.spec)
        self.sandbox.start()
        self._stop = threading.Event()
        self._ticker = threading.Thread(target=self._tick, daemon=True)
        self._ticker.start()

    def _tick(self) -> None:
        while not self._stop.wait(0.5):
            write_generated(self.spec.generated, self.files)

    def push(self, source: Path, name: str) -> None:
        target = self.sandbox.root / TMP.lstrip("/") / name
        shutil.copyfile(source, target)
        target.chmod(0o755)

    def sh(self, command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.sandbox.command_argv(command), env=SHELL_ENV, capture_output=True, text=True, check=False
        )

    def close(self) -> None:
        self._stop.set()
        self._ticker.join()
        self.sandbox.stop()


def runner_flags(threads: int, num_runs: int) -> list[str]:
    return [f"--num_threads={threads}", f"--num_runs={num_runs}", "--warmup_runs=20", "--min_secs=0"]


def parse_avg(text: str, where: str) -> tuple[float, float]:
    """`Inference (avg)` and the measured loop's per-inference median (the last count= line's)."""
    match = _INFERENCE_AVG.search(text)
    medians = _LOOP_MEDIAN.findall(text)
    if match is None or not medians:
        raise SystemExit(f"runner failed {where}:\n{text}")
    return float(match.group(1)), float(medians[-1])


def run_outside(runner: Path, model: Path, threads: int, num_runs: int) -> tuple[float, float]:
    out = subprocess.run(
        [sys.executable, str(runner), f"--graph={model}", *runner_flags(threads, num_runs)],
        capture_output=True,
        text=True,
        check=False,
    )
    return parse_avg(out.stdout + out.stderr, "outside")


def run_inside(phone: Phone, threads: int, num_runs: int) -> tuple[float, float]:
    out = phone.sh(f"{TMP}/runner --graph={TMP}/m.tflite {' '.join(runner_flags(threads, num_runs))} 2>&1")
    return parse_avg(out.stdout + out.stderr, "inside")


CPU_VIEW = (
    'for f in possible present online kernel_max; do echo "$f: $(cat /sys/devices/system/cpu/$f 2>&1)"; done; '
    'echo "processors in /proc/cpuinfo: $(grep -c ^processor /proc/cpuinfo)"; '
    'python3 -c \'import os; print("os.cpu_count():", os.cpu_count(), " sched_getaffinity:", '
    "sorted(os.sched_getaffinity(0)))'"
)


def cpu_view_outside() -> str:
    return subprocess.run(
        ["sh", "-c", CPU_VIEW.replace("python3", sys.executable)], capture_output=True, text=True
    ).stdout


def runner_cpu_reads(phone: Phone | None, runner: Path, model: Path) -> list[str]:
    """The /sys and /proc/cpuinfo files the runner opens (strace), inside or outside."""
    if shutil.which("strace") is None:
        return ["(strace not installed)"]
    flags = " ".join(runner_flags(2, 5))
    if phone is None:
        log = Path(tempfile.mkstemp(suffix=".strace")[1])
        subprocess.run(
            ["strace", "-f", "-e", "trace=openat", "-o", str(log), sys.executable, str(runner), f"--graph={model}"]
            + flags.split(),
            capture_output=True,
            check=False,
        )
        text = log.read_text()
        log.unlink()
    else:
        phone.sh(f"/usr/bin/strace -f -e trace=openat -o {TMP}/st.txt {TMP}/runner --graph={TMP}/m.tflite {flags}")
        text = phone.sh(f"cat {TMP}/st.txt").stdout
    seen = sorted(set(re.findall(r'"(/sys/devices/system/cpu[^"]*|/proc/cpuinfo)"[^=]*= (-?\d+)', text)))
    return [f"{path} -> {'ok' if int(fd) >= 0 else 'missing'}" for path, fd in seen]


# --- (b) per command --------------------------------------------------------------


class _NoInput(Source):
    async def read(self, n: int = 65536) -> bytes:
        return b""


def commands() -> dict[str, str]:
    return {
        "echo ok": "echo ok",
        "sha256sum of the model": f"sha256sum {TMP}/m.tflite 2>/dev/null",
        "mkdir -p": f"mkdir -p {TMP}/harness/abc",
        "thermal zones": ZONES_COMMAND,
        "device facts (batched)": BATCHED_FACTS_COMMAND,
        "lease: date +%s": "date +%s",
    }


class Emulator:
    """The emulated shell as a virtual phone runs it: in process, on an event loop."""

    def __init__(self, folder: Path, model: Path) -> None:
        self.loop = asyncio.new_event_loop()
        log = logging.getLogger("spike")
        log.addHandler(logging.NullHandler())
        log.propagate = False
        self.device = VirtualDevice(load_profile(PROFILE), folder, None, log)
        (folder / TMP.lstrip("/") / "m.tflite").write_bytes(model.read_bytes())

    def run(self, command: str) -> tuple[int, bytes]:
        async def go() -> tuple[int, bytes]:
            out = BufferSink()
            session = Session(self.device)
            try:
                code = await session.run_script(command, ShellIO(_NoInput(), out, out))
            finally:
                session.close()
            return code, bytes(out.data)

        return self.loop.run_until_complete(go())


def timed_ms(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return (time.perf_counter() - started) * 1000.0


# --- (c) power sampler --------------------------------------------------------------


def bounded_sampler(ticks: int, interval_s: float, no_cat: bool = False, builtin_print: bool = False) -> str:
    """power.stream_command's loop, for `ticks` samples (a for loop: the emulator has no arithmetic)."""
    loop = stream_command(interval_s).replace("while true;", f"for i in {' '.join(['x'] * ticks)};")
    if no_cat:
        loop = re.sub(r"\$\(cat (\$b/\w+) 2>/dev/null\)", r"$(<\1)", loop)
    if builtin_print:
        # mksh's print builtin (every Android 6+ shell is mksh): no fork for the sample line either.
        sample = (
            'print -r -- "POWER_SUPPLY_STATUS=$(<$b/status)"; print -r -- "POWER_SUPPLY_CURRENT_NOW=$(<$b/current_now)"; '
            'print -r -- "POWER_SUPPLY_VOLTAGE_NOW=$(<$b/voltage_now)"; print POWER_SAMPLE_END'
        )
        loop = (
            f"b=/sys/class/power_supply/battery; for i in {' '.join(['x'] * ticks)}; do "
            f"{{ {sample}; }} 2>/dev/null; sleep {interval_s:g} || sleep 1; done"
        )
    return loop


def sandbox_cpu_s(init_pid: int) -> float:
    """CPU seconds of the sandbox's live processes and of the children they reaped (the sandbox's own /proc)."""
    proc = f"/proc/{init_pid}/root/proc"
    total = 0
    for name in os.listdir(proc):
        if not name.isdigit():
            continue
        try:
            with open(f"{proc}/{name}/stat", "rb") as f:
                raw = f.read()
        except OSError:
            continue
        fields = raw[raw.rindex(b")") + 2 :].split()
        total += int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])
    return total / os.sysconf("SC_CLK_TCK")


def children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--num-runs", type=int, default=400)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--command-reps", type=int, default=30)
    parser.add_argument("--sampler-s", type=float, default=5.0)
    parser.add_argument("--skip-sweep", action="store_true", help="do not run bench/sweep_overhead.py")
    args = parser.parse_args()
    check_available()
    model = sample_model_path()
    work = Path(tempfile.mkdtemp(prefix="sandbox-spike-"))
    runner = build_runner(work / "runner")
    phones = {
        "sandbox, generated cpu tree": Phone(work / "gen", False),
        "sandbox, host cpu tree": Phone(work / "real", True),
    }
    try:
        for phone in phones.values():
            phone.push(runner, "runner")
            phone.push(model, "m.tflite")
        report: list[str] = [f"model: {model.name} ({model.stat().st_size / 1e6:.2f} MB); host CPUs: {os.cpu_count()}"]

        # What the runner sees.
        report.append("\nCPU view (what the runner and XNNPACK's cpuinfo read):")
        report.append("  outside:")
        report += [f"    {line}" for line in cpu_view_outside().splitlines()]
        report += [f"    opens {line}" for line in runner_cpu_reads(None, runner, model)]
        for label, phone in phones.items():
            report.append(f"  {label}:")
            report += [f"    {line}" for line in phone.sh(CPU_VIEW).stdout.splitlines()]
            report += [f"    opens {line}" for line in runner_cpu_reads(phone, runner, model)]

        # (a) fidelity, interleaved, rotating the order each round; a second "outside" is the A/A control.
        print("(a) fidelity rounds", flush=True)
        load_before = os.getloadavg()
        variants: list[tuple[str, Callable[[int], tuple[float, float]]]] = [
            ("outside", lambda t: run_outside(runner, model, t, args.num_runs)),
            *((label, lambda t, p=phone: run_inside(p, t, args.num_runs)) for label, phone in phones.items()),
            (CONTROL, lambda t: run_outside(runner, model, t, args.num_runs)),
        ]
        samples: dict[tuple[str, int], list[tuple[float, float]]] = {}
        for round_no in range(args.rounds):
            for threads in args.threads:
                shift = round_no % len(variants)
                for label, run in variants[shift:] + variants[:shift]:
                    samples.setdefault((label, threads), []).append(run(threads))
            print(
                f"  round {round_no + 1}: "
                + "  ".join(f"{k[0][:18]} x{k[1]} {v[-1][0]:.0f}us" for k, v in samples.items()),
                flush=True,
            )
        load_after = os.getloadavg()
        fidelity: dict[tuple[str, int], tuple[float, float]] = {}
        report.append(
            f"\n(a) runner on the same model, {args.rounds} interleaved rounds x {args.num_runs} runs; load average "
            f"{load_before[0]:.2f} before, {load_after[0]:.2f} after (other users of the machine count too):"
        )
        report.append(
            "  ratio = median over rounds of the variant / median over rounds outside; "
            "avg = `Inference (avg)`, p50 = the run's per-inference median"
        )
        for threads in args.threads:
            outside_avg = statistics.median(a for a, _ in samples[("outside", threads)])
            outside_p50 = statistics.median(m for _, m in samples[("outside", threads)])
            report.append(f"  threads={threads}: outside avg {outside_avg:.1f} us, p50 {outside_p50:.1f} us")
            for label in [*phones, CONTROL]:
                inside_avg = statistics.median(a for a, _ in samples[(label, threads)])
                inside_p50 = statistics.median(m for _, m in samples[(label, threads)])
                fidelity[(label, threads)] = (inside_avg / outside_avg, inside_p50 / outside_p50)
                report.append(
                    f"    {label:<28} avg {inside_avg:7.1f} us ratio {inside_avg / outside_avg:.3f}   "
                    f"p50 {inside_p50:7.1f} us ratio {inside_p50 / outside_p50:.3f}"
                )

        # (b) per command, interleaved.
        print("(b) per-command rounds", flush=True)
        emulator = Emulator(work / "emulated", model)
        phone = phones["sandbox, generated cpu tree"]
        timings: dict[tuple[str, str], list[float]] = {}
        for label, command in commands().items():
            real_out, emu_out = phone.sh(command), emulator.run(command)
            if real_out.returncode != emu_out[0]:
                report.append(f"  note: {label!r} exits {real_out.returncode} in the sandbox, {emu_out[0]} emulated")
        for rep in range(args.command_reps):
            for label, command in commands().items():
                pair = [("sandbox", lambda c=command: phone.sh(c)), ("emulated", lambda c=command: emulator.run(c))]
                for kind, fn in pair if rep % 2 == 0 else pair[::-1]:
                    timings.setdefault((label, kind), []).append(timed_ms(fn))
        report.append(f"\n(b) shell command, median ms of {args.command_reps} interleaved runs:")
        report.append(f"  {'command':<26} {'emulated':>9} {'sandbox':>9} {'difference':>11}")
        deltas = []
        for label in commands():
            emu = statistics.median(timings[(label, "emulated")])
            real = statistics.median(timings[(label, "sandbox")])
            deltas.append(real - emu)
            report.append(f"  {label:<26} {emu:>9.2f} {real:>9.2f} {real - emu:>+11.2f}")
        delta_ms = max(statistics.median(deltas), 0.0)
        report.append(f"  median difference per command: {delta_ms:+.2f} ms (the projection below uses it)")

        sweep_ratio: float | None = None
        measured = 0.0
        if not args.skip_sweep:
            print("(b) bench/sweep_overhead.py (with the emulator)", flush=True)
            out = subprocess.run(
                [sys.executable, "sweep_overhead.py"],
                cwd=REPO / "bench",
                env={**os.environ, "PYTHONPATH": str(REPO)},
                capture_output=True,
                text=True,
                check=False,
            ).stdout
            wall = re.search(r"sweep wall time\s+([0-9.]+) s", out)
            inside = re.search(r"inside the benchmark processes \(device log\)\s+([0-9.]+) s", out)
            calls = sum(
                int(n) for n in re.findall(r"(?:shell round trips|incl\. process\))\s+[0-9.]+ s\s+(\d+) call", out)
            )
            if wall and inside:
                measured = float(wall.group(1)) / float(inside.group(1))
                sweep_ratio = (float(wall.group(1)) + calls * delta_ms / 1000.0) / float(inside.group(1))
                report.append(
                    f"  bench/sweep_overhead.py (emulator): wall {wall.group(1)} s / inside {inside.group(1)} s = "
                    f"{measured:.3f}; {calls} shell round trips of the sweep thread"
                )
                report.append(
                    f"  projected with the sandbox: ({wall.group(1)} + {calls} x {delta_ms:.2f} ms) / {inside.group(1)} "
                    f"= {sweep_ratio:.3f}, of which the sandbox adds {sweep_ratio - measured:+.3f}"
                )
            else:
                report.append("  sweep_overhead.py gave no figures:\n" + out[-2000:])

        # (c) power sampler.
        print("(c) power sampler", flush=True)
        ticks = int(args.sampler_s / 0.1)
        sampler: dict[str, float] = {}
        for label, command in (
            ("sandbox mksh (cat, as power.py sends it)", bounded_sampler(ticks, 0.1)),
            ("sandbox mksh with $(<file) instead of cat", bounded_sampler(ticks, 0.1, no_cat=True)),
            ("sandbox mksh, $(<file) and print builtin", bounded_sampler(ticks, 0.1, no_cat=True, builtin_print=True)),
        ):
            before, started = children_cpu_s(), time.perf_counter()
            out = phone.sh(command)
            wall = time.perf_counter() - started
            sampler[label] = (children_cpu_s() - before) / wall
            if out.stdout.count("POWER_SAMPLE_END") != ticks:
                report.append(f"  note: {label}: {out.stdout.count('POWER_SAMPLE_END')} samples of {ticks}")
        before_cpu, started = time.process_time(), time.perf_counter()
        code, text = emulator.run(bounded_sampler(ticks, 0.1))
        if text.count(b"POWER_SAMPLE_END") != ticks:
            report.append(f"  note: emulated sampler exited {code} after {text.count(b'POWER_SAMPLE_END')} of {ticks}")
        sampler["emulated (in the phone's process)"] = (time.process_time() - before_cpu) / (
            time.perf_counter() - started
        )
        walks = []
        for _ in range(200):
            walks.append(timed_ms(lambda: sandbox_cpu_s(phone.sandbox.init_pid)))
        walk_ms = statistics.median(walks)
        report.append(f"\n(c) power sampler at 10 Hz for {args.sampler_s:g} s, CPU share of one core:")
        for label, share in sampler.items():
            report.append(f"  {label:<46} {share:6.1%}")
        report.append(
            f"  CPU-accounting walk of the sandbox's /proc: {walk_ms:.2f} ms each, at 2 Hz "
            f"{walk_ms * 2 / 1000:.2%} of a core"
        )
        # Stage 2 changes power.py's sample command to $(<file), which Android's mksh reads without a fork.
        sampler_cost = sampler["sandbox mksh with $(<file) instead of cat"] + walk_ms * 2 / 1000

        # Verdicts.
        report.append("\nTARGETS")
        ok = True
        for (label, threads), ratios in fidelity.items():
            control = fidelity[(CONTROL, threads)]
            for kind, ratio, control_ratio in zip(("avg", "p50"), ratios, control, strict=True):
                met = FIDELITY[0] <= ratio <= FIDELITY[1]
                control_met = FIDELITY[0] <= control_ratio <= FIDELITY[1]
                if label == "sandbox, generated cpu tree":
                    ok &= met
                verdict = "met" if met else "NOT met"
                if not control_met:
                    verdict += f" (inconclusive: the A/A control's own ratio is {control_ratio:.3f}, machine noise)"
                if label != CONTROL:
                    report.append(f"  (a) {label}, threads={threads}, {kind}: {ratio:.3f} in {FIDELITY}: {verdict}")
        if sweep_ratio is not None:
            met = sweep_ratio <= SWEEP_TARGET
            ok &= met
            report.append(
                f"  (b) projected sweep overhead {sweep_ratio:.3f} <= {SWEEP_TARGET}: {'met' if met else 'NOT met'}"
            )
        met = sampler_cost <= SAMPLER_TARGET
        ok &= met
        report.append(
            f"  (c) sampler ($(<file) form) + accounting {sampler_cost:.1%} of a core <= {SAMPLER_TARGET:.0%}: {'met' if met else 'NOT met'}"
        )
        print("\n".join(report))
        return 0 if ok else 1
    finally:
        for phone in phones.values():
            phone.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
