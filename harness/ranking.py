"""Statistics and rankings over stored results: the one place that decides what is best.

The dashboard renders and `harness policy derive` compiles what this module
returns; neither ranks on its own, so a page and a policy never disagree.

Two steps:
1. `device_stats` aggregates result rows (DuckDB SQL, so it runs the same over a
   pandas frame or over a million rows of Parquet) into one row per device x
   configuration: medians, failures, and the figures the significance test
   needs.
2. `rank_tiers` turns those into a ranking per tier: candidates (ran `ok` on
   every measured device of the tier, passed the accuracy gate and the
   constraints), exclusions with the reason, and statistical ties.

Ties: two configurations are tied in a tier when on no device of the tier their
latencies differ significantly. Per device the test is Welch's t-test (unequal
variances) at `alpha` on the repetitions' p50 latencies when both have at least
two ok repetitions, else on the single run's mean, standard deviation and
sample count as benchmark_model reports them. A difference below `min_effect`
(relative) never counts: with hundreds of samples per run the test flags 1%
differences that a phone's run-to-run drift (thermal, governor) exceeds.
"""

from __future__ import annotations

import dataclasses
import math
from enum import Enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from harness.errors import UsageError
from harness.profiles import TierFacts, TierRules
from harness.records import DeviceKind, config_label

LATENCY_METRICS = ("inference_p50_us", "inference_avg_us", "inference_p95_us")
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
        return {"device_kinds": list(self.device_kinds), "bench_binaries": list(self.bench_binaries),
                "power_methods": list(self.power_methods), "temperature_methods": list(self.temperature_methods)}


UNKNOWN_KIND = "unknown"


def measured_on(stats: pd.DataFrame) -> MeasuredOn:
    """How the measured (not only skipped) rows summarised in `stats` were taken."""
    measured = stats[stats["rows"] > stats["skipped_rows"]]

    def distinct(column: str) -> tuple[str, ...]:
        return tuple(sorted({str(v) for values in measured[column] if _none_if_na(values) is not None for v in values}))

    kinds = {UNKNOWN_KIND if _none_if_na(kind) is None else str(kind) for kind in measured["device_kind"]}
    return MeasuredOn(tuple(sorted(kinds)), distinct("bench_binaries"), distinct("power_methods"),
                      distinct("temperature_methods"))


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
        raise UsageError(f"{where} mixes {' and '.join(how.device_kinds)} devices ({detail}); their numbers are "
                         "not measured the same way",
                         "select one kind (--run, or a results folder per lab), or pass --allow-mixed-kinds "
                         "to compare them anyway")
    if len(how.bench_binaries) > 1 and not allowed.binaries:
        names = ", ".join(f"{b.split('@')[0]} {b.split('@')[1][:12]}" for b in how.bench_binaries)
        raise UsageError(f"{where} mixes rows from {len(how.bench_binaries)} benchmark binaries ({names}); "
                         "different builds are different instruments",
                         "re-run the older runs with one binary, select runs of one binary (--run), or pass "
                         "--allow-mixed-binaries to compare them anyway")
    return how


@dataclass(frozen=True)
class TieTest:
    alpha: float = 0.05
    min_effect: float = 0.05

    def describe(self) -> dict[str, object]:
        return {
            "test": "Welch's t-test per device on repetition p50s (or one run's mean/std/count)",
            "alpha": self.alpha,
            "min_effect": self.min_effect,
        }


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
    runs: int
    rows: int
    rank: int  # competition ranking: tied candidates share the rank of the first
    tie_group: int  # 0 = tied with the best
    tied: bool  # shares its rank with another candidate


class ExclusionKind(str, Enum):
    """Why a configuration is not a candidate of a tier: a failure, a gap, or the constraint it breaks."""

    FAILURE = "failure"
    NOT_MEASURED = "not_measured"
    ACCURACY_GATE = "accuracy_gate"
    MAX_LATENCY_US = "max_latency_us"  # the Constraints field names, so a limit names its own flag
    MAX_MEMORY_MB = "max_memory_mb"
    MAX_ACCURACY_DROP = "max_accuracy_drop"
    MAX_ENERGY_MJ = "max_energy_mj"


@dataclass(frozen=True)
class Exclusion:
    config: Config
    reason: str
    constraint: ExclusionKind
    value: float | None = None  # the metric where measured (for the dashboard)


