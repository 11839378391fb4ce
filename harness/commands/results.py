"""`harness results ls|show|upgrade|compact`: the stored runs."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import click

from harness.locations import DEFAULT_RESULTS


@click.group("results")
def results_group() -> None:
    """Stored runs: list them, show one, upgrade older files, compact a run's files."""


@results_group.command("ls")
@click.option("--results", "results_dir", default=DEFAULT_RESULTS, show_default=True, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True)
def results_ls(results_dir: Path, as_json: bool) -> None:
    from harness.store import ResultsStore

    runs = ResultsStore(results_dir).list_runs()
    if as_json:
        click.echo(
            json.dumps(
                [
                    {
                        **run.__dict__,
                        "started_at": _iso(run.started_at),
                        "ended_at": _iso(run.ended_at),
                        "devices": list(run.devices),
                    }
                    for run in runs
                ],
                indent=2,
            )
        )
        return
    if not runs:
        click.echo(f"no runs in {results_dir}")
    for run in runs:
        click.echo(
            f"{run.run_id}\tstarted {_iso(run.started_at)}\tdevices {len(run.devices)}\tcases {run.cases}\tok "
            f"{run.ok}\tfailed {run.failed}"
        )


@results_group.command("show")
@click.argument("run_id")
@click.option("--results", "results_dir", default=DEFAULT_RESULTS, show_default=True, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per row.")
def results_show(run_id: str, results_dir: Path, as_json: bool) -> None:
    from harness.store import ResultsStore

    store = ResultsStore(results_dir)
    store.read_run_manifest(run_id)  # a clear error for an unknown run
    rows = store.read([run_id])
    columns = [
        "serial",
        "device_kind",
        "tier",
        "model_name",
        "variant",
        "delegate",
        "num_threads",
        "repetition",
        "status",
        "inference_avg_us",
        "inference_p50_us",
        "memory_overall_mb",
        "avg_power_mw",
        "numerics_status",
        "error_message",
    ]
    rows = rows.sort_values(["serial", "model_name", "variant", "delegate", "num_threads", "repetition"])
    if as_json:
        click.echo(rows.to_json(orient="records", date_format="iso", indent=2))
        return
    click.echo(rows[columns].to_string(index=False, max_colwidth=60))
    from harness.ranking import noise_floors, stats_of
    from harness.stats import TieTest

    min_effect = TieTest().min_effect
    click.echo(
        f"\nnoise floor per device (run-to-run variation of repeated configurations; rankings resolve "
        f"{min_effect:.0%}):"
    )
    for serial, noise in noise_floors(stats_of(rows)).items():
        if noise.cv is None:
            click.echo(f"  {serial}: unknown (no configuration with 2 or more repetitions)")
            continue
        tail = "" if noise.p95_over_p50 is None else f", p95/p50 x{noise.p95_over_p50:.2f}"
        warning = noise.warning(min_effect)
        click.echo(
            f"  {serial}: CV {noise.cv:.1%}, max/min x{noise.max_over_min:.2f}{tail} over "
            f"{noise.configurations} configuration(s)" + (f": {warning}" if warning else "")
        )
    wrong = rows[rows["numerics_status"] == "mismatch"]
    if len(wrong):
        click.echo(f"\nwrong outputs (numerics mismatch) in {len(wrong)} row(s):")
        for row in wrong.drop_duplicates(["serial", "model_sha256", "delegate", "num_threads"]).itertuples():
            click.echo(
                f"  {row.serial} {row.model_name} {row.variant}/{row.delegate}/x{row.num_threads}: "
                f"{row.numerics_reason}"
            )
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
        click.echo(
            json.dumps(
                {
                    "schema_version": SCHEMA_VERSION,
                    "upgraded": [str(p) for p in report.upgraded],
                    "skipped": [{"path": str(s.path), "reason": s.reason} for s in report.skipped],
                },
                indent=2,
            )
        )
        return
    click.echo(f"upgraded {len(report.upgraded)} file(s) in {results_dir} to results schema v{SCHEMA_VERSION}")
    for skipped in report.skipped:
        click.echo(f"warning: skipped {skipped.path}: {skipped.reason}", err=True)


@results_group.command("compact")
@click.argument("run_id", required=False)
@click.option("--results", "results_dir", default=DEFAULT_RESULTS, show_default=True, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True)
def results_compact(run_id: str | None, results_dir: Path, as_json: bool) -> None:
    """Merge a run's per-case files into one file per device and model (every run without RUN_ID).

    A sweep does this when it ends; this is for runs that crashed, or a compaction that was interrupted
    (it finishes it). Crash-safe and idempotent."""
    from harness.store import ResultsStore, RowFilter

    store = ResultsStore(results_dir)
    if run_id is not None and not store.files(RowFilter(run_ids=(run_id,))):
        store.read_run_manifest(run_id)  # a clear error for an unknown run (a run without rows has nothing to do)
    report = store.compact(run_id)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "merged": len(report.merged),
                    "written": [str(p) for p in report.written],
                    "removed_leftovers": [str(p) for p in report.removed_leftovers],
                    "rows": report.rows,
                    "skipped": [{"path": str(s.path), "reason": s.reason} for s in report.skipped],
                },
                indent=2,
            )
        )
        return
    left = len(report.removed_leftovers)
    tail = f"; removed {left} left by an interrupted compaction" if left else ""
    click.echo(f"compacted {len(report.merged)} file(s) into {len(report.written)} ({report.rows} rows){tail}")
    for skipped in report.skipped:
        click.echo(f"warning: left {skipped.path} as it is, unreadable: {skipped.reason}", err=True)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None
