"""Rankings over stored results: the one place that decides what is best.

The dashboard renders and `harness policy derive` compiles what this module
returns; neither ranks on its own, so a page and a policy never disagree.

Two steps:
1. `device_stats` aggregates result rows (DuckDB SQL, so it runs the same over a
   pandas frame or over a million rows of Parquet) into one row per device x
   configuration: medians over the repetitions, failures, and the repetitions'
   own figures, which the statistics compare.
2. `rank_tiers` turns those into a ranking per tier: candidates (ran `ok` on
   every measured device of the tier, computed the reference's outputs there
   within the numerics gate, passed the accuracy gate and the constraints),
   exclusions with the reason, and ties.

Order: candidates by the metric's median over the tier's devices. A tie means
practically equal (harness.stats): on every device of the tier the interval of
the ratio lies within +-min_effect. Only a tie is settled by the tie-breakers
(smaller model, fewer threads, lower measured energy); a difference that is
neither shown nor excluded is "undecided" and the better median wins. With fewer
than 3 repetitions no statistical claim is made: the medians decide, and the
ranking says so.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, TypeVar, cast

import duckdb
import numpy as np
import pandas as pd

from harness.deprecations import NNAPI_DEPRECATION, deprecated_on
from harness.errors import UsageError
from harness.numerics import CellNumerics, NumericsGate, cell_numerics
from harness.phone.profiles import TierFacts, TierRules
from harness.records import DeviceKind, NumericsStatus, config_label
from harness.stats import (
    MIN_REPETITIONS,
    Comparison,
    NoiseFloor,
    Row,
    Verdict,
    combine,
    figures,
    noise_floor,
)
from harness.stats import TieTest as TieTest  # re-exported: a ranking's parameter, callers take it from here

LATENCY_METRICS = ("inference_p50_us", "inference_avg_us", "inference_p95_us")
_REPETITION_METRICS = (*LATENCY_METRICS, "memory_mb", "energy_mj_per_inference")  # compared on repetitions
ENERGY = "energy_mj_per_inference"  # measured (fuel gauge) energy only; modelled energy is display-only
NO_TIER = "unclassified"
"""The tier of rows stored without one (a device no tier rule matched when it ran)."""


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    unit: str


METRICS: dict[str, Metric] = {
    "inference_p50_us": Metric("inference_p50_us", "p50 latency", "us"),
    "inference_avg_us": Metric("inference_avg_us", "average latency", "us"),
    "inference_p95_us": Metric("inference_p95_us", "p95 latency", "us"),
    "memory_mb": Metric("memory_mb", "peak memory (RSS high-water mark)", "MB"),
    "energy_mj_per_inference": Metric("energy_mj_per_inference", "measured energy per inference", "mJ"),
    "accuracy_drop": Metric("accuracy_drop", "accuracy drop vs fp32", ""),
}
"""Every metric is lower-is-better; the per-device figure of each is a column of device_stats."""


@dataclass(frozen=True)
class Constraints:
    """Limits every candidate must meet on every device of its tier (None: no limit)."""

    max_latency_us: float | None = None  # on the ranking's latency metric
    max_memory_mb: float | None = None
    max_accuracy_drop: float | None = None
    max_energy_mj: float | None = None
    frame_deadline_us: float | None = None  # 1/fps: a sustained case's worst window p95 must meet it (see sustained)

    def given(self) -> dict[str, float]:
        return {name: value for name, value in vars(self).items() if value is not None}


@dataclass(frozen=True)
class MixingAllowed:
    """Which kinds of numbers a ranking or comparison may put side by side.

    By default only numbers measured the same way are compared: one device kind
    (physical or virtual) and one benchmark binary per tier or comparison.
    """

    kinds: bool = False  # --allow-mixed-kinds
    binaries: bool = False  # --allow-mixed-binaries


@dataclass(frozen=True)
class MeasuredOn:
    """How a group of numbers was measured: recorded with every decision made from them."""

    device_kinds: tuple[str, ...]  # "physical", "virtual", "unknown" (rows of an older harness)
    bench_binaries: tuple[str, ...]  # "name@sha256"
    power_methods: tuple[str, ...]
    temperature_methods: tuple[str, ...]

    @property
    def virtual_only(self) -> bool:
        return self.device_kinds == (DeviceKind.VIRTUAL.value,)

    def to_json(self) -> dict[str, list[str]]:
        return {
            "device_kinds": list(self.device_kinds),
            "bench_binaries": list(self.bench_binaries),
            "power_methods": list(self.power_methods),
            "temperature_methods": list(self.temperature_methods),
        }


UNKNOWN_KIND = "unknown"


def measured_on(stats: pd.DataFrame) -> MeasuredOn:
    """How the measured (not only skipped) rows summarised in `stats` were taken."""
    measured = stats[stats["rows"] > stats["skipped_rows"]]

    def distinct(column: str) -> tuple[str, ...]:
        return tuple(sorted({str(v) for values in measured[column] if _none_if_na(values) is not None for v in values}))

    kinds = {UNKNOWN_KIND if _none_if_na(kind) is None else str(kind) for kind in measured["device_kind"]}
    return MeasuredOn(
        tuple(sorted(kinds)), distinct("bench_binaries"), distinct("power_methods"), distinct("temperature_methods")
    )


def refuse_mixed(stats: pd.DataFrame, where: str, allowed: MixingAllowed) -> MeasuredOn:
    """How `stats` was measured, unless it mixes device kinds or benchmark binaries that `allowed` does not let
    one decision combine: a median across x86 virtual timings and an ARM phone's, or across two builds of the
    benchmark, is no measurement of anything."""
    how = measured_on(stats)
    if len(how.device_kinds) > 1 and not allowed.kinds:
        measured = stats[stats["rows"] > stats["skipped_rows"]]
        by_kind: dict[str, set[str]] = {}
        for row in measured.itertuples():
            kind = UNKNOWN_KIND if _none_if_na(row.device_kind) is None else str(row.device_kind)
            by_kind.setdefault(kind, set()).add(str(row.device_model if _none_if_na(row.device_model) else row.serial))
        detail = "; ".join(f"{kind}: {', '.join(sorted(names))}" for kind, names in sorted(by_kind.items()))
        raise UsageError(
            f"{where} mixes {' and '.join(how.device_kinds)} devices ({detail}); their numbers are "
            "not measured the same way",
            "select one kind (--run, or a results folder per lab), or pass --allow-mixed-kinds to compare them anyway",
        )
    if len(how.bench_binaries) > 1 and not allowed.binaries:
        names = ", ".join(f"{b.split('@')[0]} {b.split('@')[1][:12]}" for b in how.bench_binaries)
        raise UsageError(
            f"{where} mixes rows from {len(how.bench_binaries)} benchmark binaries ({names}); "
            "different builds are different instruments",
            "re-run the older runs with one binary, select runs of one binary (--run), or pass "
            "--allow-mixed-binaries to compare them anyway",
        )
    return how


@dataclass(frozen=True)
class VariantAccuracy:
    """What the convert step measured for one model file (keyed by its sha256)."""

    accuracy_drop: float | None
    accepted: bool | None  # None: not judged (e.g. untrained weights)
    reason: str | None = None


@dataclass(frozen=True)
class Config:
    variant: str
    delegate: str
    num_threads: int
    model_sha256: str

    @property
    def label(self) -> str:
        return config_label(self.variant, self.delegate, self.num_threads)


@dataclass(frozen=True)
class Candidate:
    config: Config
    model_size_bytes: int
    quantization: str | None
    value: float  # the metric, median over the tier's devices
    worst_value: float  # the metric on the tier's worst device
    per_device: Mapping[str, float]  # serial -> metric
    p50_us: float  # median over devices of the per-device p50
    memory_mb: float | None  # the tier's worst device
    energy_mj_per_inference: float | None  # median over devices
    accuracy_drop: float | None
    numerics: Mapping[str, CellNumerics]  # serial -> its outputs against the host's reference
    runs: int
    rows: int
    repetitions: int  # the fewest ok repetitions on a device of the tier
    rank: int  # competition ranking: tied candidates share the rank of the first
    tie_group: int  # 0 = tied with the best
    tied: bool  # shares its rank with another candidate
    versus_best: TierComparison | None  # None for the best itself

    @property
    def output_error(self) -> float | None:
        """The worst relative output error measured on the tier's devices (None: not checked anywhere)."""
        return _worst(cell.relative_error for cell in self.numerics.values())

    @property
    def output_cosine(self) -> float | None:
        cosines = [cell.cosine for cell in self.numerics.values() if cell.cosine is not None]
        return min(cosines) if cosines else None