@dataclass(frozen=True)
class TieBreak:
    """How the best tie group was ordered: recorded in the policy's evidence."""

    tied_with_best: tuple[str, ...]  # labels of the candidates tied with the fastest
    decided_by: str | None  # "model size", "threads", "energy", "metric" or None (no tie)
    p_values: Mapping[str, float | None] = field(default_factory=dict)  # label -> smallest p vs the fastest


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
    notes: tuple[str, ...] = ()  # what the ranking could not apply, and why

    @property
    def best(self) -> Candidate | None:
        return self.candidates[0] if self.candidates else None

    def table(self) -> pd.DataFrame:
        """Candidates then exclusions, one row each; `rank` shows ties as "=2"."""
        rows = []
        for c in self.candidates:
            rows.append({
                "rank": f"={c.rank}" if c.tied else str(c.rank), "config": c.config.label,
                "variant": c.config.variant, "delegate": c.config.delegate, "num_threads": c.config.num_threads,
                "value": c.value, "worst_value": c.worst_value, "p50_us": c.p50_us, "memory_mb": c.memory_mb,
                "energy_mj_per_inference": c.energy_mj_per_inference, "accuracy_drop": c.accuracy_drop,
                "model_size_bytes": c.model_size_bytes, "model_sha256": c.config.model_sha256,
                "tie_group": c.tie_group, "status": "candidate", "reason": None,
            })
        for e in self.excluded:
            rows.append({
                "rank": "-", "config": e.config.label, "variant": e.config.variant,
                "delegate": e.config.delegate, "num_threads": e.config.num_threads, "value": e.value,
                "model_sha256": e.config.model_sha256, "status": "excluded", "reason": e.reason,
            })
        return pd.DataFrame(rows)


# --- step 1: rows -> device x configuration statistics ------------------------------

_KEY = ("model_name", "variant", "model_sha256", "delegate", "num_threads", "serial")

_DEVICE_STATS_SQL = """
WITH r AS (
    SELECT *, status = 'ok' AS is_ok, coalesce(memory_peak_mb, memory_overall_mb) AS memory_any_mb
    FROM {relation}
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
        count(*) FILTER (WHERE NOT is_ok AND status <> 'skipped') AS failures,
        string_agg(DISTINCT CASE WHEN NOT is_ok AND status <> 'skipped'
                   THEN CASE WHEN error_type IS NULL OR error_type = status THEN status
                             ELSE status || ' (' || error_type || ')' END END, ', ') AS failure_kinds,
        arg_max(error_message, started_at) FILTER (WHERE NOT is_ok) AS last_error,
        median(inference_p50_us) FILTER (WHERE is_ok) AS inference_p50_us,
        avg(inference_avg_us) FILTER (WHERE is_ok) AS inference_avg_us,
        median(inference_p95_us) FILTER (WHERE is_ok) AS inference_p95_us,
        max(memory_any_mb) FILTER (WHERE is_ok) AS memory_mb,
        -- only measured energy decides anything; modelled energy is kept apart, for display
        median(energy_mj_per_inference) FILTER (WHERE is_ok AND power_method = 'fuel_gauge') AS energy_mj_per_inference,
        median(energy_mj_per_inference) FILTER (WHERE is_ok AND power_method = 'model') AS modelled_energy_mj_per_inference,
        list(DISTINCT power_method) FILTER (WHERE power_method IS NOT NULL) AS power_methods,
        list(DISTINCT temperature_method) FILTER (WHERE temperature_method IS NOT NULL) AS temperature_methods,
        list(DISTINCT coalesce(bench_binary_name, '?') || '@' || bench_binary_sha256)
            FILTER (WHERE bench_binary_sha256 IS NOT NULL AND status <> 'skipped') AS bench_binaries,
        max(temp_end_c) FILTER (WHERE is_ok) AS temp_end_max_c,
        count(*) FILTER (WHERE is_ok AND throttled) AS throttled_rows,
        -- what the significance test needs (see the module docstring)
        avg(inference_p50_us) FILTER (WHERE is_ok) AS rep_mean_us,
        stddev_samp(inference_p50_us) FILTER (WHERE is_ok) AS rep_sd_us,
        arg_max(inference_avg_us, started_at) FILTER (WHERE is_ok) AS run_mean_us,
        arg_max(inference_std_us, started_at) FILTER (WHERE is_ok) AS run_sd_us,
        arg_max(num_runs, started_at) FILTER (WHERE is_ok) AS run_n
    FROM r
    GROUP BY ALL
)
SELECT * EXCLUDE (rep_mean_us, rep_sd_us, run_mean_us, run_sd_us, run_n),
    CASE WHEN ok_rows >= 2 THEN rep_mean_us ELSE run_mean_us END AS test_mean_us,
    CASE WHEN ok_rows >= 2 THEN rep_sd_us ELSE run_sd_us END AS test_sd_us,
    CASE WHEN ok_rows >= 2 THEN ok_rows ELSE run_n END AS test_n
FROM g
ORDER BY {run_key} model_name, tier, serial, variant, delegate, num_threads
"""


