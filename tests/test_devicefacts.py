"""Phone-fact parsers against real captured dumps and constructed edge cases."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fixture_paths import DEVICE_DUMPS
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.phone.facts import (
    BATCHED_FACTS_COMMAND,
    AdbState,
    BatteryState,
    CoreInfo,
    PowerSupply,
    big_cores,
    device_info_from,
    parse_adb_devices_l,
    parse_cpufreq_max,
    parse_cpuinfo,
    parse_dumpsys_battery,
    parse_getprop,
    parse_meminfo,
    parse_power_supply_uevent,
    parse_ram_size,
    split_batched_facts,
)

FIXTURES = DEVICE_DUMPS
DUMP_FILES = sorted(FIXTURES.glob("*.txt"))
VERBATIM_MARKER = "# ---- verbatim text below this line ----"


def verbatim(path: Path) -> str:
    """The dump as published: everything after the fixture's header lines."""
    text = path.read_text(encoding="utf-8")
    return text.split(VERBATIM_MARKER + "\n", 1)[1]


def expected(path: Path) -> dict[str, Any]:
    return json.loads(path.with_suffix(".expected.json").read_text(encoding="utf-8"))


def dump_id(path: Path) -> str:
    return path.stem


# --- parser output viewed under the expected files' key names -----------------


def _ram_bytes_by_hand(text: str | None) -> int | None:
    """The expected files state RAM as the prop string ('12GiB')."""
    if text is None:
        return None
    assert text.endswith("GiB"), text
    return int(text[:-3]) * 2**30


def getprop_view(text: str) -> dict[str, Any]:
    info = device_info_from("serial", text, "", "", "")
    return {
        "manufacturer": info.manufacturer,
        "model": info.model,
        "brand": info.brand,
        "device": info.device,
        "ro_board_platform": info.board_platform,
        "ro_hardware": info.hardware,
        "ro_soc_model": info.soc_model,
        "ro_soc_manufacturer": info.soc_manufacturer,
        "sdk": info.sdk,
        "android_release": info.android_release,
        "abi": info.abi,
        "total_ram": info.ram_bytes,
    }


def cpuinfo_view(text: str) -> dict[str, Any]:
    info = parse_cpuinfo(text)
    return {
        "hardware": info.hardware,
        "processor_count": info.processor_count,
        "model_name": info.model_name,
        "cpu_part": list(info.parts),
        "cpu_implementer": info.implementer,
        "cpu_architecture": info.architecture,
        "bogomips": None if info.bogomips is None else list(info.bogomips),
    }


def _kib(size_bytes: int | None) -> float | None:
    return None if size_bytes is None else size_bytes / 1024


def meminfo_view(text: str) -> dict[str, Any]:
    info = parse_meminfo(text)
    return {
        "mem_total_kb": _kib(info.mem_total_bytes),
        "mem_free_kb": _kib(info.mem_free_bytes),
        "mem_available_kb": _kib(info.mem_available_bytes),
        "swap_total_kb": _kib(info.swap_total_bytes),
        "cached_kb": _kib(info.cached_bytes),
        "total_ram_mb_approx": None if info.mem_total_bytes is None else info.mem_total_bytes / 2**20,
    }


def battery_view(state: BatteryState) -> dict[str, Any]:
    # The expected files name these without units; their notes give uA, uV, uAh.
    return {
        "ac_powered": state.ac_powered,
        "usb_powered": state.usb_powered,
        "wireless_powered": state.wireless_powered,
        "status": state.status,
        "health": state.health,
        "present": state.present,
        "level": state.level,
        "scale": state.scale,
        "voltage_mv": state.voltage_mv,
        "temperature_c": state.temperature_c,
        "technology": state.technology,
        "max_charging_current": state.max_charging_current_ua,
        "max_charging_voltage": state.max_charging_voltage_uv,
        "charge_counter": state.charge_counter_uah,
    }


