"""Policy: constraints as widgets, the policy `harness policy derive` would write for them, its
coverage on the measured devices, and the JSON to download."""

from __future__ import annotations

import json
import shlex

import pandas as pd
import streamlit as st

from dashboard import cached, charts, session
from harness.deprecations import NNAPI, NNAPI_DEPRECATION
from harness.errors import HarnessError
from harness.policy_resolve import entry_label
from harness.ranking import METRICS, Constraints
from harness.stats import TieTest

context = session.context()
selection = context.selection


st.title("Policy")
metric = st.selectbox("Objective", list(METRICS), format_func=charts.metric_label, key="policy_metric")
columns = st.columns(4)
# value=None: an empty box is "no limit", which is what the CLI's absent flag means.
max_latency_us = columns[0].number_input(
    "Max latency (µs)", min_value=0.0, value=None, placeholder="no limit", key="max_latency_us"
)
max_memory_mb = columns[1].number_input(
    "Max memory (MB)", min_value=0.0, value=None, placeholder="no limit", key="max_memory_mb"
)
max_accuracy_drop = columns[2].number_input(
    "Max accuracy drop",
    min_value=0.0,
    max_value=1.0,
    value=None,
    step=0.001,
    format="%.4f",
    placeholder="no limit",
    key="max_accuracy_drop",
)
max_energy_mj = columns[3].number_input(
    "Max energy (mJ/inference)", min_value=0.0, value=None, placeholder="no limit", key="max_energy_mj"
)
with st.expander("Tie test"):
    defaults = TieTest()
    alpha = st.number_input("alpha", min_value=0.0001, max_value=0.5, value=defaults.alpha, format="%.4f", key="alpha")
    min_effect = st.number_input(
        "min_effect (relative)",
        min_value=0.0,
        max_value=1.0,
        value=defaults.min_effect,
        format="%.3f",
        key="min_effect",
    )
constraints = Constraints(max_latency_us, max_memory_mb, max_accuracy_drop, max_energy_mj)
tie_test = TieTest(alpha, min_effect)

flags = [f"--run {shlex.quote(run_id)}" for run_id in selection.run_ids]
flags += [f"--{name.replace('_', '-')} {value:g}" for name, value in constraints.given().items()]
if metric != "inference_p50_us":
    flags.append(f"--metric {metric}")
if tie_test != defaults:
    flags += [f"--alpha {alpha:g}", f"--min-effect {min_effect:g}"]
st.caption("The same as:")
st.code(
    f"harness policy derive --results {shlex.quote(str(context.root))} "
    f"--model {shlex.quote(selection.model_name)} {' '.join(flags)} "
    f"--out {shlex.quote(selection.model_name + '.json')}",
    language="bash",
)

try:
    outcome = cached.policy(context, metric, constraints, tie_test)
except HarnessError as error:
    st.error(f"No policy for these settings: {error}")
    st.stop()
document = outcome.policy.document
for warning in outcome.policy.warnings:
    st.warning(warning)

st.subheader("Per tier")
entries = pd.DataFrame(
    [
        {
            "tier": entry["name"],
            "rule": entry["rule"],
            "choice": entry_label(entry["choice"]),
            "fallbacks": " → ".join(entry_label(fallback) for fallback in entry["fallbacks"]),
            "devices": entry["evidence"].get("devices"),
            "p50 (ms)": (
                entry["evidence"]["inference_p50_us"] / 1000.0
                if entry["evidence"].get("inference_p50_us") is not None
                else None
            ),
            "tied with": ", ".join(entry["evidence"].get("tie", {}).get("tied_with_best", [])),
            "note": entry["evidence"].get("note") or "; ".join(entry["evidence"].get("notes", [])),
        }
        for entry in document["tiers"]
    ]
)
st.dataframe(entries, hide_index=True)
if any(item["delegate"] == NNAPI for entry in document["tiers"] for item in [entry["choice"], *entry["fallbacks"]]):
    st.caption(
        f":orange-badge[NNAPI deprecated] {NNAPI_DEPRECATION}. The tiers whose chain tries NNAPI say so in "
        "their note; 'harness policy resolve' says it for a phone on SDK 35 or later."
    )
default = document["default"]
st.caption(
    f"Default (phones no rule matches, and the end of every chain): {entry_label(default)}. "
    f"Model version {document['model']['version']}."
)
st.code("\n".join(outcome.policy.lines()), language="text")

st.download_button(
    "Download policy JSON",
    json.dumps(document, indent=2) + "\n",
    file_name=f"{selection.model_name}.json",
    mime="application/json",
    key="download_policy",
)

st.subheader("Coverage on the measured devices")
report = outcome.coverage
coverage_columns = st.columns(3)
coverage_columns[0].metric(f"Best or within {tie_test.min_effect:.0%} of it", f"{report.share_at_best:.0%}")
coverage_columns[1].metric("Failed choices", report.failed_choices)
coverage_columns[2].metric(
    "Goal (≥ 95 %, no failed choice)", "met" if report.meets_goal else "missed", help=report.goal
)
table = report.table()
if table.empty:
    st.info("No measured device to judge the policy on.")
else:
    st.plotly_chart(charts.coverage_ratios(table), key="coverage")
    st.dataframe(table, hide_index=True)
