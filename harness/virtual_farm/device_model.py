"""What a virtual device cannot measure, derived from what it really used.

CPU time is real: the device reads the CPU seconds the processes of its sandbox
consume on this machine (the sandbox's own /proc, every tick). Everything
else here is a documented model (harness/defaults/virtual/README.md):

    per-core utilisation  = CPU seconds of each program spread over the cores it
                            may use, biggest cores first (as EAS places heavy work)
    power_mW              = idle_mw + sum(core utilisation * cluster active_mw)
    zone temperature      = first-order RC towards ambient_c + c_per_w * power_W
    battery               = coulomb counter: I = P / V while unplugged (negative
                            current_now), charge_current_ma - load while plugged
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from harness.virtual_farm.profile import Profile

DEVICE_CORES_ENV = b"ANDROID_DEVICE_CORES"  # set by the taskset shim (shims.py)

_CLK_TCK = os.sysconf("SC_CLK_TCK")
# /proc CPU times tick at 1/CLK_TCK (10 ms): shorter steps would turn steady load into noise.
MIN_STEP_S = 0.25
_PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")


@dataclass
class _Seen:
    device_cores: frozenset[int]
    counted_cpu_s: float


class CpuAccounting:
    """CPU seconds used by the processes of the phone's sandbox, read from the sandbox's own /proc.

    Each live process is charged what it used since the previous walk, on the device cores it was given
    (the taskset shim exports them as ANDROID_DEVICE_CORES; without it, every core). What a process uses
    between the last walk and its exit is not seen: at most one tick of it.
    """

    def __init__(self, core_count: int, proc_root: Callable[[], str | None] = lambda: None) -> None:
        self.core_count = core_count
        self.proc_root = proc_root  # the sandbox's /proc as the host reaches it; None before it starts
        self._seen: dict[tuple[int, int], _Seen] = {}  # (pid, start time) -> what was counted

    def _walk(self) -> list[tuple[tuple[int, int], float, str]]:
        root = self.proc_root()
        if root is None:
            return []
        found = []
        try:
            names = os.listdir(root)
        except OSError:
            return []
        for name in names:
            if not name.isdigit():
                continue
            try:
                with open(f"{root}/{name}/stat", "rb") as f:
                    raw = f.read()
            except OSError:
                continue
            fields = raw[raw.rindex(b")") + 2 :].split()
            cpu_s = (int(fields[11]) + int(fields[12])) / _CLK_TCK
            found.append(((int(name), int(fields[19])), cpu_s, f"{root}/{name}"))
        return found

    def _cores(self, proc_dir: str) -> frozenset[int]:
        all_cores = frozenset(range(self.core_count))
        try:
            with open(f"{proc_dir}/environ", "rb") as f:
                env = f.read().split(b"\0")
        except OSError:
            return all_cores
        for entry in env:
            if entry.startswith(DEVICE_CORES_ENV + b"="):
                with contextlib.suppress(ValueError):
                    mask = int(entry.split(b"=", 1)[1], 16)
                    return frozenset(c for c in range(self.core_count) if mask >> c & 1) or all_cores
        return all_cores

    def drain(self) -> list[tuple[frozenset[int], float]]:
        """CPU seconds used since the previous call, with the cores they ran on."""
        out = []
        live = set()
        for key, cpu_s, proc_dir in self._walk():
            live.add(key)
            seen = self._seen.get(key)
            if seen is None:
                seen = self._seen[key] = _Seen(self._cores(proc_dir), 0.0)
            if cpu_s > seen.counted_cpu_s:
                out.append((seen.device_cores, cpu_s - seen.counted_cpu_s))
                seen.counted_cpu_s = cpu_s
        for gone in set(self._seen) - live:
            del self._seen[gone]
        return out

    def rss_bytes(self) -> int:
        root = self.proc_root()
        total = 0
        for (pid, _), _, _ in self._walk() if root is not None else []:
            try:
                with open(f"{root}/{pid}/statm", "rb") as f:
                    total += int(f.read().split()[1]) * _PAGE_BYTES
            except (OSError, IndexError, ValueError):
                continue
        return total


class ChargeStatus(str, Enum):
    """/sys/class/power_supply/battery/status values."""

    CHARGING = "Charging"
    DISCHARGING = "Discharging"
    FULL = "Full"


# `dumpsys battery` prints BatteryManager's integer codes.
DUMPSYS_STATUS_CODE = {ChargeStatus.CHARGING: 2, ChargeStatus.DISCHARGING: 3, ChargeStatus.FULL: 5}


class DeviceModel:
    """Power, per-core frequency, temperatures and battery of one device.

    `advance()` integrates from the previous call to now; the device calls it
    periodically and before any modelled value is read.
    """

    def __init__(
        self, profile: Profile, accounting: CpuAccounting, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.profile = profile
        self.accounting = accounting
        self._clock = clock
        self._last_s = clock()
        self._core_clusters = profile.core_clusters()
        # Cores ordered biggest first: where the model places work.
        self._core_order = sorted(range(profile.core_count), key=lambda i: (-self._core_clusters[i].max_freq_khz, i))
        self.core_util = [0.0] * profile.core_count
        self.power_mw = profile.idle_mw
        self.zone_temp_c = [profile.ambient_c for _ in profile.thermal_zones]
        battery = profile.battery
        self._charge_mah = battery.capacity_mah * battery.start_level_percent / 100.0
        self.plugged = True  # farm phones sit on USB; `dumpsys battery unplug` changes that
        self.updates_stopped = False

    def advance(self) -> None:
        now = self._clock()
        dt = now - self._last_s
        if dt < MIN_STEP_S:
            return
        self._last_s = now
        self._spread_cpu(self.accounting.drain(), dt)
        clusters = self._core_clusters
        self.power_mw = self.profile.idle_mw + sum(u * clusters[i].active_mw for i, u in enumerate(self.core_util))
        power_w = self.power_mw / 1000.0
        for i, zone in enumerate(self.profile.thermal_zones):
            target = self.profile.ambient_c + zone.c_per_w * power_w
            self.zone_temp_c[i] += (target - self.zone_temp_c[i]) * (1.0 - math.exp(-dt / zone.tau_s))
        capacity = self.profile.battery.capacity_mah
        self._charge_mah = min(capacity, max(0.0, self._charge_mah + self.current_ma * dt / 3600.0))

    def _spread_cpu(self, usage: list[tuple[frozenset[int], float]], dt: float) -> None:
        util = [0.0] * self.profile.core_count
        for cores, cpu_s in usage:
            left = cpu_s / dt
            for core in self._core_order:
                if left <= 0:
                    break
                if core in cores:
                    take = min(1.0 - util[core], left)
                    util[core] += take
                    left -= take
        self.core_util = util

    # --- derived readings -------------------------------------------------

    def core_freq_khz(self, core: int) -> int:
        """Governor-like: frequency follows utilisation, in 100 MHz steps."""
        cluster = self._core_clusters[core]
        util = self.core_util[core]
        if util >= 0.995:
            return cluster.max_freq_khz
        freq = cluster.min_freq_khz + (cluster.max_freq_khz - cluster.min_freq_khz) * util
        return min(cluster.max_freq_khz, max(cluster.min_freq_khz, int(round(freq / 100_000)) * 100_000))

    @property
    def load_ma(self) -> float:
        return self.power_mw / self.voltage_mv * 1000.0

    @property
    def current_ma(self) -> float:
        """Into the battery: positive while charging, negative while discharging."""
        if not self.plugged:
            return -self.load_ma
        if self._charge_mah >= self.profile.battery.capacity_mah:
            return 0.0
        return self.profile.battery.charge_current_ma - self.load_ma

    @property
    def level_percent(self) -> int:
        return int(round(100.0 * self._charge_mah / self.profile.battery.capacity_mah))

    @property
    def charge_counter_uah(self) -> int:
        return int(self._charge_mah * 1000)

    @property
    def voltage_mv(self) -> float:
        b = self.profile.battery
        return b.empty_voltage_mv + (b.full_voltage_mv - b.empty_voltage_mv) * self._charge_mah / b.capacity_mah

    @property
    def status(self) -> ChargeStatus:
        if not self.plugged:
            return ChargeStatus.DISCHARGING
        return ChargeStatus.FULL if self.level_percent >= 100 else ChargeStatus.CHARGING

    def zone_temp_mc(self, index: int) -> int:
        return int(round(self.zone_temp_c[index] * 1000))

    @property
    def battery_temp_c(self) -> float:
        """The 'battery' zone if the profile has one, else the coolest zone."""
        for i, zone in enumerate(self.profile.thermal_zones):
            if zone.type == "battery":
                return self.zone_temp_c[i]
        return min(self.zone_temp_c)

    # --- `dumpsys battery unplug|reset` -------------------------------------

    def unplug(self) -> None:
        self.advance()
        self.plugged = False
        self.updates_stopped = True

    def reset(self) -> None:
        self.advance()
        self.plugged = True
        self.updates_stopped = False