def device_stats(con: duckdb.DuckDBPyConnection, relation: str = "rows", by_run: bool = False) -> pd.DataFrame:
    """One row per (model, variant, model file, delegate, threads, device) [, run].

    `relation` names a table or view of result rows on `con` (a registered
    DataFrame or a view over Parquet files). Latency figures are medians over
    the ok repetitions; `failures` counts rows that are neither ok nor skipped.
    """
    sql = _DEVICE_STATS_SQL.format(relation=relation, run_key="run_id," if by_run else "")
    frame = con.execute(sql).df()
    for column in ("rows", "runs", "ok_rows", "skipped_rows", "failures", "throttled_rows", "num_threads"):
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


def row_tier_facts(row: Mapping[str, object]) -> TierFacts:
    """The facts a results (or device_stats) row keeps of its phone, as the tier rules read them:
    the SoC identities the sweep classified it by (older rows: their one stored SoC), RAM, SDK."""
    identities, soc, ram, sdk = (_none_if_na(row.get(name)) for name in ("soc_identities", "soc", "ram_bytes",
                                                                          "android_sdk"))
    names = tuple(str(i) for i in identities) if identities is not None else (str(soc),) if soc else ()
    return TierFacts(names, None if ram is None else int(ram), None if sdk is None else int(sdk))


def assign_missing_tiers(stats: pd.DataFrame, rules: TierRules) -> tuple[pd.DataFrame, frozenset[str]]:
    """device_stats whose devices were stored without a tier (by another tool, or an older
    harness) classified by the same rules from their stored SoC, RAM and SDK, and the serials
    so assigned: the caller says that their tier was assigned now, not when they were measured."""
    missing = stats["tier"].isna()
    if not missing.any():
        return stats, frozenset()
    assigned = {serial: rules.classify(row_tier_facts(group.iloc[0])).tier
                for serial, group in stats[missing].groupby("serial")}
    stats = stats.copy()
    stats.loc[missing, "tier"] = stats.loc[missing, "serial"].map(assigned)
    return stats, frozenset(assigned)


# --- accuracy --------------------------------------------------------------------


def accuracy_from_manifest(manifest: Mapping[str, object]) -> dict[str, VariantAccuracy]:
    """sha256 -> accuracy of every variant file in a convert manifest (manifest.json)."""
    found: dict[str, VariantAccuracy] = {}
    for model in manifest.get("models", {}).values():  # type: ignore[union-attr]
        for variant in model.get("variants", {}).values():
            if variant.get("sha256"):
                figures = variant.get("accuracy") or {}
                found[variant["sha256"]] = VariantAccuracy(
                    figures.get("accuracy_drop"), variant.get("accepted"), variant.get("reason"))
    return found


def accuracy_from_results(results_root: Path) -> dict[str, VariantAccuracy]:
    """sha256 -> accuracy from <results>/accuracy/ (the latest conversion of each file wins)."""
    from harness.convert import read_accuracy

    table = read_accuracy(results_root)
    found: dict[str, VariantAccuracy] = {}
    for row in table[table["status"] == "ok"].itertuples():  # oldest first: later rows overwrite
        drop, accepted = _none_if_na(row.accuracy_drop), _none_if_na(row.accepted)
        # Plain Python values: callers test `accepted is False`, which a numpy bool never is.
        found[row.sha256] = VariantAccuracy(None if drop is None else float(drop),
                                            None if accepted is None else bool(accepted), _none_if_na(row.reason))
    return found


def accuracy_exclusion(accuracy: VariantAccuracy | None, max_accuracy_drop: float | None
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


def _none_if_na(value: object) -> object:
    return None if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)) else value


# --- significance ----------------------------------------------------------------


@dataclass(frozen=True)
class TestStats:
    mean_us: float
    sd_us: float | None
    n: int | None


