"""The virtual device farm: start, attach, inspect, fault and stop device processes.

State lives in one JSON file (versioned) in the state folder, --state-dir or
else farm/ in the user's state folder (harness.locations.user_state_dir,
$HARNESS_STATE_DIR or e.g. ~/.local/state/tflite-farm): pids (with their
kernel start times, so a recycled pid is never signalled), ports, serials,
log paths. Devices are attached to the real adb server (the binary shipped
in the adbutils wheel) with `adb connect 127.0.0.1:PORT`.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from enum import Enum
from pathlib import Path
from typing import cast

import adbutils

import harness
from harness.atomic import write_atomically
from harness.config import virtual_profiles_dir
from harness.errors import DeviceError, SchemaError, UsageError
from harness.locations import user_state_dir
from harness.versioned import checked_version
from harness.virtual_farm.profile import Profile, load_profiles
from harness.virtual_farm.sandbox import check_available
from harness.virtual_farm.server import DELEGATES, Fault

STATE_VERSION = 1
STATE_FILE = "farm.json"
STATE_SUBDIR = "farm"
ENV_ADB_PORT = "ANDROID_ADB_SERVER_PORT"
DEFAULT_ADB_PORT = 5037
READY_TIMEOUT_S = 30.0
ATTACH_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 5.0


class FarmError(DeviceError):
    """The virtual farm cannot be started, reached or stopped as asked."""


@dataclass(frozen=True)
class DeviceRecord:
    name: str
    model: str
    profile: str
    pid: int
    start_ticks: int  # /proc/PID/stat starttime: tells our process from a recycled pid
    adb_port: int
    control_port: int
    serial: str
    log_path: str
    root: str


@dataclass(frozen=True)
class FarmState:
    adb_server_port: int
    parallel: bool
    started_at: float
    devices: tuple[DeviceRecord, ...]
    version: int = STATE_VERSION

    def to_json(self) -> str:
        data = asdict(self)
        data["devices"] = [asdict(d) for d in self.devices]
        return json.dumps(data, indent=2)

    @classmethod
    def from_json(cls, path: Path) -> FarmState:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise SchemaError(
                f"farm state {path} is unreadable ({e})", f"delete {path} after stopping any device processes by hand"
            ) from None
        version = checked_version(
            path, "farm state", data.get("version") if isinstance(data, dict) else None, STATE_VERSION
        )
        return cls(
            adb_server_port=data["adb_server_port"],
            parallel=data["parallel"],
            started_at=data["started_at"],
            devices=tuple(DeviceRecord(**d) for d in data["devices"]),
            version=version,
        )


class UpOutcome(str, Enum):
    STARTED = "started"
    REUSED = "reused"


@dataclass(frozen=True)
class UpResult:
    outcome: UpOutcome
    state: FarmState
    message: str


@dataclass(frozen=True)
class DeviceStatus:
    record: DeviceRecord
    alive: bool
    adb_state: str  # device | offline | absent | no adb server
    link: dict[str, object] | None  # the device's own view (fault state), None if unreachable

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.record.name,
            "serial": self.record.serial,
            "model": self.record.model,
            "pid": self.record.pid,
            "alive": self.alive,
            "adb_state": self.adb_state,
            "link": self.link,
            "log_path": self.record.log_path,
        }


# --- locations ------------------------------------------------------------------------


def resolve_state_dir(explicit: Path | None = None) -> Path:
    """--state-dir, else farm/ in the user's state folder: one farm per user, whatever the current folder."""
    if explicit is not None:
        return explicit.resolve()
    return user_state_dir() / STATE_SUBDIR


def resolve_adb_port(explicit: int | None = None) -> int:
    if explicit is not None:
        return explicit
    raw = os.environ.get(ENV_ADB_PORT)
    if raw:
        try:
            return int(raw)
        except ValueError:
            raise UsageError(
                f"{ENV_ADB_PORT}={raw!r} is not a port number",
                f"unset it or set it to a number like {DEFAULT_ADB_PORT}",
            ) from None
    return DEFAULT_ADB_PORT


def load_state(state_dir: Path) -> FarmState | None:
    path = state_dir / STATE_FILE
    return FarmState.from_json(path) if path.exists() else None


def _write_state(state_dir: Path, state: FarmState) -> None:
    write_atomically(state_dir / STATE_FILE, lambda out: out.write(state.to_json().encode()))


