"""Phone temperatures from /sys/class/thermal, and a bounded wait for a cool phone.

Benchmarks on a hot phone measure its throttling, not the model: the sweep
waits until the hottest zone is below a threshold (never longer than it was
told) and records the temperatures before and after each case.

Units: the kernel ABI says milli-degrees Celsius, but some vendor drivers
print degrees or deci-degrees (see `normalise_temp_c`). Qualcomm phones also
list battery-monitor pseudo-zones whose "temp" is not a temperature (`soc` is
the charge level in %, `*vbat*` / `*ibat*` / `*bcl*` are voltage and current
limits); they are skipped, or `soc` at 80 % would read as an 80 degC phone.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from harness.phone.device import Phone

READ_TIMEOUT_S = 5.0
MIN_PLAUSIBLE_C = -40.0
MAX_PLAUSIBLE_C = 150.0

# One round trip for all zones: "<zone dir> <temp> <type>" per zone. A zone
# whose temp cannot be read prints an empty field and is skipped by the parser.
ZONES_COMMAND = (
    "for z in /sys/class/thermal/thermal_zone*; do "
    'echo "$z $(cat "$z/temp" 2>/dev/null) $(cat "$z/type" 2>/dev/null)"; done'
)

_NOT_A_TEMPERATURE = re.compile(r"^soc$|(?:^|[-_])(?:vbat|ibat|bcl)(?:[-_]|$)", re.IGNORECASE)


def normalise_temp_c(raw: str) -> float | None:
    """A zone's `temp` text -> degrees C, or None when it is not a usable reading.

    The unit is guessed from the magnitude, as phones give no unit:
      |raw| >= 1000      milli-degrees (the kernel ABI; 1000 = 1 degC)
      150 < |raw| < 1000 deci-degrees (e.g. 313 = 31.3 degC, as battery drivers report)
      |raw| <= 150       degrees
    So milli-degree readings below 1 degC, and deci-degree readings of 100 degC
    or more, are misread; neither is a phone running a benchmark. Exactly 0 is
    what disabled sensors report on many phones, so it is not a reading; nor is
    anything outside -40..150 degC after conversion (e.g. -273000 sentinels).
    """
    try:
        value = float(raw.strip())
    except ValueError:
        return None
    if not math.isfinite(value) or value == 0:
        return None
    magnitude = abs(value)
    if magnitude >= 1000:
        temp_c = value / 1000
    elif magnitude > MAX_PLAUSIBLE_C:
        temp_c = value / 10
    else:
        temp_c = value
    return temp_c if MIN_PLAUSIBLE_C <= temp_c <= MAX_PLAUSIBLE_C else None


def parse_zones_c(output: str) -> dict[str, float]:
    """ZONES_COMMAND output -> {zone type: degC}.

    Only newline-terminated lines count: a transfer cut by the deadline may end
    in half a number. A zone without a type is named after its folder; a type
    seen again (several sensors can share one) gets `@thermal_zoneN` appended.
    """
    zones: dict[str, float] = {}
    for line in output.split("\n")[:-1]:
        fields = line.rstrip("\r").split(" ", 2)
        if len(fields) != 3:
            continue
        zone_dir, raw_temp, zone_type = fields
        zone_type = zone_type.strip()
        if _NOT_A_TEMPERATURE.search(zone_type):
            continue
        temp_c = normalise_temp_c(raw_temp)
        if temp_c is None:
            continue
        folder = zone_dir.rsplit("/", 1)[-1]
        name = zone_type or folder
        if name in zones:
            name = f"{name}@{folder}"
        zones[name] = temp_c
    return zones


def read_zones_c(phone: Phone) -> dict[str, float]:
    """Every readable thermal zone of the phone, in degC, with one shell round trip.

    Complete lines of a command cut by the deadline still count: a zone whose
    driver hangs must not hide the others.
    """
    return parse_zones_c(phone.shell(ZONES_COMMAND, READ_TIMEOUT_S).text)


def hottest_c(phone: Phone) -> float | None:
    """The hottest zone in degC; None when the phone reports no usable zone."""
    zones = read_zones_c(phone)
    return max(zones.values()) if zones else None


@dataclass(frozen=True)
class CoolWait:
    """What wait_until_cool saw. The temperatures are the hottest zone's;
    None when the phone reported no usable zone."""

    start_c: float | None
    end_c: float | None
    waited_s: float
    cooled: bool


def wait_until_cool(
    phone: Phone,
    threshold_c: float,
    max_wait_s: float,
    poll_s: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
) -> CoolWait:
    """Poll the hottest zone until it is at or below threshold_c, for at most max_wait_s.

    The bound holds both in sleep time handed to `sleep` (which need not pass
    real time) and in wall time, so slow reads cannot stretch it beyond one
    more read. A phone without usable zones returns at once (waiting could not
    tell it cooled); a read that fails mid-wait keeps the last known temperature.
    """
    started_s = time.monotonic()
    start_c = hottest_c(phone)
    end_c = start_c
    slept_s = 0.0
    while end_c is not None and end_c > threshold_c:
        spent_s = max(slept_s, time.monotonic() - started_s)
        if spent_s >= max_wait_s:
            break
        step_s = min(poll_s, max_wait_s - spent_s)
        sleep(step_s)
        slept_s += step_s
        reading_c = hottest_c(phone)
        if reading_c is not None:
            end_c = reading_c
    return CoolWait(
        start_c=start_c,
        end_c=end_c,
        waited_s=time.monotonic() - started_s,
        cooled=end_c is not None and end_c <= threshold_c,
    )
