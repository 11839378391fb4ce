"""Pure parsers of the facts a phone reports about itself.

Every function here takes text exactly as a device (or a user's terminal)
printed it and returns frozen records. None of them raises on bad input: what
could be read is returned, everything else is None. Inputs may have LF, CRLF
or the CR CR LF that old `adb shell` PTYs produce, shell prompts, `date`
lines and cut-off last lines.

Sources read:
- `getprop`                      -> parse_getprop
- `/proc/meminfo`                -> parse_meminfo
- `/proc/cpuinfo`                -> parse_cpuinfo (ARM32 old and new, ARM64, x86)
- the cpufreq loop of BATCHED_FACTS_COMMAND -> parse_cpufreq_max
- `dumpsys battery`              -> parse_dumpsys_battery
- `/sys/class/power_supply/*/uevent` -> parse_power_supply_uevent
- `adb devices -l`               -> parse_adb_devices_l

`device_info_from` combines the first four into one DeviceInfo; the device
module fetches all four with one round trip (BATCHED_FACTS_COMMAND) and cuts
the output apart with `split_batched_facts`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from enum import Enum

from harness.records import DeviceKind

# A lone CR, CRLF and CR CR LF (old adb PTYs) all end one line: splitting on
# them alone keeps the CR CR LF case from inventing blank lines, which
# /proc/cpuinfo uses as block separators.
_LINE_BREAK = re.compile(r"\r*\n|\r")
_UINT = re.compile(r"[0-9]+", re.ASCII)
_SIGNED_INT = re.compile(r"[-+]?[0-9]+", re.ASCII)
_DECIMAL = re.compile(r"[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)", re.ASCII)


def _lines(text: str) -> list[str]:
    return _LINE_BREAK.split(text)


def _to_int(text: str | None) -> int | None:
    if text is None:
        return None
    text = text.strip()
    return int(text) if _SIGNED_INT.fullmatch(text) else None


def _to_float(text: str | None) -> float | None:
    if text is None:
        return None
    text = text.strip()
    if not _DECIMAL.fullmatch(text):
        return None
    value = float(text)
    return value if math.isfinite(value) else None


def _to_bool(text: str | None) -> bool | None:
    lowered = (text or "").strip().lower()
    if lowered in ("true", "1"):
        return True
    if lowered in ("false", "0"):
        return False
    return None


# --- getprop ----------------------------------------------------------------

_PROP_START = re.compile(r"^\s*\[([^\[\]\s]+)\]:[ \t]*\[(.*)$")


def parse_getprop(text: str) -> dict[str, str]:
    """`[key]: [value]` lines of `getprop` -> {key: value}.

    A value may span lines (e.g. persist.sys.boot.reason.history): it runs
    until a line ending in `]`. A value still open when the next property or
    the end of the text comes is dropped rather than returned cut short.
    Prompts, `date` lines and other junk are ignored; a repeated key keeps
    its last value, as getprop itself would show after a change.
    """
    props: dict[str, str] = {}
    open_key: str | None = None
    open_parts: list[str] = []
    for line in _lines(text):
        start = _PROP_START.match(line)
        if start:
            key, rest = start.group(1), start.group(2).rstrip()
            if rest.endswith("]"):
                props[key] = rest[:-1]
                open_key = None
            else:
                open_key, open_parts = key, [rest]
        elif open_key is not None:
            stripped = line.rstrip()
            if stripped.endswith("]"):
                open_parts.append(stripped[:-1])
                props[open_key] = "\n".join(open_parts)
                open_key = None
            else:
                open_parts.append(line)
    return props


# --- /proc/meminfo ----------------------------------------------------------

_MEMINFO_LINE = re.compile(r"^\s*([A-Za-z0-9_()]+):\s*([0-9]+)\s*kB\s*$", re.ASCII)


@dataclass(frozen=True)
class MemInfo:
    """/proc/meminfo figures in bytes; None when the kernel does not print them
    (MemAvailable only exists since Linux 3.14)."""

    mem_total_bytes: int | None = None
    mem_free_bytes: int | None = None
    mem_available_bytes: int | None = None
    cached_bytes: int | None = None
    swap_total_bytes: int | None = None


def parse_meminfo(text: str) -> MemInfo:
    kib: dict[str, int] = {}
    for line in _lines(text):
        match = _MEMINFO_LINE.match(line)
        if match:
            kib.setdefault(match.group(1), int(match.group(2)))

    def as_bytes(name: str) -> int | None:
        # The kernel's "kB" is KiB.
        return kib[name] * 1024 if name in kib else None

    return MemInfo(
        mem_total_bytes=as_bytes("MemTotal"),
        mem_free_bytes=as_bytes("MemFree"),
        mem_available_bytes=as_bytes("MemAvailable"),
        cached_bytes=as_bytes("Cached"),
        swap_total_bytes=as_bytes("SwapTotal"),
    )


# --- /proc/cpuinfo ----------------------------------------------------------

_CORE_KEYS = ("CPU part", "CPU implementer", "CPU architecture")


@dataclass(frozen=True)
class CpuCore:
    """One core as /proc/cpuinfo describes it (ARM ids; None on x86)."""

    index: int
    part: str | None = None  # e.g. "0xd03" = Cortex-A53
    implementer: str | None = None  # e.g. "0x41" = ARM
    architecture: str | None = None  # e.g. "8", or "AArch64" on early arm64 kernels


@dataclass(frozen=True)
class CpuInfo:
    """What /proc/cpuinfo says. `parts` lists every `CPU part` line in printed
    order (old ARM32 kernels print one shared block for all cores), while
    `cores` carries each core's own or the shared value."""

    processor_count: int | None = None
    model_name: str | None = None
    hardware: str | None = None
    implementer: str | None = None
    architecture: str | None = None
    parts: tuple[str, ...] = ()
    bogomips: tuple[float, ...] | None = None
    cores: tuple[CpuCore, ...] = ()


