"""harness.phone.device against real virtual devices through the real adb server."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from farm_fixtures import farm  # noqa: F401 - module-scoped fixture

from harness.digest import file_sha256
from harness.errors import DeviceError
from harness.phone.device import DeviceLost, Phone, remote_path_for
from harness.phone.profiles import AdbServer, load_tiers
from harness.virtual_farm import farm as farm_lib
from harness.virtual_farm.server import Fault


def phone(farm, name: str) -> Phone:  # noqa: F811
    return Phone(AdbServer("127.0.0.1", farm.adb_port), farm.record(name).serial)


def test_shell_exit_codes_and_streams(farm) -> None:  # noqa: F811
    p = phone(farm, "pixel-8-pro")
    assert p.shell("echo hi").exit_code == 0 and p.shell("echo hi").text == "hi\n"
    result = p.shell("no-such-command")
    assert result.exit_code == 127 and b"not found" in result.stderr
    assert p.shell("false").exit_code == 1
    with pytest.raises(DeviceError, match="exit code 1"):
        p.check_output("false")


def test_shell_deadline_returns_instead_of_hanging(farm) -> None:  # noqa: F811
    p = phone(farm, "pixel-8-pro")
    result = p.shell("sleep 30", timeout_s=1.0)
    # timed_out is set only where the deadline passed; a shell that waited for `sleep 30` would
    # have its exit code. No wall-clock bound: that fails on a busy machine, not on a regression.
    assert result.timed_out and result.exit_code is None


def test_facts_and_tier(farm) -> None:  # noqa: F811
    facts = phone(farm, "nothing-phone-1").facts()
    assert facts.modelled_sensors
    assert facts.info.model == "Virtual Nothing Phone (1)" and facts.info.soc_model == "SM7325"
    assert facts.info.abi == "x86_64" and facts.info.sdk == 34
    assert facts.info.ram_bytes and facts.info.ram_bytes > 7e9
    assert len(facts.info.cores) == 8 and all(core.max_freq_khz for core in facts.info.cores)
    assert load_tiers().classify(facts.info).tier == "mid"


def test_content_addressed_push_skips_identical_files(farm, tmp_path: Path) -> None:  # noqa: F811
    p = phone(farm, "galaxy-a54")
    local = tmp_path / "a b;rm -rf x.tflite"  # shell metacharacters must stay a file name
    local.write_bytes(b"\x01" * 300_000)
    sha = file_sha256(local)
    assert sha == hashlib.sha256(local.read_bytes()).hexdigest()
    remote, pushed = p.ensure_file(local, sha)
    assert remote == remote_path_for(sha, local.name) and pushed == 300_000
    assert p.remote_sha256(remote) == sha
    assert p.ensure_file(local, sha) == (remote, 0)
    assert p.shell("ls /data/local/tmp/harness").exit_code == 0


def test_push_of_an_empty_file(farm, tmp_path: Path) -> None:  # noqa: F811
    p = phone(farm, "galaxy-a54")
    empty = tmp_path / "empty.bin"
    empty.write_bytes(b"")
    remote, pushed = p.ensure_file(empty, file_sha256(empty))
    assert pushed == 0 and p.remote_sha256(remote) == file_sha256(empty)


def test_frozen_device_never_hangs_a_caller(farm, tmp_path: Path) -> None:  # noqa: F811
    p = phone(farm, "galaxy-a03")
    big = tmp_path / "big.bin"
    big.write_bytes(b"\x02" * 4_000_000)
    farm_lib.fault("galaxy-a03", Fault.FREEZE, state_dir=farm.state_dir)
    try:
        # The server hands the stream to the device, which never answers OPEN: each call gives
        # up at its deadline with DeviceLost naming what it was doing (returning at all is the test).
        with pytest.raises(DeviceLost, match="stopped answering during shell"):
            p.shell("echo hi", timeout_s=1.5)
        with pytest.raises(DeviceLost, match="stopped answering during"):
            p.push(big, "/data/local/tmp/big.bin", timeout_s=1.5)
    finally:
        farm_lib.fault("galaxy-a03", Fault.THAW, state_dir=farm.state_dir)
    assert p.shell("echo back", timeout_s=10).text == "back\n"


def test_unknown_serial_is_a_lost_device(farm) -> None:  # noqa: F811
    ghost = Phone(AdbServer("127.0.0.1", farm.adb_port), "127.0.0.1:1")
    with pytest.raises(DeviceLost, match="stopped answering"):
        ghost.shell("echo hi")
