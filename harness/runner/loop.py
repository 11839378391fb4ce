"""The timed loop of BenchmarkModel::Run and the statistics it prints."""

from __future__ import annotations

import gc
import math
import time
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from harness.runner.report import Log, fmt_num


@dataclass(frozen=True)
class RunStats:
    """tsl::StatWithPercentiles over per-run latencies in microseconds.

    The figures reproduce the C++ arithmetic, including its truncations:
    variance and std are int64 there, and a percentile is the element at
    index count * p / 100 of the sorted samples. An empty Stat reports 0s
    (int64's quiet_NaN() is 0).
    """

    count: int = 0
    first: int = 0
    newest: int = 0
    min: int = 0
    max: int = 0
    avg: float = 0.0
    std: int = 0
    p5: int = 0
    median: int = 0
    p95: int = 0

    @classmethod
    def of(cls, samples_us: Sequence[int]) -> RunStats:
        values = np.asarray(samples_us, dtype=np.int64)
        count = len(values)
        if count == 0:
            return cls()
        low, high = int(values.min()), int(values.max())
        avg = int(values.sum()) / count
        std = 0
        if low != high:
            squared = values.astype(np.float64)
            variance = int(float(np.dot(squared, squared)) / count - avg * avg)
            std = int(math.sqrt(variance)) if variance > 0 else 0
        ordered = np.sort(values)
        return cls(
            count=count,
            first=int(values[0]),
            newest=int(values[-1]),
            min=low,
            max=high,
            avg=avg,
            std=std,
            p5=int(ordered[count * 5 // 100]),
            median=int(ordered[count * 50 // 100]),
            p95=int(ordered[count * 95 // 100]),
        )

    def summary(self) -> str:
        """The `count=...` line, as Stat::OutputToStream writes it."""
        if self.count == 0:
            head = "count=0"
        elif self.min == self.max:
            head = f"count={self.count} curr={self.newest}"
            if self.count > 1:
                head += "(all same)"
        else:
            head = (
                f"count={self.count} first={self.first} curr={self.newest} min={self.min} "
                f"max={self.max} avg={fmt_num(self.avg)} std={self.std}"
            )
        return f"{head} p5={self.p5} median={self.median} p95={self.p95}"


@dataclass(frozen=True)
class LoopResult:
    stats: RunStats
    # The first failure of invoke(); the real tool also keeps looping after one.
    error: Exception | None


def run_loop(
    invoke: Callable[[], object],
    min_num_times: int,
    min_secs: float,
    max_secs: float,
    run_delay: float,
    run_frequency: float,
    log: Log,
) -> LoopResult:
    """BenchmarkModel::Run(min_num_times, min_secs, max_secs): time invoke() only.

    Runs while (run < min_num_times or elapsed < min_secs) and elapsed <= max_secs.
    """
    log.info(
        f"Running benchmark for at least {min_num_times} iterations and at least "
        f"{fmt_num(min_secs)} seconds but terminate if exceeding {fmt_num(max_secs)} seconds."
    )
    clock = time.perf_counter_ns
    sleep = time.sleep
    now_us = clock() // 1000
    min_finish_us = now_us + int(min_secs * 1e6)
    max_finish_us = now_us + int(max_secs * 1e6)
    gap_s = 1.0 / run_frequency if run_frequency > 0 else 0.0
    next_run_finish_s = now_us * 1e-6 + gap_s
    # int64s like the real tool's vector: a fast model's many samples stay small.
    samples = array("q")
    record = samples.append
    error: Exception | None = None
    run = 0
    # A collection pause inside a timed run would be charged to the model.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        while (run < min_num_times or now_us < min_finish_us) and now_us <= max_finish_us:
            start = clock()
            try:
                invoke()
            except Exception as exc:  # noqa: BLE001 - recorded, reported after the loop
                error = error or exc
            end = clock()
            # Whole microseconds on both ends, as profiling::time::NowMicros gives.
            record(end // 1000 - start // 1000)
            sleep_s = run_delay
            if run_frequency > 0:
                sleep_s = next_run_finish_s - clock() * 1e-9
                next_run_finish_s += gap_s
            if sleep_s > 0:
                sleep(sleep_s)
            now_us = clock() // 1000
            run += 1
    finally:
        if gc_was_enabled:
            gc.enable()
    if error is not None:
        for line in str(error).splitlines() or [type(error).__name__]:
            log.error(line)
    stats = RunStats.of(samples)
    # Real output ends this line with std::endl inside the log message: a blank line follows.
    log.info(stats.summary() + "\n")
    return LoopResult(stats, error)
