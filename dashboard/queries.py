"""The SQL behind the Overview and Device pages: what was measured, where, and how it ended.

Descriptive only (counts, listings, the rows of one device). Anything that
compares configurations, tests significance or picks a winner belongs to
harness.ranking, and the pages that need it call that instead.
"""

from __future__ import annotations

import functools
import logging

import pandas as pd

from dashboard.data import ROWS, Dataset, Selection
from harness.convert import Variant
from harness.errors import HarnessError
from harness.phone.profiles import TierRules, load_tiers
from harness.ranking import NO_TIER, ordered_tiers
from harness.records import CONFIG_LABEL_SQL, CaseStatus

FAILED_STATUSES = tuple(s.value for s in CaseStatus if s not in (CaseStatus.OK, CaseStatus.SKIPPED))
STATUS_ORDER = tuple(s.value for s in CaseStatus)
VARIANT_ORDER = tuple(variant.value for variant in Variant)  # the order harness convert makes them in

LATENCY_METRICS = {
    "inference_p50_us": "p50 latency",
    "inference_avg_us": "average latency",
    "inference_p95_us": "p95 latency",
    "first_inference_us": "first inference",
    "init_us": "init time",
}

log = logging.getLogger(__name__)

_TIER = f"coalesce(tier, '{NO_TIER}')"


@functools.cache
def profile_rules() -> TierRules | None:
    """The tier rules of tiers.toml (harness.config); None (with a logged warning) when they cannot be read."""
    try:
        return load_tiers()
    except (HarnessError, OSError) as error:
        log.warning(
            "tier rules unreadable, tiers are shown alphabetically and untiered rows stay unclassified: %s", error
        )
        return None


def profile_tiers() -> tuple[str, ...]:
    # The tier order of tiers.toml (best first) is the order people read tiers in.
    rules = profile_rules()
    return rules.tiers if rules else ()


def tier_order(tiers: list[str] | pd.Series) -> list[str]:
    """Tiers as tiers.toml lists them (best first), then any others alphabetically, unclassified last."""
    return ordered_tiers((str(tier) for tier in tiers), profile_tiers())


def configuration_order(configurations: pd.DataFrame) -> list[str]:
    """Configuration labels in reading order: variant (fp32 first), delegate, threads."""
    frame = configurations.drop_duplicates("configuration").copy()
    rank = {variant: index for index, variant in enumerate(VARIANT_ORDER)}
    frame["_variant"] = frame["variant"].map(lambda v: (rank.get(v, len(rank)), v))
    frame = frame.sort_values(["_variant", "delegate", "num_threads"])
    return list(frame["configuration"])


def status_by_tier(dataset: Dataset, selection: Selection) -> pd.DataFrame:
    """tier, status, rows (case x repetition) and distinct cases, per tier and status."""
    where, params = selection.where()
    return dataset.sql(
        f"""
        SELECT {_TIER} AS tier, status, count(*) AS rows, count(DISTINCT run_id || case_id) AS cases
        FROM {ROWS} WHERE {where} GROUP BY ALL ORDER BY ALL
        """,
        params,
        selection=selection,
    )


def devices(dataset: Dataset, selection: Selection) -> pd.DataFrame:
    """One row per device that ran the selection: its facts (as of its last row) and row counts."""
    where, params = selection.where()
    return dataset.sql(
        f"""
        SELECT serial,
               arg_max(device_kind, started_at) AS device_kind,
               arg_max(device_model, started_at) AS device_model,
               arg_max(manufacturer, started_at) AS manufacturer,
               arg_max(soc, started_at) AS soc,
               arg_max(abi, started_at) AS abi,
               arg_max(android_sdk, started_at) AS android_sdk,
               arg_max(ram_bytes, started_at) AS ram_bytes,
               arg_max({_TIER}, started_at) AS tier,
               count(DISTINCT run_id) AS runs,
               count(*) AS rows,
               count(*) FILTER (WHERE status = 'ok') AS ok
        FROM {ROWS} WHERE {where} GROUP BY serial ORDER BY serial
        """,
        params,
        selection=selection,
    )


def device_kinds(dataset: Dataset, selection: Selection) -> pd.DataFrame:
    """device_kind (null: unknown, an older harness's rows) and the devices of each kind in the selection."""
    where, params = selection.where()
    return dataset.sql(
        f"""
        SELECT device_kind, string_agg(DISTINCT coalesce(device_model, serial), ', ') AS device_model,
               count(DISTINCT serial) AS devices
        FROM {ROWS} WHERE {where} GROUP BY device_kind ORDER BY device_kind
        """,
        params,
        selection=selection,
    )


def failures(dataset: Dataset, selection: Selection) -> pd.DataFrame:
    """Failed cases with their errors, one row per (run, device, configuration, error).

    Repetitions that failed the same way are one row with their count, so a
    case that crashed three times reads as one crash, not three.
    """
    where, params = selection.where()
    statuses = ", ".join(f"'{status}'" for status in FAILED_STATUSES)
    return dataset.sql(
        f"""
        SELECT run_id, {_TIER} AS tier, serial, any_value(device_model) AS device_model, variant, delegate,
               num_threads, status, error_type, error_message, count(*) AS repetitions,
               min(raw_log_path) AS raw_log_path
        FROM {ROWS}
        WHERE {where} AND status IN ({statuses})
        GROUP BY run_id, tier, serial, variant, delegate, num_threads, status, error_type, error_message
        ORDER BY {_status_rank()}, run_id DESC, tier, serial, variant, delegate, num_threads
        """,
        params,
        selection=selection,
    )


def _status_rank() -> str:
    # Crashes and timeouts first: a delegate that is simply absent is the least surprising failure.
    order = ("failed", "timeout", "device_lost", "delegate_failed")
    cases = " ".join(f"WHEN '{status}' THEN {rank}" for rank, status in enumerate(order))
    return f"CASE status {cases} ELSE {len(order)} END"


def skipped_count(dataset: Dataset, selection: Selection) -> int:
    where, params = selection.where()
    frame = dataset.sql(
        f"SELECT count(*) AS n FROM {ROWS} WHERE {where} AND status = 'skipped'", params, selection=selection
    )
    return int(frame["n"].iloc[0])


def device_rows(dataset: Dataset, selection: Selection, serial: str) -> pd.DataFrame:
    """Every row of one device in the selection, with a `configuration` label, oldest first."""
    where, params = selection.where()
    return dataset.sql(
        f"""
        SELECT *, {CONFIG_LABEL_SQL} AS configuration, {_TIER} AS tier_label
        FROM {ROWS} WHERE {where} AND serial = $serial
        ORDER BY started_at, case_id, repetition
        """,
        {**params, "serial": serial},
        selection=selection,
    )


def sustained_rows(dataset: Dataset, selection: Selection) -> pd.DataFrame:
    """The window rows of the selection's sustained cases (harness run --sustained), with a `configuration`
    label, in window order per case; burst rows are left out."""
    where, params = selection.where()
    rows = dataset.sql(
        f"""
        SELECT *, {CONFIG_LABEL_SQL} AS configuration
        FROM {ROWS} WHERE {where} AND window_index IS NOT NULL
        ORDER BY run_id, serial, case_id, repetition, window_index
        """,
        params,
        selection=selection,
    )
    # DuckDB hands a null list over as pd.NA; harness.sustained (like the store's reader) expects None there.
    for column in ("cpu_cur_freq_khz", "cpu_avg_freq_khz"):
        rows[column] = [None if value is pd.NA else value for value in rows[column]]
    return rows
