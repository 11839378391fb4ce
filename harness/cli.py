"""`harness` command line: thin shells over the library.

Each command parses its flags, calls one library function, and prints: data
on stdout (a table for people, JSON with --json), progress and errors on
stderr. A HarnessError becomes its message and exit code 2, never a traceback.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from harness import __version__
from harness.errors import HarnessError, InputFileError


class _HarnessGroup(click.Group):
    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except HarnessError as error:
            click.echo(f"error: {error}", err=True)
            ctx.exit(error.exit_code)


@click.group(cls=_HarnessGroup)
@click.version_option(__version__, prog_name="harness")
def main() -> None:
    """Benchmark TensorFlow Lite model variants across a device farm."""


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


def _register_subcommands() -> None:
    from harness.cli_binaries import binaries
    from harness.cli_compare import compare_command
    from harness.cli_convert import convert_command, examples_command
    from harness.cli_dashboard import dashboard_command
    from harness.cli_devices import devices
    from harness.cli_lease import lease_group
    from harness.cli_policy import policy
    from harness.cli_run import demo_command, results_group, run_command
    from harness.virtual.cli import farm

    main.add_command(farm)
    main.add_command(devices)
    main.add_command(convert_command)
    main.add_command(examples_command)
    main.add_command(run_command)
    main.add_command(results_group)
    main.add_command(compare_command)
    main.add_command(demo_command)
    main.add_command(dashboard_command)
    main.add_command(policy)
    main.add_command(binaries)
    main.add_command(lease_group)


_register_subcommands()


@main.command("parse-log")
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


if __name__ == "__main__":
    main()
