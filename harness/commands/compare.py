"""`harness compare BASE_RUN NEW_RUN`: the dashboard's Compare runs page as a CI gate (harness.compare)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from harness.locations import DEFAULT_RESULTS

# Exit status: 0 passed, 1 a regression or a newly failing case, 2 bad input (HarnessError).
EXIT_FAILED = 1


@click.command("compare")
@click.argument("base_run")
@click.argument("new_run")
@click.option("--results", "results_dir", default=DEFAULT_RESULTS, show_default=True, type=click.Path(path_type=Path))
@click.option("--model", "models", multiple=True, help="Only this model (repeatable); default: every model.")
@click.option(
    "--max-regression",
    "max_regression",
    default="5%",
    show_default=True,
    help="A change beyond this (5% or 0.05) fails when the repetitions show it.",
)
@click.option(
    "--alpha",
    type=float,
    default=0.05,
    show_default=True,
    help="The intervals are at 1 - 2*alpha (as policy derive's).",
)
@click.option("--allow-mixed-kinds", is_flag=True, help="Compare runs of physical and virtual devices anyway.")
@click.option("--allow-mixed-binaries", is_flag=True, help="Compare runs of different benchmark binaries anyway.")
@click.option("--junit", "junit_path", type=click.Path(path_type=Path), help="Also write a JUnit XML report here.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_context
def compare_command(
    ctx: click.Context,
    base_run: str,
    new_run: str,
    results_dir: Path,
    models: tuple[str, ...],
    max_regression: str,
    alpha: float,
    allow_mixed_kinds: bool,
    allow_mixed_binaries: bool,
    junit_path: Path | None,
    as_json: bool,
) -> None:
    """Every device and configuration of NEW_RUN against BASE_RUN: regressions (shown slower by more than
    --max-regression), suspicious (past it by the medians, not shown), improvements, newly failing.

    Exit status 1 on a regression or a newly failing case, 0 otherwise, 2 on bad input.
    """
    from harness.compare import gate, parse_threshold
    from harness.policy import load_rows
    from harness.ranking import MixingAllowed, stats_of

    # One model asked for: only its files are read.
    rows = load_rows(results_dir, (base_run, new_run), models[0] if len(models) == 1 else None)
    result = gate(
        stats_of(rows, by_run=True),
        base_run,
        new_run,
        parse_threshold(max_regression),
        alpha,
        MixingAllowed(allow_mixed_kinds, allow_mixed_binaries),
        models,
    )
    if junit_path is not None:
        result.write_junit(junit_path)
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2, default=str))
    else:
        for line in result.lines():
            click.echo(line)
    if not result.passed:
        ctx.exit(EXIT_FAILED)