def test_stats(row: Mapping[str, object]) -> TestStats:
    sd, n = _none_if_na(row["test_sd_us"]), _none_if_na(row["test_n"])
    return TestStats(float(row["test_mean_us"]), None if sd is None else float(sd), None if n is None else int(n))


def compare(a: TestStats, b: TestStats, tie_test: TieTest) -> tuple[bool, float | None]:
    """(significantly different, p-value or None when untestable)."""
    from scipy.stats import ttest_ind_from_stats

    low = min(a.mean_us, b.mean_us)
    effect = abs(a.mean_us - b.mean_us) / low if low > 0 else math.inf
    testable = a.n and b.n and a.n >= 2 and b.n >= 2 and a.sd_us is not None and b.sd_us is not None
    p_value = None
    if testable and (a.sd_us or b.sd_us):
        p_value = float(ttest_ind_from_stats(a.mean_us, a.sd_us, a.n, b.mean_us, b.sd_us, b.n,
                                             equal_var=False).pvalue)
    if effect <= tie_test.min_effect:
        return False, p_value
    if p_value is None:
        # No spread to test (one sample, or every sample equal): the effect size decides.
        return True, p_value
    return p_value < tie_test.alpha, p_value


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
        raise UsageError(f"no results for model {model_name!r}",
                         f"pick one of {', '.join(known)}" if known else "run a sweep first ('harness run' or 'harness demo')")
    if metric == ENERGY and model_stats[ENERGY].isna().all():
        raise UsageError(f"no measured energy for model {model_name!r}: modelled energy (virtual devices) never ranks",
                         "rank by a latency metric, or sweep phones that run on battery (see README, power)")
    tiers = ordered_tiers(model_stats["tier"], tier_order)
    accuracy = accuracy or {}
    return tuple(
        _rank_tier(model_stats[model_stats["tier"] == tier], tier, model_name, metric, constraints, accuracy, tie_test,
                   mixing)
        for tier in tiers
    )


def ordered_tiers(present: Iterable[str], tier_order: Sequence[str]) -> list[str]:
    """The tiers present, as `tier_order` lists them (tiers.toml: best first), then any others
    alphabetically, unclassified last."""
    present = set(present)
    ordered = [tier for tier in tier_order if tier in present]
    ordered += sorted(present - set(tier_order) - {NO_TIER})
    return ordered + ([NO_TIER] if NO_TIER in present else [])


def _rank_tier(stats: pd.DataFrame, tier: str, model_name: str, metric: str, constraints: Constraints,
               accuracy: Mapping[str, VariantAccuracy], tie_test: TieTest, mixing: MixingAllowed) -> TierRanking:
    how = refuse_mixed(stats, f"tier {tier} of {model_name}", mixing)
    notes = []
    if constraints.max_energy_mj is not None and stats[ENERGY].isna().all():
        # Nothing to hold the limit against: saying so beats excluding everything or pretending it holds.
        notes.append(f"max_energy_mj not applied: no device of tier {tier} measured energy "
                     f"(power methods: {', '.join(how.power_methods) or 'none'}; modelled energy decides nothing)")
        constraints = dataclasses.replace(constraints, max_energy_mj=None)
    measured = stats.groupby("serial")["skipped_rows"].sum() < stats.groupby("serial")["rows"].sum()
    devices = tuple(sorted(measured[measured].index))
    unmeasured = tuple(sorted(measured[~measured].index))
    names = dict(zip(stats["serial"], stats["device_model"]))
    stats = stats[stats["serial"].isin(devices)]

    candidates: list[dict] = []
    excluded: list[Exclusion] = []
    for key, group in stats.groupby(["variant", "delegate", "num_threads", "model_sha256"], sort=True):
        config = Config(key[0], key[1], int(key[2]), key[3])
        verdict = _judge(config, group, devices, names, metric, constraints, accuracy.get(config.model_sha256))
        if isinstance(verdict, Exclusion):
            excluded.append(verdict)
        else:
            candidates.append(verdict)
    ranked, tie_break = _order(candidates, metric, tie_test)
    excluded.sort(key=lambda e: (math.inf if e.value is None else e.value, e.config.label))
    return TierRanking(tier, model_name, metric, devices, names, unmeasured, tuple(ranked), tuple(excluded), tie_break,
                       how, tuple(notes))


