"""The real dashboard in a real browser: `harness dashboard` serving on a loopback port, driven by
Debian's headless Chromium through Playwright's Python client (no browser download).

Every page is opened by its URL, as a bookmark would, and must show the page's title, a tier name
and a drawn plotly chart, and no exception; the Policy page's JSON is downloaded and validated.
Screenshots go to the test's tmp folder and to /tmp/dashboard-shots/ for people to look at.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import dashboard_data as lab
import pytest
from tiers import slow_fixture

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
]
SHOTS = Path("/tmp/dashboard-shots")
START_TIMEOUT_S = 60
PAGE_TIMEOUT_MS = 30_000


class Dashboard:
    """`harness dashboard` as a child process in its own session, its output in a log file."""

    def __init__(self, results: Path, log_path: Path) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115  (closed in stop())
        self.process = subprocess.Popen(
            [sys.executable, "-m", "harness.cli", "dashboard", "--results", str(results), "--port", str(self.port)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=log_path.parent,
            start_new_session=True,
        )

    def wait_until_up(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"harness dashboard exited with {self.process.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=2) as answer:
                    if answer.read().strip() == b"ok":
                        return
            except OSError:
                time.sleep(0.3)
        pytest.fail(f"harness dashboard did not answer on {self.url} within {START_TIMEOUT_S} s:\n{self.log()}")

    def stop(self) -> int | None:
        """SIGTERM to the harness process only (it must stop streamlit itself); the group as a safety net."""
        code = None
        if self.process.poll() is None:
            self.process.terminate()
            try:
                code = self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                pass
        try:
            # Anything left in the session we created (a streamlit the CLI failed to stop) goes too.
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(timeout=15)
        self._log.close()
        return code

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-4000:]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _session_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@slow_fixture()
def dashboard(tmp_path: Path) -> Iterator[Dashboard]:
    results = tmp_path / "results"
    lab.write_lab_results(results)
    server = Dashboard(results, tmp_path / "dashboard.log")
    try:
        server.wait_until_up()
        yield server
    finally:
        server.stop()


def test_every_page_renders_in_chromium(dashboard: Dashboard, tmp_path: Path) -> None:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run 'make test', which installs Debian's chromium for this test")
    from playwright.sync_api import sync_playwright

    shots = tmp_path / "shots"
    shots.mkdir()
    with sync_playwright() as playwright:
        # A persistent context is how Playwright takes a fresh --user-data-dir of our choosing.
        browser = playwright.chromium.launch_persistent_context(
            user_data_dir=str(tmp_path / "chromium-profile"),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 2400},
        )
        try:
            page = browser.new_page()
            page.set_default_timeout(PAGE_TIMEOUT_MS)

            main = _visit(page, f"{dashboard.url}/", "Overview", charts=2)
            assert all(tier in main for tier in lab.TIERS), main[:500]  # the charts' tier axes
            assert "Failures" in main and "Rows failed" in main
            page.screenshot(path=str(shots / "overview.png"), full_page=True)

            main = _visit(page, f"{dashboard.url}/rankings", "Rankings", charts=2)
            assert "Tier high" in main and "is tied with" in main
            page.screenshot(path=str(shots / "rankings.png"), full_page=True)

            main = _visit(page, f"{dashboard.url}/pareto", "Pareto", charts=1)
            assert "On the front in tier high" in main
            page.screenshot(path=str(shots / "pareto.png"), full_page=True)

            main = _visit(page, f"{dashboard.url}/device", "Device", charts=3)
            assert "high" in main  # lab-high's tier, the first device
            page.screenshot(path=str(shots / "device.png"), full_page=True)
            # Pick another phone the way a person does: open the select box, click the option.
            page.locator("[data-testid='stMain'] [data-testid='stSelectbox']").first.click()
            page.get_by_role("option", name="lab-low · Moto E · low").click()
            page.get_by_text("latencies may be pessimistic").first.wait_for()
            main = _main_text(page)
            # A lab phone's sensor said it throttled: the warning is about a measurement, not a model.
            assert "low" in main and "latencies may be pessimistic" in main and "modelled" not in main, main
            _wait_for_charts(page, 3)
            page.screenshot(path=str(shots / "device-lab-low.png"), full_page=True)

            # The lab ran no sustained cases: the page says how to get some (the AppTest tests draw its charts).
            _visit(page, f"{dashboard.url}/sustained", "Sustained", charts=0)
            page.get_by_text("harness run --sustained 10m --fps 15").first.wait_for()
            page.screenshot(path=str(shots / "sustained-empty.png"), full_page=True)

            main = _visit(page, f"{dashboard.url}/compare-runs", "Compare runs", charts=1)
            assert "mid · Galaxy A54" in main and "now fails" in main
            page.screenshot(path=str(shots / "compare-runs.png"), full_page=True)

            main = _visit(page, f"{dashboard.url}/policy", "Policy", charts=1)
            assert "high  fp16/gpu/x1" in main and "within 5% of" in main.lower()
            page.screenshot(path=str(shots / "policy.png"), full_page=True)
            with page.expect_download() as download:
                page.get_by_role("button", name="Download policy JSON").click()
            saved = tmp_path / "downloaded-policy.json"
            download.value.save_as(saved)
        finally:
            browser.close()

    # The download is a policy `harness policy validate` accepts, with the page's choices.
    from harness.policy_file import validate

    document = json.loads(saved.read_text())
    assert validate(document) == ()
    assert document["model"]["name"] == lab.MODEL
    assert {e["name"]: e["choice"]["variant"] + "/" + e["choice"]["delegate"] for e in document["tiers"]} == {
        "high": "fp16/gpu",
        "mid": "int8/xnnpack",
        "low": "int8/xnnpack",
    }

    SHOTS.mkdir(exist_ok=True)
    for shot in shots.iterdir():
        assert shot.stat().st_size > 10_000, f"{shot} looks empty"
        shutil.copy2(shot, SHOTS / shot.name)

    # Stopping the harness process stops the server it started: no streamlit left behind.
    pgid = dashboard.process.pid
    assert dashboard.stop() == 0, dashboard.log()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", dashboard.port), timeout=2).close()
    assert not _session_alive(pgid)


def _visit(page, url: str, title: str, charts: int) -> str:
    page.goto(url)
    page.get_by_role("heading", name=title, exact=True).wait_for()
    _wait_for_charts(page, charts)
    assert page.locator("[data-testid='stException']").count() == 0, _main_text(page)[:2000]
    return _main_text(page)


def _wait_for_charts(page, count: int) -> None:
    """Until `count` plotly charts have drawn their SVG with data marks in it: a trace's paths, or the
    image a heatmap is painted as."""
    page.wait_for_function(
        """count => {
            const plots = [...document.querySelectorAll('.js-plotly-plot')];
            const marks = '.cartesianlayer .trace path, .heatmaplayer .hm image';
            const drawn = plots.filter(p => p.querySelector('.main-svg') && p.querySelectorAll(marks).length > 0);
            return drawn.length >= count;
        }""",
        arg=count,
        timeout=PAGE_TIMEOUT_MS,
    )


def _main_text(page) -> str:
    return page.locator("[data-testid='stMain']").inner_text()
