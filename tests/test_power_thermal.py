"""harness.phone.thermal and harness.phone.power: pure heuristics on constructed and captured
readings, then the samplers against real virtual devices through the real adb server."""

from __future__ import annotations

import time
import tomllib
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import pytest
from farm_fixtures import SHIPPED_PROFILES, build_probe_zipapp, farm  # noqa: F401 - module-scoped fixture
from fixture_paths import DEVICE_DUMPS

from harness.digest import file_sha256
from harness.phone import thermal
from harness.phone.device import Phone
from harness.phone.facts import PowerSupply, parse_power_supply_uevent
from harness.phone.power import (
    NoPowerReason,
    PowerReading,
    PowerSampler,
    energy_mj_per_inference,
    reading_from_samples,
    unplugged,
)
from harness.phone.profiles import AdbServer
from harness.phone.thermal import hottest_c, normalise_temp_c, parse_zones_c, read_zones_c, wait_until_cool
from harness.records import PowerMethod

DUMPS = DEVICE_DUMPS
VERBATIM_MARKER = "# ---- verbatim text below this line ----\n"


def verbatim(name: str) -> str:
    return (DUMPS / name).read_text(encoding="utf-8").split(VERBATIM_MARKER, 1)[1]


def phone(farm, name: str) -> Phone:  # noqa: F811
    return Phone(AdbServer("127.0.0.1", farm.adb_port), farm.record(name).serial)


def supply(status: str | None, current_ua: int | None, voltage_uv: int | None = 4_000_000) -> PowerSupply:
    return PowerSupply(status=status, current_now_ua=current_ua, voltage_now_uv=voltage_uv)


# --- thermal: pure --------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "temp_c"),
    [
        ("41500", 41.5),  # milli-degrees, the kernel ABI
        ("-5000", -5.0),
        ("313", 31.3),  # deci-degrees
        ("45", 45.0),  # degrees
        ("36.5", 36.5),
        ("-273000", None),  # "no sensor" sentinel
        ("0", None),  # disabled sensor
        ("200000", None),  # 200 degC: absurd
        ("", None),
        ("cat: temp: Invalid argument", None),
    ],
)
def test_temperature_units_heuristic(raw: str, temp_c: float | None) -> None:
    assert normalise_temp_c(raw) == (pytest.approx(temp_c) if temp_c is not None else None)


def test_zone_output_parsing_skips_unreadable_fake_and_cut_off_zones() -> None:
    output = (
        "/sys/class/thermal/thermal_zone0 38200 cpu-0-0-usr\n"
        "/sys/class/thermal/thermal_zone1  tsens_tz_sensor9\n"  # temp failed to read
        "/sys/class/thermal/thermal_zone2 76 soc\n"  # Qualcomm BCL: battery level in %
        "/sys/class/thermal/thermal_zone3 3400 pm8150b-vbat-lvl0\n"
        "/sys/class/thermal/thermal_zone4 313 battery\r\n"
        "/sys/class/thermal/thermal_zone5 40100 cpu-0-0-usr\n"  # a repeated type
        "/sys/class/thermal/thermal_zone6 36000 \n"  # no type
        "/sys/class/thermal/thermal_zone7 39"  # cut off by the deadline: maybe 39000, maybe 39800
    )
    assert parse_zones_c(output) == {
        "cpu-0-0-usr": pytest.approx(38.2),
        "battery": pytest.approx(31.3),
        "cpu-0-0-usr@thermal_zone5": pytest.approx(40.1),
        "thermal_zone6": pytest.approx(36.0),
    }
    assert parse_zones_c("/sys/class/thermal/thermal_zone* \n") == {}  # no zones: the glob stays literal


# --- power: pure ------------------------------------------------------------------


def test_discharge_is_read_from_status_whatever_the_sign() -> None:
    # 500 mA at 4 V = 2000 mW, printed as negative uA (kernel ABI), positive uA
    # (many vendor drivers) and mA (a few).
    for current in (-500_000, 500_000, -500, 500):
        reading = reading_from_samples([supply("Discharging", current)] * 3, PowerMethod.FUEL_GAUGE)
        approx_mw = cast(float, pytest.approx(2000.0))  # compares equal to any float near 2000
        assert reading == PowerReading(approx_mw, PowerMethod.FUEL_GAUGE, 3, None), current
    varying = [supply("Discharging", -400_000, 4_000_000), supply("Discharging", -600_000, 3_900_000)]
    reading = reading_from_samples(varying, PowerMethod.MODEL)
    assert reading.avg_power_mw == pytest.approx((1600 + 2340) / 2)
    assert reading.power_method == "model" and reading.reason is None


