"""`harness run` and `harness results`: thin shells over sweep and store."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import sys
from pathlib import Path

import click

from harness.errors import UsageError
from harness.locations import DEFAULT_RESULTS


def _csv(kind: type, text: str, flag: str) -> tuple:
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
        raise UsageError(f"--sustained {text!r} is not a duration", "e.g. --sustained 90s, --sustained 10m, --sustained 1h")
    unit = match.group(2).lower() if match.group(2) else None
    return float(match.group(1)) * _UNIT_S[unit]


def _binaries(pairs: tuple[str, ...]) -> dict[str, tuple[Path, ...]]:
    """farm.toml's [binaries], with each ABI named by --binary replaced by the binaries given for it."""
    from harness.profiles import load_binaries

    binaries = load_binaries()
    given: dict[str, tuple[Path, ...]] = {}
    for pair in pairs:
        abi, sep, path = pair.partition("=")
        if not sep or not abi or not path:
            raise UsageError(f"--binary {pair!r} is not ABI=PATH", "e.g. --binary arm64-v8a=./android_aarch64_benchmark_model")
        given[abi] = (*given.get(abi, ()), Path(path).resolve())
    return binaries | given


@click.command("run")
@click.option("--devices", "selector", default="all", show_default=True, help="all | SERIAL,.. | tier:NAME | model:GLOB")
@click.option("--models", "model_paths", multiple=True, type=click.Path(path_type=Path), help=".tflite file or folder (repeatable).")
@click.option("--delegates", default="cpu,xnnpack", show_default=True, help="Any of cpu,xnnpack,gpu,nnapi.")
@click.option("--threads", default="1,2,4", show_default=True)
@click.option("--repetitions", default=3, show_default=True, type=click.IntRange(1),
              help="Rounds of every configuration, interleaved; fewer than 3 make no statistical claim.")
@click.option("--until-decided", is_flag=True,
              help="After the planned rounds, add repetitions where the order against the best is undecided.")
@click.option("--max-repetitions", default=10, show_default=True, type=click.IntRange(1),
              help="With --until-decided: the most repetitions of one configuration on one phone.")
@click.option("--min-effect", default=0.05, show_default=True, type=click.FloatRange(0, 1),
              help="With --until-decided: the relative difference that must be resolved (as policy derive's).")
@click.option("--num-runs", default=50, show_default=True, type=click.IntRange(1))
@click.option("--warmup-runs", default=1, show_default=True, type=click.IntRange(0))
@click.option("--warmup-min-secs", type=click.FloatRange(0), help="Warmup loop duration (the tool's default: 0.5 s).")
@click.option("--min-secs", default=1.0, show_default=True, type=click.FloatRange(0))
@click.option("--case-timeout", "case_timeout_s", default=300.0, show_default=True, type=click.FloatRange(1), help="Wall-clock limit per case, seconds.")
@click.option("--pause", "pause_s", default=0.0, show_default=True, type=click.FloatRange(0), help="Pause between cases, seconds.")
@click.option("--thermal-threshold", "thermal_threshold_c", default=45.0, show_default=True, help="Wait before a case until the hottest zone is below this (°C).")
@click.option("--thermal-max-wait", "thermal_max_wait_s", default=60.0, show_default=True)
@click.option("--seed", default=0, show_default=True, help="Seed of the per-device case order.")
@click.option("--no-power", is_flag=True, help="Do not sample the fuel gauge.")
@click.option("--no-numerics", is_flag=True,
              help="Do not feed fixed inputs nor compare the outputs with the host's (rows say not_checked).")
@click.option("--numerics-samples", default=0, show_default=True, type=click.IntRange(0),
              help="More one-iteration runs per configuration (not per repetition), each on other inputs, "
                   "for a wider numerics check.")
@click.option("--sustained", "sustained", default=None, metavar="DURATION",
              help="Run each case for DURATION (90s, 10m, 1h) as consecutive windows with no cool-down between them.")
@click.option("--fps", default=None, type=click.FloatRange(0, min_open=True),
              help="Inferences per second (the tool's --run_frequency), e.g. a camera's 15; its frame deadline is 1/fps.")
@click.option("--window", "window_s", default=10.0, show_default=True, type=click.FloatRange(1),
              help="With --sustained: seconds per window (one benchmark process and one row each).")
@click.option("--binary", "binary_pairs", multiple=True,
              help="ABI=PATH of a benchmark_model, classic or LiteRT 2.x (repeatable; replaces farm.toml's for that ABI).")