def _worst(values: Iterable[float | None]) -> float | None:
    measured = [value for value in values if value is not None]
    return max(measured) if measured else None


class ExclusionKind(str, Enum):
    """Why a configuration is not a candidate of a tier: a failure, a gap, or the constraint it breaks."""

    FAILURE = "failure"
    NOT_MEASURED = "not_measured"
    UNSUPPORTED = "unsupported_by_binary"  # the devices' benchmark program cannot ask for its delegate
    ACCURACY_GATE = "accuracy_gate"
    NUMERICS = "numerics"  # its outputs on a device broke the numerics gate (harness.numerics)
    MAX_LATENCY_US = "max_latency_us"  # the Constraints field names, so a limit names its own flag
    MAX_MEMORY_MB = "max_memory_mb"
    MAX_ACCURACY_DROP = "max_accuracy_drop"
    MAX_ENERGY_MJ = "max_energy_mj"
    FRAME_DEADLINE = "frame_deadline_us"  # more than sustained.DEADLINE_MISS_SHARE of inferences over 1/fps


@dataclass(frozen=True)
class Exclusion:
    config: Config
    reason: str
    constraint: ExclusionKind
    value: float | None = None  # the metric where measured (for the dashboard)


@dataclass(frozen=True)
class TierComparison:
    """A candidate against the tier's best: per device, and combined (a tie only if equivalent on all)."""

    verdict: Verdict
    ratio: float  # the candidate's tier value / the best's
    per_device: Mapping[str, Comparison]

    @property
    def more_repetitions(self) -> int | None:
        """About how many more repetitions per configuration would decide the undecided devices."""
        more = [c.more_repetitions for c in self.per_device.values() if c.more_repetitions]
        return max(more) if more else None

    def describe(self, min_effect: float) -> str:
        if self.verdict is Verdict.EQUIVALENT:
            return f"within {min_effect:.0%} of the best on every device"
        if self.verdict is Verdict.UNDECIDED:
            more = (
                f"; about {self.more_repetitions} more repetitions would likely decide" if self.more_repetitions else ""
            )
            return f"undecided against the best (x{self.ratio:.2f}{more})"
        if self.verdict is Verdict.UNTESTED:
            return f"x{self.ratio:.2f} by the medians alone (fewer than {MIN_REPETITIONS} repetitions: untested)"
        return f"{abs(self.ratio - 1):.0%} {'slower' if self.ratio >= 1 else 'faster'} than the best (shown)"

    def to_json(self) -> dict[str, object]:
        return {
            "verdict": self.verdict.value,
            "ratio": round(self.ratio, 4),
            "more_repetitions": self.more_repetitions,
            "per_device": {serial: c.to_json() for serial, c in self.per_device.items()},
        }


