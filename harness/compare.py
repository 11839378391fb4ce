"""Two runs compared case by case: `harness compare BASE NEW` (a CI gate) and the dashboard's page.

Cases match on device, model file, delegate and threads. Each case's NEW repetitions
are compared with its BASE repetitions as harness.stats compares configurations, with
the allowed regression (`--max-regression`, default 5%) as the band:

- regression: NEW is shown slower by more than the threshold (the whole interval of the
  ratio lies above 1 + threshold);
- suspicious: not shown, but the medians say it is slower by more than the threshold
  (undecided, or fewer than 3 repetitions: untested);
- improvement: shown faster by more than the threshold;
- unchanged: shown within the threshold;
- undecided / untested: within the threshold by the medians, neither shown nor excluded;
- newly failing, fixed, failing in both, only in base, only in new.

The gate fails (exit 1) on a regression or a newly failing case; a suspicious case
is reported, with the repetitions that would likely decide it, but does not fail it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pandas as pd

from harness.atomic import write_atomically
from harness.errors import UsageError
from harness.ranking import MixingAllowed, refuse_mixed
from harness.records import config_label
from harness.stats import Row, TieTest, Verdict, figures

DEFAULT_MAX_REGRESSION = 0.05
_KEY = ["model_name", "variant", "model_sha256", "delegate", "num_threads", "serial"]


class Change(str, Enum):
    """How one case moved from the base run to the new one (see the module docstring)."""

    REGRESSION = "regression"
    NEWLY_FAILING = "newly failing"
    SUSPICIOUS = "suspicious"
    IMPROVEMENT = "improvement"
    FIXED = "fixed"
    UNDECIDED = "undecided"
    UNTESTED = "untested"
    UNCHANGED = "unchanged"
    FAILING_IN_BOTH = "failing in both"
    ONLY_IN_BASE = "only in base"
    ONLY_IN_NEW = "only in new"

    @property
    def fails_the_gate(self) -> bool:
        return self in (Change.REGRESSION, Change.NEWLY_FAILING)


_ORDER = {change: index for index, change in enumerate(Change)}


def parse_threshold(text: str) -> float:
    """'5%' or '0.05' -> 0.05."""
    raw = text.strip()
    try:
        value = float(raw[:-1]) / 100.0 if raw.endswith("%") else float(raw)
    except ValueError:
        raise UsageError(f"--max-regression {text!r} is not a share", "write it as 5% or 0.05") from None
    if not 0 <= value < 10:
        raise UsageError(f"--max-regression {text!r} is out of range", "use a share such as 5% (0.05)")
    return value


def compare_runs(
    stats_by_run: pd.DataFrame,
    base_run: str,
    new_run: str,
    max_regression: float = DEFAULT_MAX_REGRESSION,
    alpha: float = TieTest().alpha,
    mixing: MixingAllowed = MixingAllowed(),
) -> pd.DataFrame:
    """One row per case: the p50 change of NEW against BASE, its interval and verdict; worst first.

    `stats_by_run` is ranking.device_stats(..., by_run=True). Raises UsageError when
    the runs were measured by different benchmark binaries or kinds of device that
    `mixing` does not allow to compare.
    """
    both = stats_by_run[stats_by_run["run_id"].isin([base_run, new_run])]
    if not both.empty:
        refuse_mixed(both, f"comparing runs {base_run} and {new_run}", mixing)
    columns = [
        *_KEY,
        "tier",
        "device_model",
        "ok_rows",
        "failures",
        "failure_kinds",
        "inference_p50_us",
        "reps_inference_p50_us",
    ]
    base = stats_by_run[stats_by_run["run_id"] == base_run][columns]
    new = stats_by_run[stats_by_run["run_id"] == new_run][columns]
    merged = base.merge(new, on=_KEY, how="outer", suffixes=("_base", "_new"), indicator=True)
    test = TieTest(alpha=alpha, min_effect=max_regression)
    out = [_judge(row, test) for row in merged.to_dict("records")]
    frame = pd.DataFrame(out)
    if frame.empty:
        return frame
    frame["_order"] = frame["verdict"].map(lambda v: _ORDER[Change(v)])
    frame["_size"] = -frame["change"].abs().fillna(0.0)
    return (
        frame.sort_values(["_order", "_size", "serial", "variant", "delegate", "num_threads"])
        .drop(columns=["_order", "_size"])
        .reset_index(drop=True)
    )


def _judge(row: Row, test: TieTest) -> dict[str, object]:
    def ok(side: str) -> bool:
        return bool(row[f"ok_rows_{side}"] > 0 and row[f"failures_{side}"] == 0)

    change = low = high = more = None
    present = row["_merge"]
    if present == "left_only":
        verdict = Change.ONLY_IN_BASE
    elif present == "right_only":
        verdict = Change.ONLY_IN_NEW
    elif ok("base") and ok("new"):
        comparison = test.compare(figures(row["reps_inference_p50_us_new"]), figures(row["reps_inference_p50_us_base"]))
        change, more = comparison.ratio - 1.0, comparison.more_repetitions
        low, high = comparison.low, comparison.high
        verdict = _verdict(comparison.verdict, comparison.ratio, low, high, test.min_effect)
    else:
        verdict = {(True, False): Change.NEWLY_FAILING, (False, True): Change.FIXED}.get(
            (ok("base"), ok("new")), Change.FAILING_IN_BOTH
        )

    def either(name: str) -> object:
        value = row.get(f"{name}_new")
        return value if isinstance(value, str) else row.get(f"{name}_base")

    return {
        "verdict": verdict.value,
        "tier": either("tier"),
        "device_model": either("device_model"),
        **{k: row[k] for k in _KEY},
        "configuration": config_label(row["variant"], row["delegate"], int(row["num_threads"])),
        "p50_base_us": _number(row.get("inference_p50_us_base")),
        "p50_new_us": _number(row.get("inference_p50_us_new")),
        "change": change,
        "change_low": None if low is None else low - 1.0,
        "change_high": None if high is None else high - 1.0,
        "more_repetitions": more,
        "repetitions_base": _count(row.get("ok_rows_base")),
        "repetitions_new": _count(row.get("ok_rows_new")),
        "failures_base": _text(row.get("failure_kinds_base")),
        "failures_new": _text(row.get("failure_kinds_new")),
    }


def _verdict(verdict: Verdict, ratio: float, low: float | None, high: float | None, threshold: float) -> Change:
    beyond = 1.0 + threshold
    if verdict is Verdict.EQUIVALENT:
        return Change.UNCHANGED
    if low is not None and low > beyond:
        return Change.REGRESSION
    if high is not None and high < 1.0 / beyond:
        return Change.IMPROVEMENT
    if ratio > beyond:
        return Change.SUSPICIOUS
    return Change.UNTESTED if verdict is Verdict.UNTESTED else Change.UNDECIDED


def _number(value: float | None) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def _count(value: float | None) -> int | None:
    number = _number(value)
    return None if number is None else int(number)


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


# --- reporting -----------------------------------------------------------------------------


@dataclass(frozen=True)
class GateResult:
    base_run: str
    new_run: str
    max_regression: float
    cases: pd.DataFrame

    @property
    def failing(self) -> pd.DataFrame:
        return (
            self.cases[self.cases["verdict"].map(lambda v: Change(v).fails_the_gate)]
            if not self.cases.empty
            else self.cases
        )

    @property
    def passed(self) -> bool:
        return self.failing.empty

    def counts(self) -> dict[str, int]:
        return {
            change.value: int((self.cases["verdict"] == change.value).sum()) if not self.cases.empty else 0
            for change in Change
        }

    def lines(self) -> list[str]:
        out = [
            f"{self.new_run} against {self.base_run}: {len(self.cases)} case(s), "
            f"regression threshold {self.max_regression:.0%}"
        ]
        cases: Iterable[Any] = self.cases.itertuples()  # named tuples of compare_runs' columns
        for case in cases:
            if case.verdict in (Change.UNCHANGED.value, Change.FAILING_IN_BOTH.value):
                continue
            out.append(
                f"  {case.verdict:<15} {case.device_model or case.serial} ({case.serial}) {case.model_name} "
                f"{case.configuration}: {describe_change(case)}"
            )
        summary = ", ".join(f"{count} {name}" for name, count in self.counts().items() if count)
        out.append(f"  {summary}: {'PASS' if self.passed else 'FAIL'} (fails on a regression or a newly failing case)")
        return out

    def to_json(self) -> dict[str, object]:
        return {
            "base_run": self.base_run,
            "new_run": self.new_run,
            "max_regression": self.max_regression,
            "passed": self.passed,
            "counts": self.counts(),
            "cases": self.cases.astype(object).where(self.cases.notna(), None).to_dict("records"),
        }

    def write_junit(self, path: Path) -> Path:
        """One test case per device and configuration; regressions and newly failing cases fail."""
        suite = ElementTree.Element(
            "testsuite",
            name=f"harness compare {self.base_run} {self.new_run}",
            tests=str(len(self.cases)),
            failures=str(len(self.failing)),
        )
        cases: Iterable[Any] = self.cases.itertuples()  # named tuples of compare_runs' columns
        for case in cases:
            element = ElementTree.SubElement(
                suite, "testcase", classname=f"{case.model_name}.{case.serial}", name=case.configuration
            )
            text = f"{case.verdict}: {describe_change(case)}"
            if Change(case.verdict).fails_the_gate:
                ElementTree.SubElement(element, "failure", message=text, type=case.verdict).text = text
            else:
                ElementTree.SubElement(element, "system-out").text = text
        data = ElementTree.tostring(suite, encoding="utf-8", xml_declaration=True)
        write_atomically(Path(path), lambda out: out.write(data))
        return Path(path)


def describe_change(case: Any) -> str:
    """One case of compare_runs (a row as a named tuple) in words: the change, its interval, what is missing."""
    verdict = Change(case.verdict)
    if verdict is Change.NEWLY_FAILING:
        return f"now fails: {case.failures_new}"
    if verdict in (Change.ONLY_IN_BASE, Change.ONLY_IN_NEW, Change.FAILING_IN_BOTH, Change.FIXED):
        return str(verdict.value)  # str(): mypy types .value of a narrowed enum as Any
    change = f"{case.change:+.1%} p50 ({_us(case.p50_base_us)} -> {_us(case.p50_new_us)})"
    if case.change_low is not None and not pd.isna(case.change_low):
        change += f", interval {case.change_low:+.1%}..{case.change_high:+.1%}"
    more = case.more_repetitions
    if verdict in (Change.SUSPICIOUS, Change.UNDECIDED) and more is not None and not pd.isna(more):
        change += f"; about {int(more)} more repetitions would likely decide"
    if verdict in (Change.UNTESTED, Change.SUSPICIOUS) and min(case.repetitions_base, case.repetitions_new) < 3:
        change += f"; {min(case.repetitions_base, case.repetitions_new)} repetition(s): not tested"
    return change


def _us(value: float | None) -> str:
    if value is None or pd.isna(value):
        return "?"
    return f"{value / 1000:.2f} ms" if value >= 1000 else f"{value:.0f} us"


def gate(
    stats_by_run: pd.DataFrame,
    base_run: str,
    new_run: str,
    max_regression: float = DEFAULT_MAX_REGRESSION,
    alpha: float = TieTest().alpha,
    mixing: MixingAllowed = MixingAllowed(),
    models: Sequence[str] = (),
) -> GateResult:
    """compare_runs over every model of the two runs (or `models`), as `harness compare` reports it."""
    known = set(stats_by_run["run_id"])
    for run in (base_run, new_run):
        if run not in known:
            raise UsageError(f"no results for run {run!r}", "list the runs with 'harness results ls'")
    if models:
        stats_by_run = stats_by_run[stats_by_run["model_name"].isin(models)]
    return GateResult(
        base_run, new_run, max_regression, compare_runs(stats_by_run, base_run, new_run, max_regression, alpha, mixing)
    )