@pytest.mark.parametrize(
    ("samples", "reason"),
    [
        ([supply("Charging", 1_200_000)] * 3, NoPowerReason.CHARGING),
        # Plugged in with a heavy load: the sign says "out", status says "charging".
        ([supply("Charging", -300_000)] * 3, NoPowerReason.CHARGING),
        ([supply("Full", 0)] * 3, NoPowerReason.CHARGING),
        ([supply("Discharging", -500_000)] * 3 + [supply("Charging", 900_000)], NoPowerReason.CHARGING),
        # Both signs while "Discharging": current flowed in for part of the window.
        ([supply("Discharging", -500_000), supply("Discharging", 450_000)] * 2, NoPowerReason.CHARGING),
        ([supply("Not charging", 976)] * 3, NoPowerReason.EXTERNAL_POWER),
        ([supply("Discharging", None)] * 3, NoPowerReason.NO_FUEL_GAUGE),
        ([supply("Discharging", 0)] * 3, NoPowerReason.NO_FUEL_GAUGE),
        ([supply("Discharging", -500_000, 0)] * 3, NoPowerReason.NO_FUEL_GAUGE),
        ([supply("Unknown", -500_000)] * 3, NoPowerReason.UNKNOWN_STATUS),
        ([supply(None, -500_000)] * 3, NoPowerReason.UNKNOWN_STATUS),
        ([supply("Discharging", -500_000)], NoPowerReason.TOO_FEW_SAMPLES),
        ([supply("Discharging", -500_000), supply("Discharging", 0)], NoPowerReason.TOO_FEW_SAMPLES),
        ([], NoPowerReason.TOO_FEW_SAMPLES),
        ([supply("Discharging", -500_000, 3_900)] * 3, NoPowerReason.IMPLAUSIBLE_READING),  # voltage in mV
        ([supply("Discharging", -50_000_000)] * 3, NoPowerReason.IMPLAUSIBLE_READING),  # 50 A
    ],
)
def test_no_made_up_power(samples: list[PowerSupply], reason: NoPowerReason) -> None:
    reading = reading_from_samples(samples, PowerMethod.FUEL_GAUGE)
    assert reading.avg_power_mw is None and reading.power_method is None
    assert reading.reason == reason and reading.samples == len(samples)


def test_captured_uevents_give_no_power() -> None:
    # Pixel 3a on USB with charging disabled: 976 uA "in" is the charger's business, not the load.
    pixel = parse_power_supply_uevent(verbatim("power_supply_uevent_03_pixel3a_usb_not_charging.txt"))
    assert pixel.status == "Not charging" and pixel.current_now_ua == 976
    assert reading_from_samples([pixel] * 5, PowerMethod.FUEL_GAUGE).reason == "external power"
    # OnePlus 7 dump cut off before CURRENT_NOW / VOLTAGE_NOW / STATUS.
    oneplus = parse_power_supply_uevent(verbatim("power_supply_uevent_01_oneplus7_acc_info.txt"))
    assert oneplus.current_now_ua is None
    assert reading_from_samples([oneplus] * 5, PowerMethod.FUEL_GAUGE).reason == "no fuel gauge"


def test_energy_per_inference_is_milliwatts_times_seconds() -> None:
    assert energy_mj_per_inference(2000.0, 5000.0) == pytest.approx(10.0)  # 2 W for 5 ms = 10 mJ
    assert energy_mj_per_inference(750.0, 1.5e6) == pytest.approx(1125.0)
    assert energy_mj_per_inference(None, 5000.0) is None
    assert energy_mj_per_inference(2000.0, None) is None
    assert energy_mj_per_inference(2000.0, 0.0) is None
    assert energy_mj_per_inference(0.0, 5000.0) is None


# --- on the virtual farm ------------------------------------------------------------


def test_zones_read_and_plausible(farm) -> None:  # noqa: F811
    p = phone(farm, "galaxy-a03")
    zones = read_zones_c(p)
    assert set(zones) == {"soc_thmzone", "battery"}
    assert all(20.0 <= temp_c <= 60.0 for temp_c in zones.values()), zones
    hottest = hottest_c(p)
    # The model integrates between reads: allow its drift between two round trips.
    assert hottest == pytest.approx(max(zones.values()), abs=0.5)