class TieBreaker(str, Enum):
    """What settled a tie with the best (only a tie: never an undecided difference)."""

    MODEL_SIZE = "model size"
    THREADS = "threads"
    ENERGY = "measured energy"
    METRIC = "metric"
    NAME = "name"


@dataclass(frozen=True)
class TieBreak:
    """How the best was chosen: recorded in the policy's evidence."""

    tied_with_best: tuple[str, ...]  # labels of the candidates shown equivalent to the best
    decided_by: TieBreaker | None  # None: no tie
    undecided: tuple[str, ...] = ()  # labels whose order against the best the repetitions could not decide
    untested: bool = False  # fewer than 3 repetitions somewhere: the medians alone decided


@dataclass(frozen=True)
class TierRanking:
    tier: str
    model_name: str
    metric: str
    devices: tuple[str, ...]  # serials measured (rows other than `skipped`)
    device_models: Mapping[str, str]
    unmeasured_devices: tuple[str, ...]  # only skipped rows (no binary for their ABI)
    candidates: tuple[Candidate, ...]
    excluded: tuple[Exclusion, ...]
    tie_break: TieBreak
    measured_on: MeasuredOn
    min_effect: float
    notes: tuple[str, ...] = ()  # what the ranking could not apply, and why
    sdks: Mapping[str, int | None] = dataclasses.field(default_factory=dict)  # serial -> android_sdk

    @property
    def best(self) -> Candidate | None:
        return self.candidates[0] if self.candidates else None

    def deprecated_on(self, delegate: str) -> tuple[str, ...]:
        """The tier's devices (as "model (SDK n)") on which `delegate` is deprecated (harness.deprecations)."""
        return tuple(
            sorted(
                f"{self.device_models.get(serial, serial)} (SDK {int(sdk)})"
                for serial, sdk in self.sdks.items()
                if serial in self.devices and sdk is not None and deprecated_on(delegate, sdk)
            )
        )

    def deprecation(self, delegate: str) -> str | None:
        """A row's flag: NNAPI measured on Android 15 or later, where it is deprecated; else None."""
        on = self.deprecated_on(delegate)
        return f"{NNAPI_DEPRECATION} (measured on {', '.join(on)})" if on else None

    def table(self) -> pd.DataFrame:
        """Candidates then exclusions, one row each; `rank` shows ties as "=2"."""
        rows = []
        for c in self.candidates:
            rows.append(
                {
                    "rank": f"={c.rank}" if c.tied else str(c.rank),
                    "config": c.config.label,
                    "variant": c.config.variant,
                    "delegate": c.config.delegate,
                    "num_threads": c.config.num_threads,
                    "value": c.value,
                    "worst_value": c.worst_value,
                    "p50_us": c.p50_us,
                    "memory_mb": c.memory_mb,
                    "energy_mj_per_inference": c.energy_mj_per_inference,
                    "accuracy_drop": c.accuracy_drop,
                    "output_error": c.output_error,
                    "output_cosine": c.output_cosine,
                    "model_size_bytes": c.model_size_bytes,
                    "model_sha256": c.config.model_sha256,
                    "tie_group": c.tie_group,
                    "repetitions": c.repetitions,
                    "versus_best": "the best" if c.versus_best is None else c.versus_best.describe(self.min_effect),
                    "status": "candidate",
                    "reason": None,
                    "deprecation": self.deprecation(c.config.delegate),
                }
            )
        for e in self.excluded:
            rows.append(
                {
                    "rank": "-",
                    "config": e.config.label,
                    "variant": e.config.variant,
                    "delegate": e.config.delegate,
                    "num_threads": e.config.num_threads,
                    "value": e.value,
                    "model_sha256": e.config.model_sha256,
                    "status": "excluded",
                    "reason": e.reason,
                    "deprecation": self.deprecation(e.config.delegate),
                }
            )
        return pd.DataFrame(rows)


# --- step 1: rows -> device x configuration statistics ------------------------------

_KEY = ("model_name", "variant", "model_sha256", "delegate", "num_threads", "serial")

