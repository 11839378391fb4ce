"""Compare runs: two runs case by case, the p50 change and whether it is significant, as
harness.ranking.compare_runs judges it; regressions first."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import cached, charts, session
from harness.errors import HarnessError
from harness.ranking import TieTest
from harness.records import config_label

context = session.context()
runs = list(context.selection.run_ids)
labels = {run.run_id: f"{run.run_id} ({run.started_at:%Y-%m-%d %H:%M})" if run.started_at else run.run_id
          for run in context.runs}

st.title("Compare runs")
if len(runs) < 2:
    if len(context.dataset.run_ids(context.selection.model_name)) < 2:
        st.info(f"Comparing needs two runs of {context.selection.model_name}, and one is stored: sweep it again "
                "('harness run ...') to see what changed.")
    else:
        st.info("Comparing needs two runs of this model: turn on 'All runs' in the sidebar or pick two there.")
    st.stop()

left, right = st.columns(2)
run_a = left.selectbox("Run A (before)", runs, index=len(runs) - 2, format_func=labels.get, key="run_a")
run_b = right.selectbox("Run B (after)", runs, index=len(runs) - 1, format_func=labels.get, key="run_b")
if run_a == run_b:
    st.info("Pick two different runs.")
    st.stop()

tie_test = TieTest()
try:
    changes = cached.compare_runs(context, run_a, run_b, tie_test)
except HarnessError as error:  # the runs were measured by different binaries or kinds of device
    st.error(str(error))
    st.stop()
if changes.empty:
    st.info("The two runs share no case of this model.")
    st.stop()

st.caption(f"Cases match on device, model file, delegate and threads. A change counts when Welch's t-test on the "
           f"repetitions finds it (alpha {tie_test.alpha}) and it exceeds {tie_test.min_effect:.0%}.")
counts = changes["verdict"].value_counts()
columns = st.columns(5)
for column, verdict in zip(columns, ["regression", "newly failing", "improvement", "fixed", "unchanged"]):
    column.metric(verdict.capitalize(), int(counts.get(verdict, 0)))

worse = changes[changes["verdict"].isin(["regression", "newly failing"])]
if worse.empty:
    st.success("No regression and no newly failing case.")
else:
    lines = []
    for case in worse.head(10).itertuples():
        config = config_label(case.variant, case.delegate, case.num_threads)
        p_value = "" if pd.isna(case.p_value) else f" (p = {case.p_value:.2g})"  # no spread: no p-value
        what = f"{case.change:+.1%} p50{p_value}" if case.verdict == "regression" else f"now fails: {case.failures_b}"
        lines.append(f"- **{case.tier}** · {case.device_model} (`{case.serial}`) · `{config}`: {what}")
    more = f"\n\n…and {len(worse) - 10} more in the table." if len(worse) > 10 else ""
    st.markdown(f"**Got worse in run B** ({len(worse)}):\n" + "\n".join(lines) + more)

st.plotly_chart(charts.run_changes(changes), key="run_changes")
shown = changes.assign(change_pct=changes["change"] * 100.0).drop(columns=["model_name", "model_sha256", "change"])
st.dataframe(shown, hide_index=True)