def uevent_view(supply: PowerSupply) -> dict[str, Any]:
    def scaled(value: int | None, divisor: float) -> float | None:
        return None if value is None else value / divisor

    return {
        # power_supply_uevent_01 uses the kernel's key names with units appended
        "CAPACITY": supply.capacity_pct,
        "CHARGE_FULL_uAh": supply.charge_full_uah,
        "CHARGE_FULL_DESIGN_uAh": supply.charge_full_design_uah,
        "CONSTANT_CHARGE_CURRENT_MAX_uA": supply.constant_charge_current_max_ua,
        "CONSTANT_CHARGE_VOLTAGE_uV": supply.constant_charge_voltage_uv,
        "CURRENT_NOW": supply.current_now_ua,
        "VOLTAGE_NOW": supply.voltage_now_uv,
        # power_supply_uevent_03 uses lower-case names, each in two units
        "status": supply.status,
        "capacity_pct": supply.capacity_pct,
        "voltage_now_uV": supply.voltage_now_uv,
        "voltage_now_V": scaled(supply.voltage_now_uv, 1e6),
        "current_now_uA": supply.current_now_ua,
        "current_now_mA": scaled(supply.current_now_ua, 1e3),
        "temp_decidegC": None if supply.temperature_c is None else round(supply.temperature_c * 10),
        "temp_C": supply.temperature_c,
        "technology": supply.technology,
    }


def power_supply_view(text: str) -> dict[str, Any]:
    view = uevent_view(parse_power_supply_uevent(text))
    # `acc --info` prints the dumpsys battery summary, then the uevent.
    view["uevent"] = dict(view)
    view["battery_service"] = battery_view(parse_dumpsys_battery(text))
    return view


def adb_view(text: str) -> dict[str, Any]:
    return {
        "devices": [
            {
                "serial": line.serial,
                "state": line.state.value,
                "usb": line.usb,
                "product": line.product,
                "model": line.model,
                "device": line.device,
                "transport_id": line.transport_id,
            }
            for line in parse_adb_devices_l(text)
        ]
    }


VIEWS: dict[str, Callable[[str], dict[str, Any]]] = {
    "getprop": getprop_view,
    "cpuinfo": cpuinfo_view,
    "meminfo": meminfo_view,
    "dumpsys_battery": lambda text: battery_view(parse_dumpsys_battery(text)),
    "power_supply_uevent": power_supply_view,
    "adb_devices_l": adb_view,
}


def view_for(path: Path) -> Callable[[str], dict[str, Any]]:
    return next(view for prefix, view in VIEWS.items() if path.name.startswith(prefix + "_"))


def assert_matches(observed: Any, want: Any, where: str) -> None:
    """Every non-underscore key, recursively; numbers exact, except keys named
    `*_approx`, which the expected file rounds (compared at its precision)."""
    if isinstance(want, dict):
        for key, value in want.items():
            if key.startswith("_"):
                continue
            assert key in observed, f"{where}: no parser value for {key!r}"
            if key.endswith("_approx") and value is not None:
                decimals = len(str(value).partition(".")[2])
                assert round(observed[key], decimals) == value, f"{where}.{key}"
            else:
                assert_matches(observed[key], value, f"{where}.{key}")
    elif isinstance(want, list):
        assert isinstance(observed, list) and len(observed) == len(want), where
        for index, (got, item) in enumerate(zip(observed, want, strict=False)):
            assert_matches(got, item, f"{where}[{index}]")
    else:
        assert type(observed) is type(want) or (
            isinstance(want, (int, float)) and isinstance(observed, (int, float)) and not isinstance(observed, bool)
        ), f"{where}: {observed!r} vs {want!r}"
        assert observed == want, f"{where}: {observed!r} != {want!r}"


def _expected_for_comparison(path: Path) -> dict[str, Any]:
    want = expected(path)
    if "total_ram" in want:
        want["total_ram"] = _ram_bytes_by_hand(want["total_ram"])
    return want


def test_every_kind_of_dump_is_covered() -> None:
    assert DUMP_FILES
    for path in DUMP_FILES:
        view_for(path)  # StopIteration if a new kind of dump arrives untested


@pytest.mark.parametrize("path", DUMP_FILES, ids=dump_id)
def test_dump_matches_hand_read_values(path: Path) -> None:
    assert_matches(view_for(path)(verbatim(path)), _expected_for_comparison(path), path.stem)


