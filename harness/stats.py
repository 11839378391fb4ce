"""What repetitions can show: two configurations compared on one device, and a device's noise.

A repetition (one benchmark process: its p50, or whichever per-run figure is ranked) is the
unit of replication; the thousands of inferences inside one process are not independent of
each other, so they never count as samples.

Two sets of repetitions are compared on the log scale, where "A is 5% slower than B" is a
shift: the Hodges-Lehmann estimate of the shift and its distribution-free confidence
interval from the Mann-Whitney statistic, at level 1 - 2*alpha. That interval is the two
one-sided tests of equivalence (TOST) at alpha, and it is rank-based: one disturbed
repetition moves it by one order statistic, never by its size. With 3 repetitions each the
interval runs from the smallest to the largest ratio of two repetitions.

- equivalent: the whole interval lies within +-min_effect (a tie, which tie-breakers may settle);
- faster / slower: the interval excludes a ratio of 1 (shown different);
- undecided: neither; the better median wins, and `more_repetitions` says about how many
  more per configuration would likely decide it (the interval narrows like 1/sqrt(n));
- untested: fewer than MIN_REPETITIONS on a side: no statistical claim, only the medians.
"""

from __future__ import annotations

import functools
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, cast

import numpy as np
import pandas as pd

Row = Mapping[Any, Any]
"""A result or device_stats row as pandas hands it out (`to_dict("records")`): column name -> value of any type."""

MIN_REPETITIONS = 3
"""Fewer repetitions than this on either side: no claim (tie, difference or noise) is made."""


class Verdict(str, Enum):
    EQUIVALENT = "equivalent"  # shown within +-min_effect: a tie
    FASTER = "faster"  # A shown lower than B (for latency: faster)
    SLOWER = "slower"  # A shown higher than B
    DIFFERENT = "different"  # across devices: shown faster on some, slower on others
    UNDECIDED = "undecided"  # neither shown different nor shown equivalent
    UNTESTED = "untested"  # fewer than MIN_REPETITIONS on a side

    @property
    def shown_different(self) -> bool:
        return self in (Verdict.FASTER, Verdict.SLOWER, Verdict.DIFFERENT)


@dataclass(frozen=True)
class Comparison:
    """A against B on one device (or a tier's combination of devices)."""

    ratio: float  # median(A) / median(B): the point estimate people read
    low: float | None  # the ratio's 1 - 2*alpha interval; None when untested
    high: float | None
    verdict: Verdict
    repetitions: tuple[int, int]  # (A, B), the fewest over devices for a tier
    more_repetitions: int | None = None  # undecided: about how many more per configuration would decide it

    def describe(self, min_effect: float) -> str:
        """One phrase for people: 'within 5%', '12% slower', 'undecided (x1.03, ...)', ..."""
        change = f"{abs(self.ratio - 1):.0%}"
        if self.verdict is Verdict.EQUIVALENT:
            return f"within {min_effect:.0%}"
        if self.verdict is Verdict.FASTER:
            return f"{change} faster"
        if self.verdict in (Verdict.SLOWER, Verdict.DIFFERENT):
            return f"{change} slower" if self.ratio >= 1 else f"{change} faster"
        if self.verdict is Verdict.UNDECIDED:
            more = (
                f", about {self.more_repetitions} more repetitions would likely decide" if self.more_repetitions else ""
            )
            return f"undecided (x{self.ratio:.2f}{more})"
        return (
            f"untested: {min(self.repetitions)} repetition(s), fewer than {MIN_REPETITIONS}; "
            f"x{self.ratio:.2f} by the medians alone"
        )

    def to_json(self) -> dict[str, object]:
        return {
            "verdict": self.verdict.value,
            "ratio": round(self.ratio, 4),
            "interval": None if self.low is None else [round(self.low, 4), round(self.high or 0.0, 4)],
            "repetitions": list(self.repetitions),
            "more_repetitions": self.more_repetitions,
        }