def parse_cpuinfo(text: str) -> CpuInfo:
    """Read ARM32 (`Processor : ARMv7 ...` + `processor : N`), ARM64 and x86
    (`model name`) layouts; tabs or no tabs before the colon.

    Per-core fields belong to the `processor : N` block they follow up to a
    blank line; fields outside any block (the old ARM32 trailer) are shared
    by every core that lacks its own.
    """
    per_core: dict[int, dict[str, str]] = {}
    shared: dict[str, str] = {}
    current: dict[str, str] | None = None
    processor_line: str | None = None
    model_name: str | None = None
    hardware: str | None = None
    printed: dict[str, list[str]] = {key: [] for key in _CORE_KEYS}
    bogomips: list[float] = []
    for line in _lines(text):
        if not line.strip():
            current = None
            continue
        key, colon, value = line.partition(":")
        if not colon:
            continue
        key, value = key.strip(), value.strip()
        if key == "processor":
            if _UINT.fullmatch(value):
                current = per_core.setdefault(int(value), {})
        elif key == "Processor":
            # ARM32 and early arm64 kernels: the model line, not a core index.
            processor_line = processor_line or value or None
        elif key == "model name":
            model_name = model_name or value or None
        elif key.lower() == "bogomips":
            number = _to_float(value)
            if number is not None:
                bogomips.append(number)
        elif key == "Hardware":
            hardware = hardware or value or None
        elif key in _CORE_KEYS and value:
            printed[key].append(value)
            (current if current is not None else shared).setdefault(key, value)

    # A uniprocessor ARM kernel without CONFIG_SMP prints no `processor` lines.
    if not per_core and processor_line is not None:
        per_core[0] = {}
    cores = tuple(
        CpuCore(
            index=index,
            part=fields.get("CPU part", shared.get("CPU part")),
            implementer=fields.get("CPU implementer", shared.get("CPU implementer")),
            architecture=fields.get("CPU architecture", shared.get("CPU architecture")),
        )
        for index, fields in sorted(per_core.items())
    )
    return CpuInfo(
        processor_count=len(cores) or None,
        model_name=processor_line or model_name,
        hardware=hardware,
        implementer=next(iter(printed["CPU implementer"]), None),
        architecture=next(iter(printed["CPU architecture"]), None),
        parts=tuple(printed["CPU part"]),
        bogomips=tuple(bogomips) or None,
        cores=cores,
    )


