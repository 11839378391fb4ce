"""harness.phone.discovery and `harness devices` against real adb servers and virtual devices."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
from pathlib import Path
from types import SimpleNamespace

import adbutils
import pytest
from click.testing import CliRunner
from farm_fixtures import SHIPPED_PROFILES, farm, free_port  # noqa: F401 - module-scoped fixture
from fixture_paths import DEVICE_DUMPS

from harness.commands.devices import devices
from harness.errors import DeviceError, UsageError
from harness.phone import discovery
from harness.phone.discovery import DiscoveryResult, discover, select, state_problem
from harness.phone.facts import AdbState, parse_adb_devices_l
from harness.phone.profiles import AdbServer, load_tiers
from harness.virtual_farm import farm as farm_lib
from harness.virtual_farm.server import Fault

DUMPS = DEVICE_DUMPS
LOCAL = AdbServer("127.0.0.1", 5037)
RULES = load_tiers()

# name -> (ro.product.model, ro.soc.model, sdk, tier) as the shipped profiles and tiers.toml say.
EXPECTED = {
    "pixel-8-pro": ("Virtual Pixel 8 Pro", "Tensor G3", 34, "high"),
    "nothing-phone-1": ("Virtual Nothing Phone (1)", "SM7325", 34, "mid"),
    "galaxy-a54": ("Virtual Galaxy A54", "S5E8835", 34, "mid"),
    "galaxy-a03": ("Virtual Galaxy A03", "T606", 33, "low"),
    "tiny-quota": ("Virtual Galaxy A03", "T606", 33, "low"),
}


def server_of(farm) -> AdbServer:  # noqa: F811
    return AdbServer("127.0.0.1", farm.adb_port)


def serial(farm, name: str) -> str:  # noqa: F811
    return farm.record(name).serial


def kill_adb_server(port: int) -> None:
    subprocess.run([adbutils.adb_path(), "-P", str(port), "kill-server"], capture_output=True, timeout=30)


# --- problem messages (no server needed) ---------------------------------------------


@pytest.mark.parametrize("dump", sorted(DUMPS.glob("adb_devices_l_*.txt")), ids=lambda p: p.stem)
def test_captured_device_lines_have_no_problem(dump: Path) -> None:
    lines = parse_adb_devices_l(dump.read_text())
    assert lines and all(line.state is AdbState.DEVICE for line in lines)
    assert [state_problem(LOCAL, line) for line in lines] == [None] * len(lines)


def test_unauthorized_names_the_prompt() -> None:
    (line,) = parse_adb_devices_l("List of devices attached\npixel7  unauthorized usb:1-1 transport_id:4\n")
    assert state_problem(LOCAL, line) == (
        "pixel7 is 'unauthorized' on adb server 127.0.0.1:5037: "
        "accept the USB debugging prompt on the phone, then run 'harness devices' again"
    )


def test_offline_names_the_reconnect_command_for_that_server() -> None:
    (line,) = parse_adb_devices_l("emulator-5554 offline transport_id:2")
    local = state_problem(LOCAL, line)
    assert local is not None and "reconnect the cable or run 'adb reconnect offline'" in local
    remote = state_problem(AdbServer("10.0.0.21", 5038), line)
    assert remote is not None
    assert remote.startswith("emulator-5554 is 'offline' on adb server 10.0.0.21:5038: ")
    assert "'adb -H 10.0.0.21 -P 5038 reconnect offline'" in remote


def test_no_permissions_gives_the_udev_hint_and_adbs_own_words() -> None:
    (line,) = parse_adb_devices_l(
        "0123456789ABCDEF       no permissions (missing udev rules? user is in the plugdev group); "
        "see [http://developer.android.com/tools/device.html] usb:1-1 transport_id:3"
    )
    problem = state_problem(LOCAL, line)
    assert problem is not None
    assert problem.startswith("0123456789ABCDEF is 'no permissions' (missing udev rules?")
    assert "udev rules" in problem and "plugdev" in problem and "'harness devices' again" in problem


@pytest.mark.parametrize("state", [state for state in AdbState if state is not AdbState.DEVICE])
def test_every_unusable_state_has_a_fix(state: AdbState) -> None:
    (line,) = parse_adb_devices_l(f"SER1 {state.value} transport_id:9")
    problem = state_problem(LOCAL, line)
    assert problem is not None
    assert problem.startswith(f"SER1 is '{state.value}' on adb server 127.0.0.1:5037: ")


# --- discovery on the virtual farm ----------------------------------------------------


def test_every_virtual_device_is_discovered_with_facts_and_tier(farm) -> None:  # noqa: F811
    result = discover([server_of(farm)], RULES)
    assert result.unreachable_servers == ()
    by_serial = {entry.serial: entry for entry in result.entries}
    assert sorted(by_serial) == sorted(record.serial for record in farm.state.devices)
    assert [entry.serial for entry in result.entries] == sorted(by_serial)
    for name, (model, soc, sdk, tier) in EXPECTED.items():
        entry = by_serial[serial(farm, name)]
        assert entry.usable and entry.state is AdbState.DEVICE and entry.problem is None
        assert entry.facts is not None
        assert (entry.model, entry.soc, entry.facts.info.sdk, entry.tier) == (model, soc, sdk, tier)
        assert entry.facts.info.abi == "x86_64" and entry.facts.modelled_sensors
        assert entry.facts.info.ram_bytes and entry.tier_rule
        assert entry.key == f"127.0.0.1:{farm.adb_port}/{entry.serial}"


def test_two_adb_servers_form_one_farm(farm, tmp_path: Path) -> None:  # noqa: F811
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    shutil.copy(SHIPPED_PROFILES / "mid_nothing_phone_1.toml", profiles)
    port = free_port()
    second = AdbServer("127.0.0.1", port)
    try:
        (record,) = farm_lib.up(profiles, tmp_path / "state", port).state.devices
        # The same device attached to both servers: one serial, two entries.
        shared = serial(farm, "pixel-8-pro")
        farm_lib.attach(port, shared)
        result = discover([second, server_of(farm)], RULES)
        assert result.unreachable_servers == ()
        assert len(result.entries) == len(farm.state.devices) + 2
        assert [(e.server.port, e.serial) for e in result.entries] == sorted(
            (e.server.port, e.serial) for e in result.entries
        )
        remote = next(entry for entry in result.entries if entry.serial == record.serial)
        assert remote.server == second and (remote.model, remote.tier) == ("Virtual Nothing Phone (1)", "mid")
        twins = [entry for entry in result.entries if entry.serial == shared]
        assert {entry.server for entry in twins} == {second, server_of(farm)}
        assert all(entry.tier == "high" for entry in twins) and len({entry.key for entry in twins}) == 2
        assert select(result.entries, shared) == twins
        assert select(result.entries, twins[0].key) == [twins[0]]
        assert len(select(result.entries, "tier:mid")) == 3
    finally:
        farm_lib.down(tmp_path / "state")
        kill_adb_server(port)


def test_selectors(farm) -> None:  # noqa: F811
    entries = discover([server_of(farm)], RULES).entries
    assert select(entries, "all") == list(entries)
    pixel, a03 = serial(farm, "pixel-8-pro"), serial(farm, "galaxy-a03")
    assert {e.serial for e in select(entries, f"{pixel}, {a03}")} == {pixel, a03}
    assert {e.model for e in select(entries, "tier:mid")} == {"Virtual Nothing Phone (1)", "Virtual Galaxy A54"}
    assert [e.serial for e in select(entries, "model:Virtual Pixel*")] == [pixel]
    assert [e.serial for e in select(entries, "model:virtual pixel 8*")] == [pixel]
    mixed = select(entries, f"tier:low,model:virtual nothing*,{pixel},{pixel}")
    assert sorted(e.model or "" for e in mixed) == [
        "Virtual Galaxy A03",
        "Virtual Galaxy A03",
        "Virtual Nothing Phone (1)",
        "Virtual Pixel 8 Pro",
    ]
    assert mixed == [e for e in entries if e in mixed]  # farm order, no duplicates


def test_a_selector_matching_nothing_lists_what_exists(farm) -> None:  # noqa: F811
    entries = discover([server_of(farm)], RULES).entries
    with pytest.raises(UsageError) as raised:
        select(entries, f"tier:ultra,{serial(farm, 'galaxy-a54')},NOPE123")
    message = str(raised.value)
    assert "'tier:ultra', 'NOPE123' match no usable device" in message
    assert f"{serial(farm, 'pixel-8-pro')} (Virtual Pixel 8 Pro, tier high)" in message
    assert "tier:high, tier:low, tier:mid" in message
    with pytest.raises(UsageError, match="model:iPhone"):
        select(entries, "model:iPhone*")
    with pytest.raises(UsageError, match="empty"):
        select(entries, " , ")


@pytest.fixture
def phases(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, float]]:
    """(how many items, timeout_s) of each parallel phase discover() runs: what bounds its time,
    read from the code path instead of a wall clock that a busy machine stretches."""
    seen: list[tuple[int, float]] = []
    real = discovery._in_parallel

    def recording(call, items, timeout_s):
        seen.append((len(items), timeout_s))
        return real(call, items, timeout_s)

    monkeypatch.setattr(discovery, "_in_parallel", recording)
    return seen


def test_parallel_calls_share_one_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each thread is joined for what is left of one deadline, never for a whole timeout each."""
    now = [100.0]
    joins: list[float | None] = []
    release = threading.Event()

    def join(thread: threading.Thread, timeout: float | None = None) -> None:
        joins.append(timeout)
        now[0] += timeout or 0.0  # the stuck call used up what it was given

    monkeypatch.setattr(discovery, "time", SimpleNamespace(monotonic=lambda: now[0]))
    monkeypatch.setattr(threading.Thread, "join", join)
    try:
        outcomes = discovery._in_parallel(lambda _: release.wait(), ["a", "b", "c"], 2.0)
    finally:
        monkeypatch.undo()
        release.set()
    assert joins == [2.0, 0.0, 0.0]
    assert all(isinstance(outcome, TimeoutError) for outcome in outcomes)


