"""tflite-farm installed from its wheel, without TensorFlow, and used from an empty folder, as a lab host would.

How the environment is made, and why it is honest:
- The wheel is built from a copy of the package's sources (pyproject.toml, README.md, harness/, dashboard/)
  with `pip wheel --no-deps`, in pip's isolated build environment (the build backend named in pyproject.toml,
  from PyPI or pip's cache), so nothing the checkout has beside the package can leak into it.
- The fresh environment is a new venv (no pip, no packages). Installing the wheel's dependencies from PyPI
  would take minutes, so it reuses the ones this interpreter has: exactly the closure of the wheel's own
  Requires-Dist (no extras), found through importlib.metadata and linked (symlinks) into one folder that a
  .pth file puts on the venv's path. TensorFlow, Keras and scikit-learn are not in that closure, so they
  cannot be imported there; the test checks that, and `pip check` checks the closure is complete.
- Every command runs the venv's `harness` console script in an empty temporary folder, with no PYTHONPATH,
  and with private user state, cache and config folders and a private adb server port.
"""

from __future__ import annotations

import email
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.request
import zipfile
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path

import adbutils
import pytest
from packaging.requirements import Requirement

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
PACKAGE_SOURCES = ("pyproject.toml", "README.md", "harness", "dashboard")
NOT_INSTALLED = ("tensorflow", "keras", "sklearn")  # the convert extra's
ONE_TIER = 'schema_version = 1\ntiers = ["lab"]\n[[rules]]\nid = "everything"\ntier = "lab"\n'
COMMAND_TIMEOUT_S = 180


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def build_wheel(work: Path) -> Path:
    source = work / "source"
    source.mkdir(parents=True)
    # A copy: building in the checkout would leave build/ and *.egg-info there, and race with other runs.
    for name in PACKAGE_SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(REPO / name, source / name)
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", str(work / "dist"), str(source)],
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
    )
    assert built.returncode == 0, (
        f"pip wheel failed (its build backend comes from PyPI or pip's cache):\n{built.stderr}"
    )
    [wheel] = (work / "dist").glob("tflite_farm-*.whl")
    return wheel


def dependency_closure(requirements: Iterable[str]) -> dict[str, metadata.Distribution]:
    """Every installed distribution the requirements need, transitively (markers evaluated, no extras)."""
    found: dict[str, metadata.Distribution] = {}
    pending = [(Requirement(text), "") for text in requirements]
    while pending:
        requirement, extra = pending.pop()
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": extra}):
            continue
        dist = metadata.distribution(requirement.name)
        key = dist.metadata["Name"].lower().replace("_", "-")
        wanted_extras = ("", *sorted(requirement.extras))
        if key in found and not requirement.extras:
            continue
        found[key] = dist
        pending += [(Requirement(text), e) for text in dist.requires or () for e in wanted_extras]
    return found


def _top_levels(dist: metadata.Distribution) -> dict[str, set[str]]:
    """The dist's top-level entries in site-packages -> their second-level entries."""
    tops: dict[str, set[str]] = {}
    for file in dist.files or ():
        parts = Path(str(file)).parts
        if parts and parts[0] != ".." and not Path(str(file)).is_absolute():
            tops.setdefault(parts[0], set()).update(parts[1:2])
    return tops


def link_dependencies(closure: dict[str, metadata.Distribution], view: Path) -> None:
    """Symlinks to the closure's files in site-packages; a folder other distributions share (a namespace
    package such as google/) gets a real folder holding only the closure's entries."""
    site_packages = Path(sysconfig.get_paths()["purelib"]).resolve()
    owners: dict[str, set[str]] = {}
    for dist in metadata.distributions(path=[str(site_packages)]):
        for top in _top_levels(dist):
            owners.setdefault(top, set()).add(dist.metadata["Name"].lower().replace("_", "-"))
    view.mkdir(parents=True)
    for key, dist in closure.items():
        assert Path(str(dist.locate_file(""))).resolve() == site_packages, f"{key} is not in {site_packages}"
        assert dist.files is not None, f"{key} has no RECORD: cannot tell its files"
        for top, children in _top_levels(dist).items():
            target = view / top
            if owners.get(top, set()) <= set(closure):
                if not target.exists():
                    target.symlink_to(site_packages / top)
                continue
            target.mkdir(exist_ok=True)
            for child in children:
                if not (target / child).exists():
                    (target / child).symlink_to(site_packages / top / child)


