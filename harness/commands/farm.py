"""`harness farm ...`: thin click commands over harness.virtual_farm.farm.

Data goes to stdout (tables, or JSON with --json); messages to stderr.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from harness.virtual_farm import farm as farm_lib
from harness.virtual_farm.server import Fault


def _print_table(headers: list[str], rows: list[list[str]]) -> None:
    """A rich table on a terminal; tab-separated lines (never truncated) for pipes."""
    if sys.stdout.isatty():
        table = Table(*headers)
        for row in rows:
            table.add_row(*row)
        Console().print(table)
    else:
        for row in [headers, *rows]:
            click.echo("\t".join(row))


state_dir_option = click.option(
    "--state-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Farm state folder (default: farm/ in the user's state folder: $HARNESS_STATE_DIR, "
    "else e.g. ~/.local/state/tflite-farm).",
)


@click.group("farm")
def farm() -> None:
    """Virtual Android devices on loopback, attached to the real adb server."""


@farm.command("up")
@click.option(
    "--profiles",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    default=None,
    help="Folder of device profile TOMLs (default: virtual/ of the configuration, see 'harness config').",
)
@click.option("--adb-port", type=int, default=None, help="adb server port (default: $ANDROID_ADB_SERVER_PORT or 5037).")
@state_dir_option
@click.option(
    "--parallel", is_flag=True, help="Let devices run benchmarks at the same time (timings disturb each other)."
)
def up(profiles: Path | None, adb_port: int | None, state_dir: Path | None, parallel: bool) -> None:
    """Start one device per profile and `adb connect` each."""
    result = farm_lib.up(profiles, state_dir, adb_port, parallel)
    _print_table(
        ["serial", "name", "model", "pid", "log"],
        [[d.serial, d.name, d.model, str(d.pid), d.log_path] for d in result.state.devices],
    )
    click.echo(result.message, err=True)


@farm.command("down")
@state_dir_option
def down(state_dir: Path | None) -> None:
    """`adb disconnect` each device and stop exactly the recorded processes."""
    for note in farm_lib.down(state_dir):
        click.echo(note, err=True)


@farm.command("status")
@state_dir_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def status(state_dir: Path | None, as_json: bool) -> None:
    """Is each device process alive, and what does the adb server say about it."""
    rows = farm_lib.status(state_dir)
    if as_json:
        click.echo(json.dumps([r.to_json() for r in rows], indent=2))
        return
    if not rows:
        click.echo("no farm is up", err=True)
        return
    _print_table(
        ["serial", "name", "model", "pid", "process", "adb", "link"],
        [
            [
                r.record.serial,
                r.record.name,
                r.record.model,
                str(r.record.pid),
                "alive" if r.alive else "dead",
                r.adb_state,
                str((r.link or {}).get("link", "-")),
            ]
            for r in rows
        ],
    )


@farm.command("fault")
@click.argument("serial")
@click.argument("action", type=click.Choice([f.value for f in Fault]))
@click.argument("argument", required=False)
@state_dir_option
def fault(serial: str, action: str, argument: str | None, state_dir: Path | None) -> None:
    """Inject a fault: drop | freeze | thaw | crash-next | slow KBPS (kilobytes per second) | hide COMMAND |
    corrupt-outputs DELEGATE (outputs saved on that delegate come out garbled, until thaw)."""
    op = Fault(action)
    kbps = None
    if op is Fault.SLOW and argument is not None:
        try:
            kbps = float(argument)
        except ValueError:
            raise click.BadParameter(f"{argument!r} is not a rate in KB/s", param_hint="KBPS") from None
    state = farm_lib.fault(
        serial, op, kbps, state_dir, command=argument if op in (Fault.HIDE, Fault.CORRUPT_OUTPUTS) else None
    )
    click.echo(json.dumps(state))


if __name__ == "__main__":
    farm()