# --- cpufreq maxima ---------------------------------------------------------

# BATCHED_FACTS_COMMAND prints one line per core that has cpufreq:
#     /sys/devices/system/cpu/cpu<N>/cpufreq/cpuinfo_max_freq <kHz>
# e.g. "/sys/devices/system/cpu/cpu7/cpufreq/cpuinfo_max_freq 2841600".
# The path names the core, so lines may come in any order; a core whose file
# could not be read prints no number and is left out.
_CPUFREQ_LINE = re.compile(r"/cpu([0-9]+)/cpufreq/cpuinfo_max_freq[ \t]+([0-9]+)[ \t]*$", re.ASCII)


def parse_cpufreq_max(text: str) -> dict[int, int]:
    """cpufreq loop output -> {cpu index: cpuinfo_max_freq in kHz}."""
    freqs: dict[int, int] = {}
    for line in _lines(text):
        match = _CPUFREQ_LINE.search(line)
        if match and int(match.group(2)) > 0:
            freqs[int(match.group(1))] = int(match.group(2))
    return freqs


def big_cores(freqs: dict[int, int]) -> list[int]:
    """The cores with the highest max frequency (the 'prime'/big cluster), sorted."""
    if not freqs:
        return []
    top = max(freqs.values())
    return sorted(index for index, khz in freqs.items() if khz == top)


# --- dumpsys battery --------------------------------------------------------

# BatteryManager.BATTERY_STATUS_*: 2 charging; 3 discharging, 4 not charging
# and 5 full are not; 1 is unknown.
_STATUS_CHARGING = 2
_STATUS_NOT_CHARGING = (3, 4, 5)


@dataclass(frozen=True)
class BatteryState:
    """`dumpsys battery` (BatteryService) as printed. `status`/`health` are the
    BatteryManager integer codes; `charging` is derived from `status`."""

    ac_powered: bool | None = None
    usb_powered: bool | None = None
    wireless_powered: bool | None = None
    dock_powered: bool | None = None
    max_charging_current_ua: int | None = None
    max_charging_voltage_uv: int | None = None
    charge_counter_uah: int | None = None
    status: int | None = None
    health: int | None = None
    present: bool | None = None
    level: int | None = None
    scale: int | None = None
    voltage_mv: int | None = None
    temperature_c: float | None = None
    technology: str | None = None
    charging: bool | None = None


_BATTERY_KEY = re.compile(r"[A-Za-z][A-Za-z ]*")


def parse_dumpsys_battery(text: str) -> BatteryState:
    """The first value of each known `  key: value` line wins; the header and
    prompt lines, other tools' sections and unknown keys are ignored."""
    raw: dict[str, str] = {}
    for line in _lines(text):
        key, colon, value = line.partition(":")
        key = key.strip()
        if colon and _BATTERY_KEY.fullmatch(key):
            raw.setdefault(key.lower(), value.strip())
    status = _to_int(raw.get("status"))
    # BatteryService prints tenths of a degree Celsius.
    temperature_tenths = _to_int(raw.get("temperature"))
    return BatteryState(
        ac_powered=_to_bool(raw.get("ac powered")),
        usb_powered=_to_bool(raw.get("usb powered")),
        wireless_powered=_to_bool(raw.get("wireless powered")),
        dock_powered=_to_bool(raw.get("dock powered")),
        max_charging_current_ua=_to_int(raw.get("max charging current")),
        max_charging_voltage_uv=_to_int(raw.get("max charging voltage")),
        charge_counter_uah=_to_int(raw.get("charge counter")),
        status=status,
        health=_to_int(raw.get("health")),
        present=_to_bool(raw.get("present")),
        level=_to_int(raw.get("level")),
        scale=_to_int(raw.get("scale")),
        voltage_mv=_to_int(raw.get("voltage")),
        temperature_c=None if temperature_tenths is None else temperature_tenths / 10,
        technology=raw.get("technology") or None,
        charging=_charging_from_status_code(status),
    )


