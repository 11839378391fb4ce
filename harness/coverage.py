"""`harness policy coverage`: how good a policy is on the devices we measured.

For every measured device: the tier the policy resolves it to (from the
facts stored with its rows), the configuration it would run there (the first
entry of its chain that did not fail on that device, as an app walking the
fallbacks would end up), that configuration's latency on the device, and the
best configuration measured on the device, with the ratio and whether the
difference is within noise (the same test as the rankings). The goal: within
noise of the best on at least 95% of devices, and never a configuration that
failed on that device.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pandas as pd

from harness import ranking
from harness.policy_file import entry_label, resolve
from harness.ranking import MixingAllowed, TieTest, VariantAccuracy
from harness.records import config_label

GOAL_SHARE = 0.95


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
    ratio: float | None  # runs / best (1.0 = the best)
    within_noise: bool | None
    p_value: float | None

    @property
    def verdict(self) -> str:
        if self.runs_config is None:
            return "no working configuration"
        if self.failed_before:
            return "walked past a failure"
        if self.within_noise:
            return "within noise of best"
        return "slower than best"


@dataclass(frozen=True)
class CoverageReport:
    model_name: str
    metric: str
    devices: tuple[DeviceCoverage, ...]

    @property
    def share_within_noise(self) -> float:
        return sum(bool(d.within_noise) for d in self.devices) / len(self.devices) if self.devices else 0.0

    @property
    def failed_choices(self) -> int:
        """Devices on which the policy's first choice for them failed (an app pays a failed init)."""
        return sum(bool(d.failed_before) for d in self.devices)

    @property
    def meets_goal(self) -> bool:
        return self.share_within_noise >= GOAL_SHARE and self.failed_choices == 0 and all(
            d.runs_config for d in self.devices)

    def lines(self) -> list[str]:
        """A plain-text report: one line per device, then the verdict against the goal."""
        out = [f"coverage of {self.model_name} on {len(self.devices)} measured devices ({self.metric}):"]
        for d in self.devices:
            runs = f"{d.runs_config} {_us(d.runs_p50_us)}" if d.runs_config else "nothing that works"
            best = f"best {d.best_config} {_us(d.best_p50_us)}" if d.best_config else "no ok configuration"
            ratio = f"x{d.ratio:.2f}" if d.ratio is not None else "x?"
            walked = f"; walked past {', '.join(d.failed_before)}" if d.failed_before else ""
            out.append(f"  {d.device_model:<14} {d.measured_tier or '-':<5} -> {d.policy_tier or 'default':<5} "
                       f"runs {runs}; {best}; {ratio} {d.verdict}{walked}")
        goal = "meets" if self.meets_goal else "misses"
        out.append(f"  within noise of the best on {self.share_within_noise:.0%} of devices, "
                   f"{self.failed_choices} failed choices: {goal} the goal (>= {GOAL_SHARE:.0%}, no failed choice)")
        return out

    def table(self) -> pd.DataFrame:
        return pd.DataFrame([{**vars(d), "failed_before": ", ".join(d.failed_before), "verdict": d.verdict}
                             for d in self.devices])

    def to_json(self) -> dict:
        return {"model": self.model_name, "metric": self.metric, "share_within_noise": self.share_within_noise,
                "failed_choices": self.failed_choices, "meets_goal": self.meets_goal,
                "goal": f"within noise of the best on >= {GOAL_SHARE:.0%} of devices, no failed choice",
                "devices": self.table().to_dict("records")}


def coverage(document: Mapping, rows: pd.DataFrame, accuracy: Mapping[str, VariantAccuracy] | None = None,
             tie_test: TieTest | None = None, mixing: MixingAllowed = MixingAllowed()) -> CoverageReport:
    """Judge `document` (a policy) against stored result rows of its model.

    The "best" on a device is its fastest configuration that ran ok and is
    allowed by the policy's own accuracy limits (gate and max_accuracy_drop), so
    a rejected variant is never the yardstick.
    """
    model_name = document["model"]["name"]
    metric = document["objective"]["metric"]
    if metric not in ranking.LATENCY_METRICS:
        metric = "inference_p50_us"  # coverage is about latency whatever the policy optimised
    test = tie_test or TieTest(**{k: document["objective"]["tie_test"][k] for k in ("alpha", "min_effect")})
    limit = document["objective"].get("constraints", {}).get("max_accuracy_drop")
    stats = ranking.stats_of(rows[rows["model_name"] == model_name])
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
        runs = position = None
        for index, entry in enumerate(resolution.chain):
            row = by_config.get((entry["model"]["sha256"], entry["delegate"], int(entry["num_threads"])))
            label = entry_label(entry)
            if row is not None and row["failures"] > 0:
                failed_before.append(label)
                continue
            if row is not None and row["ok_rows"] > 0:
                runs, position = (row, label), index
                break
            # Not measured on this device: an app would still try it; we cannot judge it.
            runs, position = (None, label), index
            break
        allowed = [r for r in by_config.values() if r["ok_rows"] > 0 and r["failures"] == 0
                   and ranking.accuracy_exclusion(accuracy.get(r["model_sha256"]), limit) is None]
        best = min(allowed, key=lambda r: r[metric]) if allowed else None
        runs_row, runs_label = runs if runs else (None, None)
        ratio = within = p_value = None
        if runs_row is not None and best is not None:
            ratio = float(runs_row[metric] / best[metric])
            differs, p_value = ranking.compare(ranking.test_stats(runs_row), ranking.test_stats(best), test)
            within = not differs
        out.append(DeviceCoverage(
            serial=serial, device_model=str(facts["device_model"]),
            measured_tier=None if pd.isna(facts["tier"]) else str(facts["tier"]),
            policy_tier=resolution.tier, policy_rule=resolution.rule, runs_config=runs_label,
            chain_position=position, failed_before=tuple(failed_before),
            runs_p50_us=None if runs_row is None else float(runs_row[metric]),
            best_config=None if best is None else config_label(best["variant"], best["delegate"], best["num_threads"]),
            best_p50_us=None if best is None else float(best[metric]),
            ratio=ratio, within_noise=within, p_value=p_value,
        ))
    return CoverageReport(model_name, metric, tuple(out))


def _us(value: float | None) -> str:
    if value is None:
        return "(not measured here)"
    return f"{value / 1000:.2f} ms" if value >= 1000 else f"{value:.0f} us"