_DEVICE_STATS_SQL = """
WITH counted AS (
    -- a case skipped because another sweep held the phone's lease, then run by --resume, has both rows:
    -- the leased one is a gap the resume filled, not a second repetition
    SELECT *, count(*) FILTER (WHERE coalesce(error_type, '') <> 'leased')
                  OVER (PARTITION BY run_id, case_id, repetition) AS real_rows
    FROM {relation} {burst_only}
), r AS (
    SELECT * EXCLUDE (real_rows), status = 'ok' AS is_ok, coalesce(memory_peak_mb, memory_overall_mb) AS memory_any_mb
    FROM counted
    WHERE coalesce(error_type, '') <> 'leased' OR real_rows = 0
), g AS (
    SELECT {run_key} model_name, variant, model_sha256, delegate, num_threads, serial,
        arg_max(tier, started_at) AS tier,
        arg_max(device_kind, started_at) AS device_kind,
        arg_max(device_model, started_at) AS device_model,
        arg_max(soc, started_at) AS soc,
        arg_max(soc_identities, started_at) AS soc_identities,
        arg_max(ram_bytes, started_at) AS ram_bytes,
        arg_max(android_sdk, started_at) AS android_sdk,
        max(model_size_bytes) AS model_size_bytes,
        arg_max(quantization, started_at) AS quantization,
        count(*) AS rows,
        count(DISTINCT run_id) AS runs,
        count(*) FILTER (WHERE is_ok) AS ok_rows,
        count(*) FILTER (WHERE status = 'skipped') AS skipped_rows,
        count(*) FILTER (WHERE status = 'skipped' AND error_type = 'unsupported_by_binary') AS unsupported_rows,
        count(*) FILTER (WHERE NOT is_ok AND status <> 'skipped') AS failures,
        string_agg(DISTINCT CASE WHEN NOT is_ok AND status <> 'skipped'
                   THEN CASE WHEN error_type IS NULL OR error_type = status THEN status
                             ELSE status || ' (' || error_type || ')' END END, ', ') AS failure_kinds,
        arg_max(error_message, started_at) FILTER (WHERE NOT is_ok) AS last_error,
        median(inference_p50_us) FILTER (WHERE is_ok) AS inference_p50_us,
        median(inference_avg_us) FILTER (WHERE is_ok) AS inference_avg_us,
        median(inference_p95_us) FILTER (WHERE is_ok) AS inference_p95_us,
        max(memory_any_mb) FILTER (WHERE is_ok) AS memory_mb,
        -- only measured energy decides anything; modelled energy is kept apart, for display
        median(energy_mj_per_inference) FILTER (WHERE is_ok AND power_method = 'fuel_gauge') AS energy_mj_per_inference,
        median(energy_mj_per_inference) FILTER (WHERE is_ok AND power_method = 'model')
            AS modelled_energy_mj_per_inference,
        list(DISTINCT power_method) FILTER (WHERE power_method IS NOT NULL) AS power_methods,
        list(DISTINCT temperature_method) FILTER (WHERE temperature_method IS NOT NULL) AS temperature_methods,
        list(DISTINCT coalesce(bench_binary_name, '?') || '@' || bench_binary_sha256)
            FILTER (WHERE bench_binary_sha256 IS NOT NULL AND status <> 'skipped') AS bench_binaries,
        max(temp_end_c) FILTER (WHERE is_ok) AS temp_end_max_c,
        count(*) FILTER (WHERE is_ok AND throttled) AS throttled_rows,
        -- each ok repetition's own figures: what harness.stats compares (see the module docstring)
        list(inference_p50_us ORDER BY started_at) FILTER (WHERE is_ok) AS reps_inference_p50_us,
        list(inference_avg_us ORDER BY started_at) FILTER (WHERE is_ok) AS reps_inference_avg_us,
        list(inference_p95_us ORDER BY started_at) FILTER (WHERE is_ok) AS reps_inference_p95_us,
        list(memory_any_mb ORDER BY started_at) FILTER (WHERE is_ok) AS reps_memory_mb,
        list(energy_mj_per_inference ORDER BY started_at)
            FILTER (WHERE is_ok AND power_method = 'fuel_gauge') AS reps_energy_mj_per_inference,
        list(inference_p95_us / inference_p50_us) FILTER (WHERE is_ok AND inference_p50_us > 0) AS p95_over_p50s,
        -- numerics (harness.numerics.CellNumerics judges them): the worst figure of the ok repetitions
        list([output_max_abs_error, output_reference_max_abs] ORDER BY started_at)
            FILTER (WHERE is_ok AND output_max_abs_error IS NOT NULL AND output_reference_max_abs IS NOT NULL)
            AS reps_output_error_pairs,
        min(output_cosine) FILTER (WHERE is_ok) AS output_cosine,
        min(output_top1_agreement) FILTER (WHERE is_ok) AS output_top1_agreement,
        max(output_sym_kl) FILTER (WHERE is_ok) AS output_sym_kl,
        max(output_rmse) FILTER (WHERE is_ok) AS output_rmse,
        count(*) FILTER (WHERE is_ok AND numerics_status IN ('ok', 'mismatch')) AS numerics_checked_rows,
        count(*) FILTER (WHERE is_ok AND numerics_status = 'mismatch' AND output_cosine IS NULL)
            AS numerics_unreadable_rows,
        arg_max(numerics_reason, started_at)
            FILTER (WHERE is_ok AND numerics_status = 'mismatch' AND output_cosine IS NULL)
            AS numerics_unreadable_reason,
        arg_max(numerics_reason, started_at) FILTER (WHERE is_ok AND numerics_status = 'not_checked')
            AS numerics_unchecked_reason,
        arg_max(numerics_reference, started_at) FILTER (WHERE numerics_reference IS NOT NULL) AS numerics_reference
    FROM r
    GROUP BY ALL
)
SELECT * FROM g
ORDER BY {run_key} model_name, tier, serial, variant, delegate, num_threads
"""


def device_stats(con: duckdb.DuckDBPyConnection, relation: str = "rows", by_run: bool = False) -> pd.DataFrame:
    """One row per (model, variant, model file, delegate, threads, device) [, run].

    `relation` names a table or view of result rows on `con` (a registered
    DataFrame or a view over Parquet files). Latency and energy figures are medians
    over the ok repetitions (memory: the largest), `reps_<metric>` lists each ok
    repetition's figure, and `failures` counts rows that are neither ok nor skipped. Rows of sustained
    windows are left out (see harness.sustained.as_ranking_rows for ranking those).
    """
    columns = {row[0] for row in con.execute(f"DESCRIBE {relation}").fetchall()}
    # Sustained windows are not repetitions of a burst: harness.sustained turns them into rows of their own.
    burst_only = "WHERE window_index IS NULL" if "window_index" in columns else ""
    sql = _DEVICE_STATS_SQL.format(relation=relation, run_key="run_id," if by_run else "", burst_only=burst_only)
    frame = con.execute(sql).df()
    for column in (
        "rows",
        "runs",
        "ok_rows",
        "skipped_rows",
        "unsupported_rows",
        "failures",
        "throttled_rows",
        "num_threads",
        "numerics_checked_rows",
        "numerics_unreadable_rows",
    ):
        frame[column] = frame[column].astype("int64")
    return frame