def _charging_from_status_code(status: int | None) -> bool | None:
    if status == _STATUS_CHARGING:
        return True
    if status in _STATUS_NOT_CHARGING:
        return False
    return None


# --- power_supply uevent ----------------------------------------------------

# Optional POWER_SUPPLY_ prefix: tools such as acc strip it when printing.
_UEVENT_LINE = re.compile(r"^\s*(?:POWER_SUPPLY_)?([A-Z][A-Z0-9_]*)=(.*)$")


@dataclass(frozen=True)
class PowerSupply:
    """A /sys/class/power_supply/<name>/uevent in the kernel ABI's units
    (uA, uV, uAh, tenths of degC -> degC). Values are reported as written:
    some vendors print CURRENT_NOW in mA or with the opposite sign."""

    name: str | None = None
    type: str | None = None
    status: str | None = None  # "Charging", "Discharging", "Not charging", "Full", "Unknown"
    health: str | None = None
    present: bool | None = None
    online: bool | None = None
    capacity_pct: int | None = None
    voltage_now_uv: int | None = None
    current_now_ua: int | None = None
    temperature_c: float | None = None
    technology: str | None = None
    charge_counter_uah: int | None = None
    charge_full_uah: int | None = None
    charge_full_design_uah: int | None = None
    constant_charge_current_max_ua: int | None = None
    constant_charge_voltage_uv: int | None = None
    charging: bool | None = None


def parse_power_supply_uevent(text: str) -> PowerSupply:
    """`KEY=value` lines, with or without the POWER_SUPPLY_ prefix.

    Some drivers list a property twice with different values (seen on a
    OnePlus 7: CHARGE_COUNTER=2535012 then 2812000); the last one wins, as it
    would when the file is sourced by a shell. A cut-off last line without
    `=` is ignored.
    """
    raw: dict[str, str] = {}
    for line in _lines(text):
        match = _UEVENT_LINE.match(line)
        if match:
            raw[match.group(1)] = match.group(2).strip()
    status = raw.get("STATUS") or None
    temperature_tenths = _to_int(raw.get("TEMP"))
    return PowerSupply(
        name=raw.get("NAME") or None,
        type=raw.get("TYPE") or None,
        status=status,
        health=raw.get("HEALTH") or None,
        present=_to_bool(raw.get("PRESENT")),
        online=_to_bool(raw.get("ONLINE")),
        capacity_pct=_to_int(raw.get("CAPACITY")),
        voltage_now_uv=_to_int(raw.get("VOLTAGE_NOW")),
        current_now_ua=_to_int(raw.get("CURRENT_NOW")),
        temperature_c=None if temperature_tenths is None else temperature_tenths / 10,
        technology=raw.get("TECHNOLOGY") or None,
        charge_counter_uah=_to_int(raw.get("CHARGE_COUNTER")),
        charge_full_uah=_to_int(raw.get("CHARGE_FULL")),
        charge_full_design_uah=_to_int(raw.get("CHARGE_FULL_DESIGN")),
        constant_charge_current_max_ua=_to_int(raw.get("CONSTANT_CHARGE_CURRENT_MAX")),
        constant_charge_voltage_uv=_to_int(raw.get("CONSTANT_CHARGE_VOLTAGE")),
        charging=_charging_from_status_text(status),
    )


