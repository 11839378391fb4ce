"""The emulated device shell, its sandbox and its generated files, without adb."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import os
from pathlib import Path

import pytest

from harness.config import packaged_defaults
from harness.virtual_farm.device import VirtualDevice
from harness.virtual_farm.device_model import CpuAccounting, DeviceModel
from harness.virtual_farm.profile import ProfileError, load_profile
from harness.virtual_farm.sandbox import normalize
from harness.virtual_farm.shell import Session
from harness.virtual_farm.shell_io import BufferSink, EmptySource, ShellIO
from harness.virtual_farm.shell_syntax import ShellSyntaxError, parse

PROFILES = packaged_defaults() / "virtual"
TMP = "/data/local/tmp"


@pytest.fixture
def device(tmp_path: Path) -> VirtualDevice:
    profile = load_profile(PROFILES / "mid_nothing_phone_1.toml")
    return VirtualDevice(profile, tmp_path / "root", None, logging.getLogger("test-device"))


def sh(device: VirtualDevice, script: str) -> tuple[int, str, str]:
    async def run() -> tuple[int, str, str]:
        session = Session(device)
        out, err = BufferSink(), BufferSink()
        try:
            code = await session.run_script(script, ShellIO(EmptySource(), out, err))
        finally:
            session.close()
        return code, out.data.decode(), err.data.decode()

    return asyncio.run(run())


# --- syntax --------------------------------------------------------------------------


def test_quoting_and_escapes(device):
    assert sh(device, """echo 'a  b' "c  $?d" e\\ f 'it''s' "q\\"q" ''""") == (0, 'a  b c  0d e f its q"q \n', "")


def test_separators_and_status(device):
    assert sh(device, "false; echo $?; true && echo and; false || echo or; false && echo never") == (
        1,
        "1\nand\nor\n",
        "",
    )
    assert sh(device, "! false && echo negated")[1] == "negated\n"
    assert sh(device, "exit 3; echo unreachable") == (3, "", "")


def test_unknown_command_is_mksh_not_found(device):
    assert sh(device, "benchmark_model --help") == (127, "", "/system/bin/sh: benchmark_model: not found\n")


def test_compound_commands(device):
    cpufreq = 'for f in /sys/devices/system/cpu/cpu*/cpufreq/cpuinfo_max_freq; do echo "$f $(cat $f)"; done'
    lines = sh(device, cpufreq)[1].splitlines()
    assert len(lines) == 8 and lines[7] == "/sys/devices/system/cpu/cpu7/cpufreq/cpuinfo_max_freq 2553600"
    script = (
        "for x in a b c d; do if [ $x = b ]; then continue; elif [ $x = d ]; then break; else echo $x; fi; done; "
        'n=; until [ "$n" = xxx ]; do n=${n}x; done; echo n=$n; '
        "(cd /proc && pwd); pwd; { echo g1; echo g2; } | wc -l; "
        "printf 'k1 v1\\nk2 v2\\n' | while read k v; do printf '%s=%s;' $k $v; done; echo"
    )
    code, out, err = sh(device, script)
    assert err == "" and out.splitlines() == ["a", "c", "n=xxx", "/proc", "/", "2", "k1=v1;k2=v2;"], out


def test_unsupported_syntax_is_refused_not_guessed(device):
    code, _, err = sh(device, "case x in x) echo;; esac")
    assert code == 1 and "'case' is not supported" in err
    code, _, err = sh(device, "echo 'open")
    assert code == 1 and "no closing quote" in err
    assert sh(device, "if true; then echo; fi fi")[0] == 1
    with pytest.raises(ShellSyntaxError):
        parse("sleep 1 &")


def test_variables_and_command_substitution(device):
    assert sh(device, "X='a b'; echo \"[$X]\" [$X] ${X}")[1] == "[a b] [a b] a b\n"
    assert sh(device, "echo $(getprop ro.soc.model)-`uname -m`")[1] == "SM7325-x86_64\n"
    assert sh(device, "A=1 sh -c 'echo $A'; echo [$A]")[1] == "1\n[]\n"


# --- files and sandbox ------------------------------------------------------------------


def test_redirections_cd_and_globs(device):
    script = (
        f"cd {TMP} && echo one > a.txt && echo two >> a.txt && echo b > b.log && "
        "cat a.txt; ls *.txt; ls '*.txt'; nosuch 2> err.txt; cat err.txt; cat missing 2>/dev/null || echo $?"
    )
    code, out, err = sh(device, script)
    assert out == "one\ntwo\na.txt\n/system/bin/sh: nosuch: not found\n1\n"
    assert "ls: *.txt: No such file or directory" in err
    assert sh(device, f"cd {TMP}; echo err >&2 2>&1; echo both 2>&1 >/dev/null")[2] == "err\n"


def test_pipes(device):
    assert sh(device, "getprop | grep ro.product.model")[1] == "[ro.product.model]: [Virtual Nothing Phone (1)]\n"
    assert sh(device, "cat /proc/cpuinfo | grep -c processor")[1] == "8\n"
    assert sh(device, "echo a; echo b | wc -l")[1] == "a\n1\n"


def test_paths_never_leave_the_sandbox(device, tmp_path):
    root = tmp_path / "root"
    for path in ("../../../etc/passwd", "/../../etc/passwd", f"{TMP}/../../../../etc/passwd"):
        code, out, err = sh(device, f"cat {path}")
        assert code == 1 and "No such file or directory" in err and out == ""
    (root / "data/local/tmp/link").symlink_to("/")
    assert sh(device, f"ls {TMP}/link/")[1].split() == ["data", "proc", "sdcard", "sys"]
    (root / "data/local/tmp/loop").symlink_to("loop")
    assert "Too many levels of symbolic links" in sh(device, f"cat {TMP}/loop")[2]
    assert device.fs.resolve(f"{TMP}/link/../..").path == "/"
    assert normalize("../../x", "/data") == "/x"


