"""The dashboard's calls into harness.ranking, harness.policy and harness.coverage.

Pages render; these functions decide nothing themselves. They only feed the
selected rows (one model, the chosen runs) to the same library calls that
`harness policy derive` and `harness policy coverage` make, with the same
accuracy figures, so a page and a policy file never disagree. No Streamlit
here: dashboard/cached.py adds the caching, the bench calls these directly.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pandas as pd

from dashboard.data import ROWS, Dataset, Selection
from dashboard.queries import profile_rules, profile_tiers
from harness import ranking
from harness.compare import GateResult, gate
from harness.coverage import CoverageReport, coverage
from harness.numerics import NumericsGate, cell_numerics
from harness.policy import DerivedPolicy, DeriveRequest, derive, model_facts
from harness.ranking import Constraints, MixingAllowed, TierRanking, VariantAccuracy
from harness.records import config_label
from harness.stats import TieTest
from harness.store import checked


def device_stats(dataset: Dataset, selection: Selection, by_run: bool = False) -> pd.DataFrame:
    """harness.ranking.device_stats over the selection: one row per device x configuration [x run], read in
    place (the selection's files only, the columns the statistics need)."""
    with dataset.cursor(selection) as cursor:
        # The cursor's view holds the selection's rows only: concurrent sessions cannot see each other's.
        return checked(lambda: ranking.device_stats(cursor, relation=ROWS, by_run=by_run))


def selected_rows(dataset: Dataset, selection: Selection) -> pd.DataFrame:
    """The selection's result rows as a frame (what harness.policy.derive and coverage take)."""
    return dataset.sql(f"SELECT * FROM {ROWS} ORDER BY started_at, serial, case_id, repetition", selection=selection)


def model_accuracy(dataset: Dataset, selection: Selection) -> tuple[dict[str, VariantAccuracy], list[str]]:
    """Accuracy per model file (sha256) from the same sources `harness policy derive` reads, and its warnings."""
    # model_facts reads only which runs and files the rows name; those few columns stand in for the rows.
    where, params = selection.where()
    keys = dataset.sql(
        f"SELECT DISTINCT run_id, model_name, model_sha256 FROM {ROWS} WHERE {where}", params, selection=selection
    )
    _, accuracy, warnings = model_facts(dataset.root, keys, selection.model_name)
    return accuracy, warnings


def rank(
    stats: pd.DataFrame,
    model_name: str,
    metric: str,
    constraints: Constraints,
    accuracy: Mapping[str, VariantAccuracy],
    tie_test: TieTest,
    mixing: MixingAllowed = MixingAllowed(),
) -> tuple[TierRanking, ...]:
    """harness.ranking.rank_tiers, tiers in tiers.toml order (as the policy lists them); devices stored
    without a tier get the one derive would give them."""
    rules = profile_rules()
    if rules is not None:
        stats, _ = ranking.assign_missing_tiers(stats, rules)
    return ranking.rank_tiers(
        stats, model_name, metric, constraints, accuracy, tie_test, tier_order=profile_tiers(), mixing=mixing
    )


def pareto(tier: TierRanking, error: str = "accuracy_drop") -> tuple[pd.DataFrame, tuple[str, ...]]:
    """The tier's candidates with an `on_front` column, and the objectives the front was taken over.

    Latency, the error (`error`: the host's accuracy drop, or the worst output error measured
    on the tier's devices) and model size when that error is known; without it (untrained
    weights, no --eval data, numerics not checked) it cannot take part, so the front is over
    latency and size alone rather than empty.
    """
    table = tier.table()
    candidates = table[table["status"] == "candidate"].copy() if not table.empty else table
    objectives: tuple[str, ...] = ("p50_us", error, "model_size_bytes")
    if candidates.empty or candidates[error].isna().all():
        objectives = ("p50_us", "model_size_bytes")
    if not candidates.empty:
        candidates["on_front"] = ranking.pareto_front(candidates, objectives)
    return candidates, objectives


def numerics_cells(stats: pd.DataFrame, tier: TierRanking, gate: NumericsGate = NumericsGate()) -> pd.DataFrame:
    """Per device x configuration of `tier`: its outputs against the reference, judged by `gate`
    (harness.numerics.cell_numerics, as the ranking judges them)."""
    rows = stats[(stats["model_name"] == tier.model_name) & stats["serial"].isin(tier.devices)]
    cells = []
    for row in rows.to_dict("records"):
        cell = cell_numerics(row, gate)
        cells.append(
            {
                "variant": row["variant"],
                "delegate": row["delegate"],
                "num_threads": int(row["num_threads"]),
                "config": config_label(row["variant"], row["delegate"], row["num_threads"]),
                "device": tier.device_models.get(row["serial"], row["serial"]),
                "numerics": cell.status.value if cell.status else "no ok run",
                "output_cosine": cell.cosine,
                "output_error": cell.relative_error,
                "top1_agreement": cell.top1_agreement,
                "sym_kl": cell.sym_kl,
                "reference": cell.reference,
                "why": cell.reason,
            }
        )
    return pd.DataFrame(
        cells,
        columns=[
            "variant",
            "delegate",
            "num_threads",
            "config",
            "device",
            "numerics",
            "output_cosine",
            "output_error",
            "top1_agreement",
            "sym_kl",
            "reference",
            "why",
        ],
    )


def compare_runs(
    dataset: Dataset,
    selection: Selection,
    run_a: str,
    run_b: str,
    max_regression: float,
    alpha: float,
    mixing: MixingAllowed = MixingAllowed(),
) -> GateResult:
    """harness.compare.gate of run B against run A (what `harness compare A B` reports): worst first."""
    pair = Selection(selection.model_name, (run_a, run_b))
    return gate(device_stats(dataset, pair, by_run=True), run_a, run_b, max_regression, alpha, mixing)


@dataclass(frozen=True)
class PolicyOutcome:
    policy: DerivedPolicy
    coverage: CoverageReport


def derive_policy(
    dataset: Dataset,
    selection: Selection,
    metric: str,
    constraints: Constraints,
    tie_test: TieTest,
    mixing: MixingAllowed = MixingAllowed(),
) -> PolicyOutcome:
    """The policy `harness policy derive --run ... --model ...` writes for these settings, and its coverage.

    Raises UsageError (with the fix) when a tier has no valid configuration.
    """
    rows = selected_rows(dataset, selection)
    request = DeriveRequest(
        results_root=dataset.root,
        run_ids=selection.run_ids,
        model_name=selection.model_name,
        metric=metric,
        constraints=constraints,
        tie_test=tie_test,
        mixing=mixing,
    )
    derived = derive(request, rows)
    # Coverage judges "best" with the accuracy figures the policy was derived with.
    return PolicyOutcome(derived, coverage(derived.document, rows, derived.accuracy, mixing=mixing))