def make_environment(work: Path, wheel: Path) -> Path:
    """A venv with the wheel installed and its dependencies (only those) importable; returns its bin/."""
    env = work / "env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True, timeout=120)
    with zipfile.ZipFile(wheel) as archive:
        [name] = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        wheel_metadata = email.message_from_bytes(archive.read(name))
    closure = dependency_closure(wheel_metadata.get_all("Requires-Dist") or ())
    assert not {"tensorflow", "keras", "scikit-learn"} & set(closure)
    # Named site-packages as a real one is: Streamlit turns on its development mode (which refuses
    # --server.port) when its own files are not under a folder of that name.
    reused = work / "reused" / "site-packages"
    link_dependencies(closure, reused)
    python = env / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    (Path(purelib) / "reused_dependencies.pth").write_text(f"{reused}\n")
    installed = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", str(wheel)],
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
    )
    assert installed.returncode == 0, installed.stderr
    return env / "bin"


class Lab:
    """Runs the installed `harness` in a folder, with private user folders and adb server port."""

    def __init__(self, bin_dir: Path, home: Path, adb_port: int) -> None:
        self.bin_dir = bin_dir
        self.env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "HARNESS_CONFIG", "VIRTUAL_ENV")}
        self.env.update(
            HARNESS_STATE_DIR=str(home / "state"),
            HARNESS_CACHE_DIR=str(home / "cache"),
            XDG_CONFIG_HOME=str(home / "config"),
            ANDROID_ADB_SERVER_PORT=str(adb_port),
        )

    def run(self, folder: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.bin_dir / "harness"), *args],
            cwd=folder,
            env=env or self.env,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_S,
        )

    def ok(self, folder: Path, *args: str, env: dict[str, str] | None = None) -> str:
        result = self.run(folder, *args, env=env)
        assert result.returncode == 0, f"harness {' '.join(args)} exited {result.returncode}:\n{result.stderr}"
        return result.stdout

    def python(self, code: str) -> subprocess.CompletedProcess[str]:
        # From the venv's own folder: `python -c` puts the current folder first on the path, and the
        # checkout's harness/ must not answer for the installed one.
        return subprocess.run(
            [str(self.bin_dir / "python"), "-c", code],
            cwd=self.bin_dir,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )


