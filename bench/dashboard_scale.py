"""Dashboard at lab scale: the first Rankings view over N result rows of R nightly runs, and its peak RSS.

Writes the dataset the way sweeps leave it, with the project's own store code: per run, 40 devices
(tiers high/mid/low), each writing its run's rows through ResultsStore.append_table (one file per
device and model, as a sweep's per-case files hold them), then ResultsStore.compact (what a sweep
does when it ends: one file per run x device x model). Cases are 5 models x 5 variants x 5 delegates
x 5 thread counts (the models interleaved, so every run measures every model), 3 repetitions each
(more when a run's devices have rows for more), about 3 % of them failures.

Then, in a fresh process per attempt (so the figures are the first view's, not the writer's), it
measures what the first Rankings view pays:

  discover  dashboard.data.Dataset.open(root): list the files that count (runs and devices by
            folder, the model by file name), read the run manifests and the accuracy rows
  ranking   the Rankings page's first view: the sidebar's default selection (the first model; all
            its runs up to dashboard.data.POOLED_RUNS_MAX, else the newest run),
            harness.ranking.device_stats read in place over those files only,
            the model's accuracy, then harness.ranking.rank_tiers (Welch's t-test ties) per tier

and the process's peak RSS (getrusage ru_maxrss). Goals: 1,000,000 rows or fewer, first view <= 1 s;
more, <= 3 s (10,000,000 rows over 365 runs is the issue's figure); peak RSS <= 2 GB. Figures are
printed last; the exit status is 1 when a goal is missed.

The dataset goes to a temporary folder under /tmp and is deleted afterwards, unless --root names a
folder (then it is kept and reused when it holds the same figures; --fresh rewrites it).

Usage: .venv/bin/python bench/dashboard_scale.py [--rows 1000000] [--runs R] [--root DIR] [--fresh] [--repeat 3]
       .venv/bin/python bench/dashboard_scale.py --rows 10000000 --runs 365
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

DEVICES = 40
MODELS = tuple(f"model_{n}" for n in range(5))
VARIANTS = ("fp32", "fp16", "dynamic", "int8", "int16x8")
DELEGATES = ("cpu", "xnnpack", "gpu", "nnapi", "hexagon")
THREADS = (1, 2, 4, 6, 8)
TIERS = ("high", "mid", "low")
MIN_REPETITIONS = 3
ROWS_PER_NIGHT = 27_400  # 10,000,000 rows over 365 nights: --runs defaults to rows / ROWS_PER_NIGHT
RSS_GOAL_BYTES = 2 * 10**9
FIGURES = "figures.json"


def goal_s(rows: int) -> float:
    return 1.0 if rows <= 1_000_000 else 3.0


def configurations() -> list[tuple[str, str, str, int]]:
    """(model, variant, delegate, threads), the model varying fastest: any prefix covers every model."""
    grid = [(v, d, t) for v in VARIANTS for d in DELEGATES for t in THREADS]
    return [(model, *rest) for rest in grid for model in MODELS]


def write_dataset(root: Path, rows: int, runs: int) -> None:
    """Write `rows` rows over `runs` runs (see the module docstring)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute  # noqa: F401  (pa.compute)

    from harness.records import case_id_for
    from harness.store import ResultsStore

    store = ResultsStore(root)
    configs = configurations()
    shas = {(m, v): hashlib.sha256(f"{m}/{v}".encode()).hexdigest() for m in MODELS for v in VARIANTS}
    noise = np.random.default_rng(0)
    base_rows, extra_rows = divmod(rows, runs * DEVICES)
    written = 0
    clock = time.perf_counter()
    for run in range(runs):
        started = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(days=run)
        run_id = f"{started:%Y%m%dT%H%M%SZ}-night{run:03d}"
        for device in range(DEVICES):
            count = base_rows + (1 if run * DEVICES + device < extra_rows else 0)
            if count == 0:
                continue
            serial = f"bench-{device:02d}"
            tier = TIERS[device % len(TIERS)]
            repetitions = max(MIN_REPETITIONS, math.ceil(count / len(configs)))
            index = np.arange(count)
            config_index, repetition = index // repetitions, index % repetitions
            chosen = [configs[i] for i in config_index]
            model = [c[0] for c in chosen]
            variant = [c[1] for c in chosen]
            delegate = [c[2] for c in chosen]
            threads = np.array([c[3] for c in chosen])
            v_rank = np.array([VARIANTS.index(v) for v in variant])
            d_rank = np.array([DELEGATES.index(d) for d in delegate])
            base_us = {"high": 2000.0, "mid": 5000.0, "low": 12000.0}[tier] * (1 + device / 100)
            p50 = (
                base_us * (1 - 0.1 * v_rank) * (1 - 0.1 * d_rank) / np.sqrt(threads) * noise.uniform(0.97, 1.03, count)
            )
            failed = noise.random(count) < 0.03
            value = pa.array(np.where(failed, np.nan, p50), from_pandas=True)
            case_ids = {c: case_id_for(serial, shas[(c[0], c[1])], c[2], c[3], ()) for c in set(chosen)}
            table = pa.table(
                {
                    "run_id": [run_id] * count,
                    "case_id": [case_ids[c] for c in chosen],
                    "repetition": pa.array(repetition, pa.int64()),
                    "started_at": pa.array(int(started.timestamp() * 1e6) + index * 1_000_000, pa.int64()).cast(
                        pa.timestamp("us", tz="UTC")
                    ),
                    "duration_s": [2.0] * count,
                    "harness_version": ["0.1.0"] * count,
                    "adb_server": ["127.0.0.1:5037"] * count,
                    "serial": [serial] * count,
                    "device_kind": ["physical"] * count,
                    "device_model": [f"Bench {tier}"] * count,
                    "manufacturer": ["Bench"] * count,
                    "soc": [f"soc-{tier}"] * count,
                    "abi": ["arm64-v8a"] * count,
                    "android_sdk": pa.array([34] * count, pa.int64()),
                    "ram_bytes": pa.array([8 * 2**30] * count, pa.int64()),
                    "tier": [tier] * count,
                    "model_name": model,
                    "variant": variant,
                    "model_sha256": [shas[(m, v)] for m, v in zip(model, variant, strict=True)],
                    "model_size_bytes": pa.array(1_000_000 >> v_rank, pa.int64()),
                    "delegate": delegate,
                    "num_threads": pa.array(threads, pa.int64()),
                    "num_runs": pa.array([50] * count, pa.int64()),
                    "warmup_runs": pa.array([1] * count, pa.int64()),
                    "bench_binary_sha256": ["b" * 64] * count,
                    "inference_avg_us": pa.compute.multiply(value, 1.05),
                    "inference_p50_us": value,
                    "inference_p95_us": pa.compute.multiply(value, 1.2),
                    "memory_overall_mb": [40.0] * count,
                    "avg_power_mw": pa.array(np.where(failed, np.nan, 900.0), from_pandas=True),
                    "energy_mj_per_inference": pa.compute.divide(pa.compute.multiply(value, 900.0), 1e6),
                    "power_method": pa.array([None if f else "fuel_gauge" for f in failed], pa.string()),
                    "temp_start_c": [35.0] * count,
                    "temp_end_c": [37.0] * count,
                    "throttled": [False] * count,
                    "status": pa.array(np.where(failed, "failed", "ok")),
                    "error_type": pa.array(["crash" if f else None for f in failed], pa.string()),
                    "error_message": pa.array(["killed by signal 11" if f else None for f in failed], pa.string()),
                }
            )
            # One batch per model, as a sweep's per-case files of this device hold them.
            for name in sorted(set(model)):
                store.append_table(table.filter(pa.compute.equal(table["model_name"], name)))
            written += count
        store.compact(run_id)
        store.write_run_manifest(
            run_id,
            {"argv": ["bench/dashboard_scale.py"], "started_at": started, "ended_at": started + timedelta(hours=6)},
        )
        if (run + 1) % 25 == 0 or run + 1 == runs:
            print(f"  {run + 1}/{runs} runs, {written:,} rows, {time.perf_counter() - clock:.0f} s", file=sys.stderr)
    (root / FIGURES).write_text(json.dumps({"rows": rows, "runs": runs}))


