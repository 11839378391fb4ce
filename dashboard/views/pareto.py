"""Pareto: per tier, the candidates' latency against accuracy drop and model size, with the
front harness.ranking.pareto_front finds highlighted."""

from __future__ import annotations

import streamlit as st

from dashboard import analysis, cached, charts, session
from harness.errors import HarnessError

context = session.context()

st.title("Pareto")
st.caption(
    "A configuration is on the front when no other candidate of the tier is at least as good on every objective "
    "and better on one: lower p50 latency, lower error, smaller model. Candidates are those of the p50 "
    "ranking: they ran ok on every measured device of the tier, with outputs within the numerics gate."
)
error = st.radio(
    "Error axis",
    list(charts.ERRORS),
    format_func=charts.ERRORS.get,
    horizontal=True,
    key="pareto_error",
    help="The accuracy drop the convert step measured on this host, or the worst output error "
    "measured on the tier's devices against the reference for the same inputs.",
)
try:
    rankings = cached.rankings(context, "inference_p50_us")
except HarnessError as failure:  # not `error`: that name is the chosen accuracy objective
    st.error(str(failure))
    st.stop()
tier_names = [tier.tier for tier in rankings]
chosen = st.radio("Tier", tier_names, horizontal=True, key="pareto_tier")
tier = rankings[tier_names.index(chosen)]
frame, objectives = analysis.pareto(tier, error)

if frame.empty:
    st.warning(
        f"No candidate in tier {tier.tier}: every configuration failed somewhere or was not measured on "
        "every device (see Rankings for the reasons)."
    )
    st.stop()
if error not in objectives:
    st.info(
        "No accuracy figures for this model's files (untrained weights, or converted without --eval data): "
        "the front is over latency and model size only."
        if error == "accuracy_drop"
        else "No output errors measured for this tier (swept with --no-numerics, or by a binary that cannot save "
        "outputs): the front is over latency and model size only."
    )

st.plotly_chart(charts.pareto_scatter(frame, objectives), key="pareto")
front = frame[frame["on_front"]].sort_values("p50_us")
st.subheader(f"On the front in tier {tier.tier}: {len(front)} of {len(frame)} candidates")
columns = [
    "rank",
    "config",
    "p50_us",
    "accuracy_drop",
    "output_error",
    "output_cosine",
    "model_size_bytes",
    "memory_mb",
    "energy_mj_per_inference",
]
# Only measured energy is shown here: a virtual device's modelled energy is no figure to trade latency against.
st.dataframe(front[columns].rename(columns={"energy_mj_per_inference": "measured energy (mJ)"}), hide_index=True)
if tier.excluded:
    st.caption(
        f"{len(tier.excluded)} configuration(s) of this tier are not candidates and not plotted; Rankings lists why."
    )