def test_a_dropped_device_is_listed_as_unusable_and_never_hangs(farm, phases) -> None:  # noqa: F811
    dropped = serial(farm, "galaxy-a54")
    farm_lib.fault("galaxy-a54", Fault.DROP, state_dir=farm.state_dir)
    try:
        result = discover([server_of(farm)], RULES, timeout_s=5)
        # One listing, then the facts of every phone listed at once (the dropped one is listed or
        # not, as the server has noticed yet), each phase bounded by timeout_s: never a wait per phone.
        assert [timeout_s for _, timeout_s in phases] == [5, 5] and phases[0][0] == 1
        entry = next(entry for entry in result.entries if entry.serial == dropped)
        assert not entry.usable and entry.facts is None and entry.tier is None
        assert entry.problem is not None
        assert entry.problem.startswith(dropped) and "reconnect" in entry.problem
        assert dropped not in {e.serial for e in select(result.entries, "all")}
        assert len(select(result.entries, "all")) == len(farm.state.devices) - 1
        with pytest.raises(DeviceError, match=f"cannot use {dropped}: {dropped} "):
            select(result.entries, dropped)
    finally:
        farm_lib.fault("galaxy-a54", Fault.THAW, state_dir=farm.state_dir)


def test_a_frozen_device_costs_one_deadline_not_a_hang(farm, phases) -> None:  # noqa: F811
    frozen = serial(farm, "nothing-phone-1")
    farm_lib.fault("nothing-phone-1", Fault.FREEZE, state_dir=farm.state_dir)
    try:
        result = discover([server_of(farm)], RULES, timeout_s=2)
        # The frozen phone is asked with all the others, under one shared 2 s deadline.
        assert phases == [(1, 2), (len(farm.state.devices), 2)]
    finally:
        farm_lib.fault("nothing-phone-1", Fault.THAW, state_dir=farm.state_dir)
    entry = next(entry for entry in result.entries if entry.serial == frozen)
    assert entry.state is AdbState.DEVICE and not entry.usable
    assert entry.problem is not None
    assert f"{frozen} on adb server {server_of(farm).address} did not report its facts within 2 s" in entry.problem
    assert sum(e.usable for e in result.entries) == len(farm.state.devices) - 1


