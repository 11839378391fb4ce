"""Rankings: per tier, every variant x delegate x threads ranked by a chosen metric, as
harness.ranking ranks them (ties shown as ties, exclusions with their reason)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import cached, charts, queries, session
from harness.deprecations import NNAPI, NNAPI_DEPRECATION
from harness.errors import HarnessError
from harness.numerics import NumericsGate
from harness.ranking import METRICS
from harness.records import NumericsStatus
from harness.stats import MIN_REPETITIONS, TieTest

context = session.context()
selection = context.selection

st.title("Rankings")
metric = st.selectbox(
    "Rank by",
    list(METRICS),
    format_func=charts.metric_label,
    key="rank_metric",
    help="Every metric is lower-is-better. Memory is the benchmark's RSS high-water mark.",
)
tie_test = TieTest()
st.caption(
    f"Per tier, a configuration is a candidate when it ran ok on every measured device of the tier, ranked by the "
    f'median of its {METRICS[metric].label} over the devices. Candidates share a rank ("=2") only when '
    f"their repetitions show them within {tie_test.min_effect:.0%} of each other on every device; a difference "
    f"that is neither shown nor excluded is *undecided* and the better median ranks first. With fewer than "
    f"{MIN_REPETITIONS} repetitions nothing is tested. Ranked by harness.ranking, the same code as "
    "'harness policy derive'."
)

try:
    rankings = cached.rankings(context, metric, tie_test=tie_test)
except HarnessError as error:  # mixed instruments, or no measured energy: the same refusal as the CLI's
    st.error(str(error))
    st.stop()
_, accuracy_warnings = cached.accuracy(context)
if metric == "accuracy_drop" and accuracy_warnings:
    st.info(" ".join(accuracy_warnings))

every_value = [candidate.value for tier in rankings for candidate in tier.candidates]  # one unit for all tiers
factor, unit = charts.metric_scale(metric, every_value)
summary = pd.DataFrame(
    [
        {
            "tier": tier.tier,
            "devices": len(tier.devices),
            "candidates": len(tier.candidates),
            "excluded": len(tier.excluded),
            "best": tier.best.config.label if tier.best else None,
            charts.metric_title(metric, every_value): tier.best.value * factor if tier.best else None,
            "tied with best": ", ".join(tier.tie_break.tied_with_best),
            "tie decided by": tier.tie_break.decided_by.value if tier.tie_break.decided_by else None,
            "undecided against best": ", ".join(tier.tie_break.undecided),
        }
        for tier in rankings
    ]
)
st.subheader("Best per tier")
st.dataframe(summary, hide_index=True)

tier_names = [tier.tier for tier in rankings]
chosen = st.radio("Tier", tier_names, horizontal=True, key="rank_tier")
tier = rankings[tier_names.index(chosen)]
table = tier.table()
names = ", ".join(tier.device_models.get(serial, serial) for serial in tier.devices)
st.subheader(f"Tier {tier.tier}")
st.caption(f"{len(tier.devices)} measured {'/'.join(tier.measured_on.device_kinds)} device(s): {names}.")
for note in tier.notes:
    st.info(note)
if tier.unmeasured_devices:
    st.caption(f"Not measured (no benchmark binary for their ABI): {', '.join(tier.unmeasured_devices)}.")

if not tier.candidates:
    st.warning(
        f"No configuration qualifies in tier {tier.tier}: each failed somewhere, was not measured on every "
        "device, or has no figure for this metric. The reasons are in the table below."
    )
else:
    best = tier.best
    assert best is not None  # a tier with candidates has a best
    if tier.tie_break.tied_with_best:
        decided_by = tier.tie_break.decided_by
        assert decided_by is not None  # only a tie records what broke it, and this is one
        st.info(
            f"{best.config.label} is tied with {', '.join(tier.tie_break.tied_with_best)} (shown within "
            f"{tie_test.min_effect:.0%} on every device); the tie is broken by {decided_by.value}."
        )
    if tier.tie_break.untested:
        st.info(
            f"Fewer than {MIN_REPETITIONS} repetitions on a device: no statistical claim, the medians alone "
            "order this tier. Sweep with `--repetitions 3` or `--until-decided`."
        )
    elif tier.tie_break.undecided:
        st.info(
            f"{best.config.label} has the best median, but against {', '.join(tier.tie_break.undecided)} "
            "the repetitions decide nothing yet (see `versus_best`); `harness run --until-decided` adds them."
        )
    st.plotly_chart(charts.ranking_bars(table, metric), key="ranking_bars")
    variants = [v for v in queries.VARIANT_ORDER if v in set(table["variant"])]
    variants += sorted(set(table["variant"]) - set(variants))
    st.plotly_chart(charts.ranking_heatmap(table, metric, variants), key="ranking_heatmap")

cells = cached.numerics_cells(context, tier)
if not cells.empty:
    grid = [v for v in queries.VARIANT_ORDER if v in set(cells["variant"])]
    st.plotly_chart(
        charts.numerics_heatmap(cells, grid + sorted(set(cells["variant"]) - set(grid))), key="numerics_heatmap"
    )
    gate = NumericsGate()
    wrong = cells[cells["numerics"] == NumericsStatus.MISMATCH.value]
    if not wrong.empty:
        st.error(
            f"Wrong outputs: {len(wrong)} cell(s) of tier {tier.tier} computed outputs that disagree with the "
            'reference for the same inputs; they are excluded (reason "numerics") however fast they are.'
        )
        st.dataframe(
            wrong[["config", "device", "output_cosine", "output_error", "top1_agreement", "sym_kl", "why"]],
            hide_index=True,
        )
    unchecked = cells[cells["numerics"] == NumericsStatus.NOT_CHECKED.value]
    if not unchecked.empty:
        reasons = "; ".join(sorted(set(unchecked["why"].dropna())))
        st.caption(f"Numerics not checked on {len(unchecked)} cell(s): {reasons}.")
    st.caption(
        f"Numerics gate (as `harness policy derive`'s defaults): output error <= {gate.max_output_error:g} "
        f"of the reference's range, cosine >= {gate.min_output_cosine:g}; for probability outputs symmetric "
        f"KL < {gate.max_sym_kl:g} and MSE < {gate.max_mse:g}."
    )

if not table.empty and (table["delegate"] == NNAPI).any():
    on = tier.deprecated_on(NNAPI)
    st.caption(
        f":orange-badge[NNAPI deprecated] {NNAPI_DEPRECATION}. "
        + (
            f"Measured here on {', '.join(on)}: those rows are flagged in the deprecation column."
            if on
            else "No device of this tier was on SDK 35 or later."
        )
    )

shown = table.assign(value=table["value"] * factor)
if "worst_value" in shown:
    shown["worst_value"] = shown["worst_value"] * factor
shown = shown.rename(
    columns={"value": f"median ({unit or 'value'})", "worst_value": f"worst device ({unit or 'value'})"}
)
columns = [
    c
    for c in shown.columns
    if c not in ("tie_group", "model_sha256", "variant", "delegate", "num_threads")
    and (c != "deprecation" or shown[c].notna().any())
]
st.dataframe(shown[columns], hide_index=True)
