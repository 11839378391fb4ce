"""Fixtures for tests that need a real adb server and a virtual farm.

Import the fixtures you use into a test module (`from farm_fixtures import farm`);
each module then gets its own adb server on a free non-default port and its
own farm, and both are stopped when the module ends. Every process writes to
log files in the farm's state folder, never to pytest's output.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import zipfile
from dataclasses import dataclass
from pathlib import Path

import adbutils
import pytest
from tiers import slow_fixture

from harness.config import packaged_defaults
from harness.virtual_farm import farm as farm_lib
from harness.virtual_farm.farm import DeviceRecord, FarmState

SHIPPED_PROFILES = packaged_defaults() / "virtual"
TINY_QUOTA_BYTES = 8 * 1024 * 1024


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Farm:
    state_dir: Path
    adb_port: int
    state: FarmState
    client: adbutils.AdbClient

    def record(self, name: str) -> DeviceRecord:
        return farm_lib.find_device(self.state, name)

    def device(self, name: str) -> adbutils.AdbDevice:
        return self.client.device(self.record(name).serial)

    def adb(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        """The adb command line against this farm's server."""
        return subprocess.run(
            [adbutils.adb_path(), "-P", str(self.adb_port), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )


def write_profiles(folder: Path) -> Path:
    """The shipped profiles plus `tiny-quota`, a low-tier copy with an 8 MiB disk."""
    folder.mkdir(parents=True, exist_ok=True)
    for p in SHIPPED_PROFILES.glob("*.toml"):
        shutil.copy(p, folder / p.name)
    low = (SHIPPED_PROFILES / "low_galaxy_a03.toml").read_text()
    tiny = low.replace('name = "galaxy-a03"', 'name = "tiny-quota"').replace(
        "quota_bytes = 1_073_741_824", f"quota_bytes = {TINY_QUOTA_BYTES}"
    )
    assert tiny != low
    (folder / "zz_tiny_quota.toml").write_text(tiny)
    return folder


@slow_fixture(scope="module")
def farm(tmp_path_factory: pytest.TempPathFactory):
    port = free_port()
    saved = os.environ.get(farm_lib.ENV_ADB_PORT)
    # Anything that falls back to "the" adb server must find ours, never the default one.
    os.environ[farm_lib.ENV_ADB_PORT] = str(port)
    base = tmp_path_factory.mktemp("farm")
    state_dir = base / "state"
    try:
        result = farm_lib.up(write_profiles(base / "profiles"), state_dir, port)
        yield Farm(state_dir, port, result.state, adbutils.AdbClient(host="127.0.0.1", port=port))
    finally:
        farm_lib.down(state_dir)
        with open(base / "adb-kill.log", "wb") as log:
            subprocess.run([adbutils.adb_path(), "-P", str(port), "kill-server"], stdout=log, stderr=log, timeout=30)
        if saved is None:
            os.environ.pop(farm_lib.ENV_ADB_PORT, None)
        else:
            os.environ[farm_lib.ENV_ADB_PORT] = saved


# A stand-in for the project's runner: same packaging (shebang + zip with the
# harness/runner marker), behaviour chosen by flags so tests can probe the device.
PROBE_MAIN = r"""
import json, os, resource, sys, time
print("pid", os.getpid())
print("args", json.dumps(sys.argv[1:]))
print("cwd", os.getcwd())
print("root", os.environ.get("HARNESS_DEVICE_ROOT"))
print("delegates", os.environ.get("HARNESS_DEVICE_DELEGATES"))
print("affinity", json.dumps(sorted(os.sched_getaffinity(0))))
print("rlimit_data", resource.getrlimit(resource.RLIMIT_DATA)[0])
for arg in sys.argv[1:]:
    key, _, value = arg.partition("=")
    if key == "--sleep":
        time.sleep(float(value))
    elif key == "--spin":
        end = time.time() + float(value)
        while time.time() < end:
            pass
        print("cpu_s", time.process_time())  # what the host actually gave it
    elif key == "--say":
        print(value, "at", time.time())
    elif key == "--stderr":
        print(value, file=sys.stderr)
    elif key == "--alloc-mb":
        try:
            block = bytearray(int(value) * 1024 * 1024)
            print("alloc ok")
        except MemoryError:
            print("alloc MemoryError")
            sys.exit(3)
    elif key == "--litert":
        import numpy as np
        from ai_edge_litert.interpreter import Interpreter
        print("litert ok", np.__version__)
    elif key == "--exit":
        sys.exit(int(value))
print("done")
"""


def build_probe_zipapp(path: Path) -> Path:
    with open(path, "wb") as f:
        f.write(b"#!/usr/bin/env python3\n")
        with zipfile.ZipFile(f, "w") as z:
            z.writestr("__main__.py", PROBE_MAIN)
            z.writestr("harness/runner/__main__.py", "")
    return path