def stats_of(rows: pd.DataFrame, by_run: bool = False) -> pd.DataFrame:
    """device_stats of an in-memory frame of result rows (as ResultsStore.read returns)."""
    con = duckdb.connect()
    con.register("rows", rows)
    try:
        return device_stats(con, by_run=by_run)
    finally:
        con.close()


def row_tier_facts(row: Row | pd.Series) -> TierFacts:
    """The facts a results (or device_stats) row keeps of its phone, as the tier rules read them:
    the SoC identities the sweep classified it by (older rows: their one stored SoC), RAM, SDK."""
    identities, soc, ram, sdk = (
        _none_if_na(row.get(name)) for name in ("soc_identities", "soc", "ram_bytes", "android_sdk")
    )
    names = tuple(str(i) for i in identities) if identities is not None else (str(soc),) if soc else ()
    return TierFacts(names, None if ram is None else int(ram), None if sdk is None else int(sdk))


def assign_missing_tiers(stats: pd.DataFrame, rules: TierRules) -> tuple[pd.DataFrame, frozenset[str]]:
    """device_stats whose devices were stored without a tier (by another tool, or an older
    harness) classified by the same rules from their stored SoC, RAM and SDK, and the serials
    so assigned: the caller says that their tier was assigned now, not when they were measured."""
    missing = stats["tier"].isna()
    if not missing.any():
        return stats, frozenset()
    assigned = {
        str(serial): rules.classify(row_tier_facts(group.iloc[0])).tier
        for serial, group in stats[missing].groupby("serial")
    }
    stats = stats.copy()
    stats.loc[missing, "tier"] = stats.loc[missing, "serial"].map(assigned)
    return stats, frozenset(assigned)


# --- accuracy --------------------------------------------------------------------


def accuracy_from_manifest(manifest: Mapping[str, Any]) -> dict[str, VariantAccuracy]:
    """sha256 -> accuracy of every variant file in a convert manifest (manifest.json)."""
    found: dict[str, VariantAccuracy] = {}
    for model in manifest.get("models", {}).values():
        for variant in model.get("variants", {}).values():
            if variant.get("sha256"):
                figures = variant.get("accuracy") or {}
                found[variant["sha256"]] = VariantAccuracy(
                    figures.get("accuracy_drop"), variant.get("accepted"), variant.get("reason")
                )
    return found


def accuracy_from_results(results_root: Path) -> dict[str, VariantAccuracy]:
    """sha256 -> accuracy from <results>/accuracy/ (the latest conversion of each file wins)."""
    from harness.convert_files import read_accuracy

    table = read_accuracy(results_root)
    found: dict[str, VariantAccuracy] = {}
    ok_rows: Iterable[Any] = table[table["status"] == "ok"].itertuples()  # rows of the accuracy columns' types
    for row in ok_rows:  # oldest first: later rows overwrite
        drop, accepted = _none_if_na(row.accuracy_drop), _none_if_na(row.accepted)
        # Plain Python values: callers test `accepted is False`, which a numpy bool never is.
        found[row.sha256] = VariantAccuracy(
            None if drop is None else float(drop), None if accepted is None else bool(accepted), _none_if_na(row.reason)
        )
    return found


def accuracy_exclusion(
    accuracy: VariantAccuracy | None, max_accuracy_drop: float | None
) -> tuple[str, ExclusionKind] | None:
    """(reason, constraint) when a file's accuracy rules it out, else None.

    Rejected by the convert gate, or beyond `max_accuracy_drop` (an unknown drop
    cannot be shown to be within a limit that was asked for).
    """
    if accuracy and accuracy.accepted is False:
        return f"rejected by the convert accuracy gate: {accuracy.reason}", ExclusionKind.ACCURACY_GATE
    if max_accuracy_drop is None:
        return None
    drop = accuracy.accuracy_drop if accuracy else None
    if drop is None:
        why = accuracy.reason if accuracy and accuracy.reason else "no accuracy measured for this file"
        return f"max_accuracy_drop: unknown ({why})", ExclusionKind.MAX_ACCURACY_DROP
    if drop > max_accuracy_drop:
        return f"max_accuracy_drop: {drop:.4f} > {max_accuracy_drop:g}", ExclusionKind.MAX_ACCURACY_DROP
    return None


_T = TypeVar("_T")


def _none_if_na(value: _T) -> _T | None:
    return None if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)) else value


# --- repetitions ---------------------------------------------------------------


def repetitions(row: Row, metric: str) -> list[float]:
    """A device_stats row's ok repetitions of `metric` (empty for accuracy, a property of the file)."""
    return figures(row.get(f"reps_{metric}"))


# --- step 2: per-tier ranking ----------------------------------------------------


