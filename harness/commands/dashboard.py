"""`harness dashboard`: the Streamlit app over a results folder, served on loopback."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import webbrowser
from pathlib import Path

import click

from harness import config
from harness.errors import InputFileError, UsageError
from harness.locations import DEFAULT_RESULTS

DEFAULT_PORT = 8501
ADDRESS = "127.0.0.1"  # loopback only: the dashboard has no authentication


def app_path() -> Path:
    """dashboard/app.py of the installed package (it ships next to harness/)."""
    import dashboard

    # __path__, not __file__: an editable install made before dashboard/__init__.py existed maps
    # the package as a namespace package, whose __file__ is None.
    return Path(next(iter(dashboard.__path__))).resolve() / "app.py"


def streamlit_command(results_dir: Path, port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(app_path()),
        "--server.address",
        ADDRESS,
        "--server.port",
        str(port),
        # headless: never open a browser or ask for an e-mail address on first start
        "--server.headless",
        "true",
        "--browser.gatherUsageStats",
        "false",
        # an installed app does not change under its feet; watching files only costs inotify watches
        "--server.fileWatcherType",
        "none",
        # no "Deploy" button or developer menu: this is a viewer, not a development server
        "--client.toolbarMode",
        "viewer",
        "--",
        "--results",
        str(results_dir),
    ]


def _check_port_free(port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # As the server will: a port left in TIME_WAIT by a dashboard just stopped is free, a listener is not.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((ADDRESS, port))
        except OSError:
            raise UsageError(
                f"port {port} on {ADDRESS} is already in use",
                "stop the other server (another 'harness dashboard'?) or pass --port N",
            ) from None


def _open_when_up(url: str, port: int, child: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and child.poll() is None:
        try:
            with socket.create_connection((ADDRESS, port), timeout=1):
                webbrowser.open(url)
                return
        except OSError:
            time.sleep(0.3)


@click.command("dashboard")
@click.option(
    "--results",
    "results_dir",
    default=DEFAULT_RESULTS,
    show_default=True,
    type=click.Path(path_type=Path),
    help="Results folder to show.",
)
@click.option("--port", default=DEFAULT_PORT, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--open/--no-open",
    "open_browser",
    default=False,
    show_default=True,
    help="Open the dashboard in the default browser once it is up.",
)
def dashboard_command(results_dir: Path, port: int, open_browser: bool) -> None:
    """Serve the results dashboard on 127.0.0.1 until Ctrl-C."""
    if not results_dir.is_dir():
        raise InputFileError(
            f"no results folder at {results_dir}",
            "run 'harness demo' or 'harness run' first, or pass --results DIR",
        )
    _check_port_free(port)
    url = f"http://{ADDRESS}:{port}/"
    click.echo(f"dashboard of {results_dir.resolve()} at {url} (Ctrl-C stops it)")
    # The app reads tiers.toml in its own process: it gets this command's --config as $HARNESS_CONFIG.
    explicit = config.explicit_config_dir()
    env = {**os.environ, config.ENV_CONFIG: str(explicit.resolve())} if explicit is not None else None
    child = subprocess.Popen(streamlit_command(results_dir.resolve(), port), env=env)

    def forward(signum: int, _frame: object) -> None:
        # Whoever stops us (Ctrl-C, kill PID, a closed terminal) stops the server too: no orphan.
        if child.poll() is None:
            child.send_signal(signum)

    for name in ("SIGINT", "SIGTERM", "SIGHUP"):  # SIGHUP does not exist on Windows
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), forward)
    if open_browser:
        threading.Thread(target=_open_when_up, args=(url, port, child), daemon=True).start()
    code = child.wait()
    # Streamlit exits 0 on a signal it handled; anything else is its own failure, already on stderr.
    if code not in (0, -signal.SIGINT, -signal.SIGTERM):
        raise click.exceptions.Exit(code if code > 0 else 1)
