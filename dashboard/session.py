"""Streamlit glue shared by every page: which results root, the cached dataset, the sidebar.

app.py calls `load()` once per rerun, before the page: it reads the dataset
(cached on the results' state key, so a new run appears on the next rerun
without a restart), renders the sidebar and stores the outcome; pages take it
with `context()`. Bad input (no folder, no results, a newer schema, damaged
files) becomes a message on the page here, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa
import streamlit as st

from dashboard.data import (
    POOLED_RUNS_MAX,
    RESULTS_ENV,
    Dataset,
    RunInfo,
    Selection,
    StateKey,
    pools_runs_by_default,
    state_key,
)
from harness.errors import HarnessError
from harness.locations import DEFAULT_RESULTS
from harness.ranking import MixingAllowed

APP = Path(__file__).resolve().parent / "app.py"
_CONTEXT = "_tflite_farm_context"
NO_RESULTS_FIX = "run 'harness demo' or 'harness run --results DIR' first"


@dataclass(frozen=True)
class Context:
    """What every page works on: the results root, its dataset and the sidebar's selection."""

    root: Path
    state: StateKey  # what the dataset was read at: the cache key of everything computed from it
    dataset: Dataset
    selection: Selection
    mixing: MixingAllowed = MixingAllowed()  # what the sidebar lets rankings and comparisons combine

    @property
    def runs(self) -> tuple[RunInfo, ...]:
        chosen = set(self.selection.run_ids)
        return tuple(run for run in self.dataset.runs if run.run_id in chosen)


def results_root() -> Path:
    """--results after `--` on the streamlit command line, else $TFLITE_FARM_RESULTS, else ./results."""
    # `streamlit run app.py -- --results DIR` sets sys.argv to [app.py, --results, DIR]. Under
    # AppTest sys.argv is the test runner's own, which must not be mistaken for ours.
    if sys.argv and _is_app(sys.argv[0]):
        parser = argparse.ArgumentParser(add_help=False)
        parser.add_argument("--results")
        known, _ = parser.parse_known_args(sys.argv[1:])
        if known.results:
            return Path(known.results)
    from_env = os.environ.get(RESULTS_ENV)
    return Path(from_env) if from_env else DEFAULT_RESULTS


def _is_app(argument: str) -> bool:
    try:
        return Path(argument).resolve() == APP
    except OSError:
        return False


@st.cache_resource(max_entries=4, show_spinner="Listing results…")
def _open(root: str, state: StateKey) -> Dataset:
    # `state` is only part of the cache key: a new, replaced or removed file lists the dataset afresh.
    # Opening reads no row; each page's queries read what they need, cached per query (dashboard.cached).
    return Dataset.open(root)


def load() -> Context | None:
    """Read the results and render the sidebar; None (with the reason on the page) when nothing to show."""
    st.session_state[_CONTEXT] = None
    root = results_root()
    if not root.is_dir():
        st.error(
            f"There is no results folder at `{root}`: {NO_RESULTS_FIX}, or start the dashboard "
            f"with `harness dashboard --results DIR`."
        )
        return None
    state = state_key(root)
    try:
        dataset = _open(str(root.resolve()), state)
    except HarnessError as error:
        # A newer schema, an unreadable manifest: the message already names the fix.
        st.error(f"Cannot show the results in `{root}`: {error}")
        return None
    except (OSError, duckdb.Error, pa.ArrowException) as error:
        st.error(f"Cannot read the results in `{root}` ({error}): check the folder's permissions and files.")
        return None
    _warn_about_skipped(dataset)
    if dataset.empty:
        st.info(
            f"No results in `{root}` yet: {NO_RESULTS_FIX}. They appear here when you reload this page; "
            "the dashboard need not be restarted."
        )
        return None
    chosen = _sidebar(root, dataset)
    if chosen is None:
        return None
    selection, mixing = chosen
    _mark_virtual_devices(root, state, dataset, selection)
    context = Context(root=root, state=state, dataset=dataset, selection=selection, mixing=mixing)
    st.session_state[_CONTEXT] = context
    return context