def rank_tiers(
    stats: pd.DataFrame,
    model_name: str,
    metric: str = "inference_p50_us",
    constraints: Constraints = Constraints(),
    accuracy: Mapping[str, VariantAccuracy] | None = None,
    tie_test: TieTest = TieTest(),
    tier_order: Sequence[str] = (),
    mixing: MixingAllowed = MixingAllowed(),
    numerics_gate: NumericsGate = NumericsGate(),
) -> tuple[TierRanking, ...]:
    """The ranking of every tier that has rows of `model_name`, in `tier_order` first.

    Raises UsageError when a tier mixes device kinds or benchmark binaries that
    `mixing` does not allow, or when the metric is energy and none was measured.
    """
    if metric not in METRICS:
        raise UsageError(f"unknown metric {metric!r}", f"use one of {', '.join(METRICS)}")
    model_stats = stats[stats["model_name"] == model_name].assign(tier=lambda f: f["tier"].fillna(NO_TIER))
    if model_stats.empty:
        known = sorted(stats["model_name"].unique())
        raise UsageError(
            f"no results for model {model_name!r}",
            f"pick one of {', '.join(known)}" if known else "run a sweep first ('harness run' or 'harness demo')",
        )
    if metric == ENERGY and model_stats[ENERGY].isna().all():
        raise UsageError(
            f"no measured energy for model {model_name!r}: modelled energy (virtual devices) never ranks",
            "rank by a latency metric, or sweep phones that run on battery (see README, power)",
        )
    tiers = ordered_tiers(model_stats["tier"], tier_order)
    accuracy = accuracy or {}
    wrong = wrong_outputs(model_stats, numerics_gate)
    return tuple(
        _rank_tier(
            model_stats[model_stats["tier"] == tier],
            tier,
            model_name,
            metric,
            constraints,
            accuracy,
            tie_test,
            mixing,
            numerics_gate,
            wrong,
        )
        for tier in tiers
    )


def wrong_outputs(stats: pd.DataFrame, gate: NumericsGate) -> dict[tuple[str, str], tuple[str, ...]]:
    """(model file sha256, delegate) -> the devices on which its outputs broke the gate.

    Where a phone could not check its outputs (LiteRT 2.x's benchmark_model saves none), the same file on
    the same delegate being wrong on another phone is the evidence there is: such a configuration does
    not win there either."""
    wrong: dict[tuple[str, str], list[str]] = {}
    for row in stats.to_dict("records"):
        if cell_numerics(row, gate).mismatch:
            name = _none_if_na(row["device_model"]) or row["serial"]
            wrong.setdefault((row["model_sha256"], row["delegate"]), []).append(str(name))
    return {key: tuple(sorted(set(names))) for key, names in wrong.items()}


def outputs_wrong(row: Row, gate: NumericsGate, wrong: Mapping[tuple[str, str], Sequence[str]]) -> bool:
    """Whether a device_stats row's outputs count as wrong: they broke the gate there, or were not checked
    there while the same file on the same delegate broke it elsewhere (see wrong_outputs)."""
    cell = cell_numerics(row, gate)
    return cell.mismatch or (
        cell.status is NumericsStatus.NOT_CHECKED and (row["model_sha256"], row["delegate"]) in wrong
    )


def ordered_tiers(present: Iterable[str], tier_order: Sequence[str]) -> list[str]:
    """The tiers present, as `tier_order` lists them (tiers.toml: best first), then any others
    alphabetically, unclassified last."""
    present = set(present)
    ordered = [tier for tier in tier_order if tier in present]
    ordered += sorted(present - set(tier_order) - {NO_TIER})
    return ordered + ([NO_TIER] if NO_TIER in present else [])


def _rank_tier(
    stats: pd.DataFrame,
    tier: str,
    model_name: str,
    metric: str,
    constraints: Constraints,
    accuracy: Mapping[str, VariantAccuracy],
    tie_test: TieTest,
    mixing: MixingAllowed,
    numerics_gate: NumericsGate,
    wrong: Mapping[tuple[str, str], Sequence[str]],
) -> TierRanking:
    how = refuse_mixed(stats, f"tier {tier} of {model_name}", mixing)
    notes = []
    if constraints.max_energy_mj is not None and stats[ENERGY].isna().all():
        # Nothing to hold the limit against: saying so beats excluding everything or pretending it holds.
        notes.append(
            f"max_energy_mj not applied: no device of tier {tier} measured energy "
            f"(power methods: {', '.join(how.power_methods) or 'none'}; modelled energy decides nothing)"
        )
        constraints = dataclasses.replace(constraints, max_energy_mj=None)
    measured = stats.groupby("serial")["skipped_rows"].sum() < stats.groupby("serial")["rows"].sum()
    devices = tuple(sorted(measured[measured].index))
    unmeasured = tuple(sorted(measured[~measured].index))
    names = dict(zip(stats["serial"], stats["device_model"], strict=False))
    stats = stats[stats["serial"].isin(devices)]

    candidates: list[_Judged] = []
    excluded: list[Exclusion] = []
    for key, group in stats.groupby(["variant", "delegate", "num_threads", "model_sha256"], sort=True):
        variant, delegate, threads, sha256 = cast(tuple[str, str, int, str], key)
        config = Config(variant, delegate, int(threads), sha256)
        verdict = _judge(
            config,
            group,
            devices,
            names,
            metric,
            constraints,
            accuracy.get(config.model_sha256),
            numerics_gate,
            wrong.get((config.model_sha256, config.delegate), ()),
        )
        if isinstance(verdict, Exclusion):
            excluded.append(verdict)
        else:
            candidates.append(verdict)
    ranked, tie_break = _order(candidates, metric, tie_test)
    excluded.sort(key=lambda e: (math.inf if e.value is None else e.value, e.config.label))
    sdks = {serial: _none_if_na(sdk) for serial, sdk in zip(stats["serial"], stats["android_sdk"], strict=False)}
    # nnapi rows on SDK >= 35 stay ranked (NNAPI still runs there) and carry a `deprecation` flag (see table()).
    return TierRanking(
        tier,
        model_name,
        metric,
        devices,
        names,
        unmeasured,
        tuple(ranked),
        tuple(excluded),
        tie_break,
        how,
        tie_test.min_effect,
        tuple(notes),
        sdks,
    )