@pytest.mark.parametrize("path", DUMP_FILES, ids=dump_id)
@pytest.mark.parametrize("newline", ["\r\n", "\r\r\n"], ids=["crlf", "crcrlf"])
def test_crlf_variant_parses_the_same(path: Path, newline: str) -> None:
    text = verbatim(path)
    converted = text.replace("\n", newline)
    assert converted != text
    assert everything(converted) == everything(text)
    assert_matches(view_for(path)(converted), _expected_for_comparison(path), path.stem)


def test_samsung_chipname_is_kept_for_tier_rules() -> None:
    text = verbatim(FIXTURES / "getprop_03_samsung_galaxy_s5neo_sm-g903f_exynos7580.txt")
    info = device_info_from("s5neo", text, "", "", "")
    assert info.chipname == "exynos7580"
    assert info.board_platform == "exynos5"
    assert info.soc_model is None
    assert info.abilist == ("armeabi-v7a", "armeabi")  # 32-bit userspace on a 64-bit SoC


def test_pixel_props_avoid_the_traps() -> None:
    text = verbatim(FIXTURES / "getprop_01_google_pixel8pro_husky_tensor_g3.txt")
    props = parse_getprop(text)
    assert props["ro.build.version.sdk_full"] == "36.1"
    assert props["ro.product.system.model"] == "Generic System"
    info = device_info_from("husky", text, "", "", "")
    assert info.sdk == 36 and info.model == "Pixel 8 Pro"
    assert info.fingerprint == "google/husky/husky:16/CP1A.260405.005/15001963:user/release-keys"
    assert props["ro.product.cpu.abilist32"] == ""  # empty values are kept as such


def test_one_device_from_its_getprop_meminfo_and_cpuinfo_dumps() -> None:
    def tf201(kind: str) -> str:
        return verbatim(next(FIXTURES.glob(f"{kind}_*asus_tf201*.txt")))

    cpufreq = "".join(f"/sys/devices/system/cpu/cpu{i}/cpufreq/cpuinfo_max_freq 1300000\n" for i in range(4))
    info = device_info_from("tf201", tf201("getprop"), tf201("meminfo"), tf201("cpuinfo"), cpufreq)
    assert info.serial == "tf201"
    assert info.ram_bytes == 1008528 * 1024
    assert info.hardware == "cardhu" and info.cpu_hardware == "cardhu"
    assert info.cores == tuple(CoreInfo(i, 1300000, "0xc09") for i in range(4))
    assert info.abi == "armeabi-v7a" and info.sdk == 13


# --- getprop -------------------------------------------------------------------


def test_getprop_multi_line_values_and_junk() -> None:
    text = (
        "Mon Feb 25 13:45:19 UTC 2019\n"
        "root@phone:/ # getprop\n"
        "[persist.sys.boot.reason.history]: [reboot,userrequested,1700000000\n"
        "reboot,factory_reset,1690000000]\n"
        "[ro.odd]: [a]b]\n"
        "[ro.empty]: []\n"
        "garbage [x]: [y]\n"
        "[ro.cut]: [never closed\n"
        "[ro.after]: [ok]\n"
        "[ro.last]: [truncat"
    )
    assert parse_getprop(text) == {
        "persist.sys.boot.reason.history": "reboot,userrequested,1700000000\nreboot,factory_reset,1690000000",
        "ro.odd": "a]b",
        "ro.empty": "",
        "ro.after": "ok",
    }


_PROP_KEYS = st.from_regex(r"[a-z][a-z0-9_.]{0,20}", fullmatch=True)
_PROP_VALUES = st.text(st.characters(blacklist_characters="\r\n", codec="utf-8"), max_size=30)


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(_PROP_KEYS, _PROP_VALUES, max_size=20))
def test_getprop_round_trip(props: dict[str, str]) -> None:
    text = "".join(f"[{key}]: [{value}]\n" for key, value in props.items())
    assert parse_getprop(text) == props