def test_only_tmp_and_sdcard_are_writable(device):
    assert sh(device, "echo x > /x")[2] == "/system/bin/sh: can't create /x: Read-only file system\n"
    assert sh(device, "echo x > /data/x")[2] == "/system/bin/sh: can't create /data/x: Permission denied\n"
    assert sh(device, "echo x > /proc/cpuinfo")[2] == "/system/bin/sh: can't create /proc/cpuinfo: Permission denied\n"
    assert (
        sh(
            device,
            "mkdir -p /sdcard/Download/models && echo ok > /sdcard/Download/models/m && cat /sdcard/Download/models/m",
        )[1]
        == "ok\n"
    )
    assert sh(device, "rm -rf /data/local/tmp")[0] == 1


def test_file_commands(device):
    script = (
        f"cd {TMP} && mkdir -p d/e && echo data > d/e/f && cp -r d d2 && mv d2/e/f d2/g && "
        "chmod 750 d2/g && stat -c '%a %s %F' d2/g && ls d2 && rm -r d && ls; "
        "sha256sum d2/g; md5sum d2/g; test -d d2 && [ -f d2/g ] && [ ! -e d ] && echo tests-ok"
    )
    code, out, err = sh(device, script)
    assert err == "" and code == 0
    assert out.splitlines() == [
        "750 5 regular file",
        "e",
        "g",
        "d2",
        f"{hashlib.sha256(b'data' + bytes([10])).hexdigest()}  d2/g",
        f"{hashlib.md5(b'data' + bytes([10])).hexdigest()}  d2/g",
        "tests-ok",
    ]


def test_quota_in_shell_redirection(tmp_path):
    profile = load_profile(PROFILES / "low_galaxy_a03.toml")
    device = VirtualDevice(profile, tmp_path / "root", None, logging.getLogger("tiny"))
    device.fs.quota_bytes = 10
    code, _, err = sh(device, f"echo 0123456789abcdef > {TMP}/f")
    assert code == 1 and err == "echo: write error: No space left on device\n"
    assert sh(device, f"rm {TMP}/f; echo 012345678 > {TMP}/f && cat {TMP}/f")[1] == "012345678\n"


# --- processes, cores, properties ------------------------------------------------------


def test_taskset_nproc_and_kill_errors(device):
    assert sh(device, "nproc; taskset f0 nproc; taskset 1 taskset 3 nproc")[1] == "8\n4\n1\n"
    assert sh(device, "taskset 100 nproc") == (1, "", "taskset: sched_setaffinity: Invalid argument\n")
    assert sh(device, "kill 99999")[2] == "kill: 99999: No such process\n"
    assert sh(device, "kill 1")[2] == "kill: 1: Operation not permitted\n"
    assert "init" in sh(device, "ps -A")[1]


def test_executing_files_that_are_not_the_runner(device, tmp_path):
    root = tmp_path / "root"
    elf = root / "data/local/tmp/benchmark_model"
    elf.write_bytes(b"\x7fELF\x02\x01\x01" + bytes(9) + b"\x02\x00\xb7\x00" + bytes(64))
    assert (
        sh(device, f"cd {TMP} && ./benchmark_model")[2]
        == "/system/bin/sh: ./benchmark_model: can't execute: Permission denied\n"
    )
    elf.chmod(0o755)
    assert sh(device, f"cd {TMP} && ./benchmark_model") == (
        126,
        "",
        "/system/bin/sh: ./benchmark_model: not executable: 64-bit ELF file\n",
    )
    script = root / "data/local/tmp/run.sh"
    script.write_text('#!/system/bin/sh\necho "$# $1"\nexit 4\n')
    script.chmod(0o755)
    assert sh(device, f"{TMP}/run.sh 'x y'") == (4, "1 x y\n", "")
    python = root / "data/local/tmp/tool.py"
    python.write_text("#!/usr/bin/env python3\nprint('never runs on the host')\n")
    python.chmod(0o755)
    assert sh(device, f"{TMP}/tool.py")[0] == 127
    assert sh(device, f"{TMP}/missing")[0] == 127


def test_getprop_setprop_and_uname(device):
    assert (
        sh(device, "getprop ro.product.cpu.abi; getprop no.such.prop fallback; uname -m")[1]
        == "x86_64\nfallback\nx86_64\n"
    )
    assert sh(device, "setprop ro.product.model X")[0] == 1
    assert sh(device, "setprop debug.x 1; getprop debug.x")[1] == "1\n"


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
    sh(device, "dumpsys battery unplug")
    status, current = sh(
        device, "cat /sys/class/power_supply/battery/status /sys/class/power_supply/battery/current_now"
    )[1].split()
    assert status == "Discharging" and int(current) < 0


def test_power_thermal_model_equations(tmp_path):
    profile = load_profile(PROFILES / "high_pixel_8_pro.toml")
    now = [0.0]
    accounting = CpuAccounting()
    model = DeviceModel(profile, accounting, clock=lambda: now[0])
    model.unplug()
    # One program allowed on every core uses 2 CPU-seconds in 1 s: the two biggest cores are busy.
    accounting.started(1, range(profile.core_count))
    accounting.finished(1, 2.0)
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


def test_too_few_operands_is_toybox_usage_error(device: VirtualDevice) -> None:
    for command in ("mv only", "cp only", "chmod 755", "cp -r"):
        status, out, err = sh(device, command)
        assert (status, out) == (1, ""), command
        assert err == f"{command.split()[0]}: Needs 2 arguments\n", command
