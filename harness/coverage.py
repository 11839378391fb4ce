"""`harness policy coverage`: how good a policy is on the devices we measured.

For every measured device: the tier the policy resolves it to (from the
facts stored with its rows), the configuration it would run there (the first
entry of its chain that did not fail on that device nor compute wrong outputs
there, as an app walking the fallbacks would end up), that configuration's latency on the device, and the
best configuration measured on the device, compared on their repetitions as the
rankings compare (harness.stats): "within 5% of best" only when shown so,
"undecided", or "slower than best by N%". The goal: within min-effect of the
best on at least 95% of devices, and never a configuration that failed there.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

import pandas as pd

from harness import ranking
from harness.numerics import NumericsGate
from harness.policy_resolve import entry_label, resolve
from harness.ranking import MixingAllowed, VariantAccuracy
from harness.records import config_label
from harness.stats import Comparison, Row, TieTest, Verdict

GOAL_SHARE = 0.95


class CoverageVerdict(str, Enum):
    """What a device gets from the policy, in the words the rankings and run comparisons use."""

    BEST = "the best"
    WITHIN = "within min-effect of best"
    UNDECIDED = "undecided"
    SLOWER = "slower than best"
    UNTESTED = "untested"
    NOT_MEASURED = "not measured here"
    WALKED_PAST_FAILURE = "walked past a failure"
    NO_WORKING = "no working configuration"

    @property
    def at_best(self) -> bool:
        return self in (CoverageVerdict.BEST, CoverageVerdict.WITHIN)


@dataclass(frozen=True)
class DeviceCoverage:
    serial: str
    device_model: str
    measured_tier: str | None  # the tier the sweep classified it into; None: stored without one
    policy_tier: str | None  # the tier the policy resolves it to (None: default only)
    policy_rule: str | None
    runs_config: str | None  # label of the configuration it would run; None: none worked
    chain_position: int | None  # 0 = the choice, 1.. = fallbacks, last = default
    failed_before: tuple[str, ...]  # chain entries that failed on this device, walked past
    runs_p50_us: float | None
    best_config: str | None
    best_p50_us: float | None
    versus_best: Comparison | None  # the configuration it runs against the device's best, on repetitions
    min_effect: float

    @property
    def ratio(self) -> float | None:
        return None if self.versus_best is None else self.versus_best.ratio

    @property
    def verdict(self) -> CoverageVerdict:
        if self.runs_config is None:
            return CoverageVerdict.NO_WORKING
        if self.failed_before:
            return CoverageVerdict.WALKED_PAST_FAILURE
        if self.versus_best is None:
            return CoverageVerdict.NOT_MEASURED
        if self.runs_config == self.best_config:
            return CoverageVerdict.BEST
        return {
            Verdict.EQUIVALENT: CoverageVerdict.WITHIN,
            Verdict.UNDECIDED: CoverageVerdict.UNDECIDED,
            Verdict.UNTESTED: CoverageVerdict.UNTESTED,
        }.get(self.versus_best.verdict, CoverageVerdict.SLOWER)

    def describe(self) -> str:
        """The verdict with its numbers: 'within 5% of best', 'slower than best by 58%', ..."""
        verdict, against = self.verdict, self.versus_best
        if verdict is CoverageVerdict.WITHIN:
            return f"within {self.min_effect:.0%} of best"
        if verdict is CoverageVerdict.SLOWER and against is not None:
            return f"slower than best by {against.ratio - 1:.0%}"
        if verdict in (CoverageVerdict.UNDECIDED, CoverageVerdict.UNTESTED) and against is not None:
            return against.describe(self.min_effect)
        if verdict is CoverageVerdict.WALKED_PAST_FAILURE:
            return f"walked past {', '.join(self.failed_before)}"
        return str(verdict.value)  # str(): mypy types .value of a narrowed enum as Any


@dataclass(frozen=True)
class CoverageReport:
    model_name: str
    metric: str
    min_effect: float
    devices: tuple[DeviceCoverage, ...]

    @property
    def share_at_best(self) -> float:
        """Devices that run their best configuration or one shown within min-effect of it."""
        return sum(d.verdict.at_best for d in self.devices) / len(self.devices) if self.devices else 0.0

    @property
    def failed_choices(self) -> int:
        """Devices on which the policy's first choice for them failed (an app pays a failed init)."""
        return sum(bool(d.failed_before) for d in self.devices)

    @property
    def meets_goal(self) -> bool:
        return (
            self.share_at_best >= GOAL_SHARE and self.failed_choices == 0 and all(d.runs_config for d in self.devices)
        )

    @property
    def goal(self) -> str:
        return f"within {self.min_effect:.0%} of the best on >= {GOAL_SHARE:.0%} of devices, no failed choice"

    def lines(self) -> list[str]:
        """A plain-text report: one line per device, then the verdict against the goal."""
        out = [f"coverage of {self.model_name} on {len(self.devices)} measured devices ({self.metric}):"]
        for d in self.devices:
            runs = f"{d.runs_config} {_us(d.runs_p50_us)}" if d.runs_config else "nothing that works"
            best = f"best {d.best_config} {_us(d.best_p50_us)}" if d.best_config else "no ok configuration"
            out.append(
                f"  {d.device_model:<14} {d.measured_tier or '-':<5} -> {d.policy_tier or 'default':<5} "
                f"runs {runs}; {best}: {d.describe()}"
            )
        goal = "meets" if self.meets_goal else "misses"
        out.append(
            f"  the best or within {self.min_effect:.0%} of it on {self.share_at_best:.0%} of devices, "
            f"{self.failed_choices} failed choices: {goal} the goal ({self.goal})"
        )
        return out

    def table(self) -> pd.DataFrame:
        return pd.DataFrame(
            [
                {
                    **{k: v for k, v in vars(d).items() if k not in ("versus_best", "min_effect")},
                    "failed_before": ", ".join(d.failed_before),
                    "ratio": d.ratio,
                    "verdict": d.verdict.value,
                    "versus_best": d.describe(),
                    "more_repetitions": d.versus_best.more_repetitions if d.versus_best else None,
                }
                for d in self.devices
            ]
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model_name,
            "metric": self.metric,
            "share_at_best": self.share_at_best,
            "failed_choices": self.failed_choices,
            "meets_goal": self.meets_goal,
            "goal": self.goal,
            "devices": self.table().to_dict("records"),
        }