def test_sdk_is_ro_build_version_sdk_only() -> None:
    assert device_info_from("s", "[ro.build.version.sdk_full]: [36.1]\n", "", "", "").sdk is None
    assert device_info_from("s", "[ro.build.version.sdk]: [REL]\n", "", "", "").sdk is None
    assert device_info_from("s", "[ro.build.version.sdk]: [34]\n", "", "", "").sdk == 34


def test_model_falls_back_through_partitions_system_last() -> None:
    props = "[ro.product.system.model]: [Generic System]\n[ro.product.vendor.model]: [Pixel 8 Pro]\n"
    assert device_info_from("s", props, "", "", "").model == "Pixel 8 Pro"
    only_system = "[ro.product.system.model]: [Generic System]\n"
    assert device_info_from("s", only_system, "", "", "").model == "Generic System"


# --- RAM -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "size_bytes"),
    [
        ("12GiB", 12 * 2**30),
        ("8GB", 8 * 2**30),
        ("6144MB", 6 * 2**30),
        ("4G", 4 * 2**30),
        ("2048M", 2 * 2**30),
        ("1.5 GB", 3 * 2**29),
        ("6", None),  # unitless: vendors differ between MB and GB
        ("", None),
        ("lots", None),
        ("0GB", None),
        ("9" * 400 + "T", None),
    ],
)
def test_parse_ram_size(text: str, size_bytes: int | None) -> None:
    assert parse_ram_size(text) == size_bytes


MEMINFO_3GB = "MemTotal:        2876544 kB\nMemFree:          100000 kB\nMemAvailable:    1000000 kB\n"


@pytest.mark.parametrize(
    ("props", "meminfo", "ram_bytes"),
    [
        # /proc/meminfo first: it is what the kernel can actually hand out
        ("[ro.boot.ddr_size]: [4GiB]\n", MEMINFO_3GB, 2876544 * 1024),
        ("[ro.boot.ddr_size]: [4GiB]\n", "", 4 * 2**30),
        ("[ro.boot.ddr_size]: [4GiB]\n[ro.boot.hardware.ddr]: [8GiB,Micron,LPDDR5,ff07]\n", "", 4 * 2**30),
        ("[ro.boot.hardware.ddr]: [8GiB,Micron,LPDDR5,ff07]\n", "", 8 * 2**30),
        ("[ro.boot.ddrsize]: [6144MB]\n", "", 6 * 2**30),
        ("[ro.boot.ddr_size]: [unknown]\n[ro.ramsize]: [3GB]\n", "", 3 * 2**30),
        # storage is never RAM
        ("[storage.mmc.size]: [15758000128]\n[ro.boot.ddr_size]: []\n", "", None),
        ("", "MemFree: 10 kB\n", None),
    ],
)
def test_ram_fallback_order(props: str, meminfo: str, ram_bytes: int | None) -> None:
    assert device_info_from("s", props, meminfo, "", "").ram_bytes == ram_bytes


def test_meminfo_without_memavailable_is_none_not_zero() -> None:
    info = parse_meminfo("MemTotal: 1024 kB\nMemFree: 0 kB\nHugePages_Total: 0\n")
    assert info.mem_total_bytes == 1024 * 1024
    assert info.mem_free_bytes == 0
    assert info.mem_available_bytes is None


# --- cpuinfo ---------------------------------------------------------------------------

ARM64_BIG_LITTLE = "".join(
    f"processor\t: {i}\nBogoMIPS\t: 38.40\nFeatures\t: fp asimd\nCPU implementer\t: 0x41\n"
    f"CPU architecture: 8\nCPU variant\t: 0x1\nCPU part\t: {'0xd05' if i < 6 else '0xd0d'}\n"
    "CPU revision\t: 0\n\n"
    for i in range(8)
)


def test_cpuinfo_arm64_big_little_has_per_core_parts() -> None:
    info = parse_cpuinfo(ARM64_BIG_LITTLE)
    assert info.processor_count == 8
    assert info.model_name is None and info.hardware is None
    assert [core.part for core in info.cores] == ["0xd05"] * 6 + ["0xd0d"] * 2
    assert info.bogomips == (38.40,) * 8