@dataclass(frozen=True)
class _Judged:
    """A configuration that qualifies in a tier, before it is ordered."""

    config: Config
    model_size_bytes: int
    quantization: str | None
    value: float
    worst_value: float
    per_device: Mapping[str, float]
    p50_us: float
    memory_mb: float | None
    energy_mj_per_inference: float | None
    accuracy_drop: float | None
    numerics: Mapping[str, CellNumerics]
    runs: int
    rows: int
    samples: Mapping[str, Sequence[float]]  # serial -> the metric's ok repetitions (what harness.stats compares)

    @property
    def repetitions(self) -> int:
        return min((len(values) for values in self.samples.values()), default=0)


def _judge(
    config: Config,
    group: pd.DataFrame,
    devices: Sequence[str],
    names: Mapping[str, str],
    metric: str,
    constraints: Constraints,
    accuracy: VariantAccuracy | None,
    numerics_gate: NumericsGate,
    wrong_elsewhere: Sequence[str] = (),
) -> _Judged | Exclusion:
    by_device = {row["serial"]: row for row in group.to_dict("records")}
    drop = accuracy.accuracy_drop if accuracy else None
    ok = {s: r for s, r in by_device.items() if r["ok_rows"] > 0}
    values = {s: (drop if metric == "accuracy_drop" else _none_if_na(r[metric])) for s, r in ok.items()}
    shown = _median([v for v in values.values() if v is not None])

    def excluded(reason: str, constraint: ExclusionKind) -> Exclusion:
        return Exclusion(config, reason, constraint, shown)

    failing = [(s, r) for s, r in by_device.items() if r["failures"] > 0]
    if failing:
        where = "; ".join(f"{r['failure_kinds']} on {names.get(s, s)}" for s, r in failing)
        return excluded(f"failed: {where}", ExclusionKind.FAILURE)
    missing = [s for s in devices if s not in ok]
    unaskable = [s for s in missing if s in by_device and by_device[s]["unsupported_rows"] == by_device[s]["rows"]]
    if missing and unaskable == missing:
        return excluded(
            f"the benchmark program of {', '.join(names.get(s, s) for s in missing)} cannot ask for {config.delegate}",
            ExclusionKind.UNSUPPORTED,
        )
    if missing:
        return excluded(f"not measured ok on {', '.join(names.get(s, s) for s in missing)}", ExclusionKind.NOT_MEASURED)
    # Fast but wrong never wins: outputs that broke the gate on any device rule the configuration out.
    checked = {s: cell_numerics(r, numerics_gate) for s, r in ok.items()}
    wrong = [f"{checked[s].reason} on {names.get(s, s)}" for s in sorted(checked) if checked[s].mismatch]
    if wrong:
        return excluded(f"numerics: {'; '.join(wrong)}", ExclusionKind.NUMERICS)
    unchecked = [s for s in sorted(checked) if checked[s].status is NumericsStatus.NOT_CHECKED]
    if unchecked and wrong_elsewhere:
        return excluded(
            f"numerics: not checked on {', '.join(names.get(s, s) for s in unchecked)} "
            f"({checked[unchecked[0]].reason}), and this model file on {config.delegate} computed wrong "
            f"outputs on {', '.join(wrong_elsewhere)}",
            ExclusionKind.NUMERICS,
        )
    ruled_out = accuracy_exclusion(accuracy, constraints.max_accuracy_drop)
    if ruled_out:
        return excluded(*ruled_out)
    latency_metric = metric if metric in LATENCY_METRICS else "inference_p50_us"
    checks = (
        (ExclusionKind.MAX_LATENCY_US, constraints.max_latency_us, latency_metric, "us"),
        (ExclusionKind.MAX_MEMORY_MB, constraints.max_memory_mb, "memory_mb", "MB"),
        (ExclusionKind.MAX_ENERGY_MJ, constraints.max_energy_mj, ENERGY, "mJ"),
        # A window's p95 over the deadline: at least 5% of its inferences missed their frame.
        (ExclusionKind.FRAME_DEADLINE, constraints.frame_deadline_us, "inference_p95_us", "us p95"),
    )
    for kind, limit, column, unit in checks:
        if limit is None:
            continue
        for serial, row in ok.items():
            figure = _none_if_na(row[column])
            if figure is None:
                return excluded(f"{kind.value}: {column} not measured on {names.get(serial, serial)}", kind)
            if figure > limit:
                return excluded(f"{kind.value}: {figure:,.1f} {unit} on {names.get(serial, serial)} > {limit:g}", kind)
    if any(v is None for v in values.values()):
        return excluded(f"{metric} not measured", ExclusionKind.NOT_MEASURED)
    per_device = {s: v for s, v in values.items() if v is not None}  # all of them, as just checked
    rows = list(ok.values())
    value, p50_us = _median(list(per_device.values())), _median([float(r["inference_p50_us"]) for r in rows])
    assert value is not None and p50_us is not None  # `ok` holds every device of the tier, at least one
    memory = [m for m in (_none_if_na(r["memory_mb"]) for r in rows) if m is not None]
    energy = [e for e in (_none_if_na(r[ENERGY]) for r in rows) if e is not None]
    return _Judged(
        config=config,
        model_size_bytes=int(max(r["model_size_bytes"] for r in rows)),
        quantization=_none_if_na(rows[0]["quantization"]),
        value=value,
        worst_value=max(per_device.values()),
        per_device=per_device,
        p50_us=p50_us,
        memory_mb=max(memory) if memory else None,
        energy_mj_per_inference=_median(energy) if len(energy) == len(rows) else None,
        accuracy_drop=drop,
        numerics=checked,
        runs=int(max(r["runs"] for r in rows)),
        rows=int(sum(r["rows"] for r in rows)),
        samples={s: repetitions(r, metric) for s, r in ok.items()},
    )


