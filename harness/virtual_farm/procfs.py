"""Generated read-only files: /proc and /sys as Android shows them, and the reports of the phone's services.

Formats follow the Linux kernel (values in kB, kHz, milli-degrees C, uA, uV).
Modelled values come from DeviceModel, advanced before every render; the
device writes them into its sandbox's folder on every tick (sandbox.write_generated).
"/services/battery" is what `dumpsys battery` prints (the dumpsys shim cats it).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from harness.virtual_farm.device_model import DUMPSYS_STATUS_CODE, CpuAccounting, DeviceModel
from harness.virtual_farm.profile import Profile

Generator = Callable[[], bytes]


def _host_cpu_flags() -> str:
    # Programs that pick kernels from cpuinfo must see what this CPU really runs.
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "fpu sse sse2 ssse3 sse4_1 sse4_2"


def generated_files(profile: Profile, model: DeviceModel, accounting: CpuAccounting) -> dict[str, Generator]:
    """Device path -> function producing the file's current content."""
    booted_s = time.monotonic()
    flags = _host_cpu_flags()
    files: dict[str, Generator] = {}

    def add(path: str, fn: Callable[[], str]) -> None:
        def render() -> bytes:
            model.advance()
            return fn().encode()

        files[path] = render

    def cpuinfo() -> str:
        n = profile.core_count
        soc = profile.props.get("ro.soc.model") or profile.props["ro.hardware"]
        blocks = []
        for core in range(n):
            blocks.append(
                f"processor\t: {core}\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel\t\t: 85\n"
                f"model name\t: {soc} (virtual x86_64)\nstepping\t: 7\n"
                f"cpu MHz\t\t: {model.core_freq_khz(core) / 1000:.3f}\ncache size\t: 512 KB\n"
                f"physical id\t: 0\nsiblings\t: {n}\ncore id\t\t: {core}\ncpu cores\t: {n}\n"
                f"apicid\t\t: {core}\nfpu\t\t: yes\nflags\t\t: {flags}\nbogomips\t: 4800.00\n"
                f"clflush size\t: 64\naddress sizes\t: 46 bits physical, 48 bits virtual\n\n"
            )
        return "".join(blocks)

    def meminfo() -> str:
        total_kb = profile.ram_bytes // 1024
        cached_kb = total_kb * 15 // 100
        used_kb = (profile.system_used_bytes + accounting.rss_bytes()) // 1024
        free_kb = max(0, total_kb - used_kb - cached_kb)
        rows = [
            ("MemTotal", total_kb),
            ("MemFree", free_kb),
            ("MemAvailable", free_kb + cached_kb * 4 // 5),
            ("Buffers", total_kb // 200),
            ("Cached", cached_kb),
            ("SwapCached", 0),
            ("Active", used_kb // 2),
            ("Inactive", cached_kb),
            ("SwapTotal", 0),
            ("SwapFree", 0),
        ]
        return "".join(f"{name + ':':<16}{kb:>8} kB\n" for name, kb in rows)

    add("/proc/cpuinfo", cpuinfo)
    add("/proc/meminfo", meminfo)
    add("/proc/version", lambda: f"Linux version {profile.kernel_release} (build@tflite-farm) #1 SMP PREEMPT\n")
    add("/proc/uptime", lambda: f"{time.monotonic() - booted_s:.2f} 0.00\n")

    last = profile.core_count - 1
    for name in ("possible", "present", "online"):
        add(f"/sys/devices/system/cpu/{name}", lambda: f"0-{last}\n")

    # profile records are frozen, so their text is fixed; the model's readings are live
    def const(text: str) -> Callable[[], str]:
        return lambda: text

    def core_freq(core: int) -> Callable[[], str]:
        return lambda: f"{model.core_freq_khz(core)}\n"

    def zone_temp(i: int) -> Callable[[], str]:
        return lambda: f"{model.zone_temp_mc(i)}\n"

    clusters = profile.core_clusters()
    first_core = 0
    for cluster in profile.clusters:
        related = " ".join(str(c) for c in range(first_core, first_core + cluster.cores))
        for core in range(first_core, first_core + cluster.cores):
            base = f"/sys/devices/system/cpu/cpu{core}/cpufreq"
            c = clusters[core]
            add(f"{base}/cpuinfo_max_freq", const(f"{c.max_freq_khz}\n"))
            add(f"{base}/cpuinfo_min_freq", const(f"{c.min_freq_khz}\n"))
            add(f"{base}/scaling_max_freq", const(f"{c.max_freq_khz}\n"))
            add(f"{base}/scaling_min_freq", const(f"{c.min_freq_khz}\n"))
            add(f"{base}/scaling_cur_freq", core_freq(core))
            add(f"{base}/scaling_governor", lambda: "schedutil\n")
            add(f"{base}/related_cpus", const(f"{related}\n"))
        first_core += cluster.cores

    for i, zone in enumerate(profile.thermal_zones):
        add(f"/sys/class/thermal/thermal_zone{i}/type", const(f"{zone.type}\n"))
        add(f"/sys/class/thermal/thermal_zone{i}/temp", zone_temp(i))

    bat = "/sys/class/power_supply/battery"
    add(f"{bat}/current_now", lambda: f"{int(round(model.current_ma * 1000))}\n")
    add(f"{bat}/voltage_now", lambda: f"{int(round(model.voltage_mv * 1000))}\n")
    add(f"{bat}/capacity", lambda: f"{model.level_percent}\n")
    add(f"{bat}/status", lambda: f"{model.status.value}\n")
    add(f"{bat}/temp", lambda: f"{int(round(model.battery_temp_c * 10))}\n")
    add(f"{bat}/charge_counter", lambda: f"{model.charge_counter_uah}\n")
    add(f"{bat}/present", lambda: "1\n")
    add(f"{bat}/health", lambda: "Good\n")
    add(f"{bat}/technology", lambda: f"{profile.battery.technology}\n")
    add(f"{bat}/charge_full", lambda: f"{int(profile.battery.capacity_mah * 1000)}\n")
    add(f"{bat}/charge_full_design", lambda: f"{int(profile.battery.capacity_mah * 1000)}\n")

    def battery_uevent() -> str:
        rows = {
            "NAME": "battery",
            "TYPE": "Battery",
            "STATUS": model.status.value,
            "HEALTH": "Good",
            "PRESENT": 1,
            "TECHNOLOGY": profile.battery.technology,
            "CAPACITY": model.level_percent,
            "VOLTAGE_NOW": int(round(model.voltage_mv * 1000)),
            "CURRENT_NOW": int(round(model.current_ma * 1000)),
            "TEMP": int(round(model.battery_temp_c * 10)),
            "CHARGE_COUNTER": model.charge_counter_uah,
            "CHARGE_FULL": int(profile.battery.capacity_mah * 1000),
            "CHARGE_FULL_DESIGN": int(profile.battery.capacity_mah * 1000),
        }
        return "".join(f"POWER_SUPPLY_{k}={v}\n" for k, v in rows.items())

    add(f"{bat}/uevent", battery_uevent)

    def battery_report() -> str:
        lines = ["Current Battery Service state:"]
        if model.updates_stopped:
            lines.append("  (UPDATES STOPPED -- use 'reset' to restart)")
        lines += [
            "  AC powered: false",
            f"  USB powered: {'true' if model.plugged else 'false'}",
            "  Wireless powered: false",
            "  Dock powered: false",
            "  Max charging current: 500000",
            "  Max charging voltage: 5000000",
            f"  Charge counter: {model.charge_counter_uah}",
            f"  status: {DUMPSYS_STATUS_CODE[model.status]}",
            "  health: 2",
            "  present: true",
            f"  level: {model.level_percent}",
            "  scale: 100",
            f"  voltage: {int(round(model.voltage_mv))}",
            f"  temperature: {int(round(model.battery_temp_c * 10))}",
            f"  technology: {profile.battery.technology}",
        ]
        return "\n".join(lines) + "\n"

    add("/services/battery", battery_report)
    add("/sys/class/power_supply/usb/online", lambda: f"{int(model.plugged)}\n")
    add(
        "/sys/class/power_supply/usb/uevent",
        lambda: f"POWER_SUPPLY_NAME=usb\nPOWER_SUPPLY_TYPE=USB\nPOWER_SUPPLY_ONLINE={int(model.plugged)}\n",
    )
    return files