def _judge(config: Config, group: pd.DataFrame, devices: Sequence[str], names: Mapping[str, str], metric: str,
           constraints: Constraints, accuracy: VariantAccuracy | None) -> dict | Exclusion:
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
    if missing:
        return excluded(f"not measured ok on {', '.join(names.get(s, s) for s in missing)}", ExclusionKind.NOT_MEASURED)
    ruled_out = accuracy_exclusion(accuracy, constraints.max_accuracy_drop)
    if ruled_out:
        return excluded(*ruled_out)
    latency_metric = metric if metric in LATENCY_METRICS else "inference_p50_us"
    checks = (
        (ExclusionKind.MAX_LATENCY_US, constraints.max_latency_us, latency_metric, "us"),
        (ExclusionKind.MAX_MEMORY_MB, constraints.max_memory_mb, "memory_mb", "MB"),
        (ExclusionKind.MAX_ENERGY_MJ, constraints.max_energy_mj, ENERGY, "mJ"),
    )
    for kind, limit, column, unit in checks:
        if limit is None:
            continue
        for serial, row in ok.items():
            figure = _none_if_na(row[column])
            if figure is None:
                return excluded(f"{kind.value}: {column} not measured on {names.get(serial, serial)}", kind)
            if figure > limit:
                return excluded(f"{kind.value}: {figure:,.1f} {unit} on {names.get(serial, serial)} > {limit:g}",
                                kind)
    if any(v is None for v in values.values()):
        return excluded(f"{metric} not measured", ExclusionKind.NOT_MEASURED)
    rows = list(ok.values())
    memory = [m for m in (_none_if_na(r["memory_mb"]) for r in rows) if m is not None]
    energy = [e for e in (_none_if_na(r["energy_mj_per_inference"]) for r in rows) if e is not None]
    return {
        "config": config, "model_size_bytes": int(max(r["model_size_bytes"] for r in rows)),
        "quantization": _none_if_na(rows[0]["quantization"]), "value": _median(list(values.values())),
        "worst_value": max(values.values()), "per_device": values,
        "p50_us": _median([float(r["inference_p50_us"]) for r in rows]),
        "memory_mb": max(memory) if memory else None,
        "energy_mj_per_inference": _median(energy) if len(energy) == len(rows) else None,
        "accuracy_drop": drop, "runs": int(max(r["runs"] for r in rows)), "rows": int(sum(r["rows"] for r in rows)),
        "tests": {s: test_stats(r) for s, r in ok.items()},
    }


def _order(candidates: list[dict], metric: str, tie_test: TieTest) -> tuple[list[Candidate], TieBreak]:
    """Sort by the metric, group statistical ties, and order the best group by size, threads, energy."""
    remaining = sorted(candidates, key=lambda c: (c["value"], c["model_size_bytes"], c["config"].num_threads,
                                                  c["config"].label))
    groups: list[list[dict]] = []
    while remaining:
        leader = remaining[0]
        group, rest = [leader], []
        for other in remaining[1:]:
            (rest if _differs(leader, other, metric, tie_test)[0] else group).append(other)
        groups.append(group)
        remaining = rest
    decided_by = None
    p_values: dict[str, float | None] = {}
    if groups and len(groups[0]) > 1:
        groups[0].sort(key=_tie_break_key)
        winner = groups[0][0]
        decided_by = _decided_by(winner, groups[0][1])
        p_values = {other["config"].label: _differs(winner, other, metric, tie_test)[1] for other in groups[0][1:]}
    ranked: list[Candidate] = []
    for group_index, group in enumerate(groups):
        rank = len(ranked) + 1
        for item in group:
            fields = {k: v for k, v in item.items() if k != "tests"}
            ranked.append(Candidate(**fields, rank=rank, tie_group=group_index, tied=len(group) > 1))
    tied = tuple(c["config"].label for c in groups[0][1:]) if groups else ()
    return ranked, TieBreak(tied, decided_by, p_values)


def _tie_break_key(item: dict) -> tuple:
    energy = item["energy_mj_per_inference"]
    return (item["model_size_bytes"], item["config"].num_threads, math.inf if energy is None else energy,
            item["value"], item["config"].label)


def _decided_by(winner: dict, runner_up: dict) -> str:
    """The first tie-break key on which the winner beat the runner-up of its tie group."""
    names = ("model size", "threads", "energy", "metric", "name")
    for name, mine, theirs in zip(names, _tie_break_key(winner), _tie_break_key(runner_up)):
        if mine != theirs:
            return name
    return "name"


