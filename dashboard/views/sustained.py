"""Sustained: what a configuration gives after minutes of continuous inference, next to its burst figure.

Every number comes from harness.sustained (summarize, describe): this page picks a case, lays its
summary out and draws its windows over time. Nothing here decides when a phone throttled.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import cached, charts, session
from harness.sustained import SustainedSummary, describe

HOW_TO = "harness run --sustained 10m --fps 15 --devices all --models PATH"

context = session.context()

st.title("Sustained")
rows, summaries = cached.sustained(context)
if not summaries:
    st.info(
        f"No sustained cases in the selected runs of `{context.selection.model_name}`: these are burst "
        f"measurements only. Run each case as consecutive windows for minutes, e.g. `{HOW_TO}` "
        "(`--window S` sets the window length), then reload this page."
    )
    st.stop()


def _ms(value_us: float | None) -> str:
    if value_us is None:
        return "-"
    return f"{value_us / 1000:.2f} ms" if value_us >= 1000 else f"{value_us:.0f} µs"


def _share(low: float | None, high: float | None) -> str:
    if low is None or high is None:
        return "-"
    return f"{low:.0%}" if low == high else f"{low:.0%}–{high:.0%}"


def _slow_down(summary: SustainedSummary) -> str:
    if summary.throttle_window is None:
        return "none"
    return f"window {summary.throttle_window} at {summary.throttle_at_s or 0:.0f} s"


def _configuration(summary: SustainedSummary) -> str:
    return f"{summary.variant}/{summary.delegate}/x{summary.num_threads}"


def _device(summary: SustainedSummary) -> str:
    name = f"{summary.serial} · {summary.device_model}" if summary.device_model else summary.serial
    return name + (" · virtual" if summary.device_kind == "virtual" else "")


def _windows(summary: SustainedSummary) -> pd.DataFrame:
    """The window rows summarized in `summary` (it names its case by run, device, configuration, repetition)."""
    keys = {
        "run_id": summary.run_id,
        "serial": summary.serial,
        "variant": summary.variant,
        "delegate": summary.delegate,
        "num_threads": summary.num_threads,
        "repetition": summary.repetition,
    }
    mask = pd.Series(True, index=rows.index)
    for column, value in keys.items():
        mask &= rows[column] == value
    return rows[mask].sort_values("window_index")


# -- one case ----------------------------------------------------------------------------------

devices = {summary.serial: _device(summary) for summary in summaries}
serial = st.selectbox("Device", list(devices), format_func=devices.__getitem__, key="sustained_device")
# The device's cases, the one that lost most to sustained load first.
ranked = sorted((s for s in summaries if s.serial == serial), key=lambda s: -(s.ratio or 0.0))
cases = {f"{_configuration(s)} · run {s.run_id} · repetition {s.repetition}": s for s in ranked}
summary = cases[st.selectbox("Configuration", list(cases), key="sustained_case")]
virtual = summary.device_kind == "virtual"
windows = _windows(summary)

if virtual:
    st.info(
        "A **virtual phone**: its latencies are this host's timings; its temperatures, CPU clocks and power "
        "come from a model, never from a sensor, and the model never throttles. A lasting slow-down here is "
        "this host, not heat.",
        icon=":material/developer_board:",
    )

columns = st.columns(5 if summary.target_fps else 4)
columns[0].metric("Burst p50", _ms(summary.burst_p50_us), help="The first window's p50.")
columns[1].metric(
    "Sustained p50", _ms(summary.sustained_p50_us), help="The median p50 of the last third of the windows."
)
columns[2].metric(
    "Sustained / burst",
    "-" if summary.ratio is None else f"x{summary.ratio:.2f}",
    help="1.0: the phone never slowed down.",
)
columns[3].metric(
    "First lasting slow-down",
    "none" if summary.throttle_window is None else f"window {summary.throttle_window}",
    help="The first window from which on every window stays slower than the first (or, with measured "
    "clocks, its largest cluster stays clocked down): a one-window spike is noise.",
)
if summary.target_fps:
    columns[4].metric(
        "Deadline misses",
        _share(summary.missed_low, summary.missed_high),
        help=f"Share of inferences slower than the frame deadline 1/{summary.target_fps:g} s "
        f"({1000 / summary.target_fps:.1f} ms). The benchmark reports only min, p50, p95 and max "
        "per window, so the share is given as bounds.",
    )
st.caption(describe(summary))
if summary.throttle_reason:
    reason = (
        f"First lasting slow-down: window {summary.throttle_window} at {summary.throttle_at_s or 0:.0f} s, "
        f"{summary.throttle_reason}"
    )
    st.caption(reason + ("; this host, not heat." if virtual else "."))

methods = {
    "temperatures": (summary.temperature_method, {"sensor": "measured (thermal zones)"}),
    "CPU clocks": (summary.clock_method, {"sysfs": "measured (cpufreq)"}),
    "power": (summary.power_method, {"fuel_gauge": "measured (fuel gauge)"}),
}
described = [
    f"{what}: `{method}` ({labels.get(method) or ('modelled, not measured' if method == 'model' else method)})"
    for what, (method, labels) in methods.items()
    if method
]
modelled = [what for what, (method, _) in methods.items() if method == "model"]
if modelled:
    st.warning(
        f"**Modelled, not measured**: {', '.join(modelled)} of this case come from a model "
        "(`*_method = model`); compare them only with other modelled figures."
    )
if described:
    st.caption("How it was measured: " + "; ".join(described) + ".")

label = None
if summary.throttle_window is not None:
    label = f"{'slower' if virtual else 'throttled'} from window {summary.throttle_window}"
deadline_us = 1e6 / summary.target_fps if summary.target_fps else None
st.plotly_chart(charts.sustained_latency(windows, deadline_us, summary.throttle_at_s, label), key="sustained_latency")
if windows["temp_end_c"].notna().any():
    st.plotly_chart(
        charts.sustained_temperature(windows, summary.temperature_method == "model", summary.throttle_at_s, label),
        key="sustained_temperature",
    )
else:
    st.info(f"{serial} reported no temperatures for this case.")
if windows["cpu_cur_freq_khz"].notna().any() or windows["cpu_avg_freq_khz"].notna().any():
    st.plotly_chart(
        charts.sustained_clocks(windows, summary.clock_method == "model", summary.throttle_at_s, label),
        key="sustained_clocks",
    )
    st.caption(
        "Clocks: the mean over each window where the phone reports it (time_in_state), else the clock at "
        "the window's end."
    )
else:
    st.info(f"{serial} reported no CPU clocks for this case.")

# -- every case --------------------------------------------------------------------------------

st.subheader("Every sustained case")
table = pd.DataFrame(
    [
        {
            "device": _device(s),
            "configuration": _configuration(s),
            "burst p50 (ms)": None if s.burst_p50_us is None else s.burst_p50_us / 1000,
            "sustained p50 (ms)": None if s.sustained_p50_us is None else s.sustained_p50_us / 1000,
            "sustained / burst": s.ratio,
            "first lasting slow-down": _slow_down(s),
            "deadline misses": _share(s.missed_low, s.missed_high) if s.target_fps else "no --fps",
            "modelled": ", ".join(
                what
                for what, method in (
                    ("temperatures", s.temperature_method),
                    ("clocks", s.clock_method),
                    ("power", s.power_method),
                )
                if method == "model"
            )
            or "-",
            "windows": s.windows,
            "run_id": s.run_id,
            "repetition": s.repetition,
        }
        for s in summaries
    ]
).sort_values("sustained / burst", ascending=False, na_position="last")
st.dataframe(
    table,
    hide_index=True,
    column_config={
        "burst p50 (ms)": st.column_config.NumberColumn(format="%.2f"),
        "sustained p50 (ms)": st.column_config.NumberColumn(format="%.2f"),
        "sustained / burst": st.column_config.NumberColumn(format="x%.2f"),
    },
)
st.caption(
    "Worst ratio first. Burst: the first window's p50; sustained: the median p50 of the last third of the "
    "windows. Virtual phones' slow-downs are this host's, not heat."
)