def _charging_from_status_text(status: str | None) -> bool | None:
    lowered = (status or "").lower()
    if lowered == "charging":
        return True
    if lowered in ("discharging", "not charging", "full"):
        return False
    return None


# --- adb devices -l ---------------------------------------------------------


class AdbState(str, Enum):
    """Connection states the adb server reports (adb.h ConnectionState)."""

    DEVICE = "device"
    OFFLINE = "offline"
    UNAUTHORIZED = "unauthorized"
    AUTHORIZING = "authorizing"
    CONNECTING = "connecting"
    NO_PERMISSIONS = "no permissions"
    DETACHED = "detached"
    BOOTLOADER = "bootloader"
    RECOVERY = "recovery"
    RESCUE = "rescue"
    SIDELOAD = "sideload"
    HOST = "host"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class AdbDeviceLine:
    """One device line of `adb devices -l`. `state_detail` keeps the words adb
    adds after the state, e.g. "(missing udev rules? user is in the plugdev
    group); see [http://developer.android.com/tools/device.html]"."""

    serial: str
    state: AdbState
    state_detail: str | None = None
    usb: str | None = None
    product: str | None = None
    model: str | None = None
    device: str | None = None
    transport_id: int | None = None


_ADB_PAIR = re.compile(r"^([a-z_]+):(.*)$")
_ADB_STATES = {state.value: state for state in AdbState}


def parse_adb_devices_l(text: str) -> list[AdbDeviceLine]:
    """Device lines in order. Tolerates a missing header, lines wrapped in
    quotes, `* daemon ...` chatter and prompts (a line is a device line only
    when its second word is an adb state), key:value pairs in any order and
    old servers that print no transport_id."""
    devices: list[AdbDeviceLine] = []
    for line in _lines(text):
        line = line.strip()
        if len(line) >= 2 and line[0] == line[-1] and line[0] in "\"'":
            line = line[1:-1].strip()
        words = line.split()
        if len(words) < 2:
            continue
        first_pair = next((i for i in range(2, len(words)) if _ADB_PAIR.match(words[i])), len(words))
        state_text = " ".join(words[1:first_pair])
        if state_text.startswith(AdbState.NO_PERMISSIONS.value):
            state = AdbState.NO_PERMISSIONS
            detail = state_text[len(AdbState.NO_PERMISSIONS.value) :].lstrip(" ;")
        elif words[1] in _ADB_STATES:
            state = _ADB_STATES[words[1]]
            detail = " ".join(words[2:first_pair])
        else:
            continue
        pairs: dict[str, str] = {}
        for word in words[first_pair:]:
            match = _ADB_PAIR.match(word)
            if match:
                pairs.setdefault(match.group(1), match.group(2))
        devices.append(
            AdbDeviceLine(
                serial=words[0],
                state=state,
                state_detail=detail or None,
                usb=pairs.get("usb") or None,
                product=pairs.get("product") or None,
                model=pairs.get("model") or None,
                device=pairs.get("device") or None,
                transport_id=_to_int(pairs.get("transport_id")),
            )
        )
    return devices


# --- one round trip for all facts -------------------------------------------

_MARKER = re.compile(r"^@@harness:([a-z]+)@@$")
_SECTIONS = ("getprop", "meminfo", "cpuinfo", "cpufreq")

# One `adb shell` command for mksh/toybox (and the older ash): only echo, cat,
# getprop, a glob and a for loop. stderr is dropped because adb without the
# shell v2 protocol merges it into stdout. The final `end` marker lets the
# splitter tell a complete last section from a cut-off one.
BATCHED_FACTS_COMMAND = (
    "echo '@@harness:getprop@@'; getprop 2>/dev/null; "
    "echo '@@harness:meminfo@@'; cat /proc/meminfo 2>/dev/null; "
    "echo '@@harness:cpuinfo@@'; cat /proc/cpuinfo 2>/dev/null; "
    "echo '@@harness:cpufreq@@'; "
    "for f in /sys/devices/system/cpu/cpu[0-9]*/cpufreq/cpuinfo_max_freq; "
    'do echo "$f $(cat "$f" 2>/dev/null)"; done; '
    "echo '@@harness:end@@'"
)