@click.option("--results", "results_dir", default=DEFAULT_RESULTS, show_default=True, type=click.Path(path_type=Path))
@click.option("--resume", "resume", default=None, help="RUN_ID or 'latest': run only the cases that run lacks.")
@click.option("--wait-for-lease", "wait_for_lease", is_flag=False, flag_value="forever", default=None,
              metavar="[SECONDS]",
              help="Wait for phones another sweep has leased (at most SECONDS; no value: as long as it takes) "
                   "instead of skipping their cases.")
@click.option("--lease-ttl", "lease_ttl_s", type=click.FloatRange(2), default=None,
              help="Seconds a phone's lease lasts unless renewed (every TTL/4) [default: $HARNESS_LEASE_TTL_S or 120].")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary at the end.")
def run_command(selector, model_paths, delegates, threads, repetitions, until_decided, max_repetitions, min_effect,
                num_runs, warmup_runs, warmup_min_secs, min_secs, case_timeout_s, pause_s, thermal_threshold_c, thermal_max_wait_s,
                seed, no_power, no_numerics, numerics_samples, sustained, fps, window_s, binary_pairs, results_dir, resume,
                wait_for_lease, lease_ttl_s, as_json) -> None:
    """Benchmark every model x delegate x thread count on the selected devices."""
    from harness import sweep
    from harness.discovery import discover, select
    from harness.lease import default_ttl_s
    from harness.profiles import load_farm, load_tiers
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
            raise UsageError("--until-decided adds burst repetitions; a sustained sweep runs its windows as planned",
                             "drop one of --sustained and --until-decided")
        params = sweep.SweepParams(
            delegates=chosen, threads=_csv(int, threads, "--threads"), repetitions=repetitions,
            num_runs=num_runs, warmup_runs=warmup_runs, warmup_min_secs=warmup_min_secs, min_secs=min_secs,
            case_timeout_s=case_timeout_s,
            thermal_threshold_c=thermal_threshold_c, thermal_max_wait_s=thermal_max_wait_s,
            pause_s=pause_s, seed=seed, measure_power=not no_power, check_numerics=not no_numerics,
            numerics_samples=numerics_samples, until_decided=until_decided,
            max_repetitions=max_repetitions, min_effect=min_effect,
            sustained_s=_duration_s(sustained) if sustained else None, window_s=window_s, fps=fps,
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
        devices, models, params, binaries, store, argv=sys.argv, resume_run_id=resume_id, run_id=run_id,
        lease_policy=lease_policy,
    )
    for serial, reason in summary.leased.items():
        click.echo(f"warning: skipped {serial}: {reason}; 'harness run --resume {summary.run_id}' runs its cases "
                   "later", err=True)
    if as_json:
        click.echo(sweep.summary_json(summary))
        return
    click.echo(
        f"run {summary.run_id}: {summary.cases_total} case(s) on {summary.devices} device(s) in {summary.wall_s:.1f} s, "
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
        raise UsageError(f"--wait-for-lease {value!r} is not a number of seconds",
                         "e.g. --wait-for-lease 600, or --wait-for-lease alone to wait as long as it takes") from None
    if seconds < 0:
        raise UsageError(f"--wait-for-lease {value!r} is negative", "give 0 or more seconds")
    return seconds


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


@click.group("results")
def results_group() -> None:
    """Stored runs: list them, show one, upgrade older files."""


@results_group.command("ls")
@click.option("--results", "results_dir", default=DEFAULT_RESULTS, show_default=True, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True)
def results_ls(results_dir: Path, as_json: bool) -> None:
    from harness.store import ResultsStore

    runs = ResultsStore(results_dir).list_runs()
    if as_json:
        click.echo(json.dumps([
            {**run.__dict__, "started_at": _iso(run.started_at), "ended_at": _iso(run.ended_at), "devices": list(run.devices)}
            for run in runs
        ], indent=2))
        return
    if not runs:
        click.echo(f"no runs in {results_dir}")
    for run in runs:
        click.echo(f"{run.run_id}\tstarted {_iso(run.started_at)}\tdevices {len(run.devices)}\tcases {run.cases}\tok {run.ok}\tfailed {run.failed}")


@results_group.command("show")
@click.argument("run_id")
@click.option("--results", "results_dir", default=DEFAULT_RESULTS, show_default=True, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per row.")
def results_show(run_id: str, results_dir: Path, as_json: bool) -> None:
    from harness.store import ResultsStore

    store = ResultsStore(results_dir)
    store.read_run_manifest(run_id)  # a clear error for an unknown run
    rows = store.read([run_id])
    columns = ["serial", "device_kind", "tier", "model_name", "variant", "delegate", "num_threads", "repetition",
               "status", "inference_avg_us", "inference_p50_us", "memory_overall_mb", "avg_power_mw", "numerics_status",
               "error_message"]
    rows = rows.sort_values(["serial", "model_name", "variant", "delegate", "num_threads", "repetition"])
    if as_json:
        click.echo(rows.to_json(orient="records", date_format="iso", indent=2))
        return
    click.echo(rows[columns].to_string(index=False, max_colwidth=60))
    from harness.ranking import noise_floors, stats_of
    from harness.stats import TieTest

    min_effect = TieTest().min_effect
    click.echo(f"\nnoise floor per device (run-to-run variation of repeated configurations; rankings resolve "
               f"{min_effect:.0%}):")
    for serial, noise in noise_floors(stats_of(rows)).items():
        if noise.cv is None:
            click.echo(f"  {serial}: unknown (no configuration with 2 or more repetitions)")
            continue
        tail = "" if noise.p95_over_p50 is None else f", p95/p50 x{noise.p95_over_p50:.2f}"
        warning = noise.warning(min_effect)
        click.echo(f"  {serial}: CV {noise.cv:.1%}, max/min x{noise.max_over_min:.2f}{tail} over "
                   f"{noise.configurations} configuration(s)" + (f": {warning}" if warning else ""))
    wrong = rows[rows["numerics_status"] == "mismatch"]
    if len(wrong):
        click.echo(f"\nwrong outputs (numerics mismatch) in {len(wrong)} row(s):")
        for row in wrong.drop_duplicates(["serial", "model_sha256", "delegate", "num_threads"]).itertuples():
            click.echo(f"  {row.serial} {row.model_name} {row.variant}/{row.delegate}/x{row.num_threads}: "
                       f"{row.numerics_reason}")
    from harness.sustained import describe, summarize

    summaries = summarize(rows, min_effect)
    if summaries:
        click.echo("\nsustained cases (burst = first window's p50, sustained = median of the last third's):")
        for summary in summaries:
            click.echo(f"  {describe(summary)}")


@results_group.command("upgrade")
@click.option("--results", "results_dir", default=DEFAULT_RESULTS, show_default=True, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True)
def results_upgrade(results_dir: Path, as_json: bool) -> None:
    """Rewrite result files of an older schema as the current one, in place (each atomically).

    Reading upgrades older files anyway; this saves the work on every later read."""
    from harness.records import SCHEMA_VERSION
    from harness.store import ResultsStore

    report = ResultsStore(results_dir).upgrade()
    if as_json:
        click.echo(json.dumps({"schema_version": SCHEMA_VERSION, "upgraded": [str(p) for p in report.upgraded],
                               "skipped": [{"path": str(s.path), "reason": s.reason} for s in report.skipped]},
                              indent=2))
        return
    click.echo(f"upgraded {len(report.upgraded)} file(s) in {results_dir} to results schema v{SCHEMA_VERSION}")
    for skipped in report.skipped:
        click.echo(f"warning: skipped {skipped.path}: {skipped.reason}", err=True)


def _iso(value) -> str | None:
    return value.isoformat() if value is not None else None


@click.command("demo")
@click.option("--results", "results_dir", default=DEFAULT_RESULTS, show_default=True, type=click.Path(path_type=Path))
def demo_command(results_dir: Path) -> None:
    """The whole pipeline on the virtual farm (started and stopped by this command)."""
    from harness.demo import best_per_device, run_demo, write_policies
    from harness.store import ResultsStore

    say = lambda message: click.echo(message, err=True)  # noqa: E731 - progress goes to stderr
    summary = run_demo(results_dir, Path(".cache"), say)
    click.echo(
        f"run {summary.run_id}: {summary.cases_total} cases on {summary.devices} devices in {summary.wall_s:.0f} s, "
        f"{summary.cases_ok} ok, statuses {summary.statuses}"
    )
    for line in best_per_device(ResultsStore(results_dir), summary.run_id):
        click.echo(line)
    click.echo(f"every row: harness results show {summary.run_id} --results {results_dir}")
    for line in write_policies(results_dir, summary.run_id):
        click.echo(line)
    # The console script next to this interpreter, so the line works from a fresh clone's .venv too.
    harness_path = Path(sys.executable).parent / "harness"
    program = os.path.relpath(harness_path) if harness_path.exists() else "harness"
    command = shlex.join([program, "dashboard", "--results", str(results_dir)])
    click.echo(f"open the dashboard on these results: {command}")