def _answer_http(listener: socket.socket) -> None:
    connection, _ = listener.accept()
    with connection:
        connection.sendall(b"HTTP/1.0 400 Bad Request\r\n\r\n")


def test_an_unreachable_server_next_to_a_reachable_one(farm, phases) -> None:  # noqa: F811
    dead = AdbServer("127.0.0.1", free_port())
    with socket.socket() as mute, socket.socket() as web:
        mute.bind(("127.0.0.1", 0))
        mute.listen()  # accepts connections, never answers
        silent = AdbServer("127.0.0.1", mute.getsockname()[1])
        web.bind(("127.0.0.1", 0))
        web.listen()
        http = AdbServer("127.0.0.1", web.getsockname()[1])
        threading.Thread(target=_answer_http, args=(web,), daemon=True).start()
        result = discover([dead, server_of(farm), silent, http], RULES, timeout_s=1)
    # All four servers in one phase, then the reachable one's phones, each under the 1 s deadline.
    assert phases == [(4, 1), (len(farm.state.devices), 1)]
    assert isinstance(result, DiscoveryResult)
    assert len(result.entries) == len(farm.state.devices) and all(e.usable for e in result.entries)
    assert result.unreachable_servers == (
        (dead, "connection refused"),
        (silent, "no answer within 1 s"),
        (http, "answered b'HTTP', which is not the adb protocol: is this port an adb server?"),
    )
    refused = result.warnings()[0]
    assert refused.startswith(f"adb server {dead.address} did not answer (connection refused)")
    assert f"'adb -P {dead.port} start-server'" in refused
    # Asking must never start a server there (adbutils would have).
    assert not farm_lib.adb_server_running(dead.port)