def split_batched_facts(output: str) -> dict[str, str]:
    """BATCHED_FACTS_COMMAND output -> {"getprop"|"meminfo"|"cpuinfo"|"cpufreq": text}.

    A section is returned only when the next marker line follows it, so a
    cut-off transfer never yields half a section (a truncated number would
    read as a wrong one). Lines are re-joined with LF.
    """
    sections: dict[str, str] = {}
    name: str | None = None
    body: list[str] = []
    for line in _lines(output):
        marker = _MARKER.match(line.strip())
        if marker is None:
            if name is not None:
                body.append(line)
            continue
        if name in _SECTIONS:
            sections[name] = "\n".join(body)
        name, body = marker.group(1), []
    return sections


# --- DeviceInfo ---------------------------------------------------------------

# Android derives ro.product.<x> from the partitions in this order
# (ro.product.property_source_order default); `system` comes last because a
# GSI-style system image says "Generic System" there.
_PRODUCT_PARTITIONS = ("odm", "vendor", "product", "system_ext", "system")

# Props that state the DRAM size, most specific first: Pixel's
# ro.boot.ddr_size '12GiB', MediaTek/Unisoc ro.boot.ddrsize and its copy
# ro.ramsize, Pixel's ro.boot.hardware.ddr '12GiB,Micron,LPDDR5,ff07'.
# Storage sizes (storage.mmc.size, ...) are never RAM.
_RAM_PROPS = ("ro.boot.ddr_size", "ro.boot.ddrsize", "ro.ramsize", "ro.boot.hardware.ddr")

_RAM_SIZE = re.compile(r"([0-9]{1,9}(?:\.[0-9]{1,9})?)\s*([KMGT])(?:I?B)?", re.ASCII | re.IGNORECASE)
_BINARY_UNITS = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def parse_ram_size(text: str) -> int | None:
    """A RAM size prop ('12GiB', '8GB', '6144MB', '4G') -> bytes.

    GB and MB count binary units: DRAM comes in powers of two and JEDEC
    writes GB for GiB. A bare number has no unit (vendors differ between MB
    and GB) and gives None, as does anything else.
    """
    match = _RAM_SIZE.fullmatch(text.strip())
    if not match:
        return None
    size_bytes = int(float(match.group(1)) * _BINARY_UNITS[match.group(2).upper()])
    return size_bytes or None


@dataclass(frozen=True)
class CoreInfo:
    """One CPU core: its max frequency from cpufreq and its ARM part id."""

    index: int
    max_freq_khz: int | None = None
    part: str | None = None


@dataclass(frozen=True)
class DeviceInfo:
    """Facts about one phone, from its props, /proc/meminfo, /proc/cpuinfo and
    cpufreq. SoC identity is spread over several props: `soc_model` is only
    ro.soc.model (Android 12+); older phones leave it None and tier rules use
    `board_platform`, `hardware`, `chipname` (Samsung ro.chipname) or
    `cpu_hardware` (the /proc/cpuinfo `Hardware` line, e.g.
    "Qualcomm Technologies, Inc MSM8953")."""

    serial: str
    manufacturer: str | None = None
    model: str | None = None
    brand: str | None = None
    device: str | None = None
    soc_manufacturer: str | None = None
    soc_model: str | None = None
    board_platform: str | None = None
    hardware: str | None = None
    chipname: str | None = None
    cpu_hardware: str | None = None
    abi: str | None = None
    abilist: tuple[str, ...] = ()
    sdk: int | None = None
    android_release: str | None = None
    ram_bytes: int | None = None
    cores: tuple[CoreInfo, ...] = ()
    fingerprint: str | None = None
    device_kind: DeviceKind | None = None  # None: not read from props (a hand-made DeviceInfo)


