"""Virtual device profiles: one TOML file per device in a virtual/ folder
(the packaged harness/defaults/virtual/, or a lab's; see harness.config).

The format is documented in harness/defaults/virtual/README.md. Loading checks
everything up front so a bad profile fails at `farm up`, naming the file and
the key to fix, never later inside a device process.
"""

from __future__ import annotations

import tomllib
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import InputFileError
from harness.records import Delegate

PROFILE_SCHEMA_VERSION = 1
ABI = "x86_64"  # virtual devices run the x86_64 runner, as Android emulator images do
ABI_LIST = "x86_64,x86"
ARM_ABI_LISTS = {"arm64-v8a": "arm64-v8a,armeabi-v7a", "armeabi-v7a": "armeabi-v7a"}

REQUIRED_PROPS = (
    "ro.product.manufacturer",
    "ro.product.model",
    "ro.product.name",
    "ro.product.device",
    "ro.product.brand",
    # ro.soc.manufacturer / ro.soc.model exist from Android 12 (SDK 31) only: an older phone's profile omits them.
    "ro.board.platform",
    "ro.hardware",
    "ro.build.version.sdk",
    "ro.build.version.release",
    "ro.build.fingerprint",
)

# Properties every device gets unless the profile sets them.
DEFAULT_PROPS = {
    "ro.build.type": "user",
    "ro.build.tags": "release-keys",
    "ro.debuggable": "0",
    "ro.secure": "1",
    "sys.boot_completed": "1",
    "persist.sys.timezone": "UTC",
}


DEFAULT_KERNEL_RELEASE = "5.15.137-android14-11-virtual"


class ProfileError(InputFileError):
    """A virtual device profile is missing, malformed or inconsistent."""


@dataclass(frozen=True)
class CpuCluster:
    """Cores sharing one frequency domain (Android numbers little cores first)."""

    name: str
    cores: int
    min_freq_khz: int
    max_freq_khz: int
    active_mw: float  # extra power of one fully busy core of this cluster at max freq


@dataclass(frozen=True)
class ThermalZone:
    """One /sys/class/thermal zone, a first-order RC model driven by device power."""

    type: str
    c_per_w: float  # steady-state rise above ambient per watt
    tau_s: float  # time constant


@dataclass(frozen=True)
class Battery:
    capacity_mah: float
    start_level_percent: float
    full_voltage_mv: float
    empty_voltage_mv: float
    charge_current_ma: float  # what the charger pushes in while plugged
    technology: str


@dataclass(frozen=True)
class Profile:
    path: Path
    name: str
    props: Mapping[str, str]  # every property getprop shows, derived ones included
    clusters: tuple[CpuCluster, ...]
    ram_bytes: int
    process_mem_limit_bytes: int  # RLIMIT_DATA of executed programs
    system_used_bytes: int  # RAM the (imaginary) Android system keeps busy
    storage_quota_bytes: int
    delegates: tuple[Delegate, ...]
    gpu_name: str | None
    idle_mw: float
    ambient_c: float
    thermal_zones: tuple[ThermalZone, ...]
    battery: Battery
    kernel_release: str

    @property
    def core_count(self) -> int:
        return sum(c.cores for c in self.clusters)

    def core_clusters(self) -> list[CpuCluster]:
        """The cluster of each core, indexed by core number."""
        return [c for c in self.clusters for _ in range(c.cores)]

    @property
    def model(self) -> str:
        return self.props["ro.product.model"]


def load_profile(path: Path) -> Profile:
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ProfileError(f"profile {path} does not exist", "check the --profiles folder") from None
    except tomllib.TOMLDecodeError as e:
        raise ProfileError(f"profile {path} is not valid TOML ({e})", "fix the syntax error") from None
    return _parse(path, raw)