def test_cpuinfo_x86() -> None:
    text = (
        "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Atom(TM) CPU\n"
        "bogomips\t: 3000.00\n\nprocessor\t: 1\nvendor_id\t: GenuineIntel\n"
        "model name\t: Intel(R) Atom(TM) CPU\nbogomips\t: 3000.00\npower management:\n"
    )
    info = parse_cpuinfo(text)
    assert info.processor_count == 2
    assert info.model_name == "Intel(R) Atom(TM) CPU"
    assert info.bogomips == (3000.0, 3000.0)
    assert info.parts == () and info.cores[1].part is None


def test_cpuinfo_of_this_machine() -> None:
    info = parse_cpuinfo(Path("/proc/cpuinfo").read_text())
    assert info.processor_count is not None and info.processor_count >= 1
    assert info.model_name


def test_cpuinfo_uniprocessor_arm_has_no_processor_index_lines() -> None:
    text = (
        "Processor : ARMv6-compatible processor rev 2 (v6l)\nBogoMIPS : 527.56\n"
        "Features : swp half thumb fastmult vfp edsp java\nCPU implementer : 0x41\n"
        "CPU architecture: 6TEJ\nCPU part : 0xb36\n\nHardware : trout\n"
    )
    info = parse_cpuinfo(text)
    assert info.processor_count == 1
    assert info.cores[0].part == "0xb36" and info.cores[0].architecture == "6TEJ"
    assert info.hardware == "trout"


# --- cpufreq ---------------------------------------------------------------------------

CPUFREQ_OUTPUT = (
    "/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq 1785600\n"
    "/sys/devices/system/cpu/cpu1/cpufreq/cpuinfo_max_freq 1785600\n"
    "/sys/devices/system/cpu/cpu10/cpufreq/cpuinfo_max_freq 3187200\n"
    "/sys/devices/system/cpu/cpu4/cpufreq/cpuinfo_max_freq 2419200\n"
    "/sys/devices/system/cpu/cpu3/cpufreq/cpuinfo_max_freq \n"  # unreadable: skipped
    "/sys/devices/system/cpu/cpu[0-9]*/cpufreq/cpuinfo_max_freq \n"  # glob matched nothing
    "/sys/devices/system/cpu/cpu7/cpufreq/cpuinfo_max_freq 3187200\n"
    "/sys/devices/system/cpu/cpu8/cpufreq/cpuinfo_max_freq 31872"  # cut off: still a number
)


def test_parse_cpufreq_max() -> None:
    assert parse_cpufreq_max(CPUFREQ_OUTPUT) == {
        0: 1785600,
        1: 1785600,
        10: 3187200,
        4: 2419200,
        7: 3187200,
        8: 31872,
    }
    assert parse_cpufreq_max("") == {}


def test_big_cores() -> None:
    assert big_cores({0: 1785600, 1: 1785600, 4: 2419200, 7: 3187200, 10: 3187200}) == [7, 10]
    assert big_cores({0: 1300000, 1: 1300000}) == [0, 1]  # homogeneous: every core is big
    assert big_cores({}) == []


def test_cores_join_cpuinfo_and_cpufreq() -> None:
    freqs = "".join(
        f"/sys/devices/system/cpu/cpu{i}/cpufreq/cpuinfo_max_freq {1800000 if i < 6 else 2600000}\n" for i in range(8)
    )
    info = device_info_from("s", "", "", ARM64_BIG_LITTLE, freqs)
    assert info.cores[0] == CoreInfo(0, 1800000, "0xd05")
    assert info.cores[7] == CoreInfo(7, 2600000, "0xd0d")
    # A core known to only one source is still listed, its other facts None.
    only_freq = device_info_from("s", "", "", "", freqs.splitlines()[3])
    assert only_freq.cores == (CoreInfo(3, 1800000, None),)


# --- battery ---------------------------------------------------------------------------


@pytest.mark.parametrize(("status", "charging"), [(1, None), (2, True), (3, False), (4, False), (5, False)])
def test_battery_charging_from_status(status: int, charging: bool | None) -> None:
    assert parse_dumpsys_battery(f"  status: {status}\n").charging is charging


