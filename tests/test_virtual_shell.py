"""A virtual phone's sandbox without adb: Android's real shell and tools, the shims, generated files, the model."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import math
import os
import subprocess
import threading
from collections.abc import Iterator

import pytest

from harness.config import packaged_defaults
from harness.virtual_farm.device import VirtualDevice
from harness.virtual_farm.device_model import CpuAccounting, DeviceModel
from harness.virtual_farm.profile import ProfileError, load_profile
from harness.virtual_farm.shell_service import shell_env

PROFILES = packaged_defaults() / "virtual"
TMP = "/data/local/tmp"


@pytest.fixture(scope="module")
def device(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VirtualDevice]:
    """A phone whose model runs (on its own thread's event loop), as in the device process."""
    profile = load_profile(PROFILES / "mid_nothing_phone_1.toml")
    phone = VirtualDevice(profile, tmp_path_factory.mktemp("phone"), None, logging.getLogger("test-device"))
    loop = asyncio.new_event_loop()
    ticker = threading.Thread(target=loop.run_forever, daemon=True)
    ticker.start()
    task = asyncio.run_coroutine_threadsafe(phone.run_model(), loop)
    yield phone
    task.cancel()
    loop.call_soon_threadsafe(loop.stop)
    ticker.join(5)
    phone.close()


def sh(device: VirtualDevice, script: str) -> tuple[int, str, str]:
    """`sh -c script` in the phone's sandbox, as the shell service runs it."""
    out = subprocess.run(
        device.sandbox.command_argv(script), env=shell_env(device, None), capture_output=True, text=True, check=False
    )
    if out.returncode < 0:
        return 128 - out.returncode, out.stdout, out.stderr
    return out.returncode, out.stdout, out.stderr


class _FixedUse(CpuAccounting):
    """CPU use handed to the model: `cpu_s` seconds on every core, once."""

    def __init__(self, core_count: int, cpu_s: float) -> None:
        super().__init__(core_count)
        self._usage = [(frozenset(range(core_count)), cpu_s)]

    def drain(self) -> list[tuple[frozenset[int], float]]:
        out, self._usage = self._usage, []
        return out


# --- the real shell and tools ----------------------------------------------------------------


def test_real_mksh_semantics(device):
    script = "case x in x) echo case;; esac; f() { echo fn $1; }; f a; sleep 0.1 & wait; echo $((6*7)) $KSH_VERSION"
    code, out, err = sh(device, script)
    assert (code, err) == (0, "")
    assert out.splitlines()[:2] == ["case", "fn a"] and out.splitlines()[2].startswith("42 @(#)MIRBSD KSH")
    assert sh(device, "benchmark_model --help") == (
        127,
        "",
        "E: /system/bin/sh: benchmark_model: inaccessible or not found\n",
    )
    assert sh(device, "echo out; echo err >&2; exit 7") == (7, "out\n", "err\n")


def test_paths_never_leave_the_sandbox(device):
    for path in ("../../../etc/passwd", "/../../etc/passwd", f"{TMP}/../../../../etc/passwd"):
        code, out, err = sh(device, f"cat {path}")
        assert code == 1 and "No such file or directory" in err and out == ""
    code, out, _ = sh(device, f"ln -sf / {TMP}/link; ls {TMP}/link/")
    assert {"data", "proc", "sdcard", "sys", "system"} <= set(out.split()) and "home" not in out.split()
    assert "Too many levels of symbolic links" in sh(device, f"ln -sf loop {TMP}/loop; cat {TMP}/loop")[2]


def test_only_tmp_and_sdcard_are_writable(device):
    assert sh(device, "echo x > /x")[2] == "W: /system/bin/sh: /x: create: Read-only file system\n"
    assert sh(device, "echo x > /data/x")[2] == "W: /system/bin/sh: /data/x: create: Permission denied\n"
    assert (
        sh(device, "echo x > /proc/cpuinfo")[2] == "W: /system/bin/sh: /proc/cpuinfo: create: Read-only file system\n"
    )
    assert (
        sh(device, "echo x > /system/bin/x")[2] == "W: /system/bin/sh: /system/bin/x: create: Read-only file system\n"
    )
    script = "mkdir -p /sdcard/Download/models && echo ok > /sdcard/Download/models/m && cat /sdcard/Download/models/m"
    assert sh(device, script)[1] == "ok\n"
    assert sh(device, "rm -rf /data/local/tmp") == (1, "", "rm: /data/local/tmp: Permission denied\n")


def test_file_commands(device):
    script = (
        f"cd {TMP} && mkdir -p d/e && echo data > d/e/f && cp -r d d2 && mv d2/e/f d2/g && "
        "chmod 750 d2/g && stat -c '%a %s %F' d2/g && ls d2 && rm -r d && ls d2; "
        "sha256sum d2/g; md5sum d2/g; test -d d2 && [ -f d2/g ] && [ ! -e d ] && echo tests-ok"
    )
    code, out, err = sh(device, script)
    assert err == "" and code == 0
    assert out.splitlines() == [
        "750 5 regular file",
        "e",
        "g",
        "e",
        "g",
        f"{hashlib.sha256(b'data' + bytes([10])).hexdigest()}  d2/g",
        f"{hashlib.md5(b'data' + bytes([10])).hexdigest()}  d2/g",
        "tests-ok",
    ]
    # toybox's own words, irregular as they are
    assert sh(device, "mv only") == (1, "", "mv: Needs 2 arguments\n")
    assert sh(device, "cp only") == (1, "", "cp: Needs 2 arguments\n")
    assert sh(device, "chmod 755") == (1, "", 'chmod: Need 2 arguments (see "chmod --help")\n')


def test_a_full_disk_is_a_real_enospc(tmp_path):
    profile = dataclasses.replace(load_profile(PROFILES / "low_galaxy_a03.toml"), storage_quota_bytes=64 * 1024)
    phone = VirtualDevice(profile, tmp_path / "phone", None, logging.getLogger("tiny"))
    try:
        code, _, err = sh(phone, f"head -c 100000 /dev/zero > {TMP}/f")
        assert code == 1 and err == "head: xwrite: No space left on device\n"  # toybox's words
        assert sh(phone, f"rm {TMP}/f; echo 012345678 > {TMP}/f && cat {TMP}/f")[1] == "012345678\n"
    finally:
        phone.close()


# --- processes, cores, properties, services --------------------------------------------------------------


def test_taskset_maps_device_cores_to_host_cpus(device):
    host = sorted(os.sched_getaffinity(0))
    for mask, core in (("1", 0), ("2", 1), ("80", 7)):
        out = sh(device, f"taskset {mask} cat /proc/self/status")[1]
        allowed = next(line.split(":")[1].strip() for line in out.splitlines() if line.startswith("Cpus_allowed_list"))
        assert allowed == str(host[core % len(host)])
    assert sh(device, "taskset 100 nproc")[0] == 1  # no such core on this phone: toybox's own refusal
    assert "affinity: Invalid argument" in sh(device, "taskset 100 nproc")[2]
    assert sh(device, "kill 99999") == (1, "", "E: /system/bin/sh: kill: 99999: No such process\n")
    listing = sh(device, "ps -A")[1].splitlines()
    assert listing[0].split() == ["USER", "PID", "PPID", "VSZ", "RSS", "WCHAN", "ADDR", "S", "NAME"]


def test_getprop_setprop_and_uname(device):
    assert (
        sh(device, "getprop ro.product.cpu.abi; getprop no.such.prop fallback; uname -m")[1]
        == "x86_64\nfallback\nx86_64\n"
    )
    listing = sh(device, "getprop")[1]
    assert listing == "".join(f"[{k}]: [{v}]\n" for k, v in sorted(device.props.items()))
    assert sh(device, "setprop ro.product.model X") == (
        1,
        "",
        "Failed to set property 'ro.product.model' to 'X'.\nSee dmesg for error reason.\n",
    )
    assert sh(device, "setprop debug.x 1; getprop debug.x")[1] == "1\n"


def test_dumpsys_and_cmd(device):
    report = sh(device, "dumpsys battery")[1]
    assert report.startswith("Current Battery Service state:\n") and "  level: " in report
    assert sh(device, "cmd") == (20, "", "cmd: No service specified; use -l to list all running services.\n")
    assert sh(device, "cmd foo") == (20, "", "cmd: Can't find service: foo\n")
    assert sh(device, "dumpsys battery bad")[0] == 255


# --- generated files and the model --------------------------------------------------------


def test_proc_and_sys_files(device):
    meminfo = sh(device, "cat /proc/meminfo")[1]
    fields = dict(line.split(":") for line in meminfo.splitlines())
    assert fields["MemTotal"].strip() == f"{device.profile.ram_bytes // 1024} kB"
    assert int(fields["MemAvailable"].split()[0]) > int(fields["MemFree"].split()[0]) > 0
    assert sh(device, "cat /sys/devices/system/cpu/cpu7/cpufreq/cpuinfo_max_freq")[1] == "2553600\n"
    assert sh(device, "cat /sys/class/thermal/thermal_zone2/type")[1] == "battery\n"
    assert sh(device, "cat /sys/devices/system/cpu/online")[1] == "0-7\n"
    status, current = sh(
        device, "cat /sys/class/power_supply/battery/status /sys/class/power_supply/battery/current_now"
    )[1].split()
    assert status == "Charging" and int(current) > 0  # plugged: current flows into the battery
    uevent = dict(
        line.split("=", 1) for line in sh(device, "cat /sys/class/power_supply/battery/uevent")[1].splitlines()
    )
    assert uevent["POWER_SUPPLY_STATUS"] == "Charging" and int(uevent["POWER_SUPPLY_CURRENT_NOW"]) > 0
    assert sh(device, "cat /sys/class/power_supply/*/uevent | grep -c POWER_SUPPLY_NAME")[1] == "2\n"
    assert sh(device, "dumpsys battery unplug") == (0, "", "")
    status, current = sh(
        device, "cat /sys/class/power_supply/battery/status /sys/class/power_supply/battery/current_now"
    )[1].split()
    assert status == "Discharging" and int(current) < 0

    assert sh(device, "dumpsys battery reset")[0] == 0


def test_power_thermal_model_equations(tmp_path):
    profile = load_profile(PROFILES / "high_pixel_8_pro.toml")
    now = [0.0]
    accounting = _FixedUse(profile.core_count, 2.0)
    model = DeviceModel(profile, accounting, clock=lambda: now[0])
    model.unplug()
    # One program allowed on every core uses 2 CPU-seconds in 1 s: the two biggest cores are busy.
    now[0] = 1.0
    model.advance()
    x3, a715 = profile.clusters[2], profile.clusters[1]
    assert model.core_util[8] == 1.0 and model.core_util[4] == 1.0 and sum(model.core_util) == 2.0
    assert model.power_mw == pytest.approx(profile.idle_mw + x3.active_mw + a715.active_mw)
    assert model.core_freq_khz(8) == x3.max_freq_khz and model.core_freq_khz(0) == profile.clusters[0].min_freq_khz
    zone = profile.thermal_zones[0]
    target = profile.ambient_c + zone.c_per_w * model.power_mw / 1000
    expected = profile.ambient_c + (target - profile.ambient_c) * (1 - math.exp(-1 / zone.tau_s))
    assert model.zone_temp_c[0] == pytest.approx(expected)
    assert model.current_ma == pytest.approx(-model.power_mw / model.voltage_mv * 1000)


def test_profile_errors_name_the_fix(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(
        (PROFILES / "low_galaxy_a03.toml").read_text().replace('"ro.product.model" = "Virtual Galaxy A03"\n', "")
    )
    with pytest.raises(ProfileError, match="lacks ro.product.model: add them"):
        load_profile(bad)
    arm = tmp_path / "arm.toml"
    arm.write_text(
        (PROFILES / "low_galaxy_a03.toml")
        .read_text()
        .replace("[props]\n", '[props]\n"ro.product.cpu.abi" = "arm64-v8a"\n')
    )
    with pytest.raises(ProfileError, match="run x86_64 programs only"):
        load_profile(arm)
    future = tmp_path / "future.toml"
    future.write_text(
        (PROFILES / "low_galaxy_a03.toml").read_text().replace("schema_version = 1", "schema_version = 2")
    )
    with pytest.raises(ProfileError, match="schema_version 2"):
        load_profile(future)
    assert os.path.exists(PROFILES / "README.md")
