"""`harness parse-log`: any benchmark_model output, as records."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from harness.errors import InputFileError


def _read_log(path: str) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read()
    file = Path(path)
    if not file.is_file():
        raise InputFileError(f"no such file: {path}", "pass the path of a saved benchmark_model output")
    try:
        return file.read_bytes()
    except OSError as error:
        raise InputFileError(f"cannot read {path} ({error.strerror})", "check the file's permissions") from error


@click.command("parse-log")
@click.argument("file")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list, one object per run.")
def parse_log_command(file: str, as_json: bool) -> None:
    """Parse benchmark_model output (any generation; FILE or - for stdin)."""
    from harness.benchlog import parse_log

    runs = parse_log(_read_log(file))
    if as_json:
        click.echo(json.dumps([run.to_json() for run in runs], indent=2))
        return
    from harness.report import print_runs

    print_runs(runs)
