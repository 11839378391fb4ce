"""Compare runs: two runs case by case, the p50 change and what the repetitions show about it, as
`harness compare` (harness.compare) judges it; regressions first."""

from __future__ import annotations

import shlex

import streamlit as st

from dashboard import cached, charts, session
from harness.compare import DEFAULT_MAX_REGRESSION, Change, describe_change
from harness.errors import HarnessError
from harness.stats import MIN_REPETITIONS

context = session.context()
runs = list(context.selection.run_ids)
labels = {
    run.run_id: f"{run.run_id} ({run.started_at:%Y-%m-%d %H:%M})" if run.started_at else run.run_id
    for run in context.runs
}

st.title("Compare runs")
if len(runs) < 2:
    if len(context.dataset.run_ids(context.selection.model_name)) < 2:
        st.info(
            f"Comparing needs two runs of {context.selection.model_name}, and one is stored: sweep it again "
            "('harness run ...') to see what changed."
        )
    else:
        st.info("Comparing needs two runs of this model: turn on 'All runs' in the sidebar or pick two there.")
    st.stop()

left, right = st.columns(2)
run_a = left.selectbox("Run A (before)", runs, index=len(runs) - 2, format_func=labels.__getitem__, key="run_a")
run_b = right.selectbox("Run B (after)", runs, index=len(runs) - 1, format_func=labels.__getitem__, key="run_b")
if run_a == run_b:
    st.info("Pick two different runs.")
    st.stop()

max_regression = st.number_input(
    "Max regression",
    min_value=0.0,
    max_value=1.0,
    value=DEFAULT_MAX_REGRESSION,
    step=0.01,
    format="%.2f",
    key="max_regression",
    help="The same as `harness compare --max-regression`: a change beyond it is a regression "
    "when the repetitions show it.",
)
st.caption("The same as:")
st.code(
    f"harness compare {shlex.quote(run_a)} {shlex.quote(run_b)} --results {shlex.quote(str(context.root))} "
    f"--model {shlex.quote(context.selection.model_name)} --max-regression {max_regression:.0%}",
    language="bash",
)
try:
    result = cached.compare_runs(context, run_a, run_b, max_regression)
except HarnessError as error:  # the runs were measured by different binaries or kinds of device
    st.error(str(error))
    st.stop()
changes = result.cases
if changes.empty:
    st.info("The two runs share no case of this model.")
    st.stop()

st.caption(
    f"Cases match on device, model file, delegate and threads. Each case's repetitions in run B are compared "
    f"with those in run A (harness.compare): a **regression** is shown slower by more than {max_regression:.0%}, "
    f"**suspicious** is past it by the medians but not shown, **unchanged** is shown within it; "
    f"with fewer than {MIN_REPETITIONS} repetitions nothing is shown either way."
)
counts = result.counts()
columns = st.columns(6)
for column, verdict in zip(
    columns,
    (Change.REGRESSION, Change.NEWLY_FAILING, Change.SUSPICIOUS, Change.IMPROVEMENT, Change.FIXED, Change.UNCHANGED),
    strict=False,
):
    column.metric(verdict.value.capitalize(), counts[verdict.value])

worse = result.failing
if worse.empty:
    st.success("No regression and no newly failing case: `harness compare` passes.")
else:
    lines = [
        f"- **{case.tier}** · {case.device_model} (`{case.serial}`) · `{case.configuration}`: {describe_change(case)}"
        for case in worse.head(10).itertuples()
    ]
    more = f"\n\n…and {len(worse) - 10} more in the table." if len(worse) > 10 else ""
    st.markdown(f"**Got worse in run B** ({len(worse)}), so `harness compare` fails:\n" + "\n".join(lines) + more)
suspicious = changes[changes["verdict"] == Change.SUSPICIOUS.value]
if not suspicious.empty:
    st.warning(
        f"{len(suspicious)} suspicious case(s): slower than {max_regression:.0%} by the medians, not shown by "
        "the repetitions. Sweep them again with more repetitions (`--repetitions`, `--until-decided`)."
    )

st.plotly_chart(charts.run_changes(changes), key="run_changes")
shown = changes.assign(change_pct=changes["change"] * 100.0).drop(columns=["model_name", "model_sha256", "change"])
st.dataframe(shown, hide_index=True)
