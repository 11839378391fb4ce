"""Device: one phone across its configurations: latency spread, temperatures and throttling, power."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

import pandas as pd
import streamlit as st

from dashboard import cached, charts, queries, session
from harness.stats import TieTest

context = session.context()
dataset, selection = context.dataset, context.selection

st.title("Device")
devices = cached.devices(context)
device_tuples: Iterable[Any] = devices.itertuples()  # pandas-stubs types each field as any scalar
labels: dict[str, str] = {
    row.serial: f"{row.serial} · {row.device_model} · {row.tier}"
    + (" · virtual" if row.device_kind == "virtual" else "")
    for row in device_tuples
}
serial = st.selectbox("Device", list(labels), format_func=labels.__getitem__, key="device")
assert serial is not None  # the selection has rows (session.load), so devices

facts = cast("pd.Series[Any]", devices.set_index("serial").loc[serial])  # serials are unique: one row
ram = facts["ram_bytes"]
columns = st.columns(4)
columns[0].metric("Tier", facts["tier"])
columns[1].metric("Android SDK", int(facts["android_sdk"]))
columns[2].metric("RAM", "unknown" if pd.isna(ram) else f"{ram / 2**30:.1f} GiB")
columns[3].metric("Rows ok", f"{int(facts['ok'])} of {int(facts['rows'])}")
soc = "unknown SoC" if pd.isna(facts["soc"]) else f"SoC {facts['soc']}"
kind = "unknown kind (an older harness's rows)" if pd.isna(facts["device_kind"]) else f"a {facts['device_kind']} device"
st.caption(
    f"{facts['manufacturer']} {facts['device_model']}, {soc}, ABI {facts['abi']}: {kind}; "
    f"{int(facts['runs'])} run(s) of model `{selection.model_name}`."
)
if facts["device_kind"] == "virtual":
    st.info(
        "A **virtual device**: its latencies are this host's timings under the name of the phone it stands in "
        "for; its temperatures and power come from a documented model, never from a sensor."
    )

rows = cached.device_rows(context, serial)
measured = rows[rows["status"] == "ok"]
order = queries.configuration_order(rows)

st.subheader("Latency per configuration")
if measured.empty:
    st.info(f"{serial} has no successful measurement in the selected runs: see its failures below.")
else:
    metric = st.radio(
        "Latency", list(queries.LATENCY_METRICS), format_func=queries.LATENCY_METRICS.get, horizontal=True, key="metric"
    )
    present = measured.dropna(subset=[metric])
    if present.empty:
        st.info(f"The benchmark output of {serial} did not report {queries.LATENCY_METRICS[metric]}.")
    else:
        # Only configurations with a figure: a failed one has no latency, and its empty slot would read as a bug.
        measured_order = [c for c in order if c in set(present["configuration"])]
        st.plotly_chart(charts.latency_distribution(present, metric, measured_order), key="latency")
        st.caption(
            "Each point is one repetition (one benchmark_model process); the box spans its repetitions "
            "across the selected runs."
        )

st.subheader("Noise floor")
noise = cached.noise_floors(context).get(serial)
min_effect = TieTest().min_effect
if noise is None or noise.cv is None:
    st.info(
        f"{serial} has no configuration with 2 or more repetitions in the selection: its run-to-run noise is "
        "unknown. Sweep with `--repetitions 3`."
    )
else:
    noise_columns = st.columns(3)
    noise_columns[0].metric(
        "Run-to-run variation (CV)",
        f"{noise.cv:.1%}",
        help="Median over configurations of the coefficient of variation of the repetitions' p50s.",
    )
    noise_columns[1].metric("Max / min of repetitions", f"x{noise.max_over_min:.2f}")
    noise_columns[2].metric(
        "p95 / p50 within a run", "?" if noise.p95_over_p50 is None else f"x{noise.p95_over_p50:.2f}"
    )
    if warning := noise.warning(min_effect):
        st.warning(f"{serial}: {warning}.")
    else:
        st.caption(f"Over {noise.configurations} configuration(s): below the {min_effect:.0%} rankings resolve.")

st.subheader("Temperatures and throttling")
temperatures = rows.dropna(subset=["temp_start_c", "temp_end_c"], how="all")
if temperatures.empty:
    st.info(f"{serial} reported no temperatures.")
else:
    st.plotly_chart(charts.temperatures(temperatures, order), key="temperatures")
    sensed = temperatures[temperatures["temperature_method"] == "sensor"]
    modelled = temperatures[temperatures["temperature_method"] == "model"]
    if not modelled.empty:
        st.info(
            f"{len(modelled)} repetition(s) have **modelled temperatures, not measured** "
            "(`temperature_method = model`): the model slows nothing, so no latency here ran throttled."
        )
    # Only a sensor's temperature can say that a phone throttled its clocks.
    throttled = sensed[sensed["throttled"].fillna(False).astype(bool)]
    if throttled.empty:
        if not sensed.empty:
            st.caption("No case ran throttled.")
    else:
        table = throttled.groupby("configuration").size().rename("throttled repetitions").reset_index()
        st.warning(f"{len(throttled)} repetition(s) ran throttled: their latencies may be pessimistic.")
        st.dataframe(table, hide_index=True)

st.subheader("Power")
powered = measured.dropna(subset=["energy_mj_per_inference"])
if powered.empty:
    st.info(f"No power figures for {serial}: no fuel gauge, charging during the run, or 'harness run --no-power'.")
else:
    methods = sorted(powered["power_method"].dropna().unique())
    if "model" in methods:
        st.warning(
            "Power on this device is **modelled, not measured** (`power_method = model`): it is derived "
            "from a documented model, not read from a fuel gauge. Compare it only with other modelled figures."
        )
    st.caption(
        "Power method: "
        + ", ".join(f"`{method}` ({charts.POWER_METHOD_LABELS.get(method, method)})" for method in methods)
    )
    st.plotly_chart(charts.energy(powered, [c for c in order if c in set(powered["configuration"])]), key="energy")

st.subheader("Failures on this device")
failed = rows[rows["status"].isin(queries.FAILED_STATUSES)]
if failed.empty:
    st.success("None.")
else:
    failure_columns = ["run_id", "configuration", "repetition", "status", "error_type", "error_message", "raw_log_path"]
    st.dataframe(failed[failure_columns], hide_index=True)