# What emulators say about themselves: the Android emulator (goldfish/ranchu, ro.kernel.qemu),
# Cuttlefish, Genymotion; and this project's virtual farm (ro.harness.virtual).
_VIRTUAL_PROPS = {"ro.harness.virtual": "1", "ro.kernel.qemu": "1", "ro.boot.qemu": "1"}
_VIRTUAL_HARDWARE = {"goldfish", "ranchu", "cutf_cvm", "vbox86"}


def device_kind(props: dict[str, str]) -> DeviceKind:
    """Physical or virtual, from what the phone reports about itself."""
    if any(props.get(name) == value for name, value in _VIRTUAL_PROPS.items()):
        return DeviceKind.VIRTUAL
    if props.get("ro.hardware") in _VIRTUAL_HARDWARE or props.get("ro.product.manufacturer") == "Genymotion":
        return DeviceKind.VIRTUAL
    return DeviceKind.PHYSICAL


def device_info_from(
    serial: str, getprop_text: str, meminfo_text: str, cpuinfo_text: str, cpufreq_text: str
) -> DeviceInfo:
    props = parse_getprop(getprop_text)
    meminfo = parse_meminfo(meminfo_text)
    cpuinfo = parse_cpuinfo(cpuinfo_text)
    freqs = parse_cpufreq_max(cpufreq_text)

    def prop(*names: str) -> str | None:
        return next((props[name] for name in names if props.get(name)), None)

    def product(field: str) -> str | None:
        return prop(
            f"ro.product.{field}",
            *(f"ro.product.{partition}.{field}" for partition in _PRODUCT_PARTITIONS),
        )

    abilist = tuple(
        abi for abi in (prop("ro.product.cpu.abilist", "ro.system.product.cpu.abilist") or "").split(",") if abi
    )
    if not abilist:
        # Before Android 5 the ABIs were ro.product.cpu.abi and .abi2.
        abilist = tuple(abi for abi in (prop("ro.product.cpu.abi"), prop("ro.product.cpu.abi2")) if abi)

    parts = {core.index: core.part for core in cpuinfo.cores}
    cores = tuple(
        CoreInfo(index=index, max_freq_khz=freqs.get(index), part=parts.get(index))
        for index in sorted(parts.keys() | freqs.keys())
    )

    return DeviceInfo(
        serial=serial,
        manufacturer=product("manufacturer"),
        model=product("model"),
        brand=product("brand"),
        device=product("device"),
        soc_manufacturer=prop("ro.soc.manufacturer"),
        soc_model=prop("ro.soc.model"),
        board_platform=prop("ro.board.platform"),
        hardware=prop("ro.hardware", "ro.boot.hardware"),
        chipname=prop("ro.chipname"),
        cpu_hardware=cpuinfo.hardware,
        abi=prop("ro.product.cpu.abi") or next(iter(abilist), None),
        abilist=abilist,
        # ro.build.version.sdk only: sdk_full ('36.1') and the vendor's SDK differ.
        sdk=_to_int(prop("ro.build.version.sdk")),
        android_release=prop("ro.build.version.release"),
        ram_bytes=meminfo.mem_total_bytes or _ram_bytes_from_props(props),
        cores=cores,
        fingerprint=prop("ro.build.fingerprint"),
        device_kind=device_kind(props),
    )


def _ram_bytes_from_props(props: dict[str, str]) -> int | None:
    for name in _RAM_PROPS:
        # ro.boot.hardware.ddr packs 'size,vendor,type,id'.
        size = parse_ram_size(props.get(name, "").split(",")[0])
        if size is not None:
            return size
    return None
