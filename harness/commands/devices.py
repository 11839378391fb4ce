"""`harness devices`: every device on every configured adb server, with its tier and lease.

Data on stdout (a table, or a JSON list with --json); servers that did not
answer are warnings on stderr, so the command still exits 0 when any one did.
"""

from __future__ import annotations

import json
import sys

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from harness.phone.discovery import DeviceEntry, discover
from harness.phone.lease import LeaseState, read_states
from harness.phone.profiles import load_farm, load_tiers

_HEADERS = ["server", "serial", "state", "kind", "model", "soc", "abi", "sdk", "RAM GB", "tier", "lease", "problem"]


def _lease_text(lease: LeaseState | str | None) -> str:
    return "" if lease is None else lease if isinstance(lease, str) else lease.describe()


def _lease_json(lease: LeaseState | str | None) -> dict[str, object] | None:
    if lease is None:
        return None
    return {"status": "unknown", "description": lease} if isinstance(lease, str) else lease.to_json()


def _row(entry: DeviceEntry, lease: LeaseState | str | None) -> list[str]:
    info = entry.facts.info if entry.facts else None

    def text(value: object) -> str:
        return "" if value is None else str(value)

    # Decimal GB, like the min_ram_bytes thresholds of tiers.toml the tier came from.
    ram_gb = f"{info.ram_bytes / 1e9:.1f}" if info and info.ram_bytes else ""
    return [
        entry.server.address,
        entry.serial,
        entry.state.value,
        text(entry.kind),
        text(entry.model),
        text(entry.soc),
        text(info.abi if info else None),
        text(info.sdk if info else None),
        ram_gb,
        text(entry.tier),
        _lease_text(lease),
        text(entry.problem),
    ]


@click.command("devices")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list, one object per device.")
def devices(as_json: bool) -> None:
    """Devices on all adb servers of farm.toml (see 'harness config'), with facts and tier."""
    result = discover(load_farm(), load_tiers())
    for warning in result.warnings():
        click.echo(f"warning: {warning}", err=True)
    leases = read_states(result.entries)
    if as_json:
        click.echo(
            json.dumps(
                [entry.to_json() | {"lease": _lease_json(leases.get(entry.key))} for entry in result.entries], indent=2
            )
        )
        return
    if not result.entries:
        click.echo("no devices attached: plug in a phone (USB debugging on) or run 'harness farm up'", err=True)
        return
    rows = [_row(entry, leases.get(entry.key)) for entry in result.entries]
    if sys.stdout.isatty():
        table = Table(*_HEADERS)
        for row in rows:
            # Text, not markup: adb's own words contain brackets ("see [http://...]").
            table.add_row(*(Text(cell) for cell in row))
        Console().print(table)
    else:
        # Tab-separated and never truncated when piped: problems are long and meant to be read whole.
        for row in [_HEADERS, *rows]:
            click.echo("\t".join(row))