# --- processes -------------------------------------------------------------------------


def _start_ticks(pid: int) -> int | None:
    """Kernel start time of a live (non-zombie) process, None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    fields = raw[raw.rindex(b")") + 2 :].split()
    if fields[0] in (b"Z", b"X"):
        return None
    return int(fields[19])


def _reap(pid: int) -> None:
    """Collect our own exited child (when this process started it), so it stops being a zombie."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def is_alive(record: DeviceRecord) -> bool:
    _reap(record.pid)
    return _start_ticks(record.pid) == record.start_ticks


def _stop(records: list[DeviceRecord], timeout_s: float) -> list[str]:
    """SIGTERM exactly these processes, SIGKILL what is left after the timeout."""
    notes = []
    live = [r for r in records if is_alive(r)]
    for r in live:
        os.kill(r.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while live and time.monotonic() < deadline:
        time.sleep(0.05)
        live = [r for r in live if is_alive(r)]
    for r in live:
        os.kill(r.pid, signal.SIGKILL)
        notes.append(f"{r.name} (pid {r.pid}) ignored SIGTERM for {timeout_s:.0f}s: killed")
    deadline = time.monotonic() + 2.0
    while live and time.monotonic() < deadline:
        time.sleep(0.05)
        live = [r for r in live if is_alive(r)]
    return notes


# --- adb server --------------------------------------------------------------------------


def adb_server_running(port: int) -> bool:
    """Ask host:version over a raw socket: adbutils would start a server on the default port instead."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as s:
            s.sendall(b"000chost:version")
            return s.recv(4) == b"OKAY"
    except OSError:
        return False


def ensure_adb_server(port: int, log_path: Path) -> None:
    if adb_server_running(port):
        return
    env = dict(os.environ, **{ENV_ADB_PORT: str(port)})
    with open(log_path, "ab") as log:
        # A file, not a pipe: the forked server would hold a pipe open and hang us.
        result = subprocess.run(
            [adbutils.adb_path(), "-P", str(port), "start-server"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            env=env,
            timeout=60,
        )
    if result.returncode != 0 or not adb_server_running(port):
        raise FarmError(
            f"could not start the adb server on port {port} (see {log_path})",
            "free the port or pass another with --adb-port",
        )


def adb_client(port: int) -> adbutils.AdbClient:
    return adbutils.AdbClient(host="127.0.0.1", port=port)


def adb_states(port: int) -> dict[str, str]:
    if not adb_server_running(port):
        return {}
    return {info.serial: info.state for info in adb_client(port).list()}


def attach(port: int, serial: str, timeout_s: float = ATTACH_TIMEOUT_S) -> None:
    """`adb connect` and wait until the server reports the device as 'device'."""
    client = adb_client(port)
    deadline = time.monotonic() + timeout_s
    message = ""
    while time.monotonic() < deadline:
        message = client.connect(serial, timeout=timeout_s)
        if "connected to" in message:
            while time.monotonic() < deadline:
                if adb_states(port).get(serial) == "device":
                    return
                time.sleep(0.05)
        time.sleep(0.2)
    raise FarmError(
        f"{serial} did not come online on the adb server at port {port} ({message.strip() or 'no answer'})",
        "check the device log named in 'harness farm status', then 'harness farm down' and 'harness farm up'",
    )


# --- the farm ----------------------------------------------------------------------------


def _sandbox(state_dir: Path, name: str) -> Path:
    """The phone's host folder: its /system/bin, generated /proc and /sys files, properties."""
    return state_dir / "devices" / name


def up(
    profiles_dir: Path | None = None, state_dir: Path | None = None, adb_port: int | None = None, parallel: bool = False
) -> UpResult:
    sd = resolve_state_dir(state_dir)
    port = resolve_adb_port(adb_port)
    sd.mkdir(parents=True, exist_ok=True)
    existing = load_state(sd)
    if existing is not None:
        alive = [d for d in existing.devices if is_alive(d)]
        if alive and len(alive) == len(existing.devices):
            ensure_adb_server(existing.adb_server_port, sd / "adb-server.log")
            for d in existing.devices:
                attach(existing.adb_server_port, d.serial)
            return UpResult(
                UpOutcome.REUSED,
                existing,
                f"a farm of {len(alive)} devices is already up (state {sd / STATE_FILE}, adb server port "
                f"{existing.adb_server_port}): reused it; run 'harness farm down' first to start a fresh one",
            )
        if alive:
            dead = ", ".join(d.name for d in existing.devices if d not in alive)
            raise FarmError(
                f"the farm in {sd / STATE_FILE} is only partly up (stopped: {dead})",
                "run 'harness farm down' and then 'harness farm up' again",
            )
    profiles = load_profiles(profiles_dir or virtual_profiles_dir())
    check_available()  # no namespaces, no phones: the error names the cause and the fix
    for sub in ("logs", "devices", "run"):
        (sd / sub).mkdir(exist_ok=True)
    # The device processes import this very harness, wherever it is installed (a checkout, a venv, a
    # pip --target folder): the folder that holds the package goes first on their path.
    package_root = str(Path(harness.__file__).resolve().parent.parent)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")])))
    started: list[tuple[Profile, subprocess.Popen[bytes], Path, Path]] = []
    records: list[DeviceRecord] = []
    try:
        for profile in profiles:
            ready = sd / "run" / f"{profile.name}.ready.json"
            ready.unlink(missing_ok=True)
            log_path = sd / "logs" / f"{profile.name}.log"
            argv = [
                sys.executable,
                "-m",
                "harness.virtual_farm",
                "--profile",
                str(profile.path.resolve()),
                "--root",
                str(_sandbox(sd, profile.name)),
                "--ready-file",
                str(ready),
            ]
            if not parallel:
                argv += ["--exec-lock", str(sd / "bench.lock")]
            with open(log_path, "ab") as log:
                proc = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    env=env,
                    close_fds=True,
                )
            started.append((profile, proc, ready, log_path))
        deadline = time.monotonic() + READY_TIMEOUT_S
        for profile, proc, ready, log_path in started:
            while not ready.exists():
                if proc.poll() is not None or time.monotonic() > deadline:
                    tail = log_path.read_text(errors="replace")[-800:]
                    raise FarmError(
                        f"virtual device {profile.name} did not start (exit {proc.poll()}); its log {log_path} "
                        f"ends:\n{tail}",
                        "fix the cause shown in the log, then run 'harness farm up' again",
                    )
                time.sleep(0.02)
            info = json.loads(ready.read_text())
            records.append(
                DeviceRecord(
                    name=profile.name,
                    model=profile.model,
                    profile=str(profile.path.resolve()),
                    pid=proc.pid,
                    start_ticks=_start_ticks(proc.pid) or 0,
                    adb_port=info["adb_port"],
                    control_port=info["control_port"],
                    serial=f"127.0.0.1:{info['adb_port']}",
                    log_path=str(log_path),
                    root=str(_sandbox(sd, profile.name)),
                )
            )
        state = FarmState(adb_server_port=port, parallel=parallel, started_at=time.time(), devices=tuple(records))
        _write_state(sd, state)
        ensure_adb_server(port, sd / "adb-server.log")
        for r in records:
            attach(port, r.serial)
    except BaseException:
        for _, proc, _, _ in started:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        (sd / STATE_FILE).unlink(missing_ok=True)
        raise
    mode = "in parallel" if parallel else "one benchmark at a time"
    return UpResult(
        UpOutcome.STARTED, state, f"started {len(records)} virtual devices on adb server port {port} ({mode})"
    )


