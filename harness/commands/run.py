"""`harness run`: a thin shell over the sweep."""

from __future__ import annotations

import re
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import TypeVar

import click

from harness.errors import UsageError
from harness.locations import DEFAULT_RESULTS

_T = TypeVar("_T")


def _csv(kind: Callable[[str], _T], text: str, flag: str) -> tuple[_T, ...]:
    try:
        values = tuple(kind(part.strip()) for part in text.split(",") if part.strip())
    except ValueError:
        raise UsageError(f"{flag} {text!r} is not a comma-separated list", f"e.g. {flag} 1,2,4") from None
    if not values:
        raise UsageError(f"{flag} is empty", f"give at least one value to {flag}")
    return values


_DURATION = re.compile(r"([0-9]+(?:\.[0-9]*)?)\s*(s|m|min|h)?", re.IGNORECASE)
_UNIT_S = {None: 1.0, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}


def _duration_s(text: str) -> float:
    """'90', '90s', '10m', '1.5h' -> seconds."""
    match = _DURATION.fullmatch(text.strip())
    if not match or float(match.group(1)) <= 0:
        raise UsageError(
            f"--sustained {text!r} is not a duration", "e.g. --sustained 90s, --sustained 10m, --sustained 1h"
        )
    unit = match.group(2).lower() if match.group(2) else None
    return float(match.group(1)) * _UNIT_S[unit]


def _binaries(pairs: tuple[str, ...]) -> dict[str, tuple[Path, ...]]:
    """farm.toml's [binaries], with each ABI named by --binary replaced by the binaries given for it."""
    from harness.phone.profiles import load_binaries

    binaries = load_binaries()
    given: dict[str, tuple[Path, ...]] = {}
    for pair in pairs:
        abi, sep, path = pair.partition("=")
        if not sep or not abi or not path:
            raise UsageError(
                f"--binary {pair!r} is not ABI=PATH", "e.g. --binary arm64-v8a=./android_aarch64_benchmark_model"
            )
        given[abi] = (*given.get(abi, ()), Path(path).resolve())
    return binaries | given