def _differs(a: dict, b: dict, metric: str, tie_test: TieTest) -> tuple[bool, float | None]:
    """Significantly different on at least one device of the tier (smallest p-value returned)."""
    if metric not in LATENCY_METRICS:
        # No per-run spread for memory, energy or accuracy: only the effect size can decide.
        low = min(a["value"], b["value"])
        effect = abs(a["value"] - b["value"]) / low if low > 0 else (0.0 if a["value"] == b["value"] else math.inf)
        return effect > tie_test.min_effect, None
    smallest: float | None = None
    differs = False
    for serial, stats_a in a["tests"].items():
        stats_b = b["tests"].get(serial)
        if stats_b is None:
            continue
        device_differs, p_value = compare(stats_a, stats_b, tie_test)
        differs = differs or device_differs
        if p_value is not None:
            smallest = p_value if smallest is None else min(smallest, p_value)
    return differs, smallest


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


_VERDICT_ORDER = {"regression": 0, "newly failing": 1, "improvement": 2, "fixed": 3, "unchanged": 4,
                  "failing in both": 5, "only in A": 6, "only in B": 7}


def compare_runs(stats_by_run: pd.DataFrame, run_a: str, run_b: str, tie_test: TieTest = TieTest(),
                 mixing: MixingAllowed = MixingAllowed()) -> pd.DataFrame:
    """Case by case, run B against run A: the p50 change, its significance, a verdict.

    `stats_by_run` is device_stats(..., by_run=True). Cases match on device,
    model file, delegate and threads. Regressions come first, largest first.
    Raises UsageError when the two runs were measured by different benchmark
    binaries or kinds of device that `mixing` does not allow to compare.
    """
    both = stats_by_run[stats_by_run["run_id"].isin([run_a, run_b])]
    if not both.empty:
        refuse_mixed(both, f"comparing runs {run_a} and {run_b}", mixing)
    key = list(_KEY)
    columns = key + ["tier", "device_model", "ok_rows", "failures", "failure_kinds", "inference_p50_us",
                     "test_mean_us", "test_sd_us", "test_n"]
    a = stats_by_run[stats_by_run["run_id"] == run_a][columns]
    b = stats_by_run[stats_by_run["run_id"] == run_b][columns]
    merged = a.merge(b, on=key, how="outer", suffixes=("_a", "_b"), indicator=True)
    out = []
    for row in merged.to_dict("records"):
        ok_a = row["_merge"] != "right_only" and row["ok_rows_a"] > 0 and row["failures_a"] == 0
        ok_b = row["_merge"] != "left_only" and row["ok_rows_b"] > 0 and row["failures_b"] == 0
        change = p_value = None
        significant = False
        if row["_merge"] == "left_only":
            verdict = "only in A"
        elif row["_merge"] == "right_only":
            verdict = "only in B"
        elif ok_a and ok_b:
            stats_a = test_stats({k: row[f"{k}_a"] for k in ("test_mean_us", "test_sd_us", "test_n")})
            stats_b = test_stats({k: row[f"{k}_b"] for k in ("test_mean_us", "test_sd_us", "test_n")})
            significant, p_value = compare(stats_a, stats_b, tie_test)
            change = row["inference_p50_us_b"] / row["inference_p50_us_a"] - 1.0
            verdict = "unchanged" if not significant else ("regression" if change > 0 else "improvement")
        else:
            verdict = {(True, False): "newly failing", (False, True): "fixed"}.get((ok_a, ok_b), "failing in both")
        out.append({
            "verdict": verdict,
            "tier": row["tier_b"] if isinstance(row.get("tier_b"), str) else row["tier_a"],
            "device_model": row["device_model_b"] if isinstance(row.get("device_model_b"), str) else row["device_model_a"],
            **{k: row[k] for k in key},
            "p50_a_us": _none_if_na(row["inference_p50_us_a"]), "p50_b_us": _none_if_na(row["inference_p50_us_b"]),
            "change": change, "significant": significant, "p_value": p_value,
            "failures_a": _none_if_na(row.get("failure_kinds_a")), "failures_b": _none_if_na(row.get("failure_kinds_b")),
        })
    frame = pd.DataFrame(out)
    if frame.empty:
        return frame
    frame["_order"] = frame["verdict"].map(_VERDICT_ORDER)
    frame["_size"] = -frame["change"].abs().fillna(0.0)
    return frame.sort_values(["_order", "_size", "serial", "variant", "delegate", "num_threads"]).drop(
        columns=["_order", "_size"]).reset_index(drop=True)