def test_battery_newer_fields_and_absent_ones() -> None:
    text = (
        "Current Battery Service state:\n  AC powered: false\n  USB powered: true\n"
        "  Wireless powered: false\n  Dock powered: false\n  Max charging current: 500000\n"
        "  Charging state: 1\n  Charging policy: 1\n  status: 2\n  level: 50\n  temperature: -52\n"
    )
    state = parse_dumpsys_battery(text)
    assert state.usb_powered is True and state.dock_powered is False
    assert state.max_charging_current_ua == 500000
    assert state.temperature_c == -5.2
    assert state.voltage_mv is None and state.present is None and state.charge_counter_uah is None


def test_power_supply_uevent_with_kernel_prefix_and_duplicates() -> None:
    text = (
        "POWER_SUPPLY_NAME=battery\nPOWER_SUPPLY_TYPE=Battery\nPOWER_SUPPLY_STATUS=Charging\n"
        "POWER_SUPPLY_CURRENT_NOW=-1250000\nPOWER_SUPPLY_VOLTAGE_NOW=4100000\n"
        "POWER_SUPPLY_CHARGE_COUNTER=2535012\nPOWER_SUPPLY_CHARGE_COUNTER=2812000\n"
        "POWER_SUPPLY_TEMP=250\nPOWER_SUPPLY_ONLINE=1\nPOWER_SUPPLY_CHARGE"
    )
    supply = parse_power_supply_uevent(text)
    assert supply.name == "battery" and supply.type == "Battery"
    assert supply.charging is True
    assert supply.current_now_ua == -1250000 and supply.voltage_now_uv == 4100000
    assert supply.charge_counter_uah == 2812000  # last duplicate wins
    assert supply.temperature_c == 25.0 and supply.online is True


# --- adb devices -l --------------------------------------------------------------------


def test_adb_devices_every_state_and_shape() -> None:
    text = (
        "* daemon not running; starting now at tcp:5037\r\n"
        "* daemon started successfully\r\n"
        "List of devices attached\r\n"
        "emulator-5554          device product:sdk_gphone64_x86_64 model:sdk_gphone64_x86_64 "
        "device:emu64xa transport_id:1\r\n"
        "127.0.0.1:5555         offline transport_id:2\r\n"
        "R58M1234ABC            unauthorized usb:1-1 transport_id:3\r\n"
        "0123456789ABCDEF       no permissions (missing udev rules? user is in the plugdev group); "
        "see [http://developer.android.com/tools/device.html] usb:1-2 transport_id:4\r\n"
        "'HT4CJJT00001          device transport_id:5 model:Nexus_9 usb:2-1 product:volantis device:flounder'\r\n"
        "0A1B2C3D               device usb:3-1 product:hammerhead model:Nexus_5 device:hammerhead\r\n"
        "????????????           no permissions; see [http://developer.android.com/tools/device.html]\r\n"
        "$ adb devices -l\r\n"
        "\r\n"
    )
    lines = parse_adb_devices_l(text)
    assert [(line.serial, line.state) for line in lines] == [
        ("emulator-5554", AdbState.DEVICE),
        ("127.0.0.1:5555", AdbState.OFFLINE),
        ("R58M1234ABC", AdbState.UNAUTHORIZED),
        ("0123456789ABCDEF", AdbState.NO_PERMISSIONS),
        ("HT4CJJT00001", AdbState.DEVICE),
        ("0A1B2C3D", AdbState.DEVICE),
        ("????????????", AdbState.NO_PERMISSIONS),
    ]
    assert lines[0].model == "sdk_gphone64_x86_64" and lines[0].usb is None
    assert lines[1].transport_id == 2 and lines[1].model is None
    assert lines[3].state_detail == (
        "(missing udev rules? user is in the plugdev group); see [http://developer.android.com/tools/device.html]"
    )
    assert lines[3].usb == "1-2" and lines[3].transport_id == 4
    assert (lines[4].product, lines[4].model, lines[4].device, lines[4].usb, lines[4].transport_id) == (
        "volantis",
        "Nexus_9",
        "flounder",
        "2-1",
        5,
    )
    assert lines[5].transport_id is None  # adb before 2018 printed none
    assert lines[6].state_detail == "see [http://developer.android.com/tools/device.html]"
    assert parse_adb_devices_l("List of devices attached\n\n") == []


