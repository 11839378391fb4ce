"""Human-readable tables for the CLI (rich); JSON output never goes through here."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console
from rich.table import Table

from harness.records import BenchmarkRun


def _us_as_ms(value: float | None) -> str:
    return "" if value is None else f"{value / 1000:.3f}"


def _plain(value: object) -> str:
    return "" if value is None else str(value)


def print_runs(runs: Sequence[BenchmarkRun], console: Console | None = None) -> None:
    console = console or Console()
    if not runs:
        console.print("no benchmark run found in the input")
        return
    table = Table(title=f"{len(runs)} run(s)")
    for header in (
        "#",
        "delegate",
        "threads",
        "init ms",
        "first ms",
        "warmup ms",
        "avg ms",
        "p50 ms",
        "std ms",
        "inferences",
        "mem MB",
        "status",
    ):
        table.add_column(header, justify="left" if header in ("delegate", "status") else "right")
    for index, run in enumerate(runs, 1):
        delegate = run.delegate or ""
        if run.delegate_applied is False:
            delegate += " (not applied)"
        memory = run.memory_overall_mb if run.memory_overall_mb is not None else run.memory_peak_mb
        table.add_row(
            str(index),
            delegate + (f" [{run.perf_option}]" if run.perf_option else ""),
            _plain(run.num_threads),
            _us_as_ms(run.init_us),
            _us_as_ms(run.first_inference_us),
            _us_as_ms(run.warmup_avg_us),
            _us_as_ms(run.inference_avg_us),
            _us_as_ms(run.inference_p50_us),
            _us_as_ms(run.inference_std_us),
            _plain(run.inference_count),
            _plain(memory),
            "ok" if run.ok else f"[red]{run.error_type.value if run.error_type else 'error'}[/red]",
        )
    console.print(table)
    # Error texts are long; a column would squeeze the numbers out of view.
    for index, run in enumerate(runs, 1):
        if not run.ok:
            console.print(f"run {index}: {run.error}", soft_wrap=True, highlight=False)
