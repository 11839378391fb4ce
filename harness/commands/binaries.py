"""`harness binaries fetch|ls`: the official prebuilt benchmark programs, pinned and cached.

Data on stdout (a table, or JSON with --json); a progress bar on stderr when it is a terminal.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from harness import binaries as lib
from harness.records import BenchmarkDialect

_ABI_HELP = "Comma-separated ABIs (arm64-v8a, armeabi-v7a; x86_64 has no official build)."


@contextmanager
def _progress_bar() -> Iterator[lib.Progress | None]:
    """A rich progress callback on a terminal's stderr, else None."""
    if not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TaskID, TextColumn, TransferSpeedColumn

    display = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=Console(stderr=True),
        transient=False,
    )
    tasks: dict[str, TaskID] = {}

    def update(url: str, done: int, total: int | None) -> None:
        if url not in tasks:
            tasks[url] = display.add_task(url.rsplit("/", 1)[-1], total=total)
        display.update(tasks[url], completed=done, total=total)

    with display:
        yield update


@click.group("binaries")
def binaries() -> None:
    """Official prebuilt benchmark_model binaries: fetch, pin (binaries.lock), wire into farm.toml."""


@binaries.command("fetch")
@click.option("--abi", "abis", default=lib.Abi.ARM64_V8A.value, show_default=True, help=_ABI_HELP)
@click.option(
    "--dialect",
    "dialects",
    default=BenchmarkDialect.CLASSIC.value,
    show_default=True,
    help="classic (TensorFlow Lite benchmark_model) or litert (LiteRT 2.x); comma-separated for both.",
)
@click.option("--update", is_flag=True, help="Download again and pin new bytes when the server's have changed.")
@click.option("--mirror", metavar="URL", help="Base URL that replaces https://storage.googleapis.com (a lab proxy).")
@click.option(
    "--litert-version",
    metavar="VERSION",
    help="LiteRT binaries' version (default: the installed ai-edge-litert's, else latest).",
)
@click.option(
    "--farm-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="farm.toml whose [binaries] names the fetched files (default: the one in effect, see 'harness config'; "
    "never the packaged one: 'harness init' writes an editable copy).",
)
@click.option(
    "--lock-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Lock file (default: binaries.lock beside the farm file).",
)
@click.option(
    "--timeout",
    "timeout_s",
    type=float,
    default=lib.DEFAULT_TIMEOUT_S,
    show_default=True,
    help="Seconds to wait for the server to connect or send more bytes.",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
def fetch_command(
    abis: str,
    dialects: str,
    update: bool,
    mirror: str | None,
    litert_version: str | None,
    farm_file: Path | None,
    lock_file: Path | None,
    timeout_s: float,
    as_json: bool,
) -> None:
    """Download the official benchmark binaries, cache and pin them, and name them in farm.toml."""
    request = lib.FetchRequest(
        abis=lib.parse_list(abis, lib.parse_abi, "--abi"),
        dialects=lib.parse_list(dialects, lib.parse_dialect, "--dialect"),
        farm_file=farm_file,
        lock_file=lock_file,
        mirror=mirror,
        update=update,
        litert_version=litert_version,
        timeout_s=timeout_s,
    )
    with _progress_bar() as progress:
        result = lib.fetch_binaries(request, progress=progress)
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2))
        return
    for binary in result.binaries:
        entry = binary.entry
        click.echo(
            f"{entry.dialect.value}\t{entry.abi.value}\t{binary.action.value}\t{entry.sha256[:16]}\t{binary.path}"
        )
    click.echo(f"pinned in {result.lock_file}; named under [binaries] in {result.farm_file}", err=True)


@binaries.command("ls")
@click.option(
    "--farm-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="farm.toml (default: the one in effect, see 'harness config').",
)
@click.option(
    "--lock-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Lock file (default: binaries.lock beside the farm file).",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list, one object per pinned binary.")
def ls_command(farm_file: Path | None, lock_file: Path | None, as_json: bool) -> None:
    """What binaries.lock pins, whether each file is cached intact, and whether farm.toml names it."""
    pins = lib.list_pins(farm_file, lock_file)
    if as_json:
        click.echo(json.dumps([pin.to_json() for pin in pins], indent=2))
        return
    if not pins:
        click.echo("nothing pinned: run 'harness binaries fetch'", err=True)
        return
    headers = ["dialect", "abi", "sha256", "size", "cached", "in farm.toml", "url"]
    rows = [
        [
            pin.entry.dialect.value,
            pin.entry.abi.value,
            pin.entry.sha256[:16],
            str(pin.entry.size_bytes),
            "yes" if pin.in_cache else "no",
            "yes" if pin.in_farm else "no",
            pin.entry.url,
        ]
        for pin in pins
    ]
    for row in [headers, *rows]:
        click.echo("\t".join(row))