@click.command("run")
@click.option(
    "--devices", "selector", default="all", show_default=True, help="all | SERIAL,.. | tier:NAME | model:GLOB"
)
@click.option(
    "--models",
    "model_paths",
    multiple=True,
    type=click.Path(path_type=Path),
    help=".tflite file or folder (repeatable).",
)
@click.option("--delegates", default="cpu,xnnpack", show_default=True, help="Any of cpu,xnnpack,gpu,nnapi.")
@click.option("--threads", default="1,2,4", show_default=True)
@click.option(
    "--repetitions",
    default=3,
    show_default=True,
    type=click.IntRange(1),
    help="Rounds of every configuration, interleaved; fewer than 3 make no statistical claim.",
)
@click.option(
    "--until-decided",
    is_flag=True,
    help="After the planned rounds, add repetitions where the order against the best is undecided.",
)
@click.option(
    "--max-repetitions",
    default=10,
    show_default=True,
    type=click.IntRange(1),
    help="With --until-decided: the most repetitions of one configuration on one phone.",
)
@click.option(
    "--min-effect",
    default=0.05,
    show_default=True,
    type=click.FloatRange(0, 1),
    help="With --until-decided: the relative difference that must be resolved (as policy derive's).",
)
@click.option("--num-runs", default=50, show_default=True, type=click.IntRange(1))
@click.option("--warmup-runs", default=1, show_default=True, type=click.IntRange(0))
@click.option("--warmup-min-secs", type=click.FloatRange(0), help="Warmup loop duration (the tool's default: 0.5 s).")
@click.option("--min-secs", default=1.0, show_default=True, type=click.FloatRange(0))
@click.option(
    "--case-timeout",
    "case_timeout_s",
    default=300.0,
    show_default=True,
    type=click.FloatRange(1),
    help="Wall-clock limit per case, seconds.",
)
@click.option(
    "--pause", "pause_s", default=0.0, show_default=True, type=click.FloatRange(0), help="Pause between cases, seconds."
)
@click.option(
    "--thermal-threshold",
    "thermal_threshold_c",
    default=45.0,
    show_default=True,
    help="Wait before a case until the hottest zone is below this (°C).",
)
@click.option("--thermal-max-wait", "thermal_max_wait_s", default=60.0, show_default=True)
@click.option("--seed", default=0, show_default=True, help="Seed of the per-device case order.")
@click.option("--no-power", is_flag=True, help="Do not sample the fuel gauge.")
@click.option(
    "--no-numerics",
    is_flag=True,
    help="Do not feed fixed inputs nor compare the outputs with the host's (rows say not_checked).",
)
@click.option(
    "--numerics-samples",
    default=0,
    show_default=True,
    type=click.IntRange(0),
    help="More one-iteration runs per configuration (not per repetition), each on other inputs, "
    "for a wider numerics check.",
)
@click.option(
    "--sustained",
    "sustained",
    default=None,
    metavar="DURATION",
    help="Run each case for DURATION (90s, 10m, 1h) as consecutive windows with no cool-down between them.",
)
@click.option(
    "--fps",
    default=None,
    type=click.FloatRange(0, min_open=True),
    help="Inferences per second (the tool's --run_frequency), e.g. a camera's 15; its frame deadline is 1/fps.",
)
@click.option(
    "--window",
    "window_s",
    default=10.0,
    show_default=True,
    type=click.FloatRange(1),
    help="With --sustained: seconds per window (one benchmark process and one row each).",
)
@click.option(
    "--binary",
    "binary_pairs",
    multiple=True,
    help="ABI=PATH of a benchmark_model, classic or LiteRT 2.x (repeatable; replaces farm.toml's for that ABI).",
)
@click.option("--results", "results_dir", default=DEFAULT_RESULTS, show_default=True, type=click.Path(path_type=Path))
@click.option("--resume", "resume", default=None, help="RUN_ID or 'latest': run only the cases that run lacks.")
@click.option(
    "--wait-for-lease",
    "wait_for_lease",
    is_flag=False,
    flag_value="forever",
    default=None,
    metavar="[SECONDS]",
    help="Wait for phones another sweep has leased (at most SECONDS; no value: as long as it takes) "
    "instead of skipping their cases.",
)
@click.option(
    "--lease-ttl",
    "lease_ttl_s",
    type=click.FloatRange(2),
    default=None,
    help="Seconds a phone's lease lasts unless renewed (every TTL/4) [default: $HARNESS_LEASE_TTL_S or 120].",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary at the end.")
def run_command(
    selector: str,
    model_paths: tuple[Path, ...],
    delegates: str,
    threads: str,
    repetitions: int,
    until_decided: bool,
    max_repetitions: int,
    min_effect: float,
    num_runs: int,
    warmup_runs: int,
    warmup_min_secs: float | None,
    min_secs: float,
    case_timeout_s: float,
    pause_s: float,
    thermal_threshold_c: float,
    thermal_max_wait_s: float,
    seed: int,
    no_power: bool,
    no_numerics: bool,
    numerics_samples: int,
    sustained: str | None,
    fps: float | None,
    window_s: float,
    binary_pairs: tuple[str, ...],
    results_dir: Path,
    resume: str | None,
    wait_for_lease: str | None,
    lease_ttl_s: float | None,
    as_json: bool,
) -> None:
    """Benchmark every model x delegate x thread count on the selected devices."""
    from harness import sweep
    from harness.phone.discovery import discover, select
    from harness.phone.lease import default_ttl_s
    from harness.phone.profiles import load_farm, load_tiers
    from harness.records import Delegate
    from harness.store import ResultsStore

    lease_policy = sweep.LeasePolicy(wait_s=_wait_s(wait_for_lease), ttl_s=lease_ttl_s or default_ttl_s())
    store = ResultsStore(results_dir)
    resume_id = None
    if resume:
        runs = store.list_runs()
        if not runs:
            raise UsageError(f"there is no run to resume in {results_dir}", "start one with 'harness run' first")
        resume_id = runs[-1].run_id if resume == "latest" else resume
        previous = store.read_run_manifest(resume_id)
        params, models = sweep.params_from_manifest(previous)
        selector = ",".join(device["key"] for device in previous["devices"])
    else:
        if not model_paths:
            raise UsageError("no model given", "pass --models FILE.tflite or --models DIR")
        known = {delegate.value for delegate in Delegate} - {Delegate.HEXAGON.value}
        chosen = _csv(str, delegates, "--delegates")
        unknown = sorted(set(chosen) - known)
        if unknown:
            raise UsageError(f"unknown delegate(s) {unknown}", f"use any of {sorted(known)}")
        if sustained and until_decided:
            raise UsageError(
                "--until-decided adds burst repetitions; a sustained sweep runs its windows as planned",
                "drop one of --sustained and --until-decided",
            )
        params = sweep.SweepParams(
            delegates=chosen,
            threads=_csv(int, threads, "--threads"),
            repetitions=repetitions,
            num_runs=num_runs,
            warmup_runs=warmup_runs,
            warmup_min_secs=warmup_min_secs,
            min_secs=min_secs,
            case_timeout_s=case_timeout_s,
            thermal_threshold_c=thermal_threshold_c,
            thermal_max_wait_s=thermal_max_wait_s,
            pause_s=pause_s,
            seed=seed,
            measure_power=not no_power,
            check_numerics=not no_numerics,
            numerics_samples=numerics_samples,
            until_decided=until_decided,
            max_repetitions=max_repetitions,
            min_effect=min_effect,
            sustained_s=_duration_s(sustained) if sustained else None,
            window_s=window_s,
            fps=fps,
        )
        models = sweep.collect_models(model_paths)
    found = discover(load_farm(), load_tiers())
    for warning in found.warnings():
        click.echo(f"warning: {warning}", err=True)
    devices = select(found.entries, selector)
    run_id = resume_id or sweep.new_run_id()
    binaries = sweep.build_binaries(_binaries(binary_pairs), store.root / "runs" / run_id)
    # A CI job cancelled with SIGTERM stops like Ctrl-C: the cases in flight are stored, the leases released.
    signal.signal(signal.SIGTERM, _interrupt)
    summary = sweep.run_sweep(
        devices,
        models,
        params,
        binaries,
        store,
        argv=sys.argv,
        resume_run_id=resume_id,
        run_id=run_id,
        lease_policy=lease_policy,
    )
    for serial, reason in summary.leased.items():
        click.echo(
            f"warning: skipped {serial}: {reason}; 'harness run --resume {summary.run_id}' runs its cases later",
            err=True,
        )
    if as_json:
        click.echo(sweep.summary_json(summary))
        return
    click.echo(
        f"run {summary.run_id}: {summary.cases_total} case(s) on {summary.devices} device(s) in "
        f"{summary.wall_s:.1f} s, "
        f"{summary.cases_ok} ok, statuses {summary.statuses}, {summary.bytes_pushed} bytes pushed; "
        f"results in {summary.results_dir}"
    )


def _wait_s(value: str | None) -> float | None:
    """--wait-for-lease: absent 0 (skip leased phones), no value None (wait as long as it takes), else seconds."""
    if value is None:
        return 0.0
    if value == "forever":
        return None
    try:
        seconds = float(value)
    except ValueError:
        raise UsageError(
            f"--wait-for-lease {value!r} is not a number of seconds",
            "e.g. --wait-for-lease 600, or --wait-for-lease alone to wait as long as it takes",
        ) from None
    if seconds < 0:
        raise UsageError(f"--wait-for-lease {value!r} is negative", "give 0 or more seconds")
    return seconds


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt
