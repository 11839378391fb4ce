"""Plotly figures for the dashboard pages: data in, figure out, no queries and no decisions."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

from dashboard.queries import LATENCY_METRICS, STATUS_ORDER
from harness.compare import Change
from harness.coverage import CoverageVerdict
from harness.ranking import METRICS

STATUS_COLORS = {
    "ok": "#2e7d32",
    "failed": "#c62828",
    "delegate_failed": "#ef6c00",
    "timeout": "#6a1b9a",
    "device_lost": "#455a64",
    "skipped": "#b0bec5",
}

POWER_METHOD_LABELS = {
    "fuel_gauge": "measured (fuel gauge)",
    "model": "modelled, not measured",
}
"""How each power_method reads in a legend: modelled power must never pass for a measurement."""


def _layout(figure: go.Figure, **extra: object) -> go.Figure:
    figure.update_layout(margin={"l": 10, "r": 10, "t": 40, "b": 10}, legend_title_text="", **extra)
    return figure


def status_by_tier(frame: pd.DataFrame, tiers: list[str]) -> go.Figure:
    """Stacked bars: rows (case x repetition) per tier, split by how they ended."""
    figure = px.bar(
        frame,
        x="tier",
        y="rows",
        color="status",
        category_orders={"tier": tiers, "status": list(STATUS_ORDER)},
        color_discrete_map=STATUS_COLORS,
        hover_data={"cases": True},
        labels={"rows": "rows (case × repetition)", "tier": "tier"},
        title="Cases by status per tier",
    )
    return _layout(figure)


def devices_per_tier(devices: pd.DataFrame, tiers: list[str]) -> go.Figure:
    counts = (
        devices.groupby("tier")
        .agg(devices=("serial", "size"), serials=("serial", lambda s: ", ".join(sorted(s))))
        .reset_index()
    )
    figure = px.bar(
        counts,
        x="tier",
        y="devices",
        category_orders={"tier": tiers},
        hover_data={"serials": True},
        text="devices",
        title="Devices per tier",
    )
    figure.update_yaxes(dtick=1)
    return _layout(figure)


def latency_distribution(rows: pd.DataFrame, metric: str, configurations: list[str]) -> go.Figure:
    """One box per configuration over its repetitions (and runs), every repetition shown as a point."""
    label = LATENCY_METRICS.get(metric, metric)
    factor, unit = time_scale(rows[metric])
    frame = rows.assign(latency=rows[metric] * factor)
    figure = px.box(
        frame,
        x="configuration",
        y="latency",
        color="delegate",
        points="all",
        category_orders={"configuration": configurations},
        hover_data={"run_id": True, "repetition": True, "num_threads": True},
        labels={"latency": f"{label} ({unit}, from {metric})", "configuration": "variant/delegate/threads"},
        title=f"{label} per configuration",
    )
    # Points on the box, not beside it: with a handful of repetitions the points are the data.
    figure.update_traces(pointpos=0, jitter=0.3)
    return _layout(figure, boxmode="overlay")


def temperatures(rows: pd.DataFrame, configurations: list[str]) -> go.Figure:
    """Hottest thermal zone before and after each repetition, per configuration; throttled ones marked,
    modelled ones labelled as such (a model's temperature is no measurement)."""
    frame = (
        rows.assign(temperature_method=rows["temperature_method"].fillna("sensor"))
        .melt(
            id_vars=["configuration", "run_id", "repetition", "throttled", "temperature_method"],
            value_vars=["temp_start_c", "temp_end_c"],
            var_name="when",
            value_name="temp_c",
        )
        .dropna(subset=["temp_c"])
    )
    frame["when"] = frame["when"].map({"temp_start_c": "before the case", "temp_end_c": "after the case"})
    # The throttled flag belongs to the case; it shows on the temperature the case ended at.
    throttled = frame["throttled"].fillna(False).astype(bool) & (frame["when"] == "after the case")
    frame.loc[throttled, "when"] = "after, throttled"
    modelled = frame["temperature_method"] == "model"
    frame.loc[modelled, "when"] = frame.loc[modelled, "when"] + " (modelled)"
    colors = {
        "before the case": "#90caf9",
        "after the case": "#1565c0",
        "after, throttled": STATUS_COLORS["failed"],
        "before the case (modelled)": "#bdbdbd",
        "after the case (modelled)": "#616161",
    }
    figure = px.strip(
        frame,
        x="configuration",
        y="temp_c",
        color="when",
        category_orders={"configuration": configurations, "when": list(colors)},
        color_discrete_map=colors,
        hover_data={"run_id": True, "repetition": True, "temperature_method": True},
        labels={"temp_c": "hottest zone (°C)", "configuration": "variant/delegate/threads"},
        title="Temperatures and throttling",
    )
    return _layout(figure)


def energy(rows: pd.DataFrame, configurations: list[str]) -> go.Figure:
    """Energy per inference per configuration, coloured by how the power was obtained."""
    frame = rows.assign(power_source=rows["power_method"].map(lambda m: POWER_METHOD_LABELS.get(m, str(m))))
    figure = px.strip(
        frame,
        x="configuration",
        y="energy_mj_per_inference",
        color="power_source",
        category_orders={"configuration": configurations},
        hover_data={"avg_power_mw": ":.0f", "power_method": True, "run_id": True},
        labels={
            "energy_mj_per_inference": "energy per inference (mJ)",
            "configuration": "variant/delegate/threads",
        },
        title="Energy per inference",
    )
    return _layout(figure)


# -- rankings, Pareto, comparisons, coverage: figures of what harness.ranking returned ---------

VERDICT_COLORS = {
    Change.REGRESSION.value: "#c62828",
    Change.NEWLY_FAILING.value: "#ef6c00",
    Change.SUSPICIOUS.value: "#f9a825",
    Change.IMPROVEMENT.value: "#2e7d32",
    Change.FIXED.value: "#66bb6a",
    Change.UNDECIDED.value: "#b0bec5",
    Change.UNTESTED.value: "#cfd8dc",
    Change.UNCHANGED.value: "#90a4ae",
    Change.FAILING_IN_BOTH.value: "#6a1b9a",
    Change.ONLY_IN_BASE.value: "#eceff1",
    Change.ONLY_IN_NEW.value: "#eceff1",
}
COVERAGE_COLORS = {
    CoverageVerdict.BEST.value: "#1b5e20",
    CoverageVerdict.WITHIN.value: "#2e7d32",
    CoverageVerdict.UNDECIDED.value: "#b0bec5",
    CoverageVerdict.UNTESTED.value: "#cfd8dc",
    CoverageVerdict.SLOWER.value: "#ef6c00",
    CoverageVerdict.NOT_MEASURED.value: "#eceff1",
    CoverageVerdict.WALKED_PAST_FAILURE.value: "#c62828",
    CoverageVerdict.NO_WORKING.value: "#6a1b9a",
}
_TIE_GROUPS = {True: "best, and tied with it", False: "other candidates"}


def time_scale(values_us: object = None) -> tuple[float, str]:
    """Factor and unit for microsecond figures: ms, unless they are mostly below a millisecond
    (a tiny model's 2 µs would read as 0.002 ms)."""
    figures = pd.Series(values_us, dtype="float64").dropna() if values_us is not None else pd.Series(dtype="float64")
    if not figures.empty and figures.median() < 1000.0:
        return 1.0, "µs"
    return 1e-3, "ms"


def metric_scale(metric: str, values: object = None) -> tuple[float, str]:
    """Factor and unit to show a metric in (`values`: its figures, to pick µs or ms for latency)."""
    unit = METRICS[metric].unit if metric in METRICS else ""
    return time_scale(values) if unit == "us" else (1.0, unit)


def metric_label(metric: str) -> str:
    return METRICS[metric].label if metric in METRICS else metric


def metric_title(metric: str, values: object = None) -> str:
    _, unit = metric_scale(metric, values)
    return f"{metric_label(metric)} ({unit})" if unit else metric_label(metric)


def ranking_bars(table: pd.DataFrame, metric: str) -> go.Figure:
    """Candidates in rank order: the tier's median as a bar labelled with its rank ("=2" for a tie),
    the tier's worst device as a marker."""
    factor, _ = metric_scale(metric, table["value"])
    frame = table[table["status"] == "candidate"].assign(
        shown=lambda f: f["value"] * factor,
        worst=lambda f: f["worst_value"] * factor,
        group=lambda f: (f["tie_group"] == 0).map(_TIE_GROUPS),
    )
    figure = px.bar(
        frame,
        x="config",
        y="shown",
        color="group",
        text="rank",
        category_orders={"config": list(frame["config"]), "group": list(_TIE_GROUPS.values())},
        color_discrete_map={_TIE_GROUPS[True]: "#2e7d32", _TIE_GROUPS[False]: "#90a4ae"},
        hover_data={"rank": True, "model_size_bytes": True, "group": False},
        labels={
            "shown": f"{metric_title(metric, table['value'])}, median over devices",
            "config": "variant/delegate/xthreads",
        },
        title="Candidates by rank (same rank = statistically tied)",
    )
    figure.update_traces(textposition="outside", cliponaxis=False)
    figure.add_trace(
        go.Scatter(
            x=frame["config"],
            y=frame["worst"],
            mode="markers",
            name="worst device of the tier",
            marker={"symbol": "diamond", "size": 9, "color": "#37474f"},
        )
    )
    return _layout(figure)


def ranking_heatmap(table: pd.DataFrame, metric: str, variants: list[str]) -> go.Figure:
    """One heatmap per variant: delegate x threads, coloured by the metric, labelled with the rank
    (or ✗ where the configuration was excluded, the reason on hover)."""
    from plotly.subplots import make_subplots

    factor, unit = metric_scale(metric, table["value"])
    delegates = sorted(table["delegate"].unique())
    threads = sorted(int(t) for t in table["num_threads"].unique())
    figure = make_subplots(
        rows=1, cols=len(variants), shared_yaxes=True, subplot_titles=variants, horizontal_spacing=0.02
    )
    for column, variant in enumerate(variants, start=1):
        cells = table[table["variant"] == variant].set_index(["delegate", "num_threads"])
        # Two files of one variant (re-converted between runs) share a cell: the better-ranked one shows.
        cells = cells[~cells.index.duplicated()]
        grid = [[_heat_cell(cells, delegate, thread, factor) for thread in threads] for delegate in delegates]
        z = [[cell[0] for cell in row] for row in grid]
        text = [[cell[1] for cell in row] for row in grid]
        hover = [[cell[2] for cell in row] for row in grid]
        figure.add_trace(
            go.Heatmap(
                z=z,
                x=[f"{t}t" for t in threads],
                y=delegates,
                text=text,
                texttemplate="%{text}",
                customdata=hover,
                coloraxis="coloraxis",
                name=variant,
                hovertemplate=f"{variant} · %{{y}} · %{{x}}<br>%{{z:.3g}}<br>%{{customdata}}<extra></extra>",
            ),
            row=1,
            col=column,
        )
    figure.update_layout(
        coloraxis={"colorscale": "RdYlGn_r", "colorbar": {"title": unit}},
        title=f"{metric_title(metric, table['value'])}: delegate × threads per variant",
    )
    # Room between the figure's title and the variants' subplot titles.
    return _layout(figure).update_layout(margin={"t": 80})


def _heat_cell(cells: pd.DataFrame, delegate: str, threads: int, factor: float) -> tuple[float | None, str, str]:
    """(value, label, hover) of one delegate x threads cell of a variant."""
    if (delegate, threads) not in cells.index:
        return None, "", "not measured"
    cell = cast("pd.Series[Any]", cells.loc[(delegate, threads)])  # a full key of the index: one row
    value = None if pd.isna(cell["value"]) else float(cell["value"]) * factor
    if cell["status"] == "excluded":
        return value, "✗", f"excluded: {cell['reason']}"
    return value, str(cell["rank"]), f"rank {cell['rank']}"


NUMERICS_LEVELS = {"ok": 0, "not_checked": 1, "no ok run": 1, "mismatch": 2}
_NUMERICS_LABELS = {0: "ok", 1: "–", 2: "✗"}


def numerics_heatmap(cells: pd.DataFrame, variants: list[str]) -> go.Figure:
    """The latency heatmap's grid (delegate x threads per variant) coloured by numerics: ok, not checked, or
    ✗ where the outputs disagreed with the reference on some device of the tier (which, and why, on hover)."""
    from plotly.subplots import make_subplots

    delegates = sorted(cells["delegate"].unique())
    threads = sorted(int(t) for t in cells["num_threads"].unique())
    figure = make_subplots(
        rows=1, cols=len(variants), shared_yaxes=True, subplot_titles=variants, horizontal_spacing=0.02
    )
    for column, variant in enumerate(variants, start=1):
        of_variant = cells[cells["variant"] == variant]
        grid = [
            [
                _numerics_cell(of_variant[(of_variant["delegate"] == d) & (of_variant["num_threads"] == t)])
                for t in threads
            ]
            for d in delegates
        ]
        figure.add_trace(
            go.Heatmap(
                z=[[cell[0] for cell in row] for row in grid],
                x=[f"{t}t" for t in threads],
                y=delegates,
                text=[[cell[1] for cell in row] for row in grid],
                texttemplate="%{text}",
                customdata=[[cell[2] for cell in row] for row in grid],
                coloraxis="coloraxis",
                name=variant,
                hovertemplate=f"{variant} · %{{y}} · %{{x}}<br>%{{customdata}}<extra></extra>",
            ),
            row=1,
            col=column,
        )
    figure.update_layout(
        coloraxis={
            "colorscale": [[0, "#2e7d32"], [0.5, "#b0bec5"], [1, "#c62828"]],
            "cmin": 0,
            "cmax": 2,
            "showscale": False,
        },
        title="Numerics: outputs against the reference (✗ wrong on some device, – not checked)",
    )
    return _layout(figure).update_layout(margin={"t": 80})


def _numerics_cell(cell: pd.DataFrame) -> tuple[float | None, str, str]:
    """(level, label, hover) of one cell: its worst device decides."""
    if cell.empty:
        return None, "", "not measured"
    level = max(NUMERICS_LEVELS[status] for status in cell["numerics"])
    rows: Iterable[Any] = cell.itertuples()  # pandas-stubs types each field as any scalar
    hover = "<br>".join(
        f"{row.device}: {row.numerics}"
        + (f" (cosine {row.output_cosine:.4f})" if pd.notna(row.output_cosine) else "")
        + (f": {row.why}" if isinstance(row.why, str) and row.why else "")
        for row in rows
    )
    label = _NUMERICS_LABELS[level]
    if level == 0:
        label = f"{cell['output_cosine'].min():.3f}" if cell["output_cosine"].notna().any() else "ok"
    return level, label, hover


ERRORS = {
    "accuracy_drop": "accuracy drop vs fp32 (host)",
    "output_error": "worst output error vs the reference (on device)",
}


def pareto_scatter(frame: pd.DataFrame, objectives: tuple[str, ...]) -> go.Figure:
    """Candidates by p50 latency against their error (the host's accuracy drop or the measured output
    error), else model size; bubble size = model size, the Pareto front highlighted and labelled."""
    y = next((o for o in objectives if o in ERRORS), "model_size_bytes")
    factor, unit = time_scale(frame["p50_us"])
    shown = frame.assign(
        p50=frame["p50_us"] * factor,
        front=frame["on_front"].map({True: "Pareto front", False: "dominated"}),
        label=frame["config"].where(frame["on_front"], ""),
        size_kb=frame["model_size_bytes"] / 1000.0,
    )
    figure = px.scatter(
        shown,
        x="p50",
        y=y,
        size="size_kb",
        color="front",
        symbol="delegate",
        text="label",
        # Dominated first, so the front's markers are drawn on top where they overlap.
        category_orders={"front": ["dominated", "Pareto front"]},
        color_discrete_map={"Pareto front": "#c62828", "dominated": "#90a4ae"},
        hover_data={"config": True, "rank": True, "size_kb": ":.0f", "label": False},
        labels={
            "p50": f"p50 latency ({unit}), median over devices",
            **ERRORS,
            "model_size_bytes": "model size (bytes)",
            "size_kb": "model size (kB)",
        },
        title=f"Latency vs {ERRORS.get(y, 'model size')} (bubble: model size)",
    )
    figure.update_traces(textposition="top center")
    return _layout(figure)


def run_changes(frame: pd.DataFrame) -> go.Figure:
    """Each case measured ok in both runs: its p50 change (new vs base) against its p50 in the base run."""
    factor, unit = time_scale(frame["p50_base_us"])
    shown = frame.dropna(subset=["change"]).assign(
        p50_base=lambda f: f["p50_base_us"] * factor,
        change_pct=lambda f: f["change"] * 100.0,
    )
    figure = px.scatter(
        shown,
        x="p50_base",
        y="change_pct",
        color="verdict",
        color_discrete_map=VERDICT_COLORS,
        hover_data={"device_model": True, "serial": True, "configuration": True, "more_repetitions": True},
        labels={"p50_base": f"p50 in run A ({unit})", "change_pct": "p50 change, B vs A (%)"},
        title="Change per case, by verdict",
    )
    figure.add_hline(y=0, line_dash="dot", line_color="#607d8b")
    return _layout(figure)


def coverage_ratios(table: pd.DataFrame) -> go.Figure:
    """Per device: the policy's configuration's latency over the best measured there."""
    shown = table.assign(device=table["device_model"] + " (" + table["serial"] + ")")
    figure = px.bar(
        shown,
        x="device",
        y="ratio",
        color="verdict",
        color_discrete_map=COVERAGE_COLORS,
        hover_data={"runs_config": True, "best_config": True, "policy_tier": True, "versus_best": True},
        labels={"ratio": "policy's latency / best measured", "device": "device"},
        title="What the policy runs vs the best on each device",
    )
    figure.add_hline(y=1.0, line_dash="dot", line_color="#607d8b")
    return _layout(figure)


# -- sustained load: one case's windows over time (harness.sustained) ---------------------------

THROTTLE_COLOR = "#c62828"
DEADLINE_COLOR = "#6a1b9a"


def _throttle_mark(figure: go.Figure, throttle_at_s: float | None, label: str | None) -> go.Figure:
    """A vertical rule where harness.sustained found the first lasting slow-down."""
    if throttle_at_s is not None:
        figure.add_vline(
            x=throttle_at_s,
            line_dash="dot",
            line_color=THROTTLE_COLOR,
            annotation_text=label or "",
            annotation_position="top left",
            annotation_font_color=THROTTLE_COLOR,
        )
    return figure


def sustained_latency(
    windows: pd.DataFrame, deadline_us: float | None, throttle_at_s: float | None, throttle_label: str | None
) -> go.Figure:
    """p50 and p95 of each window over the case's time; the frame deadline (1/fps) as a rule when one was asked."""
    ok = windows[windows["status"] == "ok"]
    factor, unit = time_scale(ok["inference_p50_us"])
    frame = ok.melt(
        id_vars=["window_index", "window_start_s"],
        value_vars=["inference_p50_us", "inference_p95_us"],
        var_name="quantile",
        value_name="latency_us",
    ).dropna(subset=["latency_us"])
    frame["quantile"] = frame["quantile"].map({"inference_p50_us": "p50", "inference_p95_us": "p95"})
    frame["latency"] = frame["latency_us"] * factor
    figure = px.line(
        frame,
        x="window_start_s",
        y="latency",
        color="quantile",
        markers=True,
        category_orders={"quantile": ["p50", "p95"]},
        hover_data={"window_index": True},
        labels={
            "latency": f"latency ({unit})",
            "window_start_s": "time from the first window (s)",
            "window_index": "window",
        },
        title="Latency per window",
    )
    if deadline_us is not None:
        figure.add_hline(
            y=deadline_us * factor,
            line_dash="dash",
            line_color=DEADLINE_COLOR,
            annotation_text=f"frame deadline {deadline_us * factor:.1f} {unit}",
            annotation_position="bottom right",
            annotation_font_color=DEADLINE_COLOR,
        )
    figure.update_yaxes(rangemode="tozero")
    return _layout(_throttle_mark(figure, throttle_at_s, throttle_label))


def sustained_temperature(
    windows: pd.DataFrame, modelled: bool, throttle_at_s: float | None, throttle_label: str | None
) -> go.Figure:
    """The hottest thermal zone at each window's end; a model's temperatures say so in the legend and title."""
    source = "modelled, not measured" if modelled else "sensor"
    frame = windows.dropna(subset=["temp_end_c"]).assign(source=source)
    figure = px.line(
        frame,
        x="window_start_s",
        y="temp_end_c",
        color="source",
        markers=True,
        hover_data={"window_index": True, "temp_start_c": True, "temperature_method": True},
        labels={
            "temp_end_c": "hottest zone at the window's end (°C)",
            "window_start_s": "time from the first window (s)",
            "window_index": "window",
        },
        title="Hottest temperature" + (" (modelled, not measured)" if modelled else ""),
    )
    return _layout(_throttle_mark(figure, throttle_at_s, throttle_label))


def sustained_clocks(
    windows: pd.DataFrame, modelled: bool, throttle_at_s: float | None, throttle_label: str | None
) -> go.Figure:
    """Each CPU cluster's clock per window: the mean over the window where measured, else the clock at its end
    (harness.sustained.window_clocks_khz); a model's clocks say so."""
    from harness.sustained import window_clocks_khz

    points = []
    for _, row in windows.iterrows():
        source, clocks = window_clocks_khz(row)
        if source is None:  # no clocks in this window (and so none to plot)
            continue
        for cluster, khz in enumerate(clocks):
            points.append(
                {
                    "window_index": row["window_index"],
                    "window_start_s": row["window_start_s"],
                    "cluster": f"cluster {cluster}",
                    "ghz": khz / 1e6,
                    "clock": {"avg": "mean over the window", "cur": "at the window's end"}[source],
                }
            )
    frame = pd.DataFrame(points, columns=["window_index", "window_start_s", "cluster", "ghz", "clock"])
    figure = px.line(
        frame,
        x="window_start_s",
        y="ghz",
        color="cluster",
        markers=True,
        hover_data={"window_index": True, "clock": True},
        labels={
            "ghz": "CPU clock (GHz)" + (", modelled" if modelled else ""),
            "window_start_s": "time from the first window (s)",
            "window_index": "window",
        },
        title="CPU clock per cluster" + (" (modelled, not measured: never throttled)" if modelled else ""),
    )
    figure.update_yaxes(rangemode="tozero")  # a drop reads at its true size
    return _layout(_throttle_mark(figure, throttle_at_s, throttle_label))