@dataclass(frozen=True)
class TieTest:
    """The rule every decision uses: the interval's level (1 - 2*alpha) and the band a tie must fit in."""

    alpha: float = 0.05
    min_effect: float = 0.05

    def describe(self) -> dict[str, object]:
        return {
            "test": (
                "per device, the Hodges-Lehmann ratio of the repetitions' figures with its Mann-Whitney "
                f"interval at {1 - 2 * self.alpha:.0%} (TOST); a tie needs it within +-min_effect on every "
                f"device, and fewer than {MIN_REPETITIONS} repetitions make no claim"
            ),
            "alpha": self.alpha,
            "min_effect": self.min_effect,
        }

    def compare(self, a: Sequence[float], b: Sequence[float]) -> Comparison:
        return compare(a, b, self.min_effect, self.alpha)


BELOW_RESOLUTION = 0.5
"""What a figure of 0 is taken as: benchmark_model prints whole microseconds, so a 0 is a run faster than
its resolution (half a unit, not nothing: the ratios need a positive figure)."""


def compare(a: Sequence[float], b: Sequence[float], min_effect: float, alpha: float) -> Comparison:
    """Repetitions of A against repetitions of B (figures >= 0, lower is better)."""
    a = [float(x) if x > 0 else BELOW_RESOLUTION for x in a if math.isfinite(x) and x >= 0]
    b = [float(x) if x > 0 else BELOW_RESOLUTION for x in b if math.isfinite(x) and x >= 0]
    if not a or not b:
        raise ValueError("compare needs at least one figure on each side")
    ratio = statistics.median(a) / statistics.median(b)
    counts = (len(a), len(b))
    if min(counts) < MIN_REPETITIONS:
        return Comparison(ratio, None, None, Verdict.UNTESTED, counts)
    low_log, high_log = _shift_interval([math.log(x) for x in a], [math.log(x) for x in b], alpha)
    band = math.log1p(min_effect)
    if -band <= low_log and high_log <= band:
        verdict = Verdict.EQUIVALENT
    elif high_log < 0:
        verdict = Verdict.FASTER
    elif low_log > 0:
        verdict = Verdict.SLOWER
    else:
        verdict = Verdict.UNDECIDED
    more = _more_repetitions(low_log, high_log, band, min(counts)) if verdict is Verdict.UNDECIDED else None
    return Comparison(ratio, math.exp(low_log), math.exp(high_log), verdict, counts, more)


def combine(per_device: Iterable[Comparison]) -> Verdict:
    """A tier's verdict from its devices': a tie only when equivalent on every device."""
    verdicts = [c.verdict for c in per_device]
    if not verdicts:
        return Verdict.UNTESTED
    if all(v is Verdict.EQUIVALENT for v in verdicts):
        return Verdict.EQUIVALENT
    shown = {v for v in verdicts if v.shown_different}
    if shown:
        return shown.pop() if len(shown) == 1 else Verdict.DIFFERENT
    return Verdict.UNDECIDED if Verdict.UNDECIDED in verdicts else Verdict.UNTESTED


def _shift_interval(x: Sequence[float], y: Sequence[float], alpha: float) -> tuple[float, float]:
    """The 1 - 2*alpha distribution-free interval of the shift x - y (Hodges-Lehmann / Mann-Whitney).

    With too few repetitions for that level (e.g. 2 against 3) it is unbounded.
    """
    differences = sorted(xi - yj for xi in x for yj in y)
    k = _mann_whitney_critical(len(x), len(y), alpha)
    if k is None:
        return -math.inf, math.inf
    # The k-th smallest and k-th largest difference: P(shift < d_(k)) = P(U <= k - 1) <= alpha.
    return differences[k - 1], differences[len(differences) - k]


