"""`harness farm up` where a phone sandbox cannot be made: an error naming the cause and the fix, no phone
started, and no fallback. The kernel's refusal is real: the command runs in a user namespace whose limit
on further user namespaces is 0 (a per-namespace setting, so nothing outside the test changes)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


def farm_up(state_dir: Path, wrapper: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*wrapper, sys.executable, "-m", "harness.cli", "farm", "up", "--state-dir", str(state_dir)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )


def test_no_namespaces_stops_farm_up_with_the_cause_and_the_fix(tmp_path: Path) -> None:
    unshare = shutil.which("unshare")
    assert unshare is not None, "util-linux's unshare is part of every Debian system"
    no_more_namespaces = [
        unshare,
        "--user",
        "--map-root-user",
        "sh",
        "-c",
        'echo 0 > /proc/sys/user/max_user_namespaces && exec "$@"',
        "sh",
    ]
    result = farm_up(tmp_path / "state", no_more_namespaces)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "virtual phones need user, mount and pid namespaces" in result.stderr
    assert "bwrap: Creating new namespace failed" in result.stderr  # bwrap's own words, quoted
    assert "allow unprivileged user namespaces" in result.stderr
    assert not list((tmp_path / "state").glob("**/*.json")), "no farm state for phones that never started"


@pytest.mark.parametrize("tool", ["bwrap", "mksh", "toybox"])
def test_a_missing_tool_names_the_package_to_install(tmp_path: Path, tool: str) -> None:
    # A PATH with every tool the sandbox needs but one, each the real binary.
    path_dir = tmp_path / "bin"
    path_dir.mkdir()
    for name in ("bwrap", "mksh", "toybox", "nsenter", "sh"):
        found = shutil.which(name)
        assert found is not None, f"{name} is installed by the Makefile"
        if name != tool:
            (path_dir / name).symlink_to(found)
    env = dict(os.environ, PATH=str(path_dir))
    result = farm_up(tmp_path / "state", [], env)
    package = {"bwrap": "bubblewrap"}.get(tool, tool)
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"need {tool}" in result.stderr and f"apt-get install -y {package}" in result.stderr
