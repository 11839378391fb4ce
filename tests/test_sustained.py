"""Sustained load (harness run --sustained): window rows, summaries, deadline misses, resume, the policy."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from test_sweep import _killed_mid_run, _resume_latest
from tiers import slow_fixture

from harness import sweep
from harness.config import packaged_defaults
from harness.errors import UsageError
from harness.phone.clocks import parse_clocks
from harness.phone.discovery import discover, select
from harness.phone.profiles import AdbServer, load_tiers
from harness.policy import DeriveRequest, Objective, derive
from harness.policy_file import validate
from harness.records import CaseStatus, ClockMethod, Delegate, DeviceKind, ResultRow, TemperatureMethod
from harness.store import ResultsStore
from harness.sustained import as_ranking_rows, deadline_miss_bounds, describe, summarize
from harness.virtual_farm import farm as farm_lib

SHIPPED = packaged_defaults() / "virtual"
START = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)


# --- summaries of hand-made windows ---------------------------------------------------------------------


def _windows(
    p50s: list[float],
    khz: list[int] | None = None,
    kind: str = "physical",
    fps: float | None = 30.0,
    p95_over_p50: float = 1.2,
    starts: list[float] | None = None,
) -> pd.DataFrame:
    rows = []
    for index, p50 in enumerate(p50s):
        rows.append(
            ResultRow(
                run_id="r",
                case_id="c",
                repetition=0,
                started_at=START + dt.timedelta(seconds=index * 10),
                duration_s=10.0,
                harness_version="t",
                adb_server="127.0.0.1:5037",
                serial="s1",
                device_kind=DeviceKind(kind),
                device_model="Phone",
                model_name="net",
                variant="fp32",
                model_sha256="a" * 64,
                model_size_bytes=1,
                delegate=Delegate.XNNPACK,
                num_threads=4,
                num_runs=1,
                warmup_runs=1,
                inference_count=300,
                inference_p50_us=p50,
                inference_avg_us=p50,
                inference_min_us=p50 * 0.9,
                inference_p95_us=p50 * p95_over_p50,
                inference_max_us=p50 * 1.5,
                window_index=index,
                window_start_s=(starts or [i * 10.0 for i in range(len(p50s))])[index],
                window_s=10.0,
                target_fps=fps,
                cpu_cur_freq_khz=(1_800_000, khz[index]) if khz else None,
                cpu_avg_freq_khz=(1_800_000.0, float(khz[index])) if khz else None,
                clock_method=ClockMethod.SYSFS if kind == "physical" else ClockMethod.MODEL,
                temperature_method=TemperatureMethod.SENSOR if kind == "physical" else TemperatureMethod.MODEL,
                temp_end_c=30.0 + index,
                status=CaseStatus.OK,
            ).to_record()
        )
    return pd.DataFrame(rows)


def test_a_phone_that_throttles_and_one_that_only_spikes() -> None:
    # Latency up by 40% from window 3 on, and the big cluster's clock down: a throttle, found where it starts.
    (hot,) = summarize(
        _windows(
            [20_000, 20_500, 20_200, 28_000, 29_000, 29_500, 30_000, 30_500, 31_000],
            khz=[2_800_000] * 3 + [2_000_000] * 6,
        )
    )
    assert hot.throttle_reason is not None
    assert (hot.throttle_window, hot.throttle_at_s) == (3, 30.0) and "stays above" in hot.throttle_reason
    assert hot.burst_p50_us == 20_000 and hot.sustained_p50_us == 30_500 and hot.ratio == pytest.approx(1.525)
    # A one-window spike is noise, not a throttle.
    (spiky,) = summarize(_windows([20_000, 30_000, 20_100, 20_200, 19_900, 20_000]))
    assert spiky.throttle_window is None and spiky.ratio == pytest.approx(1.0, abs=0.01)
    # Clocks alone: down and staying down from window 2 while the latency hides it.
    (clocked,) = summarize(_windows([20_000] * 6, khz=[2_800_000, 2_800_000] + [2_100_000] * 4))
    assert clocked.throttle_reason is not None
    assert clocked.throttle_window == 2 and "GHz" in clocked.throttle_reason


def test_deadline_misses_are_bounds_from_the_quantiles_the_tools_report() -> None:
    assert deadline_miss_bounds(10, 20, 30, 40, 50) == (0.0, 0.0)
    assert deadline_miss_bounds(10, 20, 30, 40, 35) == (0.0, 0.05)
    assert deadline_miss_bounds(10, 20, 30, 40, 25) == (0.05, 0.5)
    assert deadline_miss_bounds(10, 20, 30, 40, 15) == (0.5, 1.0)
    assert deadline_miss_bounds(10, 20, 30, 40, 5) == (1.0, 1.0)
    # 30 fps = 33.3 ms: p50 20 ms, p95 24 ms, max 30 ms: no window misses.
    (fine,) = summarize(_windows([20_000] * 3, fps=30.0))
    assert (fine.missed_low, fine.missed_high) == (0.0, 0.0)
    # 52 fps = 19.2 ms: between min 18 ms and p50 20 ms: at least half the inferences are late, not all.
    (late,) = summarize(_windows([20_000] * 3, fps=52.0))
    assert late.missed_low == 0.5 and "missed by 50%-100%" in describe(late)


def test_virtual_windows_say_what_they_cannot_see_and_a_resumed_case_says_it_cooled() -> None:
    (virtual,) = summarize(_windows([20_000, 20_100, 20_050], kind="virtual"))
    assert "modelled temperatures, clocks" in describe(virtual) and "never throttles" in describe(virtual)
    (resumed,) = summarize(_windows([20_000] * 4, starts=[0.0, 10.0, 400.0, 410.0]))
    assert resumed.interrupted_after == 1 and "interrupted after window 1" in describe(resumed)


def test_clocks_of_a_phone_are_read_per_cluster_with_their_time_in_state() -> None:
    before = parse_clocks(
        "/sys/devices/system/cpu/cpu0/cpufreq/scaling_cur_freq 1800000\n"
        "/sys/devices/system/cpu/cpu4/cpufreq/scaling_cur_freq 2800000\n"
        "/sys/devices/system/cpu/cpu0/cpufreq/related_cpus 0 1 2 3\n"
        "/sys/devices/system/cpu/cpu4/cpufreq/related_cpus 4 5\n"
        "@@ /sys/devices/system/cpu/cpu0/cpufreq/stats/time_in_state\n1800000 100\n"
        "@@ /sys/devices/system/cpu/cpu4/cpufreq/stats/time_in_state\n2000000 50\n2800000 100\n"
    )
    after = parse_clocks(
        "/sys/devices/system/cpu/cpu0/cpufreq/scaling_cur_freq 1800000\n"
        "/sys/devices/system/cpu/cpu4/cpufreq/scaling_cur_freq 2000000\n"
        "/sys/devices/system/cpu/cpu0/cpufreq/related_cpus 0 1 2 3\n"
        "/sys/devices/system/cpu/cpu4/cpufreq/related_cpus 4 5\n"
        "@@ /sys/devices/system/cpu/cpu0/cpufreq/stats/time_in_state\n1800000 1100\n"
        "@@ /sys/devices/system/cpu/cpu4/cpufreq/stats/time_in_state\n2000000 550\n2800000 600\n"
    )
    assert after.clusters == ((0, 1, 2, 3), (4, 5)) and after.cluster_cur_khz() == (1_800_000, 2_000_000)
    # The big cluster spent half the window at 2.0 GHz and half at 2.8 GHz.
    assert after.mean_khz_since(before) == (1_800_000.0, 2_400_000.0)
    assert parse_clocks("").cluster_cur_khz() is None and after.mean_khz_since(parse_clocks("")) is None


# --- on the virtual farm ----------------------------------------------------------------------------------


@slow_fixture(scope="module")
def farm(tmp_path_factory):
    base = tmp_path_factory.mktemp("sustained")
    folder = base / "profiles"
    folder.mkdir()
    (folder / "low.toml").write_text((SHIPPED / "low_galaxy_a03.toml").read_text())
    state = farm_lib.start_private(base / "state", folder)
    try:
        yield base / "state", state.adb_server_port
    finally:
        farm_lib.stop_private(base / "state")


def _sustained_params(**overrides) -> sweep.SweepParams:
    values = dict(
        delegates=("cpu", "xnnpack"),
        threads=(1,),
        repetitions=1,
        sustained_s=3.0,
        window_s=1.0,
        fps=50.0,
        thermal_threshold_c=90.0,
        thermal_max_wait_s=2.0,
    )
    return sweep.SweepParams(**{**values, **overrides})


def test_a_sustained_sweep_stores_windows_summaries_and_a_sustained_policy(farm, tmp_path: Path, tiny_models) -> None:
    _, port = farm
    devices = select(discover([AdbServer("127.0.0.1", port)], load_tiers()).entries, "all")
    store = ResultsStore(tmp_path / "results")
    model = tmp_path / "net_fp32.tflite"
    model.write_bytes(tiny_models["conv_ms"].read_bytes())
    summary = sweep.run_sweep(
        devices,
        sweep.collect_models([model]),
        _sustained_params(),
        sweep.build_binaries({}, tmp_path / "bin"),
        store,
        show_progress=False,
    )
    rows = store.read([summary.run_id])

    assert len(rows) == 2 * 3 and set(rows["status"]) == {"ok"}
    for _, case in rows.groupby("case_id"):
        assert sorted(case["window_index"]) == [0, 1, 2] and (case["window_s"] == 1.0).all()
        assert case["window_start_s"].is_monotonic_increasing and case["window_start_s"].iloc[0] == 0.0
        assert (case["target_fps"] == 50.0).all() and set(case["clock_method"]) == {"model"}
        assert case["cpu_cur_freq_khz"].map(len).eq(2).all()  # two clusters
        # --run_frequency=50 paces the loop: a 1 s window holds at most about 50 inferences, never as many as
        # the CPU could do (fewer when the host is slower than the rate: those are the deadline misses).
        assert (case["inference_count"] <= 52).all(), case["inference_count"].tolist()
        assert "--run_frequency=50" in (store.root / case["raw_log_path"].iloc[0]).read_text()
        first = case.sort_values("window_index")
        assert first["numerics_status"].iloc[0] == "ok" and (first["numerics_status"].iloc[1:] == "not_checked").all()
    summaries = summarize(rows)
    assert len(summaries) == 2 and all(s.windows == 3 and s.burst_p50_us and s.sustained_p50_us for s in summaries)
    # Burst statistics leave windows out; the sustained ranking rows are one per case.
    assert len(as_ranking_rows(rows)) == 2 and as_ranking_rows(rows)["window_index"].isna().all()

    shown = subprocess.run(
        [sys.executable, "-m", "harness.cli", "results", "show", summary.run_id, "--results", str(store.root)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shown.returncode == 0, shown.stderr
    assert (
        "sustained cases" in shown.stdout and "burst p50" in shown.stdout and "frame deadline 20.0 ms" in shown.stdout
    )

    derived = derive(DeriveRequest(results_root=store.root, objective=Objective.SUSTAINED))
    document = derived.document
    assert validate(document) == ()
    assert document["objective"]["load"] == "sustained" and document["objective"]["fps"] == 50.0
    assert document["objective"]["constraints"]["frame_deadline_us"] == 20000.0
    low = next(t for t in document["tiers"] if t["name"] == "low")
    evidence = low["evidence"]["sustained"]
    assert evidence["windows"] == 3 and evidence["sustained_over_burst"] > 0
    assert evidence["deadline_missed_share"] is not None and evidence["clock_methods"] == ["model"]
    # A deadline no configuration meets: nothing to ship, and the error says which limit and how to relax it.
    with pytest.raises(UsageError, match="frame_deadline_us excluded"):
        derive(DeriveRequest(results_root=store.root, objective=Objective.SUSTAINED, fps=100_000.0))
    # The burst policy of these results: there is no burst row to rank.
    with pytest.raises(UsageError):
        derive(DeriveRequest(results_root=store.root))


def test_kill_minus_9_in_a_sustained_case_resumes_without_repeating_a_window(farm, tmp_path: Path, tiny_models) -> None:
    state_dir, port = farm
    farm_state = farm_lib.load_state(state_dir)
    assert farm_state is not None
    serial = farm_lib.find_device(farm_state, "galaxy-a03").serial
    store, run_id, env = _killed_mid_run(
        tmp_path,
        port,
        [
            "--devices",
            serial,
            "--models",
            str(tiny_models["dense"]),
            "--delegates",
            "xnnpack",
            "--threads",
            "1",
            "--repetitions",
            "1",
            "--sustained",
            "8s",
            "--window",
            "1",
            "--thermal-threshold",
            "90",
        ],
        lambda store, run_id: (
            len(store.stored_windows(run_id).get(next(iter(store.stored_windows(run_id)), ("", 0)), {})) >= 2
            if store.stored_windows(run_id)
            else False
        ),
        wait_s=90,
    )
    before = sum(len(w) for w in store.stored_windows(run_id).values())
    assert 2 <= before < 8

    resumed = _resume_latest(store, env)
    assert json.loads(resumed.stdout)["cases_total"] == 8 - before
    rows = store.read([run_id])
    assert sorted(rows["window_index"]) == list(range(8)) and not rows.duplicated(["case_id", "window_index"]).any()