def _versus(item: _Judged, best: _Judged, metric: str, tie_test: TieTest) -> TierComparison:
    """`item` against `best` on each device of the tier (a figure of the file, like accuracy, is exact)."""
    per_device: dict[str, Comparison] = {}
    for serial, value in item.per_device.items():
        if metric in _REPETITION_METRICS:
            per_device[serial] = tie_test.compare(item.samples[serial], best.samples[serial])
        else:
            per_device[serial] = _exact(value, best.per_device[serial], tie_test.min_effect)
    ratio = item.value / best.value if best.value else (1.0 if item.value == best.value else math.inf)
    return TierComparison(combine(per_device.values()), ratio, per_device)


def _exact(value: float, best: float, min_effect: float) -> Comparison:
    """Two exact figures (accuracy drop): equal within min_effect or not, no repetitions involved."""
    ratio = value / best if best else (1.0 if value == best else math.inf)
    if abs(value - best) <= min_effect * max(abs(best), 1e-12) or value == best:
        verdict = Verdict.EQUIVALENT
    else:
        verdict = Verdict.FASTER if value < best else Verdict.SLOWER
    return Comparison(ratio, ratio, ratio, verdict, (1, 1))


def _order(candidates: list[_Judged], metric: str, tie_test: TieTest) -> tuple[list[Candidate], TieBreak]:
    """Sort by the metric; the candidates shown equivalent to a group's leader tie with it, and a tie (only a
    tie) is settled by model size, threads, then measured energy."""
    remaining = sorted(candidates, key=lambda c: (c.value, c.model_size_bytes, c.config.num_threads, c.config.label))
    groups: list[list[_Judged]] = []
    while remaining:
        leader = remaining[0]
        group: list[_Judged] = [leader]
        rest: list[_Judged] = []
        for other in remaining[1:]:
            (group if _versus(other, leader, metric, tie_test).verdict is Verdict.EQUIVALENT else rest).append(other)
        groups.append(sorted(group, key=_tie_break_key))
        remaining = rest
    decided_by = None
    if groups and len(groups[0]) > 1:
        decided_by = _decided_by(groups[0][0], groups[0][1])
    ranked: list[Candidate] = []
    best = groups[0][0] if groups else None
    for group_index, group in enumerate(groups):
        rank = len(ranked) + 1
        for item in group:
            assert best is not None  # there is a group
            versus = None if item is best else _versus(item, best, metric, tie_test)
            fields = {f.name: getattr(item, f.name) for f in dataclasses.fields(item) if f.name != "samples"}
            ranked.append(
                Candidate(
                    **fields,
                    repetitions=item.repetitions,
                    rank=rank,
                    tie_group=group_index,
                    tied=len(group) > 1,
                    versus_best=versus,
                )
            )
    tied = tuple(c.config.label for c in groups[0][1:]) if groups else ()
    undecided = tuple(
        c.config.label for c in ranked[1:] if c.versus_best is not None and c.versus_best.verdict is Verdict.UNDECIDED
    )
    untested = any(
        c.versus_best is not None and Verdict.UNTESTED in {x.verdict for x in c.versus_best.per_device.values()}
        for c in ranked
    )
    return ranked, TieBreak(tied, decided_by, undecided, untested)


def _tie_break_key(item: _Judged) -> tuple[int, int, float, float, str]:
    energy = item.energy_mj_per_inference
    return (
        item.model_size_bytes,
        item.config.num_threads,
        math.inf if energy is None else energy,
        item.value,
        item.config.label,
    )


def _decided_by(winner: _Judged, runner_up: _Judged) -> TieBreaker:
    """The first tie-break key on which the winner beat the runner-up of its tie group."""
    for breaker, mine, theirs in zip(TieBreaker, _tie_break_key(winner), _tie_break_key(runner_up), strict=False):
        if mine != theirs:
            return breaker
    return TieBreaker.NAME


def noise_floors(stats: pd.DataFrame) -> dict[str, NoiseFloor]:
    """Each device's noise floor over every configuration measured on it (repetition p50s, p95/p50)."""
    return {
        str(serial): noise_floor(
            [figures(v) for v in group["reps_inference_p50_us"]],
            [x for v in group["p95_over_p50s"] for x in figures(v)],
        )
        for serial, group in stats.groupby("serial", sort=True)
    }


def _median(values: Iterable[float]) -> float | None:
    values = list(values)
    return float(np.median(values)) if values else None


# --- other views -----------------------------------------------------------------


def pareto_front(frame: pd.DataFrame, objectives: Sequence[str]) -> pd.Series:
    """True for rows no other row beats on every objective (all lower-is-better).

    Rows with a missing objective are never on the front: they cannot be compared.
    """
    values = frame[list(objectives)].astype(float).to_numpy()
    complete = ~np.isnan(values).any(axis=1)
    on_front = np.zeros(len(frame), dtype=bool)
    for i in np.flatnonzero(complete):
        others = values[complete]
        dominated = ((others <= values[i]).all(axis=1) & (others < values[i]).any(axis=1)).any()
        on_front[i] = not dominated
    return pd.Series(on_front, index=frame.index)
