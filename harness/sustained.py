"""Sustained load: what a configuration gives after minutes of continuous inference, not in a burst.

`harness run --sustained DURATION [--fps N] [--window S]` runs each case as
consecutive benchmark processes of S seconds each (one row per window, no
cool-down between them, at N inferences per second with the tool's
`--run_frequency`). This module turns those window rows into per-case
summaries and into the rows the rankings compare:

- burst p50: the first window's p50; sustained p50: the median of the last
  third of the windows' p50s; their ratio is what heat and the governor cost;
- time to first throttle: the first window from which on every window's p50
  stays more than `min_effect` above the first window's, or (measured clocks
  only) the largest cluster's clock stays more than `min_effect` below the
  first's: a throttle lasts, a one-window spike is noise;
- frame deadline misses (with --fps): the share of inferences slower than
  1/fps. The benchmark tools report no single latencies, only min, p50, p95
  and max per window, so the share is given as bounds from those quantiles;
  a configuration is out when more than DEADLINE_MISS_SHARE may miss, i.e.
  when any sustained window's p95 is above the deadline.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Hashable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd

from harness.records import ClockMethod
from harness.stats import TieTest

DEADLINE_MISS_SHARE = 0.05
"""More than this share of inferences over the frame deadline rules a configuration out: the p95 each window
reports decides it exactly (a p95 above the deadline means at least 5% of that window's inferences missed)."""


def deadline_miss_bounds(
    min_us: float, p50_us: float, p95_us: float, max_us: float, deadline_us: float
) -> tuple[float, float]:
    """The share of a window's inferences slower than `deadline_us`, as bounds from its quantiles."""
    if deadline_us >= max_us:
        return 0.0, 0.0
    if deadline_us >= p95_us:
        return 0.0, 0.05
    if deadline_us >= p50_us:
        return 0.05, 0.5
    if deadline_us >= min_us:
        return 0.5, 1.0
    return 1.0, 1.0


@dataclass(frozen=True)
class SustainedSummary:
    """One sustained case (a configuration's repetition on one device), from its window rows."""

    run_id: str
    serial: str
    device_model: str | None
    device_kind: str | None
    model_name: str
    variant: str
    delegate: str
    num_threads: int
    repetition: int
    windows: int
    failed_windows: int
    window_s: float | None
    target_fps: float | None
    burst_p50_us: float | None
    sustained_p50_us: float | None
    throttle_window: int | None
    throttle_at_s: float | None
    throttle_reason: str | None
    missed_low: float | None  # share of inferences over 1/fps, lower and upper bound; None without --fps
    missed_high: float | None
    worst_p95_us: float | None  # the highest p95 of the sustained windows (the last two thirds)
    interrupted_after: int | None  # a window after which the case stopped and resumed later (the phone cooled)
    temp_start_c: float | None
    temp_max_c: float | None
    temperature_method: str | None
    clock_method: str | None
    power_method: str | None

    @property
    def ratio(self) -> float | None:
        """Sustained over burst p50: 1.0 is a phone that never slowed down."""
        if self.burst_p50_us and self.sustained_p50_us is not None:
            return self.sustained_p50_us / self.burst_p50_us
        return None

    def to_json(self) -> dict[str, object]:
        return {**asdict(self), "sustained_over_burst": self.ratio}


def _value(row: pd.Series, name: str) -> Any:
    """The cell `name` of `row` (a number or a string); None when missing."""
    value = row.get(name)
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def window_clocks_khz(row: pd.Series) -> tuple[str | None, tuple[float, ...]]:
    """A window's clock per CPU cluster, as the throttle test reads it: ("avg", the mean over the window) where
    present, else ("cur", the clock at its end); (None, ()) without clocks."""
    for source, name in (("avg", "cpu_avg_freq_khz"), ("cur", "cpu_cur_freq_khz")):
        values = row.get(name)
        # A list, or a missing value: None, NaN, or pd.NA when the rows came through DuckDB.
        if values is not None and not (pd.api.types.is_scalar(values) and pd.isna(values)) and len(values):
            return source, tuple(float(value) for value in values)
    return None, ()


def _largest_cluster_khz(row: pd.Series) -> float | None:
    """The last (largest) cluster's clock of window_clocks_khz; None without clocks."""
    _, clocks = window_clocks_khz(row)
    return clocks[-1] if clocks else None


def summarize_case(windows: pd.DataFrame, min_effect: float) -> SustainedSummary:
    """The summary of one case's window rows (one run, device, configuration and repetition)."""
    windows = windows.sort_values("window_index")
    first = windows.iloc[0]
    ok = windows[windows["status"] == "ok"]
    p50s = [float(v) for v in ok["inference_p50_us"] if not pd.isna(v)]
    burst = (
        float(first["inference_p50_us"]) if first["status"] == "ok" and not pd.isna(first["inference_p50_us"]) else None
    )
    tail = ok.iloc[len(ok) - max(1, len(ok) // 3) :] if len(ok) else ok
    sustained = statistics.median([float(v) for v in tail["inference_p50_us"]]) if len(tail) else None
    later = ok[ok["window_index"] >= max(1, len(windows) // 3)] if len(ok) > 1 else ok
    throttle_window = throttle_at = reason = None
    measured_clocks = first.get("clock_method") == ClockMethod.SYSFS.value
    first_khz = _largest_cluster_khz(first) if measured_clocks else None
    later_ok = [row for _, row in ok.iterrows() if row["window_index"] != first["window_index"]]

    def slower(row: pd.Series) -> bool:
        if not burst:
            return False
        return bool(row["inference_p50_us"] > burst * (1 + min_effect))

    def clocked_down(row: pd.Series) -> bool:
        khz = _largest_cluster_khz(row) if measured_clocks else None
        if not first_khz:
            return False
        return khz is not None and khz < first_khz * (1 - min_effect)

    for position, row in enumerate(later_ok):
        rest = later_ok[position:]
        if all(slower(r) for r in rest):
            reason = f"p50 {row['inference_p50_us'] / burst - 1:+.0%} over the first window, and stays above"
        elif first_khz and all(clocked_down(r) for r in rest):  # clocked_down needs first_khz
            khz = _largest_cluster_khz(row) or 0.0
            reason = f"largest cluster at {khz / 1e6:.2f} GHz ({khz / first_khz - 1:+.0%}), and stays down"
        else:
            continue
        throttle_window, throttle_at = int(row["window_index"]), _value(row, "window_start_s")
        break
    fps = _value(first, "target_fps")
    low = high = None
    if fps:
        deadline = 1e6 / fps
        bounds = [
            (
                deadline_miss_bounds(
                    r["inference_min_us"], r["inference_p50_us"], r["inference_p95_us"], r["inference_max_us"], deadline
                ),
                r["inference_count"] or 0,
            )
            for _, r in ok.iterrows()
        ]
        total = sum(count for _, count in bounds)
        if total:
            low = sum(b[0] * count for b, count in bounds) / total
            high = sum(b[1] * count for b, count in bounds) / total
    starts = [(int(r["window_index"]), _value(r, "window_start_s")) for _, r in windows.iterrows()]
    window_s = _window_s(windows)
    interrupted = next(
        (
            index
            for (index, start), (_, next_start) in zip(starts, starts[1:], strict=False)
            if start is not None and next_start is not None and window_s and next_start - start > 2 * window_s + 30
        ),
        None,
    )
    temps = [float(v) for v in windows["temp_end_c"] if not pd.isna(v)]
    p95s = [float(v) for v in later["inference_p95_us"] if not pd.isna(v)]
    return SustainedSummary(
        run_id=str(first["run_id"]),
        serial=str(first["serial"]),
        device_model=_value(first, "device_model"),
        device_kind=_value(first, "device_kind"),
        model_name=str(first["model_name"]),
        variant=str(first["variant"]),
        delegate=str(first["delegate"]),
        num_threads=int(first["num_threads"]),
        repetition=int(first["repetition"]),
        windows=len(windows),
        failed_windows=int((windows["status"] != "ok").sum()),
        window_s=window_s,
        target_fps=fps,
        burst_p50_us=burst,
        sustained_p50_us=sustained if p50s else None,
        throttle_window=throttle_window,
        throttle_at_s=throttle_at,
        throttle_reason=reason,
        missed_low=low,
        missed_high=high,
        worst_p95_us=max(p95s) if p95s else None,
        interrupted_after=interrupted,
        temp_start_c=_value(first, "temp_start_c"),
        temp_max_c=max(temps) if temps else None,
        temperature_method=_value(first, "temperature_method"),
        clock_method=_value(first, "clock_method"),
        power_method=_value(first, "power_method"),
    )


def _window_s(windows: pd.DataFrame) -> float | None:
    asked = [float(v) for v in windows["window_s"] if not pd.isna(v)] if "window_s" in windows.columns else []
    return asked[0] if asked else None


def window_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows of sustained cases (those with a window index)."""
    if "window_index" not in rows.columns:
        return rows.iloc[0:0]
    return rows[rows["window_index"].notna()]


def summarize(rows: pd.DataFrame, min_effect: float = TieTest().min_effect) -> list[SustainedSummary]:
    """One summary per sustained case in `rows` (burst rows are ignored)."""
    windows = window_rows(rows)
    return [
        summarize_case(group, min_effect)
        for _, group in windows.groupby(["run_id", "serial", "case_id", "repetition"], sort=True)
    ]


def _us(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value / 1000:.2f} ms" if value >= 1000 else f"{value:.0f} us"


def describe(summary: SustainedSummary) -> str:
    """One line for people: burst vs sustained, the throttle point, the deadline misses, how it was measured."""
    config = f"{summary.model_name} {summary.variant}/{summary.delegate}/x{summary.num_threads} r{summary.repetition}"
    ratio = f" (x{summary.ratio:.2f})" if summary.ratio is not None else ""
    parts = [
        f"{summary.windows} windows of {summary.window_s or 0:.0f} s",
        f"burst p50 {_us(summary.burst_p50_us)} -> sustained {_us(summary.sustained_p50_us)}{ratio}",
    ]
    virtual = summary.device_kind == "virtual"
    if summary.throttle_window is not None:
        what = "slower from" if virtual else "first throttle:"
        parts.append(
            f"{what} window {summary.throttle_window} at {summary.throttle_at_s or 0:.0f} s "
            f"({summary.throttle_reason}{'; this host, not heat' if virtual else ''})"
        )
    else:
        parts.append("no lasting slow-down")
    if summary.target_fps:
        parts.append(
            f"frame deadline {1000 / summary.target_fps:.1f} ms missed by "
            f"{_share(summary.missed_low, summary.missed_high)} of inferences"
        )
    if summary.failed_windows:
        parts.append(f"{summary.failed_windows} window(s) failed")
    if summary.interrupted_after is not None:
        parts.append(f"interrupted after window {summary.interrupted_after} (the phone cooled before the rest)")
    modelled = [
        name
        for name, method in (
            ("temperatures", summary.temperature_method),
            ("clocks", summary.clock_method),
            ("power", summary.power_method),
        )
        if method == "model"
    ]
    if modelled:
        parts.append(f"modelled {', '.join(modelled)}" + (": a virtual phone never throttles" if virtual else ""))
    return f"{summary.device_model or summary.serial} {config}: " + "; ".join(parts)


def _share(low: float | None, high: float | None) -> str:
    if low is None or high is None:
        return "an unknown share"
    if low == high:
        return f"{low:.0%}"
    return f"{low:.0%}-{high:.0%}"


def summary_table(summaries: Sequence[SustainedSummary]) -> pd.DataFrame:
    return pd.DataFrame([s.to_json() for s in summaries])


def as_ranking_rows(rows: pd.DataFrame, min_effect: float = TieTest().min_effect) -> pd.DataFrame:
    """One row per sustained case for the rankings (`policy derive --objective sustained`): the case's first
    window with its latency replaced by the sustained figures (p50: the sustained p50; p95: the worst
    sustained window's, which the frame deadline is held against). A case with a failed window is failed."""
    windows = window_rows(rows)
    picked: list[Hashable] = []
    figures: list[SustainedSummary | None] = []
    for _, group in windows.groupby(["run_id", "serial", "case_id", "repetition"], sort=True):
        failed = group[group["status"] != "ok"]
        if len(failed):
            picked.append(failed.index[0])
            figures.append(None)
        else:
            picked.append(group.sort_values("window_index").index[0])
            figures.append(summarize_case(group, min_effect))
    out = windows.loc[picked].copy()  # .loc keeps the columns' types (a None-only column stays a string one)
    for position, summary in enumerate(figures):
        if summary is not None:
            index = out.index[position]
            out.loc[index, ["inference_p50_us", "inference_avg_us"]] = summary.sustained_p50_us
            out.loc[index, "inference_p95_us"] = summary.worst_p95_us
    # One row per case now, not a window: the rankings take it like a burst case's row.
    out["window_index"] = pd.array([None] * len(out), dtype="Int64")
    return out.reset_index(drop=True)
