"""Overview: the runs, the devices per tier, how the cases ended, and every failure with its error."""

from __future__ import annotations

import streamlit as st

from dashboard import cached, charts, queries, session
from dashboard.data import runs_frame

context = session.context()
dataset, selection = context.dataset, context.selection

st.title("Overview")
st.caption(f"Model `{selection.model_name}` in {len(selection.run_ids)} run(s) of `{context.root}`")

status = cached.status_by_tier(context)
devices = cached.devices(context)
failures = cached.failures(context)
tiers = queries.tier_order(status["tier"])

ok_rows = int(status.loc[status["status"] == "ok", "rows"].sum())
failed_rows = int(status.loc[status["status"].isin(queries.FAILED_STATUSES), "rows"].sum())
columns = st.columns(5)
columns[0].metric("Runs", len(selection.run_ids))
columns[1].metric("Devices", len(devices))
columns[2].metric("Tiers", len(tiers))
columns[3].metric("Rows ok", f"{ok_rows:,}")
columns[4].metric("Rows failed", f"{failed_rows:,}")

if ok_rows == 0:
    st.info(
        "No case of the selected runs produced a measurement, so there is nothing to rank or compare: "
        "the failures below say why. Fix the cause and run the sweep again ('harness run')."
    )

left, right = st.columns(2)
with left:
    st.plotly_chart(charts.status_by_tier(status, tiers), key="status_by_tier")
with right:
    st.plotly_chart(charts.devices_per_tier(devices, tiers), key="devices_per_tier")

st.subheader("Failures")
if failures.empty:
    st.success("No failed case in the selected runs.")
else:
    st.caption(
        f"{len(failures)} failed configuration(s), {int(failures['repetitions'].sum())} row(s); repetitions "
        "that failed the same way are one line. Raw logs are relative to the results folder."
    )
    st.dataframe(failures, hide_index=True)
skipped = cached.skipped_count(context)
if skipped:
    st.caption(f"{skipped} row(s) were skipped (no benchmark binary for the phone's ABI); they are not failures.")

st.subheader("Devices")
st.dataframe(devices, hide_index=True)

st.subheader("Runs")
st.caption("Every run stored in the results folder; the sidebar chooses which ones the pages use.")
st.dataframe(runs_frame(dataset.runs, cached.run_figures(context)), hide_index=True)