def _dashboard_health(lab: Lab, folder: Path) -> str:
    port = _free_port()
    child = subprocess.Popen(
        [str(lab.bin_dir / "harness"), "dashboard", "--results", "results", "--port", str(port)],
        cwd=folder,
        env=lab.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and child.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as answer:
                    return answer.read().decode()
            except OSError:
                time.sleep(0.3)
        _, stderr = child.communicate(timeout=5) if child.poll() is not None else ("", "")
        raise AssertionError(f"the dashboard never answered (exit {child.poll()}):\n{stderr}")
    finally:
        if child.poll() is None:
            child.send_signal(signal.SIGINT)  # as Ctrl-C: the command stops its Streamlit server
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


def test_the_wheel_installed_without_tensorflow_works_from_any_folder(
    tmp_path: Path, tiny_models: dict[str, Path]
) -> None:
    wheel = build_wheel(tmp_path / "build")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    assert "harness/defaults/farm.toml" in names and "harness/defaults/virtual/high_pixel_8_pro.toml" in names
    assert "harness/runner/benchmark_result.proto" in names and "dashboard/app.py" in names
    assert not any(name.startswith(("tests/", "device_profiles/", "bench/")) for name in names)

    bin_dir = make_environment(tmp_path / "install", wheel)
    adb_port = _free_port()
    lab = Lab(bin_dir, tmp_path / "home", adb_port)
    for module in NOT_INSTALLED:
        assert lab.python(f"import {module}").returncode != 0, f"{module} is importable in the fresh environment"
    checked = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(bin_dir / "python"), "check"], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    version = wheel.name.split("-")[1]
    assert lab.ok(tmp_path, "--version").strip() == f"harness, version {version}"

    work = tmp_path / "work"  # an empty folder: no checkout, no device_profiles/
    work.mkdir()
    shown = json.loads(lab.ok(work, "config", "--json"))
    site_packages = Path(lab.python("import harness; print(harness.__file__)").stdout.strip()).parent
    assert shown["settings"]["farm.toml"] == {
        "path": str(site_packages / "defaults" / "farm.toml"),
        "source": "packaged defaults",
    }
    assert shown["settings"]["virtual"]["source"] == "packaged defaults"
    assert not str(site_packages).startswith(str(REPO))

    try:
        lab.ok(work, "farm", "up")
        assert (tmp_path / "home" / "state" / "farm" / "farm.json").is_file()
        devices = json.loads(lab.ok(work, "devices", "--json"))
        assert sorted(d["tier"] for d in devices) == ["high", "low", "mid", "mid"]
        low = next(d["serial"] for d in devices if d["tier"] == "low")

        model = work / "dense.tflite"
        shutil.copy2(tiny_models["dense"], model)
        # Plain CPU too: a policy's default entry is a CPU one.
        swept = lab.ok(
            work,
            *("run", "--devices", low, "--models", str(model), "--delegates", "cpu,xnnpack", "--threads", "1"),
            *("--num-runs", "5", "--warmup-runs", "1", "--min-secs", "0", "--warmup-min-secs", "0", "--json"),
        )
        assert list((work / "results" / "dataset").glob("run_id=*/device=*/*.parquet"))
        assert json.loads(swept)["statuses"] == {"ok": 6}
        lab.ok(work, "policy", "derive", "--results", "results", "--out", "policy.json")
        assert "valid" in lab.ok(work, "policy", "validate", "policy.json").lower()
        assert _dashboard_health(lab, work) == "ok"

        needs_tensorflow = (
            ("convert", "model.keras", "--variants", "fp32", "--out", "models"),
            ("examples", "--out", "ex"),
            ("demo",),
        )
        for args in needs_tensorflow:
            refused = lab.run(work, *args)
            assert refused.returncode == 2, refused.stderr
            assert "tflite-farm[convert]" in refused.stderr and "pipx install" in refused.stderr

        # `harness init` in a new folder, that folder's files edited: `harness devices` reads them.
        lab_repo = tmp_path / "lab-repo"
        lab_repo.mkdir()
        lab.ok(lab_repo, "init")
        farm_toml = lab_repo / "device_profiles" / "farm.toml"
        farm_toml.write_text(
            farm_toml.read_text() + f'\n[[servers]]\nhost = "127.0.0.1"\nport = {adb_port}\n', encoding="utf-8"
        )
        (lab_repo / "device_profiles" / "tiers.toml").write_text(ONE_TIER, encoding="utf-8")
        config_text = lab.ok(lab_repo, "config")
        assert f"farm.toml\t{farm_toml}\t(./device_profiles)" in config_text
        without_port = {k: v for k, v in lab.env.items() if k != "ANDROID_ADB_SERVER_PORT"}
        in_lab = json.loads(lab.ok(lab_repo, "devices", "--json", env=without_port))
        assert len(in_lab) == 4 and {d["tier"] for d in in_lab} == {"lab"}
    finally:
        lab.run(work, "farm", "down")
        subprocess.run(
            [adbutils.adb_path(), "-P", str(adb_port), "kill-server"], capture_output=True, timeout=30, check=False
        )
    assert sorted(p.name for p in work.iterdir()) == ["dense.tflite", "policy.json", "results"]