class ThermalClock:
    """harness.phone.thermal's monotonic clock, moved only by its sleeps and by each real zone read
    (read_s apiece), so the wait's bounds are checked exactly whatever the host's load."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, read_s: float = 0.0) -> None:
        self.now_s = 1000.0
        self.read_s = read_s
        self.reads = 0
        self.slept: list[float] = []
        real_hottest_c = thermal.hottest_c

        def hottest_c(p: Phone) -> float | None:
            self.reads += 1
            self.now_s += self.read_s
            return real_hottest_c(p)

        monkeypatch.setattr(thermal, "hottest_c", hottest_c)
        monkeypatch.setattr(thermal, "time", SimpleNamespace(monotonic=lambda: self.now_s, sleep=self.sleep))

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now_s += seconds


def test_wait_until_cool_returns_at_once_when_cool(farm, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    clock = ThermalClock(monkeypatch, read_s=0.25)
    wait = wait_until_cool(phone(farm, "pixel-8-pro"), threshold_c=100.0, max_wait_s=30.0, sleep=clock.sleep)
    # One read, no sleep: all the time it took is that read's.
    assert wait.cooled and clock.slept == [] and clock.reads == 1 and wait.waited_s == 0.25
    assert wait.start_c is not None and wait.start_c == wait.end_c


def test_wait_until_cool_gives_up_after_max_wait(farm, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    clock = ThermalClock(monkeypatch, read_s=0.25)
    wait = wait_until_cool(phone(farm, "pixel-8-pro"), threshold_c=0.0, max_wait_s=1.0, poll_s=0.3, sleep=clock.sleep)
    assert not wait.cooled and wait.start_c is not None and wait.end_c is not None
    # Reads take time too: read (0.25), sleep 0.3, read (0.8), sleep what is left of the second,
    # read (1.25), stop. The wait overshoots max_wait_s by one read at most.
    assert clock.slept == pytest.approx([0.3, 0.2]) and clock.reads == 3
    assert wait.waited_s == pytest.approx(1.25)


def test_wait_until_cool_is_bounded_by_the_sleeps_it_hands_out(farm, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    clock = ThermalClock(monkeypatch)  # reads take no time on this clock
    slept: list[float] = []  # a sleep that passes no time, as a sweep's cancellable wait may
    wait = wait_until_cool(
        phone(farm, "pixel-8-pro"), threshold_c=0.0, max_wait_s=100.0, poll_s=25.0, sleep=slept.append
    )
    # The clock never moved: only the sleeps handed out (4 x 25 s) ended the wait.
    assert not wait.cooled and slept == [25.0] * 4 and clock.reads == 5 and wait.waited_s == 0.0


def test_plugged_in_phone_gives_no_power(farm) -> None:  # noqa: F811
    p = phone(farm, "galaxy-a03")
    with PowerSampler(p, PowerMethod.MODEL) as sampler:
        time.sleep(0.6)
    reading = sampler.reading
    assert reading is not None and reading.samples >= 2
    assert reading.avg_power_mw is None and reading.power_method is None and reading.reason == "charging"


def test_unplugged_phone_power_follows_its_load(farm, tmp_path: Path) -> None:  # noqa: F811
    profile = tomllib.loads((SHIPPED_PROFILES / "high_pixel_8_pro.toml").read_text())
    idle_mw, big_core_mw = profile["power"]["idle_mw"], profile["cpu"]["clusters"][-1]["active_mw"]
    p = phone(farm, "pixel-8-pro")
    assert p.facts().modelled_sensors
    probe = build_probe_zipapp(tmp_path / "probe")
    remote, _ = p.ensure_file(probe, file_sha256(probe), mode=0o755)
    with unplugged(p):
        assert p.check_output("cat /sys/class/power_supply/battery/status").strip() == "Discharging"
        with PowerSampler(p, PowerMethod.MODEL) as idle:
            time.sleep(0.8)
        sampler = PowerSampler(p, PowerMethod.MODEL).start()
        window_started = time.monotonic()
        spin = p.shell(f"{remote} --spin=2.5", timeout_s=30)
        busy = sampler.stop()
        window_s = time.monotonic() - window_started
    assert p.check_output("cat /sys/class/power_supply/battery/status").strip() in ("Charging", "Full")
    assert spin.exit_code == 0, spin

    assert idle.reading is not None and idle.reading.power_method == "model" and idle.reading.samples >= 2
    # current_now * voltage_now gives back the modelled power: idle_mw plus what the phone's own
    # processes use, which is now only the sampler's loop (real mksh and toybox: a few % of a core).
    assert idle_mw * 0.99 <= idle.reading.avg_power_mw <= idle_mw * 1.15
    # One spinning thread lands on the X3 core: the model adds its active_mw times the share of
    # the window the spinner really ran. A busy host gives it less CPU and the model less power,
    # so the bound scales with the CPU seconds the spinner reports, never with free host CPU.
    cpu_s = float(spin.stdout.decode().split("cpu_s ", 1)[1].split()[0])
    assert 0.0 < cpu_s <= window_s, (cpu_s, window_s)
    assert busy.power_method == "model" and busy.samples >= 10 and busy.reason is None, busy
    expected_extra_mw = big_core_mw * cpu_s / window_s
    assert busy.avg_power_mw is not None and busy.avg_power_mw > idle_mw + expected_extra_mw / 4, (
        busy,
        cpu_s,
        window_s,
    )


def test_sampler_skips_failing_reads_without_raising(farm) -> None:  # noqa: F811
    gone = Phone(AdbServer("127.0.0.1", farm.adb_port), "127.0.0.1:1")  # no such device
    sampler = PowerSampler(gone, PowerMethod.FUEL_GAUGE).start()
    time.sleep(0.3)
    reading = sampler.stop()  # between failed opens it waits on the stop event: returning is the test
    assert reading.samples == 0 and reading.avg_power_mw is None and reading.reason == "too few samples"
    assert sampler.stop() is reading


def _shells_on(p: Phone) -> int:
    """`sh` processes on the phone besides the one running this `ps`."""
    return sum(1 for line in p.check_output("ps").splitlines()[1:] if line.split()[-1] == "sh") - 1


def test_streaming_sampler_keeps_its_rate_and_leaves_nothing_on_the_phone(farm) -> None:  # noqa: F811
    p = phone(farm, "nothing-phone-1")
    assert _shells_on(p) == 0
    window_s = 2.0
    sampler = PowerSampler(p, PowerMethod.MODEL).start()  # interval 0.1 s
    time.sleep(window_s / 2)
    # One stream for the whole window: exactly one sampling loop runs on the phone.
    assert _shells_on(p) == 1
    time.sleep(window_s / 2)
    # stop() hangs the stream up (its read loop never looks at the clock or the stop flag), so
    # returning at all is the test; a wall-clock budget here only failed on a busy machine.
    reading = sampler.stop()
    # Each tick is a sample plus a 0.1 s sleep: close to 10 a second, never more.
    assert 0.6 * window_s / 0.1 <= reading.samples <= window_s / 0.1 + 1, reading
    assert reading.reason == "charging"  # plugged in: honest as before
    # Closing the stream ended the loop on the phone.
    deadline = time.monotonic() + 3.0
    while _shells_on(p) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _shells_on(p) == 0
    count = reading.samples
    time.sleep(0.3)
    assert len(sampler._samples) == count  # nothing arrives after stop()


def test_streaming_sampler_reopens_a_stream_killed_on_the_phone(farm) -> None:  # noqa: F811
    p = phone(farm, "nothing-phone-1")
    sampler = PowerSampler(p, PowerMethod.MODEL).start()
    time.sleep(0.5)
    # The sampling loop: a top-level `sh` (its parent, adbd's stand-in, is outside the phone's pid namespace: 0)
    # other than the one running this command.
    out = p.check_output("echo me=$$; ps")
    me = int(out.split("me=", 1)[1].split()[0])
    loops = [
        int(line.split()[1])
        for line in out.splitlines()
        if line.split()[-1] == "sh" and line.split()[2] == "0" and line.split()[1] != str(me)
    ]
    assert len(loops) == 1, out
    p.check_output(f"kill {loops[0]}")
    before = len(sampler._samples)
    time.sleep(1.0)
    reading = sampler.stop()
    # The window goes on through a new stream: samples keep coming after the kill.
    assert reading.samples >= before + 5, (before, reading)
    deadline = time.monotonic() + 3.0
    while _shells_on(p) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _shells_on(p) == 0