def coverage(
    document: Mapping[str, Any],
    rows: pd.DataFrame,
    accuracy: Mapping[str, VariantAccuracy] | None = None,
    tie_test: TieTest | None = None,
    mixing: MixingAllowed = MixingAllowed(),
    numerics_gate: NumericsGate | None = None,
) -> CoverageReport:
    """Judge `document` (a policy) against stored result rows of its model.

    The "best" on a device is its fastest configuration that ran ok, computed the
    reference's outputs there (the policy's numerics gate, else the default one) and
    is allowed by the policy's own accuracy limits (gate and max_accuracy_drop), so a
    rejected variant or a wrong delegate is never the yardstick. A chain entry whose
    outputs were wrong on the device (or unchecked there and wrong on another phone,
    ranking.outputs_wrong) counts as failed there: an app would ship wrong answers,
    which is worse than a failed init.
    """
    model_name = document["model"]["name"]
    metric = document["objective"]["metric"]
    if metric not in ranking.LATENCY_METRICS:
        metric = "inference_p50_us"  # coverage is about latency whatever the policy optimised
    test = tie_test or TieTest(**{k: document["objective"]["tie_test"][k] for k in ("alpha", "min_effect")})
    limit = document["objective"].get("constraints", {}).get("max_accuracy_drop")
    gate = numerics_gate or NumericsGate(**document["objective"].get("numerics_gate", {}))
    stats = ranking.stats_of(rows[rows["model_name"] == model_name])
    wrong = ranking.wrong_outputs(stats, gate)
    accuracy = accuracy or {}
    out = []
    for serial, device in stats.groupby("serial", sort=True):
        if (device["skipped_rows"] == device["rows"]).all():
            continue  # never benchmarked (no binary for its ABI): nothing to judge
        ranking.refuse_mixed(device, f"coverage on {serial}", mixing)
        facts = device.iloc[0]
        resolution = resolve(document, ranking.row_tier_facts(facts))
        by_config = {(r["model_sha256"], r["delegate"], int(r["num_threads"])): r for r in device.to_dict("records")}
        failed_before: list[str] = []
        runs: tuple[Row | None, str] | None = None
        position: int | None = None
        for index, entry in enumerate(resolution.chain):
            row = by_config.get((entry["model"]["sha256"], entry["delegate"], int(entry["num_threads"])))
            label = entry_label(entry)
            if row is not None and row["failures"] > 0:
                failed_before.append(label)
                continue
            if row is not None and ranking.outputs_wrong(row, gate, wrong):
                failed_before.append(f"{label} (wrong outputs)")
                continue
            if row is not None and row["ok_rows"] > 0:
                runs, position = (row, label), index
                break
            # Not measured on this device: an app would still try it; we cannot judge it.
            runs, position = (None, label), index
            break
        allowed = [
            r
            for r in by_config.values()
            if r["ok_rows"] > 0
            and r["failures"] == 0
            and not ranking.outputs_wrong(r, gate, wrong)
            and ranking.accuracy_exclusion(accuracy.get(r["model_sha256"]), limit) is None
        ]
        best = min(allowed, key=lambda r: r[metric]) if allowed else None
        runs_row, runs_label = runs if runs else (None, None)
        versus = None
        if runs_row is not None and best is not None:
            versus = test.compare(ranking.repetitions(runs_row, metric), ranking.repetitions(best, metric))
        out.append(
            DeviceCoverage(
                serial=str(serial),
                device_model=str(facts["device_model"]),
                measured_tier=None if pd.isna(facts["tier"]) else str(facts["tier"]),
                policy_tier=resolution.tier,
                policy_rule=resolution.rule,
                runs_config=runs_label,
                chain_position=position,
                failed_before=tuple(failed_before),
                runs_p50_us=None if runs_row is None else float(runs_row[metric]),
                best_config=None
                if best is None
                else config_label(best["variant"], best["delegate"], best["num_threads"]),
                best_p50_us=None if best is None else float(best[metric]),
                versus_best=versus,
                min_effect=test.min_effect,
            )
        )
    return CoverageReport(model_name, metric, test.min_effect, tuple(out))


def _us(value: float | None) -> str:
    if value is None:
        return "(not measured here)"
    return f"{value / 1000:.2f} ms" if value >= 1000 else f"{value:.0f} us"
