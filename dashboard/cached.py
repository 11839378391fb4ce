"""dashboard.analysis and dashboard.queries behind st.cache_data, keyed on the results' state, the selection
and the page's settings: one cache entry per query, never the whole dataset (which is read in place).

Every function takes the page's Context and passes on only hashable values
(the results root, its state key, the selection, the settings) as the cache
key; the Dataset itself rides along unhashed (`_dataset`). A new run changes
the state key, so nothing computed from older results is ever shown.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd
import streamlit as st

from dashboard import analysis, queries
from dashboard.data import Dataset, RunFigures, Selection, StateKey
from dashboard.session import Context
from harness import ranking
from harness.compare import GateResult
from harness.ranking import Constraints, MixingAllowed, TierRanking, VariantAccuracy
from harness.stats import NoiseFloor, TieTest
from harness.sustained import SustainedSummary, summarize

_ENTRIES = 32
NO_CONSTRAINTS = Constraints()
DEFAULT_TIE_TEST = TieTest()


def _constraints(values: tuple[float | None, ...]) -> Constraints:
    return Constraints(*values)


def _key(constraints: Constraints) -> tuple[float | None, ...]:
    return (
        constraints.max_latency_us,
        constraints.max_memory_mb,
        constraints.max_accuracy_drop,
        constraints.max_energy_mj,
    )


@st.cache_data(max_entries=_ENTRIES, show_spinner="Aggregating rows per device and configuration…")
def _device_stats(
    root: str, state: StateKey, model_name: str, run_ids: tuple[str, ...], by_run: bool, _dataset: Dataset
) -> pd.DataFrame:
    return analysis.device_stats(_dataset, Selection(model_name, run_ids), by_run=by_run)


@st.cache_data(max_entries=_ENTRIES, show_spinner=False)
def _accuracy(
    root: str, state: StateKey, model_name: str, run_ids: tuple[str, ...], _dataset: Dataset
) -> tuple[dict[str, VariantAccuracy], list[str]]:
    return analysis.model_accuracy(_dataset, Selection(model_name, run_ids))


@st.cache_data(max_entries=_ENTRIES, show_spinner="Ranking…")
def _rankings(
    root: str,
    state: StateKey,
    model_name: str,
    run_ids: tuple[str, ...],
    metric: str,
    constraints: tuple[float | None, ...],
    alpha: float,
    min_effect: float,
    mixing: MixingAllowed,
    _dataset: Dataset,
) -> tuple[TierRanking, ...]:
    stats = _device_stats(root, state, model_name, run_ids, False, _dataset)
    accuracy, _ = _accuracy(root, state, model_name, run_ids, _dataset)
    return analysis.rank(
        stats, model_name, metric, _constraints(constraints), accuracy, TieTest(alpha, min_effect), mixing
    )


@st.cache_data(max_entries=_ENTRIES, show_spinner="Comparing runs…")
def _compare(
    root: str,
    state: StateKey,
    model_name: str,
    run_a: str,
    run_b: str,
    max_regression: float,
    alpha: float,
    mixing: MixingAllowed,
    _dataset: Dataset,
) -> GateResult:
    return analysis.compare_runs(
        _dataset, Selection(model_name, (run_a, run_b)), run_a, run_b, max_regression, alpha, mixing
    )


@st.cache_data(max_entries=_ENTRIES, show_spinner="Deriving the policy…")
def _policy(
    root: str,
    state: StateKey,
    model_name: str,
    run_ids: tuple[str, ...],
    metric: str,
    constraints: tuple[float | None, ...],
    alpha: float,
    min_effect: float,
    mixing: MixingAllowed,
    _dataset: Dataset,
) -> analysis.PolicyOutcome:
    return analysis.derive_policy(
        _dataset, Selection(model_name, run_ids), metric, _constraints(constraints), TieTest(alpha, min_effect), mixing
    )


@st.cache_data(max_entries=_ENTRIES, show_spinner="Summarizing sustained windows…")
def _sustained(
    root: str, state: StateKey, model_name: str, run_ids: tuple[str, ...], min_effect: float, _dataset: Dataset
) -> tuple[pd.DataFrame, list[SustainedSummary]]:
    rows = queries.sustained_rows(_dataset, Selection(model_name, run_ids))
    return rows, summarize(rows, min_effect)


@st.cache_data(max_entries=_ENTRIES, show_spinner="Counting rows per run…")
def _run_figures(root: str, state: StateKey, _dataset: Dataset) -> dict[str, RunFigures]:
    return _dataset.run_figures()


def run_figures(context: Context) -> dict[str, RunFigures]:
    """Row counts of every run (they read a few columns of every file: cached on the results' state)."""
    return _run_figures(str(context.root.resolve()), context.state, _dataset=context.dataset)


def _args(context: Context) -> tuple[str, StateKey, str, tuple[str, ...]]:
    return str(context.root.resolve()), context.state, context.selection.model_name, context.selection.run_ids


def noise_floors(context: Context) -> dict[str, NoiseFloor]:
    """Each device's noise floor over the selection (harness.ranking.noise_floors)."""
    return ranking.noise_floors(_device_stats(*_args(context), False, _dataset=context.dataset))


def numerics_cells(context: Context, tier: TierRanking) -> pd.DataFrame:
    """Each device x configuration of `tier`: numerics status and figures (dashboard.analysis.numerics_cells)."""
    return analysis.numerics_cells(_device_stats(*_args(context), False, _dataset=context.dataset), tier)


def accuracy(context: Context) -> tuple[dict[str, VariantAccuracy], list[str]]:
    return _accuracy(*_args(context), _dataset=context.dataset)


def rankings(
    context: Context, metric: str, constraints: Constraints = NO_CONSTRAINTS, tie_test: TieTest = DEFAULT_TIE_TEST
) -> tuple[TierRanking, ...]:
    return _rankings(
        *_args(context),
        metric,
        _key(constraints),
        tie_test.alpha,
        tie_test.min_effect,
        context.mixing,
        _dataset=context.dataset,
    )


def compare_runs(context: Context, run_a: str, run_b: str, max_regression: float) -> GateResult:
    root, state, model_name, _ = _args(context)
    return _compare(
        root,
        state,
        model_name,
        run_a,
        run_b,
        max_regression,
        DEFAULT_TIE_TEST.alpha,
        context.mixing,
        _dataset=context.dataset,
    )


def policy(context: Context, metric: str, constraints: Constraints, tie_test: TieTest) -> analysis.PolicyOutcome:
    return _policy(
        *_args(context),
        metric,
        _key(constraints),
        tie_test.alpha,
        tie_test.min_effect,
        context.mixing,
        _dataset=context.dataset,
    )


def sustained(
    context: Context, min_effect: float = DEFAULT_TIE_TEST.min_effect
) -> tuple[pd.DataFrame, list[SustainedSummary]]:
    """The selection's sustained window rows and harness.sustained.summarize's summary of each case."""
    return _sustained(*_args(context), min_effect, _dataset=context.dataset)


# -- dashboard.queries, one cache entry per query and selection ------------------------------------------


# The selection's queries that give a frame: one cached function serves them all, the query's name being
# part of its key (as many entries as one function per query would keep).
_FRAME_QUERIES: dict[str, Callable[[Dataset, Selection], pd.DataFrame]] = {
    "status_by_tier": queries.status_by_tier,
    "devices": queries.devices,
    "device_kinds": queries.device_kinds,
    "failures": queries.failures,
}


@st.cache_data(max_entries=_ENTRIES * len(_FRAME_QUERIES), show_spinner=False)
def _frame_query(
    name: str, root: str, state: StateKey, model_name: str, run_ids: tuple[str, ...], _dataset: Dataset
) -> pd.DataFrame:
    return _FRAME_QUERIES[name](_dataset, Selection(model_name, run_ids))


@st.cache_data(max_entries=_ENTRIES, show_spinner=False)
def _skipped_count(root: str, state: StateKey, model_name: str, run_ids: tuple[str, ...], _dataset: Dataset) -> int:
    return queries.skipped_count(_dataset, Selection(model_name, run_ids))


@st.cache_data(max_entries=_ENTRIES, show_spinner=False)
def _device_rows(
    root: str, state: StateKey, model_name: str, run_ids: tuple[str, ...], serial: str, _dataset: Dataset
) -> pd.DataFrame:
    return queries.device_rows(_dataset, Selection(model_name, run_ids), serial)


def status_by_tier(context: Context) -> pd.DataFrame:
    return _frame_query("status_by_tier", *_args(context), _dataset=context.dataset)


def devices(context: Context) -> pd.DataFrame:
    return _frame_query("devices", *_args(context), _dataset=context.dataset)


def device_kinds(root: Path, state: StateKey, dataset: Dataset, selection: Selection) -> pd.DataFrame:
    """queries.device_kinds (the sidebar asks before a Context exists)."""
    return _frame_query(
        "device_kinds", str(root.resolve()), state, selection.model_name, selection.run_ids, _dataset=dataset
    )


def failures(context: Context) -> pd.DataFrame:
    return _frame_query("failures", *_args(context), _dataset=context.dataset)


def skipped_count(context: Context) -> int:
    return _skipped_count(*_args(context), _dataset=context.dataset)


def device_rows(context: Context, serial: str) -> pd.DataFrame:
    return _device_rows(*_args(context), serial, _dataset=context.dataset)
