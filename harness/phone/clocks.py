"""CPU clocks of a phone, per cluster: what its governor set now, and what it ran at over a window.

One shell round trip reads every core's `scaling_cur_freq`, `related_cpus`
(which cores share a clock: a cluster) and, where the kernel keeps them,
`stats/time_in_state` (time spent at each frequency, in 10 ms ticks). The
difference of two snapshots gives each cluster's mean clock over the time
between them, which a throttling governor lowers even when `scaling_cur_freq`
happens to read high at the instant it is sampled.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from harness.phone.device import Phone

_CPU = "/sys/devices/system/cpu/cpu[0-9]*/cpufreq"
CLOCKS_COMMAND = (
    f'for f in {_CPU}/scaling_cur_freq {_CPU}/related_cpus; do echo "$f $(cat "$f" 2>/dev/null)"; done; '
    f'for f in {_CPU}/stats/time_in_state; do echo "@@ $f"; cat "$f" 2>/dev/null; done'
)
_VALUE_LINE = re.compile(r"/cpu([0-9]+)/cpufreq/(scaling_cur_freq|related_cpus)[ \t]+(.*?)[ \t]*$", re.ASCII)
_STATE_FILE = re.compile(r"^@@ .*/cpu([0-9]+)/cpufreq/stats/time_in_state$", re.ASCII)
_STATE_LINE = re.compile(r"^([0-9]+)[ \t]+([0-9]+)[ \t]*$", re.ASCII)


@dataclass(frozen=True)
class ClockSnapshot:
    """Each core's clock now, the clusters (cores sharing a clock, by first core) and time_in_state."""

    cur_khz: Mapping[int, int] = field(default_factory=dict)
    clusters: tuple[tuple[int, ...], ...] = ()
    time_in_state: Mapping[int, Mapping[int, int]] = field(default_factory=dict)  # core -> kHz -> 10 ms ticks

    def cluster_cur_khz(self) -> tuple[int, ...] | None:
        """Each cluster's current clock (its first core's), little clusters first; None when unreadable."""
        values = [self.cur_khz.get(cluster[0]) for cluster in self.clusters]
        known = [v for v in values if v is not None]
        return tuple(known) if values and len(known) == len(values) else None

    def mean_khz_since(self, before: ClockSnapshot) -> tuple[float, ...] | None:
        """Each cluster's time-weighted mean clock between `before` and this snapshot; None when a cluster
        keeps no time_in_state or no tick passed."""
        means = []
        for cluster in self.clusters:
            now, then = self.time_in_state.get(cluster[0]), before.time_in_state.get(cluster[0])
            if not now or then is None:
                return None
            ticks = {khz: count - then.get(khz, 0) for khz, count in now.items()}
            total = sum(t for t in ticks.values() if t > 0)
            if total <= 0:
                return None
            means.append(sum(khz * t for khz, t in ticks.items() if t > 0) / total)
        return tuple(means) if means else None


def parse_clocks(text: str) -> ClockSnapshot:
    """CLOCKS_COMMAND output -> ClockSnapshot; unreadable files are simply absent."""
    cur: dict[int, int] = {}
    related: dict[int, tuple[int, ...]] = {}
    states: dict[int, dict[int, int]] = {}
    in_state: int | None = None
    for line in text.splitlines():
        header = _STATE_FILE.match(line)
        if header:
            in_state = int(header.group(1))
            continue
        value = _VALUE_LINE.search(line)
        if value:
            in_state = None
            core, name, rest = int(value.group(1)), value.group(2), value.group(3)
            if name == "scaling_cur_freq" and rest.isdigit():
                cur[core] = int(rest)
            elif name == "related_cpus" and rest:
                cores = tuple(int(c) for c in rest.split() if c.isdigit())
                if cores:
                    related[core] = cores
            continue
        state = _STATE_LINE.match(line)
        if state and in_state is not None:
            states.setdefault(in_state, {})[int(state.group(1))] = int(state.group(2))
    groups = {related.get(core, (core,)) for core in cur}
    clusters = tuple(sorted((tuple(sorted(group)) for group in groups), key=lambda g: g[0]))
    return ClockSnapshot(cur, clusters, states)


def read_clocks(phone: Phone) -> ClockSnapshot:
    return parse_clocks(phone.shell(CLOCKS_COMMAND, timeout_s=10.0).text)