def test_no_server_answering_is_an_error() -> None:
    dead = [AdbServer("127.0.0.1", free_port()), AdbServer("127.0.0.1", free_port())]
    with pytest.raises(DeviceError) as raised:
        discover(dead, RULES, timeout_s=1)
    assert all(server.address in str(raised.value) for server in dead)
    assert not any(farm_lib.adb_server_running(server.port) for server in dead)
    with pytest.raises(UsageError, match="no adb server to ask"):
        discover([], RULES)


# --- CLI ------------------------------------------------------------------------------


def test_cli_json(farm) -> None:  # noqa: F811
    result = CliRunner().invoke(devices, ["--json"], env={farm_lib.ENV_ADB_PORT: str(farm.adb_port)})
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert len(rows) == len(farm.state.devices)
    pixel = next(row for row in rows if row["serial"] == serial(farm, "pixel-8-pro"))
    lease = pixel.pop("lease")  # harness.phone.lease: nobody sweeps it
    assert (lease["status"], lease["description"], lease["host"]) == ("free", "free", None)
    assert pixel == {
        "key": f"127.0.0.1:{farm.adb_port}/{pixel['serial']}",
        "server": f"127.0.0.1:{farm.adb_port}",
        "serial": pixel["serial"],
        "state": "device",
        "usable": True,
        "kind": "virtual",
        "model": "Virtual Pixel 8 Pro",
        "soc": "Tensor G3",
        "abi": "x86_64",
        "sdk": 34,
        "ram_bytes": pixel["ram_bytes"],
        "tier": "high",
        "tier_rule": "high-flagship-soc",
        "problem": None,
    }
    assert isinstance(pixel["ram_bytes"], int) and pixel["ram_bytes"] > 10**10


def test_cli_table(farm) -> None:  # noqa: F811
    result = CliRunner().invoke(devices, [], env={farm_lib.ENV_ADB_PORT: str(farm.adb_port)})
    assert result.exit_code == 0, result.output
    header, *rows = [line.split("\t") for line in result.stdout.splitlines()]
    assert header == [
        "server",
        "serial",
        "state",
        "kind",
        "model",
        "soc",
        "abi",
        "sdk",
        "RAM GB",
        "tier",
        "lease",
        "problem",
    ]
    assert len(rows) == len(farm.state.devices)
    pixel = next(row for row in rows if row[1] == serial(farm, "pixel-8-pro"))
    assert pixel == [
        f"127.0.0.1:{farm.adb_port}",
        pixel[1],
        "device",
        "virtual",
        "Virtual Pixel 8 Pro",
        "Tensor G3",
        "x86_64",
        "34",
        "12.9",
        "high",
        "free",
        "",
    ]


def test_cli_registered_on_main_and_no_server_exits_2() -> None:
    from harness.commands import main

    assert main.commands.get("devices") is devices
    result = CliRunner().invoke(main, ["devices"], env={farm_lib.ENV_ADB_PORT: str(free_port())})
    assert result.exit_code == 2
    assert result.stderr.startswith("error: adb server 127.0.0.1:") and "start-server" in result.stderr
