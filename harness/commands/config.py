"""`harness config` (which configuration files are in effect, and why) and `harness init` (a lab's own copies)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from harness import config as config_lib
from harness.locations import DEFAULT_RESULTS, user_cache_dir, user_state_dir


@click.command("config")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
def config_command(as_json: bool) -> None:
    """Which farm.toml, tiers.toml and virtual profiles are in effect, the folders looked in, and where
    state, caches and results go."""
    resolved = config_lib.resolve()
    folders = {
        "state": str(user_state_dir()),
        "cache": str(user_cache_dir()),
        "results": str(DEFAULT_RESULTS.resolve()),
    }
    if as_json:
        click.echo(json.dumps({**resolved.to_json(), "folders": folders}, indent=2))
        return
    for setting in resolved.settings:
        click.echo(f"{setting.name}\t{setting.path}\t({setting.source.value})")
    click.echo(f"{config_lib.LOCK_FILE_NAME}\t{resolved.binaries_lock}\t(beside farm.toml)")
    click.echo(f"state\t{folders['state']}\t(farm/, demo/; --state-dir overrides)")
    click.echo(f"cache\t{folders['cache']}\t(fetched binaries, learnt dialects)")
    click.echo(f"results\t{folders['results']}\t(default of --results)")
    click.echo("looked in, first wins per file:", err=True)
    for index, folder in enumerate(resolved.folders, start=1):
        missing = "" if folder.exists else " (not there)"
        click.echo(f"  {index}. {folder.source.value}: {folder.path}{missing}", err=True)


@click.command("init")
@click.argument("folder", required=False, type=click.Path(path_type=Path, file_okay=False))
@click.option("--force", is_flag=True, help="Overwrite files that are already there.")
def init_command(folder: Path | None, force: bool) -> None:
    """Write editable farm.toml and tiers.toml (with comments) for a lab into FOLDER [default: ./device_profiles]."""
    result = config_lib.init(folder, force)
    for path in result.written:
        click.echo(f"wrote {path}")
    for path in result.kept:
        click.echo(f"kept {path} (already there; --force overwrites it)", err=True)
    if result.folder != (Path.cwd() / config_lib.LAB_FOLDER).resolve():
        click.echo(
            f"the harness reads these with --config {result.folder} or {config_lib.ENV_CONFIG}={result.folder}",
            err=True,
        )
    click.echo("'harness config' shows which file each setting comes from", err=True)
