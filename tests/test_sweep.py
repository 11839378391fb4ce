"""End to end: `harness run` on the virtual farm, two adb servers, faults, kill -9 and resume."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tiers import slow_fixture

from harness import sweep
from harness.config import packaged_defaults
from harness.phone import thermal
from harness.phone.discovery import discover, select
from harness.phone.profiles import AdbServer, load_tiers
from harness.store import ResultsStore
from harness.virtual_farm import farm as farm_lib
from harness.virtual_farm.server import Fault

SHIPPED = packaged_defaults() / "virtual"
QUICK: dict[str, Any] = dict(
    repetitions=1, num_runs=3, warmup_runs=1, min_secs=0.05, thermal_threshold_c=90.0, thermal_max_wait_s=2.0
)


def _start_farm(base: Path, profiles: dict[str, str]) -> tuple[Path, int]:
    """A farm of the given profiles (file name -> TOML text) on its own adb server."""
    folder = base / "profiles"
    folder.mkdir(parents=True)
    for name, text in profiles.items():
        (folder / name).write_text(text)
    state = farm_lib.start_private(base / "state", folder)
    return base / "state", state.adb_server_port


@slow_fixture(scope="module")
def farms(tmp_path_factory):
    """Farm A: low, mid, the GPU phone and an arm64 stand-in; farm B (second adb server): the Pixel."""
    base = tmp_path_factory.mktemp("sweep")
    low = (SHIPPED / "low_galaxy_a03.toml").read_text()
    arm = low.replace('name = "galaxy-a03"', 'name = "arm-phone"\nabi = "arm64-v8a"')
    assert arm != low
    a = _start_farm(
        base / "a",
        {
            "low.toml": low,
            "mid.toml": (SHIPPED / "mid_nothing_phone_1.toml").read_text(),
            "gpu.toml": (SHIPPED / "gpu_galaxy_a54.toml").read_text(),
            "arm.toml": arm,
        },
    )
    try:
        b = _start_farm(base / "b", {"high.toml": (SHIPPED / "high_pixel_8_pro.toml").read_text()})
    except BaseException:
        farm_lib.stop_private(a[0])
        raise
    try:
        yield {"a": a, "b": b}
    finally:
        farm_lib.stop_private(b[0])
        farm_lib.stop_private(a[0])


def _servers(farms) -> list[AdbServer]:
    return [AdbServer("127.0.0.1", farms["a"][1]), AdbServer("127.0.0.1", farms["b"][1])]


def _serial(farms, farm: str, name: str) -> str:
    farm_state = farm_lib.load_state(farms[farm][0])
    assert farm_state is not None
    return farm_lib.find_device(farm_state, name).serial


@pytest.fixture
def weird_model(tiny_models, tmp_path: Path) -> Path:
    path = tmp_path / "a b;rm -rf x_fp32.tflite"
    shutil.copy(tiny_models["dense"], path)
    return path


def test_two_servers_one_sweep_every_status(farms, tmp_path: Path, weird_model: Path) -> None:
    found = discover(_servers(farms), load_tiers())
    assert not found.unreachable_servers
    devices = select(found.entries, "all")
    assert {entry.server.port for entry in devices} == {farms["a"][1], farms["b"][1]}
    assert len(devices) == 5
    store = ResultsStore(tmp_path / "results")
    params = sweep.SweepParams(delegates=("xnnpack", "gpu"), threads=(1, 2), **QUICK)
    models = sweep.collect_models([weird_model])
    assert (models[0].name, models[0].variant) == ("a b;rm -rf x", "fp32")
    run_id = sweep.new_run_id()
    binaries = sweep.build_binaries({}, store.root / "runs" / run_id)
    summary = sweep.run_sweep(devices, models, params, binaries, store, run_id=run_id, show_progress=False)

    rows = store.read([run_id])
    assert summary.cases_total == len(rows) == 5 * 4
    by_device = {serial: group for serial, group in rows.groupby("serial")}
    arm = by_device[_serial(farms, "a", "arm-phone")]
    assert (
        set(arm["status"]) == {"skipped"} and "harness binaries fetch --abi arm64-v8a" in arm["error_message"].iloc[0]
    )
    for name, farm in (("galaxy-a03", "a"), ("nothing-phone-1", "a"), ("galaxy-a54", "a"), ("pixel-8-pro", "b")):
        group = by_device[_serial(farms, farm, name)]
        xnnpack = group[group["delegate"] == "xnnpack"]
        assert set(xnnpack["status"]) == {"ok"}, (name, xnnpack["error_message"].tolist())
        assert (xnnpack["inference_avg_us"] > 0).all() and (xnnpack["num_runs"] == 3).all()
        # No x86 GPU delegate exists here: a GPU case is never reported as having run.
        assert set(group[group["delegate"] == "gpu"]["status"]) == {"delegate_failed"}
    ok = rows[rows["status"] == "ok"]
    assert (ok["power_method"] == "model").all() and (ok["avg_power_mw"] > 0).all()
    assert ok["temp_start_c"].notna().all() and ok["tier"].notna().all()
    # Where every number came from: virtual phones, modelled sensors, the runner binary and its version.
    measured = rows[rows["status"] != "skipped"]
    assert set(rows["device_kind"]) == {"virtual"} and set(measured["temperature_method"]) == {"model"}
    assert measured["throttled"].isna().all()  # a modelled temperature slows nothing
    # farm.toml's [[dialects]] puts the virtual Pixel on the LiteRT 2.x dialect, every other phone on the classic one.
    pixel = measured["serial"] == _serial(farms, "b", "pixel-8-pro")
    assert set(measured[pixel]["bench_binary_name"]) == {"litert_benchmark_model_x86_64"}
    assert set(measured[pixel]["bench_dialect"]) == {"litert"} and set(measured[~pixel]["bench_dialect"]) == {"classic"}
    assert set(measured[~pixel]["bench_binary_name"]) == {"benchmark_model_x86_64"}
    assert (
        measured["bench_binary_sha256"].str.fullmatch("[0-9a-f]{64}").all() and arm["bench_binary_sha256"].isna().all()
    )
    classic_ok = ok[ok["bench_dialect"] == "classic"]
    assert classic_ok["bench_binary_version"].str.startswith("tflite-farm runner ").all()
    assert ok[ok["bench_dialect"] == "litert"]["bench_binary_version"].isna().all()  # the LiteRT tool prints none
    # The counts measured, not the ones asked for: --min-secs stretches the loop beyond --num-runs.
    assert (ok["inference_count"] >= ok["num_runs"]).all() and (ok["warmup_count"] >= 1).all()
    assert set(ok["soc_identities"].map(tuple)) == {("T606",), ("SM7325",), ("S5E8835",), ("Tensor G3",)}
    assert set(rows["tier"].dropna()) == {"high", "mid", "low"}
    for path, dialect in zip(ok["raw_log_path"], ok["bench_dialect"], strict=False):
        summary_line = "Inference timings in us" if dialect == "classic" else "========== BENCHMARK RESULTS =========="
        assert summary_line in (store.root / path).read_text()

    # The same sweep again pushes nothing: every file is already on every phone.
    again = sweep.run_sweep(
        [d for d in devices if d.facts is not None and d.facts.info.abi == "x86_64"],
        models,
        params,
        binaries,
        store,
        show_progress=False,
    )
    assert again.bytes_pushed == 0 and summary.bytes_pushed > 0


def test_injected_crash_is_failed_and_freeze_is_timeout(farms, tmp_path: Path, tiny_models) -> None:
    state_dir, port = farms["a"]
    found = discover([AdbServer("127.0.0.1", port)], load_tiers())
    store = ResultsStore(tmp_path / "results")
    models = sweep.collect_models([tiny_models["conv"]])
    binaries = sweep.build_binaries({}, tmp_path / "bin")

    farm_lib.fault("nothing-phone-1", Fault.CRASH_NEXT, state_dir=state_dir)
    crashed = sweep.run_sweep(
        select(found.entries, _serial(farms, "a", "nothing-phone-1")),
        models,
        sweep.SweepParams(delegates=("xnnpack",), threads=(1,), **QUICK),
        binaries,
        store,
        show_progress=False,
    )
    [row] = store.read([crashed.run_id]).to_dict("records")
    assert row["status"] == "failed" and row["error_type"] == "crash", row["error_message"]

    # Freeze the phone while its case runs; the case has a 3 s limit.
    slow = sweep.SweepParams(
        delegates=("xnnpack",),
        threads=(1,),
        repetitions=1,
        num_runs=100000,
        warmup_runs=1,
        min_secs=30,
        case_timeout_s=3.0,
        thermal_threshold_c=90.0,
        thermal_max_wait_s=1.0,
    )

    def freeze_then_thaw() -> None:
        time.sleep(1.5)
        farm_lib.fault("galaxy-a03", Fault.FREEZE, state_dir=state_dir)
        time.sleep(3.0)
        farm_lib.fault("galaxy-a03", Fault.THAW, state_dir=state_dir)

    faults = threading.Thread(target=freeze_then_thaw)
    faults.start()
    try:
        frozen = sweep.run_sweep(
            select(found.entries, _serial(farms, "a", "galaxy-a03")), models, slow, binaries, store, show_progress=False
        )
    finally:
        faults.join()
        farm_lib.fault("galaxy-a03", Fault.THAW, state_dir=state_dir)
    [row] = store.read([frozen.run_id]).to_dict("records")
    # The 3 s deadline killed the case (min_secs=30 would have run on): the deadline path, not a clock reading.
    assert (row["status"], row["error_type"]) == ("timeout", "timeout"), row["error_message"]
    assert row["error_message"] == "the case exceeded its wall-clock limit and was killed"


def test_dropped_device_is_lost_while_the_others_finish(farms, tmp_path: Path, tiny_models) -> None:
    state_dir, port = farms["a"]
    found = discover([AdbServer("127.0.0.1", port)], load_tiers())
    devices = select(found.entries, f"{_serial(farms, 'a', 'galaxy-a03')},{_serial(farms, 'a', 'galaxy-a54')}")
    store = ResultsStore(tmp_path / "results")
    params = sweep.SweepParams(
        delegates=("cpu", "xnnpack"),
        threads=(1, 2),
        repetitions=1,
        num_runs=3,
        warmup_runs=1,
        min_secs=0.5,
        case_timeout_s=20.0,
        thermal_threshold_c=90.0,
        thermal_max_wait_s=1.0,
    )
    models = sweep.collect_models([tiny_models["dense"]])

    def drop() -> None:
        time.sleep(2.0)
        farm_lib.fault("galaxy-a03", Fault.DROP, state_dir=state_dir)

    dropper = threading.Thread(target=drop)
    dropper.start()
    try:
        summary = sweep.run_sweep(
            devices, models, params, sweep.build_binaries({}, tmp_path / "bin"), store, show_progress=False
        )
    finally:
        dropper.join()
        farm_lib.fault("galaxy-a03", Fault.THAW, state_dir=state_dir)
    rows = store.read([summary.run_id])
    lost = rows[rows["serial"] == _serial(farms, "a", "galaxy-a03")]
    other = rows[rows["serial"] == _serial(farms, "a", "galaxy-a54")]
    assert list(lost["status"]).count("device_lost") == 1 and len(lost) < 4
    assert len(other) == 4 and set(other["status"]) == {"ok"}


def _killed_mid_run(
    tmp_path: Path, port: int, run_args: list[str], started: Callable[[ResultsStore, str], bool], wait_s: float
) -> tuple[ResultsStore, str, dict[str, str]]:
    """`harness run RUN_ARGS` in a child process, killed with SIGKILL once `started(store, run_id)` holds
    (within `wait_s`): the store, the run id and the environment to resume it with."""
    results = tmp_path / "results"
    # The killed run's lease on the phone outlives it until its TTL: a short one, for the resume to wait out.
    env = dict(os.environ, ANDROID_ADB_SERVER_PORT=str(port), HARNESS_LEASE_TTL_S="3")
    argv = [sys.executable, "-m", "harness.cli", "run", *run_args, "--results", str(results)]
    log = (tmp_path / "run.log").open("wb")
    process = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    store = ResultsStore(results)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline and process.poll() is None:
        runs = store.list_runs()
        if runs and started(store, runs[0].run_id):
            break
        time.sleep(0.1)
    assert process.poll() is None, (tmp_path / "run.log").read_text()
    process.send_signal(signal.SIGKILL)
    process.wait()
    [run] = store.list_runs()
    return store, run.run_id, env


def _resume_latest(store: ResultsStore, env: dict[str, str]) -> subprocess.CompletedProcess:
    resumed = subprocess.run(
        [
            sys.executable,
            "-m",
            "harness.cli",
            "run",
            "--resume",
            "latest",
            "--results",
            str(store.root),
            "--wait-for-lease",
            "60",
            "--json",
        ],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=180,
    )
    assert resumed.returncode == 0, resumed.stderr.decode()
    return resumed


def _dense_sweep_killed_after_two_cases(farms, tmp_path: Path, tiny_models) -> tuple[ResultsStore, str, dict[str, str]]:
    """8 cases of the dense model on one phone (2 delegates x 2 thread counts x 2 repetitions), the
    harness killed with SIGKILL once 2 of them are stored."""
    _, port = farms["a"]
    return _killed_mid_run(
        tmp_path,
        port,
        [
            "--devices",
            _serial(farms, "a", "nothing-phone-1"),
            "--models",
            str(tiny_models["dense"]),
            "--delegates",
            "cpu,xnnpack",
            "--threads",
            "1,2",
            "--repetitions",
            "2",
            "--num-runs",
            "3",
            "--min-secs",
            "0.3",
            "--thermal-threshold",
            "90",
        ],
        lambda store, run_id: len(store.stored_case_keys(run_id)) >= 2,
        wait_s=60,
    )


def test_kill_minus_9_then_resume_stores_every_case_exactly_once(farms, tmp_path: Path, tiny_models) -> None:
    store, run_id, env = _dense_sweep_killed_after_two_cases(farms, tmp_path, tiny_models)
    before = len(store.stored_case_keys(run_id))
    assert 2 <= before < 8

    resumed = _resume_latest(store, env)
    summary = json.loads(resumed.stdout)
    assert summary["run_id"] == run_id and summary["cases_total"] == 8 - before
    rows = store.read([run_id])
    assert len(rows) == 8 and not rows.duplicated(["case_id", "repetition"]).any()
    assert set(rows["status"]) == {"ok"}
    assert store.read_run_manifest(run_id)["ended_at"] is not None


def test_cli_errors_name_the_fix(farms, tmp_path: Path) -> None:
    _, port = farms["a"]
    env = dict(os.environ, ANDROID_ADB_SERVER_PORT=str(port))

    def harness(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "harness.cli", *args],
            env=env,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=60,
        )

    no_match = harness("run", "--devices", "tier:ultra", "--models", str(tmp_path), "--results", str(tmp_path))
    assert no_match.returncode == 2
    missing = harness("run", "--models", str(tmp_path / "nope.tflite"), "--results", str(tmp_path))
    assert missing.returncode == 2 and "no such model" in missing.stderr
    (tmp_path / "m.tflite").write_bytes(b"x")
    unknown = harness(
        "run", "--devices", "tier:ultra", "--models", str(tmp_path / "m.tflite"), "--results", str(tmp_path)
    )
    assert unknown.returncode == 2 and "tier:ultra" in unknown.stderr and "Virtual Galaxy A03" in unknown.stderr
    bad = harness("run", "--delegates", "tpu", "--models", str(tmp_path / "m.tflite"))
    assert bad.returncode == 2 and "unknown delegate" in bad.stderr
    devices = harness("devices", "--json")
    assert devices.returncode == 0 and {d["tier"] for d in json.loads(devices.stdout)} == {"mid", "low"}


def test_a_full_phone_fails_its_cases_and_the_sweep_goes_on(tmp_path: Path, tiny_models) -> None:
    low = (SHIPPED / "low_galaxy_a03.toml").read_text()
    tiny = low.replace('name = "galaxy-a03"', 'name = "tiny-quota"').replace(
        "quota_bytes = 1_073_741_824", "quota_bytes = 4_194_304"
    )
    assert tiny != low
    state_dir, port = _start_farm(
        tmp_path / "c", {"tiny.toml": tiny, "mid.toml": (SHIPPED / "mid_nothing_phone_1.toml").read_text()}
    )
    try:
        big = tmp_path / "big_fp32.tflite"
        big.write_bytes(os.urandom(6_000_000))  # larger than the phone's 4 MiB quota
        models = sweep.collect_models([big, tiny_models["dense"]])
        store = ResultsStore(tmp_path / "results")
        devices = select(discover([AdbServer("127.0.0.1", port)], load_tiers()).entries, "all")
        summary = sweep.run_sweep(
            devices,
            models,
            sweep.SweepParams(delegates=("xnnpack",), threads=(1,), **QUICK),
            sweep.build_binaries({}, tmp_path / "bin"),
            store,
            show_progress=False,
        )
        rows = store.read([summary.run_id])
        farm_state = farm_lib.load_state(state_dir)
        assert farm_state is not None
        full = rows[rows["serial"] == farm_lib.find_device(farm_state, "tiny-quota").serial]
        assert set(full["status"]) == {"failed"} and set(full["error_type"]) == {"push_failed"}
        assert "No space left on device" in full["error_message"].iloc[0]
        other = rows[rows["serial"] != full["serial"].iloc[0]]
        # The random 'model' fails to load; the real one runs: the sweep went on.
        assert set(other["status"]) == {"failed", "ok"}
    finally:
        farm_lib.stop_private(state_dir)


def test_phones_without_dumpsys_or_sha256sum_get_rows_that_say_why(
    tmp_path: Path, tiny_models, monkeypatch: pytest.MonkeyPatch
) -> None:
    profiles = {
        name: (SHIPPED / name).read_text()
        for name in ("low_galaxy_a03.toml", "gpu_galaxy_a54.toml", "mid_nothing_phone_1.toml")
    }
    state_dir, port = _start_farm(tmp_path / "d", profiles)
    try:
        farm_lib.fault("galaxy-a03", Fault.HIDE, state_dir=state_dir, command="dumpsys")
        farm_lib.fault("galaxy-a54", Fault.HIDE, state_dir=state_dir, command="sha256sum")

        def no_waiting(*args: object, **kwargs: object) -> None:
            raise AssertionError("the sweep waited for a modelled temperature")

        # Virtual phones' temperatures are modelled: the sweep must never wait for them to cool.
        monkeypatch.setattr(thermal, "wait_until_cool", no_waiting)
        devices = select(discover([AdbServer("127.0.0.1", port)], load_tiers()).entries, "all")
        store = ResultsStore(tmp_path / "results")
        params = sweep.SweepParams(
            delegates=("xnnpack",),
            threads=(1, 2),
            repetitions=1,
            num_runs=3,
            warmup_runs=1,
            min_secs=0.05,
            thermal_threshold_c=0.0,
            thermal_max_wait_s=600.0,
        )
        summary = sweep.run_sweep(
            devices,
            sweep.collect_models([tiny_models["dense"]]),
            params,
            sweep.build_binaries({}, tmp_path / "bin"),
            store,
            show_progress=False,
        )
        rows = store.read([summary.run_id])
        by_model = {model: group for model, group in rows.groupby("device_model")}
        refused = by_model["Virtual Galaxy A03"]
        assert len(refused) == 2 and set(refused["status"]) == {"failed"}
        assert set(refused["error_type"]) == {"power_control_failed"}
        assert (
            "dumpsys battery unplug" in refused["error_message"].iloc[0]
            and "--no-power" in refused["error_message"].iloc[0]
        )
        no_sha = by_model["Virtual Galaxy A54"]
        assert set(no_sha["error_type"]) == {"push_failed"} and no_sha["bench_binary_sha256"].isna().all()
        assert "no 'sha256sum' command" in no_sha["error_message"].iloc[0]
        fine = by_model["Virtual Nothing Phone (1)"]
        assert set(fine["status"]) == {"ok"} and (fine["temp_start_c"] > 0).all()
        assert fine["throttled"].isna().all() and set(fine["temperature_method"]) == {"model"}
    finally:
        farm_lib.stop_private(state_dir)


def test_a_phone_named_only_by_ro_hardware_gets_one_tier_everywhere(tmp_path: Path, tiny_models) -> None:
    """Android 10 Galaxy S10-like: no ro.soc.model, a generic board; only ro.hardware names the SoC."""
    from harness.coverage import coverage
    from harness.phone.device import Phone
    from harness.policy import DeriveRequest, derive
    from harness.policy_resolve import device_from_dumps, resolve
    from harness.ranking import assign_missing_tiers, stats_of

    low = (SHIPPED / "low_galaxy_a03.toml").read_text()
    changes = {
        r'^"ro\.soc\..*\n': "",
        r"^name = .*$": 'name = "galaxy-s10"',
        r'^"ro\.board\.platform" = .*$': '"ro.board.platform" = "exynos5"',
        r'^"ro\.hardware" = .*$': '"ro.hardware" = "samsungexynos9820"',
        r'^"ro\.build\.version\.sdk" = .*$': '"ro.build.version.sdk" = "29"',
        r"^ram_bytes = .*$": "ram_bytes = 8_000_000_000",
    }
    s10 = low
    for pattern, replacement in changes.items():
        s10, count = re.subn(pattern, replacement, s10, flags=re.MULTILINE)
        assert count >= 1, pattern
    state_dir, port = _start_farm(tmp_path / "e", {"s10.toml": s10})
    try:
        [entry] = select(discover([AdbServer("127.0.0.1", port)], load_tiers()).entries, "all")
        assert (entry.tier, entry.tier_rule) == ("mid", "mid-former-flagship-soc")  # discovery
        model = tmp_path / "models" / "net_fp32.tflite"
        model.parent.mkdir()
        shutil.copy(tiny_models["dense"], model)
        store = ResultsStore(tmp_path / "results")
        sweep.run_sweep(
            [entry],
            sweep.collect_models([model]),
            sweep.SweepParams(delegates=("cpu",), threads=(1,), **QUICK),
            sweep.build_binaries({}, tmp_path / "bin"),
            store,
            show_progress=False,
        )
        rows = store.read()
        assert set(rows["tier"]) == {"mid"}  # the sweep
        assert [list(v) for v in rows["soc_identities"].head(1)] == [["exynos5", "samsungexynos9820"]]
        untiered = stats_of(rows.assign(tier=None))
        assert set(assign_missing_tiers(untiered, load_tiers())[0]["tier"]) == {"mid"}  # derive-time classification
        document = derive(DeriveRequest(results_root=store.root)).document
        [device] = coverage(document, rows).devices
        assert device.measured_tier == device.policy_tier == "mid"  # coverage
        phone = Phone(AdbServer("127.0.0.1", port), entry.serial)
        dumps = device_from_dumps(phone.shell("getprop").text, phone.shell("cat /proc/meminfo").text)
        assert resolve(document, dumps).tier == "mid"  # `harness policy resolve --getprop --meminfo`
    finally:
        farm_lib.stop_private(state_dir)


# --- repetitions: interleaved rounds, and more where the order is undecided --------------------


def _artifact(name: str) -> sweep.ModelArtifact:
    return sweep.ModelArtifact(name, "fp32", None, Path(f"/{name}.tflite"), name * 4, 1)


def test_repetitions_are_interleaved_never_back_to_back() -> None:
    params = sweep.SweepParams(delegates=("cpu", "xnnpack"), threads=(1, 2), repetitions=4)
    cases = sweep.plan_cases([_artifact("a"), _artifact("b")], params, "serial-1")
    assert len(cases) == 2 * 2 * 2 * 4
    # Round r holds repetition r of every configuration, in an order of its own.
    for r in range(4):
        round_ = cases[r * 8 : (r + 1) * 8]
        assert {c.repetition for c in round_} == {r} and len({c.configuration for c in round_}) == 8
    assert all(a.configuration != b.configuration for a, b in zip(cases, cases[1:], strict=False))
    assert cases == sweep.plan_cases([_artifact("a"), _artifact("b")], params, "serial-1")  # the same on --resume
    assert cases != sweep.plan_cases([_artifact("a"), _artifact("b")], params, "serial-2")


def test_undecided_configurations_and_the_best_get_more_repetitions() -> None:
    from harness.stats import TieTest

    models = [_artifact("a")]
    sha = models[0].sha256
    samples = {
        (sha, "xnnpack", 2): [1000.0, 1005.0, 995.0],  # the best
        (sha, "xnnpack", 1): [1002.0, 1004.0, 998.0],  # shown within 5%: decided (a tie)
        (sha, "cpu", 2): [2000.0, 2010.0, 1990.0],  # shown slower: decided
        (sha, "cpu", 1): [1020.0, 1300.0, 900.0],  # neither shown: undecided
        (sha, "gpu", 1): [1100.0],  # one repetition: untested
        (sha, "nnapi", 1): [500.0, 505.0, 495.0],  # faster, but it failed once: never a candidate
    }
    wanted = sweep._undecided(samples, {(sha, "nnapi", 1)}, models, TieTest())
    assert wanted == [(sha, "cpu", 1), (sha, "xnnpack", 2), (sha, "gpu", 1)]


def test_until_decided_adds_repetitions_only_where_undecided_stops_at_the_budget_and_resumes(
    farms, tmp_path: Path, tiny_models
) -> None:
    from harness.stats import TieTest

    _, port = farms["a"]
    # One planned repetition decides nothing, so every configuration is added to: the path is always taken.
    store, run_id, env = _killed_mid_run(
        tmp_path,
        port,
        [
            "--devices",
            _serial(farms, "a", "galaxy-a54"),
            "--models",
            str(tiny_models["dense"]),
            "--delegates",
            "cpu,xnnpack",
            "--threads",
            "1,2",
            "--repetitions",
            "1",
            "--until-decided",
            "--max-repetitions",
            "4",
            "--num-runs",
            "3",
            "--min-secs",
            "0.05",
            "--thermal-threshold",
            "90",
        ],
        lambda store, run_id: (store.read([run_id])["repetition_reason"] == "until_decided").sum() >= 2,
        wait_s=90,
    )
    _resume_latest(store, env)

    rows = store.read([run_id])
    assert not rows.duplicated(["case_id", "repetition"]).any() and set(rows["status"]) == {"ok"}
    planned = rows[rows["repetition_reason"] == "planned"]
    added = rows[rows["repetition_reason"] == "until_decided"]
    assert len(planned) == 4 and (planned["repetition"] == 0).all() and (added["repetition"] >= 1).all()
    counts = rows.groupby(["delegate", "num_threads"]).size()
    # Untested (fewer than 3) forced every configuration to 3; the budget caps them at 4.
    assert counts.min() >= 3 and counts.max() <= 4
    # Stopped only when nothing below the budget was undecided.
    samples: dict = {}
    for row in rows.itertuples():
        samples.setdefault((row.model_sha256, row.delegate, row.num_threads), []).append(row.inference_p50_us)
    models = sweep.collect_models([tiny_models["dense"]])
    still = sweep._undecided(samples, set(), models, TieTest())
    assert all(len(samples[key]) == 4 for key in still)


def test_kill_9_mid_run_and_mid_compaction_then_compact_and_resume(farms, tmp_path: Path, tiny_models) -> None:
    """A sweep killed mid-run leaves per-case files; a compaction of them killed after its rename leaves both
    the parts and the merged file on disk (only one counts); `harness results compact` settles it, and
    `--resume` then runs exactly the missing cases and compacts the run when it ends."""
    store, run_id, env = _dense_sweep_killed_after_two_cases(farms, tmp_path, tiny_models)
    before = store.stored_case_keys(run_id)
    assert 2 <= len(before) < 8
    parts = sorted(store.dataset_dir.rglob("*.parquet"))
    assert len(parts) == len(before)  # one file per case, as the sweep wrote them
    script = (
        "import os, signal\n"
        "from harness import store\n"
        "def hook(step, count):\n"
        "    if step == 'renamed':\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        "store._compaction_hook = hook\n"
        f"store.ResultsStore({str(store.root)!r}).compact({run_id!r})\n"
    )
    killed = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    on_disk = sorted(store.dataset_dir.rglob("*.parquet"))
    assert len(on_disk) == len(parts) + 1  # the parts and the merged file: both on disk ...
    assert store.stored_case_keys(run_id) == before  # ... and every row counted once

    compacted = subprocess.run(
        [sys.executable, "-m", "harness.cli", "results", "compact", run_id, "--results", str(store.root)],
        env=env,
        capture_output=True,
        text=True,
    )
    assert compacted.returncode == 0, compacted.stderr
    assert len(list(store.dataset_dir.rglob("*.parquet"))) == 1 and store.stored_case_keys(run_id) == before

    resumed = _resume_latest(store, env)
    summary = json.loads(resumed.stdout)
    assert summary["run_id"] == run_id and summary["cases_total"] == 8 - len(before)
    rows = store.read([run_id])
    assert len(rows) == 8 and not rows.duplicated(["case_id", "repetition"]).any()
    assert set(rows["status"]) == {"ok"}
    # The resumed run compacted itself when it ended: the earlier merge and the new cases are one file.
    assert len(list(store.dataset_dir.rglob("*.parquet"))) == 1
    assert not list(store.dataset_dir.rglob(".*"))