def load_profiles(folder: Path) -> list[Profile]:
    files = sorted(folder.glob("*.toml"))
    if not files:
        raise ProfileError(
            f"no *.toml device profiles in {folder}",
            "point --profiles at a folder of profiles like the packaged one ('harness config' names it)",
        )
    profiles = [load_profile(f) for f in files]
    seen: dict[str, Path] = {}
    for p in profiles:
        if p.name in seen:
            raise ProfileError(
                f"profiles {seen[p.name]} and {p.path} both use name {p.name!r}",
                "give every profile a unique [device] name",
            )
        seen[p.name] = p.path
    return profiles


def _parse(path: Path, raw: dict[str, Any]) -> Profile:
    r = _Reader(path, raw)
    version = r.get("schema_version", int)
    if version != PROFILE_SCHEMA_VERSION:
        raise ProfileError(
            f"profile {path} has schema_version {version}, this harness reads {PROFILE_SCHEMA_VERSION}",
            "upgrade the harness or rewrite the profile to the documented format",
        )
    name = r.get("device.name", str)
    if not name.replace("-", "").replace("_", "").isalnum():
        raise ProfileError(f"{path}: device.name {name!r} must be letters, digits, '-' or '_'", "rename it")

    props = dict(DEFAULT_PROPS)
    for key, value in r.get("props", dict).items():
        props[key] = str(value)
    missing = [k for k in REQUIRED_PROPS if k not in props]
    if missing:
        raise ProfileError(f"{path}: [props] lacks {', '.join(missing)}", "add them to the profile")
    for key in ("ro.product.cpu.abi", "ro.product.cpu.abilist"):
        if key in props and props[key] != {"ro.product.cpu.abi": ABI, "ro.product.cpu.abilist": ABI_LIST}[key]:
            raise ProfileError(
                f"{path}: {key} = {props[key]!r}, but virtual devices run x86_64 programs only",
                f"remove {key} from [props]; it is derived",
            )

    clusters = tuple(
        CpuCluster(
            name=r.item(c, "cpu.clusters", "name", str),
            cores=r.item(c, "cpu.clusters", "cores", int),
            min_freq_khz=r.item(c, "cpu.clusters", "min_freq_khz", int),
            max_freq_khz=r.item(c, "cpu.clusters", "max_freq_khz", int),
            active_mw=float(r.item(c, "cpu.clusters", "active_mw", (int, float))),
        )
        for c in r.get("cpu.clusters", list)
    )
    if not clusters or any(c.cores < 1 or c.min_freq_khz > c.max_freq_khz for c in clusters):
        raise ProfileError(
            f"{path}: [[cpu.clusters]] needs cores >= 1 and min_freq_khz <= max_freq_khz", "fix the clusters"
        )

    delegates_raw = r.get("delegates.available", list)
    try:
        delegates = tuple(Delegate(d) for d in delegates_raw)
    except ValueError:
        raise ProfileError(
            f"{path}: delegates.available {delegates_raw} names an unknown delegate",
            f"use only {', '.join(d.value for d in Delegate)}",
        ) from None
    if Delegate.NPU in delegates:
        # This host has no NPU for the program to run on: CompiledModel would quietly run "npu" on the CPU.
        raise ProfileError(
            f"{path}: delegates.available offers npu, which no virtual phone can have",
            "remove npu: a virtual phone's npu cases fail the way a phone without an NPU fails",
        )
    gpu_name = r.get("delegates.gpu_name", str, None)
    if Delegate.GPU in delegates and not gpu_name:
        raise ProfileError(f"{path}: offers the gpu delegate but has no delegates.gpu_name", "name the GPU")

    ram_bytes = r.get("memory.ram_bytes", int)
    battery = Battery(
        capacity_mah=float(r.get("battery.capacity_mah", (int, float))),
        start_level_percent=float(r.get("battery.start_level_percent", (int, float), 80)),
        full_voltage_mv=float(r.get("battery.full_voltage_mv", (int, float), 4400)),
        empty_voltage_mv=float(r.get("battery.empty_voltage_mv", (int, float), 3400)),
        charge_current_ma=float(r.get("battery.charge_current_ma", (int, float), 1500)),
        technology=r.get("battery.technology", str, "Li-ion"),
    )
    zones = tuple(
        ThermalZone(
            type=r.item(z, "thermal.zones", "type", str),
            c_per_w=float(r.item(z, "thermal.zones", "c_per_w", (int, float))),
            tau_s=float(r.item(z, "thermal.zones", "tau_s", (int, float))),
        )
        for z in r.get("thermal.zones", list)
    )
    if not zones:
        raise ProfileError(f"{path}: no [[thermal.zones]]", "add at least one zone")

    # An ARM claim makes a stand-in for a phone the harness has no benchmark
    # binary for (a `skipped` case); nothing ARM can execute on it.
    abi = r.get("device.abi", str, ABI)
    if abi not in ARM_ABI_LISTS and abi != ABI:
        raise ProfileError(
            f"{path}: device.abi {abi!r} is unknown", f"use {ABI} (default) or one of {sorted(ARM_ABI_LISTS)}"
        )
    abilist = ARM_ABI_LISTS.get(abi, ABI_LIST)
    props.update(
        {
            "ro.product.cpu.abi": abi,
            "ro.product.cpu.abilist": abilist,
            "ro.product.cpu.abilist64": ",".join(a for a in abilist.split(",") if a in ("x86_64", "arm64-v8a")),
            "ro.product.cpu.abilist32": ",".join(a for a in abilist.split(",") if a in ("x86", "armeabi-v7a")),
            "ro.serialno": props.get("ro.serialno", f"VF{zlib.crc32(name.encode()):08X}"),
            # Not on real phones: lets the harness know power/thermal are modelled.
            "ro.harness.virtual": "1",
        }
    )
    if gpu_name:
        props.setdefault("ro.hardware.gpu", gpu_name)

    return Profile(
        path=path,
        name=name,
        props=props,
        clusters=clusters,
        ram_bytes=ram_bytes,
        process_mem_limit_bytes=r.get("memory.process_limit_bytes", int, ram_bytes // 2),
        system_used_bytes=r.get("memory.system_used_bytes", int, ram_bytes * 2 // 5),
        storage_quota_bytes=r.get("storage.quota_bytes", int),
        delegates=delegates,
        gpu_name=gpu_name,
        idle_mw=float(r.get("power.idle_mw", (int, float))),
        ambient_c=float(r.get("thermal.ambient_c", (int, float), 25.0)),
        thermal_zones=zones,
        battery=battery,
        kernel_release=r.get("device.kernel_release", str, DEFAULT_KERNEL_RELEASE),
    )


_MISSING = object()


class _Reader:
    """Typed access to dotted keys with errors that name the file and key."""

    def __init__(self, path: Path, raw: dict[str, Any]) -> None:
        self.path = path
        self.raw = raw

    def get(self, dotted: str, kind: type | tuple[type, ...], default: Any = _MISSING) -> Any:
        node: Any = self.raw
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                if default is _MISSING:
                    raise ProfileError(
                        f"profile {self.path} lacks {dotted}", "add it (see harness/defaults/virtual/README.md)"
                    )
                return default
            node = node[part]
        return self._check(dotted, node, kind)

    def item(self, table: dict[str, Any], where: str, key: str, kind: type | tuple[type, ...]) -> Any:
        if key not in table:
            raise ProfileError(f"profile {self.path}: an entry of {where} lacks {key}", "add it")
        return self._check(f"{where}.{key}", table[key], kind)

    def _check(self, dotted: str, value: Any, kind: type | tuple[type, ...]) -> Any:
        if isinstance(value, bool) or not isinstance(value, kind):
            raise ProfileError(
                f"profile {self.path}: {dotted} = {value!r} has the wrong type",
                f"make it a {kind.__name__ if isinstance(kind, type) else ' or '.join(k.__name__ for k in kind)}",
            )
        return value
