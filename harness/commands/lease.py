"""`harness lease ls|release`: the phones' leases (harness.phone.lease), and freeing one whose holder died."""

from __future__ import annotations

import json

import click

from harness.errors import UsageError


@click.group("lease")
def lease_group() -> None:
    """Device leases: which sweep holds which phone; release one left by a dead sweep."""


@lease_group.command("ls")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list, one object per phone.")
def lease_ls(as_json: bool) -> None:
    """Every usable phone's lease: free, its holder and expiry (UTC, the phone's clock), or expired."""
    from harness.commands.devices import _lease_json, _lease_text
    from harness.phone.discovery import discover
    from harness.phone.lease import read_states
    from harness.phone.profiles import load_farm, load_tiers

    found = discover(load_farm(), load_tiers())
    for warning in found.warnings():
        click.echo(f"warning: {warning}", err=True)
    states = read_states(found.entries)
    entries = [entry for entry in found.entries if entry.key in states]
    if as_json:
        click.echo(
            json.dumps(
                [
                    {
                        "key": entry.key,
                        "serial": entry.serial,
                        "model": entry.model,
                        "lease": _lease_json(states[entry.key]),
                    }
                    for entry in entries
                ],
                indent=2,
            )
        )
        return
    for entry in entries:
        click.echo(f"{entry.key}\t{entry.model or ''}\t{_lease_text(states[entry.key])}")


@lease_group.command("release")
@click.argument("serial")
@click.option("--force", is_flag=True, help="Release it even when it is live (its holder is alive or not yet expired).")
def lease_release(serial: str, force: bool) -> None:
    """Release SERIAL's lease when its holder died (expired); a live one only with --force."""
    from harness.phone.device import Phone
    from harness.phone.discovery import discover, select
    from harness.phone.lease import force_release
    from harness.phone.profiles import load_farm, load_tiers

    found = discover(load_farm(), load_tiers())
    for warning in found.warnings():
        click.echo(f"warning: {warning}", err=True)
    chosen = select(found.entries, serial)
    if len(chosen) != 1:
        raise UsageError(
            f"{serial!r} names {len(chosen)} phones", "name one as SERVER/SERIAL ('harness devices' lists the keys)"
        )
    entry = chosen[0]
    before = force_release(Phone(entry.server, entry.serial), force)
    if not before.present:
        click.echo(f"{entry.serial}: no lease to release (free)")
        return
    click.echo(f"{entry.serial}: released the lease {before.describe()}")