def down(state_dir: Path | None = None, timeout_s: float = STOP_TIMEOUT_S) -> list[str]:
    sd = resolve_state_dir(state_dir)
    state = load_state(sd)
    if state is None:
        return [f"no farm is up (no {STATE_FILE} in {sd})"]
    notes = []
    if adb_server_running(state.adb_server_port):
        client = adb_client(state.adb_server_port)
        for d in state.devices:
            client.disconnect(d.serial)
    notes += _stop(list(state.devices), timeout_s)
    (sd / STATE_FILE).unlink(missing_ok=True)
    notes.append(f"stopped {len(state.devices)} virtual devices (sandboxes and logs kept in {sd})")
    return notes


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def start_private(state_dir: Path, profiles_dir: Path | None = None, parallel: bool = False) -> FarmState:
    """A farm on a new adb server of its own, for the demo, benchmarks and tests.

    They must never touch the user's adb server or phones: the server gets a
    free port, and ANDROID_ADB_SERVER_PORT points at it so that nothing falls
    back to the default one. stop_private undoes all of it.
    """
    port = free_port()
    os.environ[ENV_ADB_PORT] = str(port)
    return up(profiles_dir, state_dir, port, parallel).state


def stop_private(state_dir: Path) -> None:
    """Stops the devices and the adb server start_private started (also after a failed start)."""
    state = load_state(state_dir)
    adb_port = state.adb_server_port if state else os.environ.get(ENV_ADB_PORT)
    down(state_dir)
    if adb_port is None:  # start_private never ran
        return
    state_dir.mkdir(parents=True, exist_ok=True)
    with open(state_dir / "adb-kill-server.log", "ab") as log:
        subprocess.run(
            [adbutils.adb_path(), "-P", str(adb_port), "kill-server"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            timeout=30,
        )


def status(state_dir: Path | None = None) -> list[DeviceStatus]:
    sd = resolve_state_dir(state_dir)
    state = load_state(sd)
    if state is None:
        return []
    server_up = adb_server_running(state.adb_server_port)
    states = adb_states(state.adb_server_port) if server_up else {}
    out = []
    for d in state.devices:
        alive = is_alive(d)
        link = None
        if alive:
            try:
                link = cast("dict[str, object] | None", _control(d, {"op": "status"}).get("state"))
            except FarmError:
                pass  # alive but not answering: shown as no link state
        adb_state = states.get(d.serial, "absent") if server_up else "no adb server"
        out.append(DeviceStatus(d, alive, adb_state, link))
    return out


def find_device(state: FarmState, serial_or_name: str) -> DeviceRecord:
    for d in state.devices:
        if serial_or_name in (d.serial, d.name):
            return d
    known = ", ".join(f"{d.serial} ({d.name})" for d in state.devices)
    raise UsageError(f"no virtual device {serial_or_name!r} in this farm", f"use one of: {known}")


def _control(record: DeviceRecord, request: dict[str, object], timeout_s: float = 2.0) -> dict[str, object]:
    try:
        with socket.create_connection(("127.0.0.1", record.control_port), timeout=timeout_s) as s:
            s.sendall(json.dumps(request).encode() + b"\n")
            reply = s.makefile("rb").readline()
    except OSError as e:
        raise FarmError(
            f"{record.name} does not answer on its control port {record.control_port} ({e})",
            "check 'harness farm status'; restart the farm if the device process died",
        ) from None
    return json.loads(reply) if reply else {}


def fault(
    serial_or_name: str, op: Fault, kbps: float | None = None, state_dir: Path | None = None, command: str | None = None
) -> dict[str, object]:
    sd = resolve_state_dir(state_dir)
    state = load_state(sd)
    if state is None:
        raise FarmError(f"no farm is up (no {STATE_FILE} in {sd})", "run 'harness farm up' first")
    record = find_device(state, serial_or_name)
    if op is Fault.SLOW and (kbps is None or kbps <= 0):
        raise UsageError(
            "'slow' needs a rate", "give one in kilobytes per second, e.g. 'harness farm fault SERIAL slow 500'"
        )
    if op is Fault.HIDE and not command:
        raise UsageError("'hide' needs a command name", "e.g. 'harness farm fault SERIAL hide sha256sum'")
    if op is Fault.CORRUPT_OUTPUTS and command not in DELEGATES:
        raise UsageError(
            f"'corrupt-outputs' needs a delegate, got {command!r}",
            f"name one of {', '.join(DELEGATES)}, e.g. 'harness farm fault SERIAL corrupt-outputs xnnpack'",
        )
    reply = _control(record, {"op": op.value, "kbps": kbps, "command": command})
    if not reply.get("ok"):
        raise FarmError(f"{record.name} refused fault {op.value}: {reply.get('error')}", "see the device log")
    # A dropped device may sit 'offline' in the server's reconnect loop: reattach it now.
    if (
        op is Fault.THAW
        and adb_server_running(state.adb_server_port)
        and adb_states(state.adb_server_port).get(record.serial) != "device"
    ):
        adb_client(state.adb_server_port).disconnect(record.serial)
        attach(state.adb_server_port, record.serial)
    return cast("dict[str, object]", reply["state"])  # the device's JSON fault state
