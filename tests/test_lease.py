"""Device leases on a private virtual farm: two sweeps never share a phone (harness.phone.lease)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from tiers import slow_fixture

from harness import sweep
from harness.config import packaged_defaults
from harness.phone import lease
from harness.phone.device import Phone
from harness.phone.discovery import discover, select
from harness.phone.profiles import AdbServer, load_tiers
from harness.ranking import stats_of
from harness.store import ResultsStore
from harness.virtual_farm import farm as farm_lib

SHIPPED = packaged_defaults() / "virtual"
TTL_S = 4.0  # short, so expiry comes within the test (HARNESS_LEASE_TTL_S)
RUN_ARGS = [
    "--delegates",
    "cpu,xnnpack",
    "--threads",
    "1,2",
    "--repetitions",
    "1",
    "--num-runs",
    "3",
    "--min-secs",
    "0.3",
    "--thermal-threshold",
    "90",
    "--no-numerics",
]
CASES_PER_PHONE = 4


@slow_fixture(scope="module")
def farm(tmp_path_factory):
    """Two phones on an adb server of their own."""
    base = tmp_path_factory.mktemp("lease")
    folder = base / "profiles"
    folder.mkdir()
    for name in ("low_galaxy_a03.toml", "mid_nothing_phone_1.toml"):
        shutil.copy(SHIPPED / name, folder / name)
    state = farm_lib.start_private(base / "state", folder)
    try:
        yield state
    finally:
        farm_lib.stop_private(base / "state")


def _server(farm) -> AdbServer:
    return AdbServer("127.0.0.1", farm.adb_server_port)


def _serial(farm, name: str) -> str:
    return farm_lib.find_device(farm, name).serial


def _phone(farm, name: str) -> Phone:
    return Phone(_server(farm), _serial(farm, name))


def _env(farm) -> dict[str, str]:
    return dict(os.environ, ANDROID_ADB_SERVER_PORT=str(farm.adb_server_port), HARNESS_LEASE_TTL_S=str(TTL_S))


def _harness(farm, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", *args],
        env=_env(farm),
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=timeout,
    )


def _start_run(farm, tmp_path: Path, name: str, *args: str) -> subprocess.Popen:
    log = (tmp_path / f"{name}.log").open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "harness.cli", "run", *args],
        env=_env(farm),
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
    )


@pytest.fixture(autouse=True)
def _every_phone_free_after(farm):
    """A test that fails midway must not leave its leases to the next one."""
    yield
    for record in farm.devices:
        phone = Phone(_server(farm), record.serial)
        phone.shell(f"rm -rf {lease.LEASE_DIR} {lease.LEASE_DIR}.stale.*")


def _wait_until(condition, what: str, timeout_s: float = 60.0, pause_s: float = 0.1) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(pause_s)


def _intervals(rows: pd.DataFrame) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
    return [
        (start, start + pd.to_timedelta(duration, unit="s"))
        for start, duration in zip(rows["started_at"], rows["duration_s"], strict=False)
    ]


def test_two_sweeps_that_wait_never_share_a_phone_and_both_finish(farm, tmp_path: Path, tiny_models) -> None:
    model = str(tiny_models["dense"])
    runs = [
        _start_run(
            farm, tmp_path, name, "--models", model, *RUN_ARGS, "--results", str(tmp_path / name), "--wait-for-lease"
        )
        for name in ("first", "second")
    ]
    for process, name in zip(runs, ("first", "second"), strict=False):
        assert process.wait(timeout=300) == 0, (tmp_path / f"{name}.log").read_text()
    rows = {}
    for name in ("first", "second"):
        store = ResultsStore(tmp_path / name)
        [run] = store.list_runs()
        rows[name] = store.read([run.run_id])
        frame = rows[name]
        # Every case exactly once, and measured: nobody was skipped.
        assert len(frame) == 2 * CASES_PER_PHONE and not frame.duplicated(["case_id", "repetition"]).any()
        assert set(frame["status"]) == {"ok"}, frame["error_message"].tolist()
    # The two runs were alive at the same time (so they contended for the phones) ...
    spans = {
        name: (frame["started_at"].min(), max(end for _, end in _intervals(frame))) for name, frame in rows.items()
    }
    assert spans["first"][0] < spans["second"][1] and spans["second"][0] < spans["first"][1]
    # ... yet on each phone one run's cases all ended before the other's began.
    for serial in (_serial(farm, "galaxy-a03"), _serial(farm, "nothing-phone-1")):
        mine = _intervals(rows["first"][rows["first"]["serial"] == serial])
        theirs = _intervals(rows["second"][rows["second"]["serial"] == serial])
        for start, end in mine:
            for other_start, other_end in theirs:
                assert end <= other_start or other_end <= start, (serial, (start, end), (other_start, other_end))
    # Both released their leases at the end.
    assert all(not lease.read_state(Phone(_server(farm), r.serial)).present for r in farm.devices)


def test_a_leased_phone_is_skipped_then_resume_runs_its_cases(farm, tmp_path: Path, tiny_models) -> None:
    contested = _phone(farm, "galaxy-a03")
    holder = lease.acquire(contested, lease.Owner("other-host", 4242, "run-x"), ttl_s=TTL_S)
    try:
        skipped = _harness(
            farm, "run", "--models", str(tiny_models["dense"]), *RUN_ARGS, "--results", str(tmp_path / "results")
        )
        assert skipped.returncode == 0, skipped.stderr
    finally:
        holder.release()
    assert f"warning: skipped {contested.serial}: leased by other-host pid 4242 (run run-x) until " in skipped.stderr
    store = ResultsStore(tmp_path / "results")
    [run] = store.list_runs()
    rows = store.read([run.run_id])
    lost = rows[rows["serial"] == contested.serial]
    assert len(lost) == CASES_PER_PHONE and set(lost["status"]) == {"skipped"} and set(lost["error_type"]) == {"leased"}
    assert (
        lost["error_message"]
        .str.fullmatch(r"leased by other-host pid 4242 \(run run-x\) until \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC")
        .all()
    )
    assert set(rows[rows["serial"] != contested.serial]["status"]) == {"ok"}
    # Only leased rows: the phone counts as not measured, and its cases are gaps for --resume.
    stats = stats_of(rows)
    on_contested = stats[stats["serial"] == contested.serial]
    assert (on_contested["skipped_rows"] == on_contested["rows"]).all()
    assert len(store.stored_case_keys(run.run_id)) == CASES_PER_PHONE

    resumed = _harness(farm, "run", "--resume", "latest", "--results", str(tmp_path / "results"), "--json")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["cases_total"] == CASES_PER_PHONE
    rows = store.read([run.run_id])
    real = rows[rows["error_type"].fillna("") != "leased"]
    assert len(real) == 2 * CASES_PER_PHONE and set(real["status"]) == {"ok"}
    assert not real.duplicated(["case_id", "repetition"]).any()
    assert len(store.stored_case_keys(run.run_id)) == 2 * CASES_PER_PHONE
    # The old leased rows of the resumed cases are not counted: one ok repetition each, nothing skipped.
    stats = stats_of(rows)
    assert (stats["skipped_rows"] == 0).all() and (stats["rows"] == stats["ok_rows"]).all()
    assert (stats["ok_rows"] == 1).all()


def test_a_killed_holder_keeps_the_phone_until_its_lease_expires(farm, tmp_path: Path, tiny_models) -> None:
    phone = _phone(farm, "nothing-phone-1")
    found = select(discover([_server(farm)], load_tiers()).entries, phone.serial)
    models = sweep.collect_models([tiny_models["dense"]])
    params = sweep.SweepParams(
        delegates=("xnnpack",),
        threads=(1,),
        repetitions=1,
        num_runs=3,
        min_secs=0.1,
        thermal_threshold_c=90.0,
        check_numerics=False,
    )
    store = ResultsStore(tmp_path / "next")
    binaries = sweep.build_binaries({}, tmp_path / "bin")
    policy = sweep.LeasePolicy(wait_s=0, ttl_s=TTL_S)
    # Long cases, so the holder is killed in the middle of its sweep; a longer TTL than the tests' own, so
    # the next sweep surely comes before its lease runs out.
    holder = _start_run(
        farm,
        tmp_path,
        "holder",
        "--devices",
        phone.serial,
        "--models",
        str(tiny_models["dense"]),
        *RUN_ARGS,
        "--min-secs",
        "2",
        "--results",
        str(tmp_path / "holder"),
        "--lease-ttl",
        "12",
    )
    try:
        _wait_until(
            lambda: (state := lease.read_state(phone)).info is not None and state.info.pid == holder.pid,
            "the harness run to take the lease",
        )
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()

    # Before expiry: refused, naming the dead holder.
    refused = sweep.run_sweep(found, models, params, binaries, store, show_progress=False, lease_policy=policy)
    assert f"pid {holder.pid} (run " in refused.leased[phone.serial]
    row: Any  # a pandas row: pandas-stubs types each field as any scalar
    [row] = store.read([refused.run_id]).itertuples()
    assert (row.status, row.error_type) == ("skipped", "leased") and f"pid {holder.pid}" in row.error_message
    assert not lease.read_state(phone).expired(TTL_S)  # the refusal was not a matter of luck
    _wait_until(lambda: lease.read_state(phone).expired(TTL_S), "the dead holder's lease to expire", pause_s=0.5)
    taken = sweep.run_sweep(found, models, params, binaries, store, show_progress=False, lease_policy=policy)
    assert not taken.leased and taken.statuses == {"ok": 1}
    assert not lease.read_state(phone).present  # released at the end


def test_lease_release_refuses_a_live_lease_without_force_and_devices_shows_it(farm) -> None:
    phone = _phone(farm, "galaxy-a03")
    taken = lease.try_acquire(phone, lease.Owner("ci-runner-7", 31337, "run-live"), ttl_s=600)
    assert isinstance(taken, lease.LeaseInfo)

    devices = _harness(farm, "devices", "--json")
    assert devices.returncode == 0, devices.stderr
    shown = {entry["serial"]: entry["lease"] for entry in json.loads(devices.stdout)}
    assert shown[phone.serial]["status"] == "held"
    assert (shown[phone.serial]["host"], shown[phone.serial]["pid"], shown[phone.serial]["run_id"]) == (
        "ci-runner-7",
        31337,
        "run-live",
    )
    assert shown[_serial(farm, "nothing-phone-1")]["status"] == "free"
    table = _harness(farm, "devices")
    assert "lease" in table.stdout.splitlines()[0].split("\t")
    assert "ci-runner-7 pid 31337 run run-live until " in table.stdout

    refused = _harness(farm, "lease", "release", phone.serial)
    assert refused.returncode == 2 and "ci-runner-7 pid 31337 (run run-live)" in refused.stderr
    assert "--force" in refused.stderr
    assert lease.read_state(phone).info == taken  # untouched
    forced = _harness(farm, "lease", "release", phone.serial, "--force")
    assert forced.returncode == 0, forced.stderr
    assert not lease.read_state(phone).present
    listed = _harness(farm, "lease", "ls", "--json")
    assert {entry["lease"]["status"] for entry in json.loads(listed.stdout)} == {"free"}

    # An expired lease (its holder died) needs no --force.
    lease.try_acquire(phone, lease.Owner("gone", 1, "run-dead"), ttl_s=2)
    _wait_until(lambda: lease.read_state(phone).expired(2), "the lease to expire", pause_s=0.5)
    assert "expired (gone pid 1 run run-dead" in _harness(farm, "devices").stdout
    released = _harness(farm, "lease", "release", phone.serial)
    assert released.returncode == 0, released.stderr
    assert not lease.read_state(phone).present


def test_contenders_for_an_expired_lease_get_it_once_and_a_renewed_one_is_put_back(farm) -> None:
    phone = _phone(farm, "galaxy-a03")
    lease.try_acquire(phone, lease.Owner("gone", 1, "run-dead"), ttl_s=2)
    _wait_until(lambda: lease.read_state(phone).expired(2), "the lease to expire", pause_s=0.5)
    winners: list[object] = [None] * 4

    def contend(index: int) -> None:
        winners[index] = lease.try_acquire(
            Phone(phone.server, phone.serial), lease.Owner("h", index, f"r{index}"), ttl_s=600
        )

    threads = [threading.Thread(target=contend, args=(index,)) for index in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    won = [info for info in winners if isinstance(info, lease.LeaseInfo)]
    assert len(won) == 1 and lease.read_state(phone).info == won[0]
    # The others were told who holds it.
    assert all(state.info == won[0] for state in winners if isinstance(state, lease.LeaseState))

    # A claimer whose judgement is out of date (the lease was renewed) puts the lease back as it was.
    before = lease.read_state(phone)
    assert not lease._claim(phone, "late", lambda text: text == "what was judged before the renewal")
    assert lease.read_state(phone).raw == before.raw
    assert lease.release(phone, won[0].token) and not lease.read_state(phone).present


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_or_sigterm_stores_the_case_in_flight_and_releases_the_lease(
    farm, tmp_path: Path, tiny_models, stop_signal
) -> None:
    phone = _phone(farm, "galaxy-a03")
    run = _start_run(
        farm,
        tmp_path,
        "stopped",
        "--devices",
        phone.serial,
        "--models",
        str(tiny_models["dense"]),
        *RUN_ARGS,
        "--min-secs",
        "1",
        "--results",
        str(tmp_path / "results"),
    )
    store = ResultsStore(tmp_path / "results")
    _wait_until(lambda: bool(store.list_runs()) and len(store.read()) >= 1, "the first case to be stored")
    run.send_signal(stop_signal)
    assert run.wait(timeout=120) != 0
    assert not lease.read_state(phone).present, (tmp_path / "stopped.log").read_text()
    rows = store.read()
    assert 1 <= len(rows) < CASES_PER_PHONE and set(rows["status"]) == {"ok"}  # stopped early, nothing half-stored


def test_a_lease_taken_away_mid_sweep_leaves_the_rest_for_resume(farm, tmp_path: Path, tiny_models) -> None:
    phone = _phone(farm, "nothing-phone-1")
    found = select(discover([_server(farm)], load_tiers()).entries, phone.serial)
    params = sweep.SweepParams(
        delegates=("cpu", "xnnpack"),
        threads=(1, 2),
        repetitions=1,
        num_runs=3,
        min_secs=1.0,
        thermal_threshold_c=90.0,
        check_numerics=False,
    )
    store = ResultsStore(tmp_path / "results")
    summaries: list[sweep.SweepSummary] = []
    running = threading.Thread(
        target=lambda: summaries.append(
            sweep.run_sweep(
                found,
                sweep.collect_models([tiny_models["dense"]]),
                params,
                sweep.build_binaries({}, tmp_path / "bin"),
                store,
                show_progress=False,
                lease_policy=sweep.LeasePolicy(ttl_s=2.0),
            )
        )
    )
    running.start()
    try:
        _wait_until(lambda: bool(store.list_runs()) and len(store.read()) >= 1, "the first case to be stored")
        lease.force_release(phone, force=True)  # what 'harness lease release --force' does
    finally:
        running.join(timeout=120)
    [summary] = summaries
    rows = store.read([summary.run_id])
    assert len(rows) == CASES_PER_PHONE
    lost = rows[rows["error_type"] == "leased"]
    assert 1 <= len(lost) < CASES_PER_PHONE and set(lost["status"]) == {"skipped"}
    assert lost["error_message"].str.startswith("the lease was lost mid-sweep: ").all()
    assert "lease was lost" in summary.leased[phone.serial]
    assert len(store.stored_case_keys(summary.run_id)) == CASES_PER_PHONE - len(lost)  # gaps, for --resume