def _mann_whitney_critical(n: int, m: int, alpha: float) -> int | None:
    """The largest k with P(U <= k - 1) <= alpha under no shift; None when even k = 1 is too wide."""
    if n * m > 2500:
        # Large samples: the normal approximation of U.
        z = statistics.NormalDist().inv_cdf(1 - alpha)
        k = math.floor(n * m / 2 - z * math.sqrt(n * m * (n + m + 1) / 12))
        return k if k >= 1 else None
    counts = _u_distribution(n, m)
    total = math.comb(n + m, n)
    below, c = 0, 0
    while c < len(counts) and (below + counts[c]) / total <= alpha:
        below += counts[c]
        c += 1
    return c if c >= 1 else None


@functools.cache
def _u_distribution(n: int, m: int) -> tuple[int, ...]:
    """How many of the C(n+m, n) orderings give U = 0, 1, ..., n*m (no ties)."""
    if n == 0 or m == 0:
        return (1,)
    # The largest value is from x (it beats all m values of y: U grows by m) or from y (nothing).
    with_x, with_y = _u_distribution(n - 1, m), _u_distribution(n, m - 1)
    out = [0] * (n * m + 1)
    for u, count in enumerate(with_x):
        out[u + m] += count
    for u, count in enumerate(with_y):
        out[u] += count
    return tuple(out)


def _more_repetitions(low: float, high: float, band: float, n: int) -> int | None:
    """About how many more repetitions per configuration would make an undecided interval decide."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return None
    centre, half = (low + high) / 2, (high - low) / 2
    # Decided once the interval excludes 0 or fits in the band, whichever comes first.
    target = max(abs(centre), band - abs(centre))
    if target <= 0 or half <= 0:
        return None
    needed = math.ceil(n * (half / target) ** 2)
    return max(needed - n, 1)


@dataclass(frozen=True)
class NoiseFloor:
    """How much a device's repeated measurements of one configuration move, its configurations' medians.

    `cv` is the run-to-run coefficient of variation of repetition p50s; `max_over_min`
    their largest over smallest; `p95_over_p50` the within-run tail. A device whose
    cv is above min_effect cannot resolve a difference of min_effect.
    """

    cv: float | None
    max_over_min: float | None
    p95_over_p50: float | None
    configurations: int  # configurations with >= 2 repetitions behind cv and max_over_min

    def to_json(self) -> dict[str, object]:
        def rounded(value: float | None) -> float | None:
            return None if value is None else round(value, 4)

        return {
            "cv": rounded(self.cv),
            "max_over_min": rounded(self.max_over_min),
            "p95_over_p50": rounded(self.p95_over_p50),
            "configurations": self.configurations,
        }

    def warning(self, min_effect: float) -> str | None:
        if self.cv is None or self.cv <= min_effect:
            return None
        return (
            f"run-to-run variation {self.cv:.1%} is above the {min_effect:.0%} this ranking resolves: "
            "a difference that small cannot be told apart here"
        )


def noise_floor(p50_repetitions: Iterable[Sequence[float]], p95_over_p50: Iterable[float]) -> NoiseFloor:
    """A device's noise floor from each configuration's repetition p50s and every run's p95/p50."""
    cvs, spreads = [], []
    for values in p50_repetitions:
        values = [v for v in values if v and v > 0]
        if len(values) >= 2:
            cvs.append(statistics.stdev(values) / statistics.fmean(values))
            spreads.append(max(values) / min(values))
    tails = [t for t in p95_over_p50 if t and math.isfinite(t)]
    return NoiseFloor(
        statistics.median(cvs) if cvs else None,
        statistics.median(spreads) if spreads else None,
        statistics.median(tails) if tails else None,
        len(cvs),
    )


def figures(values: object) -> list[float]:
    """A list cell of device statistics (`reps_*`: a list, or null for a configuration without ok
    repetitions) as plain floats."""
    if values is None or values is pd.NA or (isinstance(values, float) and math.isnan(values)):
        return []
    # DuckDB hands lists with nulls over as masked arrays: a masked element is a null, not a figure.
    cells = cast(Iterable[Any], values)  # a list, or the array DuckDB makes of one
    present = (v for v in cells if v is not None and v is not pd.NA and not np.ma.is_masked(v))
    return [float(v) for v in present if not math.isnan(float(v))]