# --- batched command -------------------------------------------------------------------


def test_split_batched_facts_on_constructed_output() -> None:
    output = (
        "@@harness:getprop@@\r\n[ro.product.model]: [Pixel 8 Pro]\r\n"
        "@@harness:meminfo@@\r\nMemTotal: 1024 kB\r\n"
        "@@harness:cpuinfo@@\r\nprocessor\t: 0\r\n\r\n"
        "@@harness:cpufreq@@\r\n/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq 1000\r\n"
        "@@harness:end@@\r\n"
    )
    sections = split_batched_facts(output)
    assert sections == {
        "getprop": "[ro.product.model]: [Pixel 8 Pro]",
        "meminfo": "MemTotal: 1024 kB",
        "cpuinfo": "processor\t: 0\n",
        "cpufreq": "/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq 1000",
    }
    info = device_info_from("s", sections["getprop"], sections["meminfo"], sections["cpuinfo"], sections["cpufreq"])
    assert info.model == "Pixel 8 Pro" and info.ram_bytes == 1024 * 1024
    assert info.cores == (CoreInfo(0, 1000, None),)


def test_split_batched_facts_drops_a_cut_off_last_section() -> None:
    output = (
        "@@harness:getprop@@\n[a]: [b]\n@@harness:meminfo@@\nMemTotal: 1024 kB\n"
        "@@harness:cpuinfo@@\nprocessor\t: 0\n@@harness:cpufreq@@\n"
        "/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq 18"
    )
    assert set(split_batched_facts(output)) == {"getprop", "meminfo", "cpuinfo"}
    assert split_batched_facts("") == {}
    # the echoed command itself is not a marker line
    assert split_batched_facts(BATCHED_FACTS_COMMAND + "\n") == {}


def test_batched_command_runs_in_a_posix_shell() -> None:
    """dash is as small as Android's mksh; getprop is missing here, and on this
    host cpufreq may be absent: both give empty sections, never stray text."""
    result = subprocess.run(
        [shutil.which("dash") or "sh", "-c", BATCHED_FACTS_COMMAND],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    sections = split_batched_facts(result.stdout)
    assert set(sections) == {"getprop", "meminfo", "cpuinfo", "cpufreq"}
    assert sections["getprop"] == ""
    info = device_info_from("host", **{f"{name}_text": text for name, text in sections.items()})
    assert info.ram_bytes == parse_meminfo(Path("/proc/meminfo").read_text()).mem_total_bytes
    assert len(info.cores) >= 1
    assert set(parse_cpufreq_max(sections["cpufreq"])) <= set(range(os.cpu_count() or 1))


# --- never raise ----------------------------------------------------------------------


def everything(text: str) -> tuple[object, ...]:
    return (
        parse_getprop(text),
        parse_meminfo(text),
        parse_cpuinfo(text),
        parse_cpufreq_max(text),
        parse_dumpsys_battery(text),
        parse_power_supply_uevent(text),
        parse_adb_devices_l(text),
        device_info_from("s", text, text, text, text),
        split_batched_facts(text),
        parse_ram_size(text),
    )


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=1000))
def test_random_text_never_raises(text: str) -> None:
    everything(text)


_DUMP_LINES = [line for path in DUMP_FILES for line in verbatim(path).splitlines()]
_SEPARATORS = st.sampled_from(["\n", "\r\n", "\r", "\r\r\n", ":", "=", "[", "]", " ", "\t", ""])


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.sampled_from(_DUMP_LINES), max_size=40),
    st.lists(st.tuples(st.integers(0, 39), st.integers(0, 120), st.text(max_size=6)), max_size=8),
    _SEPARATORS,
)
def test_shuffled_and_mutated_dump_lines_never_raise(
    lines: list[str], edits: list[tuple[int, int, str]], joiner: str
) -> None:
    mutated = list(lines)
    for index, cut, insert in edits:
        if mutated:
            line = mutated[index % len(mutated)]
            mutated[index % len(mutated)] = line[:cut] + insert + line[cut + len(insert) :]
    everything(joiner.join(mutated))