def context() -> Context:
    """The context app.py loaded for this rerun; stops the page when there is none."""
    current: Context | None = st.session_state.get(_CONTEXT)
    if current is None:  # app.py has already said why
        st.stop()
    return current


def _warn_about_skipped(dataset: Dataset) -> None:
    problems = [f"`{skipped.path}`: {skipped.reason}" for skipped in dataset.skipped]
    problems += dataset.manifest_errors
    if dataset.accuracy_error:
        problems.append(f"accuracy rows not used: {dataset.accuracy_error}")
    if problems:
        st.warning(
            f"{len(problems)} file(s) could not be read and are left out; the rest is shown. "
            "Move a damaged file out of the results folder, or restore it from a backup:\n\n"
            + "\n".join(f"- {problem}" for problem in problems)
        )


def _mark_virtual_devices(root: Path, state: StateKey, dataset: Dataset, selection: Selection) -> None:
    """Every page says when its numbers include virtual devices: never let one pass for a phone."""
    from dashboard.cached import device_kinds  # imported here: dashboard.cached imports this module

    kinds = device_kinds(root, state, dataset, selection)
    virtual = kinds[kinds["device_kind"] == "virtual"]
    if virtual.empty:
        return
    names = ", ".join(virtual["device_model"])
    st.warning(
        f"**Virtual devices** in this selection ({names}): their latencies are this host's timings under "
        "phones' names, not a phone's, and their power and temperatures are modelled, never measured. "
        "Derive a policy to ship from a phone lab's results.",
        icon=":material/developer_board:",
    )


def _sidebar(root: Path, dataset: Dataset) -> tuple[Selection, MixingAllowed] | None:
    sidebar = st.sidebar
    models = dataset.models()
    model = sidebar.selectbox("Model", models, key="model", help="Results may hold several models.")
    runs = {run.run_id: run for run in dataset.runs}
    run_ids = dataset.run_ids(model)
    # A toggle rather than a pre-filled multiselect: "all" must include a run that lands later. A year of
    # nightly runs starts on the newest one (dashboard.data.POOLED_RUNS_MAX).
    every_run = sidebar.toggle(
        "All runs",
        value=pools_runs_by_default(run_ids),
        key="all_runs",
        help=f"Pool every run of the model (on by default up to {POOLED_RUNS_MAX} runs).",
    )
    if every_run:
        chosen = run_ids
        if not pools_runs_by_default(run_ids):
            # Measured (bench/dashboard_scale.py): a year of nights of one model is ~2M rows, over a minute.
            sidebar.caption(
                f"Pooling {len(run_ids)} runs reads every run's rows of this model: the pages can take minutes."
            )
    else:
        chosen = sidebar.multiselect(
            "Runs", run_ids, default=run_ids[-1:], key="runs", format_func=lambda run_id: _run_label(runs[run_id])
        )
    with sidebar.expander("Compare across instruments"):
        # Off by default, like the CLI: numbers measured differently are never ranked together unasked.
        kinds = st.toggle(
            "Allow mixing physical and virtual devices",
            value=False,
            key="allow_mixed_kinds",
            help="The same as --allow-mixed-kinds.",
        )
        binaries = st.toggle(
            "Allow mixing benchmark binaries",
            value=False,
            key="allow_mixed_binaries",
            help="The same as --allow-mixed-binaries.",
        )
    # Counting rows would read every file: the caption says what the listing knows.
    sidebar.caption(f"Results: `{root}` · {len(dataset.runs)} run(s) · {len(dataset.models())} model(s)")
    sidebar.button("Reload", help="Read the results folder again (new runs also appear on any rerun).")
    if not chosen:
        st.info("Pick at least one run in the sidebar.")
        return None
    return Selection(model_name=model, run_ids=tuple(chosen)), MixingAllowed(kinds, binaries)


def _run_label(run: RunInfo) -> str:
    when = f"{run.started_at:%Y-%m-%d %H:%M}" if run.started_at else "start unknown"
    return f"{run.run_id} ({when}, {run.devices} devices)"
