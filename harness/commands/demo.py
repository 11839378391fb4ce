"""`harness demo`: the whole pipeline on the virtual farm."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

import click

from harness.locations import DEFAULT_RESULTS, user_state_dir


@click.command("demo")
@click.option("--results", "results_dir", default=DEFAULT_RESULTS, show_default=True, type=click.Path(path_type=Path))
@click.option(
    "--state-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Work folder for the example models and the demo's own farm "
    "(default: demo/ in the user's state folder, $HARNESS_STATE_DIR or ~/.local/state/tflite-farm).",
)
def demo_command(results_dir: Path, state_dir: Path | None) -> None:
    """The whole pipeline on the virtual farm (started and stopped by this command)."""
    from harness.convert import EXAMPLES_MODULES, require_convert_extra
    from harness.demo import DEMO_SUBDIR, best_per_device, run_demo, write_policies
    from harness.store import ResultsStore

    require_convert_extra("'harness demo'", EXAMPLES_MODULES)
    say = lambda message: click.echo(message, err=True)  # noqa: E731 - progress goes to stderr
    summary = run_demo(results_dir, state_dir or user_state_dir() / DEMO_SUBDIR, say)
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