def first_view(root: Path, pooled: bool = False) -> dict[str, object]:
    """One cold first Rankings view in this process (`pooled`: over every run instead of the default)."""
    clock = time.perf_counter()
    from dashboard import analysis
    from dashboard.data import Dataset, Selection, default_run_ids
    from harness.ranking import Constraints, TieTest

    imported_s = time.perf_counter() - clock
    clock = time.perf_counter()
    dataset = Dataset.open(root)
    discover_s = time.perf_counter() - clock
    clock = time.perf_counter()
    model = dataset.models()[0]
    run_ids = dataset.run_ids(model)
    # The sidebar's default: every run up to a month of nights, else the newest (dashboard.data.POOLED_RUNS_MAX).
    selection = Selection(model, tuple(run_ids) if pooled else default_run_ids(run_ids))
    stats = analysis.device_stats(dataset, selection)
    accuracy, _ = analysis.model_accuracy(dataset, selection)
    tiers = analysis.rank(stats, model, "inference_p50_us", Constraints(), accuracy, TieTest())
    rank_s = time.perf_counter() - clock
    files = dataset.selected_files(selection)
    return {
        "import_s": imported_s,
        "discover_s": discover_s,
        "rank_s": rank_s,
        "first_view_s": discover_s + rank_s,
        "files": len(dataset.data_files),
        "model_files": len(files),
        "runs": len(dataset.runs),
        "selected_runs": len(selection.run_ids),
        "model": model,
        "model_rows": int(stats["rows"].sum()),
        "tiers": len(tiers),
        "rankings": sum(len(tier.candidates) + len(tier.excluded) for tier in tiers),
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, help="nightly runs (default: rows / 27,400, a 40-phone lab's night)")
    parser.add_argument(
        "--pooled", action="store_true", help="also time ranking the model over all runs pooled (not a goal)"
    )
    parser.add_argument("--root", type=Path, help="keep the dataset here (default: a temporary folder, deleted)")
    parser.add_argument("--fresh", action="store_true", help="rewrite the dataset under --root even if it exists")
    parser.add_argument("--repeat", type=int, default=3, help="cold first views to time, each in a new process")
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)  # internal: one first view, JSON out
    parser.add_argument("--measure-pooled", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(first_view(args.measure, pooled=args.measure_pooled)))
        return 0
    if args.runs is None:
        args.runs = max(1, math.ceil(args.rows / ROWS_PER_NIGHT))

    root = args.root or Path(tempfile.mkdtemp(prefix="dashboard_scale-", dir="/tmp"))
    try:
        wanted = {"rows": args.rows, "runs": args.runs}
        stored = json.loads((root / FIGURES).read_text()) if (root / FIGURES).is_file() else None
        if args.fresh or stored != wanted:
            shutil.rmtree(root / "dataset", ignore_errors=True)
            shutil.rmtree(root / "runs", ignore_errors=True)
            clock = time.perf_counter()
            write_dataset(root, args.rows, args.runs)
            print(f"wrote {args.rows:,} rows over {args.runs} runs in {time.perf_counter() - clock:.0f} s under {root}")
        size_mb = sum(p.stat().st_size for p in (root / "dataset").rglob("*.parquet")) / 1e6
        attempts = []
        for _ in range(args.repeat):
            measured = subprocess.run(
                [sys.executable, __file__, "--measure", str(root)], capture_output=True, text=True, check=True
            )
            attempts.append(json.loads(measured.stdout.strip().splitlines()[-1]))
        pooled = None
        if args.pooled:
            measured = subprocess.run(
                [sys.executable, __file__, "--measure", str(root), "--measure-pooled"],
                capture_output=True,
                text=True,
                check=True,
            )
            pooled = json.loads(measured.stdout.strip().splitlines()[-1])
    finally:
        if args.root is None:
            shutil.rmtree(root, ignore_errors=True)

    for number, a in enumerate(attempts, start=1):
        print(
            f"#{number}: discover {a['discover_s']:.2f} s ({a['files']:,} files, {a['runs']} runs), "
            f"first ranking {a['rank_s']:.2f} s ({a['model']}: {a['model_rows']:,} rows from {a['model_files']:,} "
            f"files of {a['selected_runs']} run(s), {a['tiers']} tiers, {a['rankings']} tier x configuration "
            "rankings), "
            f"first view {a['first_view_s']:.2f} s, peak RSS {a['peak_rss_bytes'] / 1e9:.2f} GB "
            f"(import {a['import_s']:.2f} s, not counted)"
        )
    if pooled is not None:
        print(
            f"not a goal: ranking {pooled['model']} over all {pooled['selected_runs']} runs pooled ('All runs' on): "
            f"{pooled['model_rows']:,} rows from {pooled['model_files']:,} files, first view "
            f"{pooled['first_view_s']:.2f} s, peak RSS {pooled['peak_rss_bytes'] / 1e9:.2f} GB"
        )
    worst_s = max(float(a["first_view_s"]) for a in attempts)
    worst_rss = max(int(a["peak_rss_bytes"]) for a in attempts)
    time_goal = goal_s(args.rows)
    met = worst_s <= time_goal and worst_rss <= RSS_GOAL_BYTES
    print(
        f"{args.rows:,} rows over {args.runs} runs ({size_mb:,.0f} MB of Parquet): worst first view "
        f"{worst_s:.2f} s (goal <= {time_goal:.0f} s), worst peak RSS {worst_rss / 1e9:.2f} GB "
        f"(goal <= {RSS_GOAL_BYTES / 1e9:.0f} GB): {'meets' if met else 'MISSES'} the goals"
    )
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
