"""Which phones the farm has: every adb server asked at once, each phone's facts and tier.

Servers are listed over a raw socket (`host:devices-l`), never through
adbutils: adbutils runs `adb start-server` when it cannot connect, which would
quietly start an empty server on the default port instead of reporting the
configured one as down. Only phones a server reports as `device` are then
opened (through harness.phone.device.Phone), each with one batched shell call.
"""

from __future__ import annotations

import fnmatch
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from harness.errors import DeviceError, HarnessError, UsageError
from harness.phone.device import DeviceLost, Phone, PhoneFacts, read_exact
from harness.phone.facts import AdbDeviceLine, AdbState, parse_adb_devices_l
from harness.phone.profiles import DEFAULT_ADB_PORT, AdbServer, TierRules, soc_name

DEFAULT_TIMEOUT_S = 15.0
_AGAIN = "then run 'harness devices' again"

_T = TypeVar("_T")
_R = TypeVar("_R")


@dataclass(frozen=True)
class DeviceEntry:
    """One device line of one adb server, with facts and tier when the phone answered.

    `problem` is set exactly when the device cannot be used; it names the fix.
    """

    server: AdbServer
    serial: str
    state: AdbState
    facts: PhoneFacts | None = None
    tier: str | None = None
    tier_rule: str | None = None
    problem: str | None = None

    @property
    def key(self) -> str:
        """Unique across servers: two hosts can each have an emulator-5554 or a 127.0.0.1:5555."""
        return f"{self.server.address}/{self.serial}"

    @property
    def usable(self) -> bool:
        return self.problem is None

    @property
    def model(self) -> str | None:
        return self.facts.info.model if self.facts else None

    @property
    def kind(self) -> str | None:
        """physical or virtual, as the phone says (see devicefacts.device_kind)."""
        kind = self.facts.info.device_kind if self.facts else None
        return kind.value if kind else None

    @property
    def soc(self) -> str | None:
        """The most specific SoC name the phone gives (ro.soc.model only exists since Android 12)."""
        return soc_name(self.facts.info) if self.facts else None

    def to_json(self) -> dict[str, object]:
        info = self.facts.info if self.facts else None
        return {
            "key": self.key,
            "server": self.server.address,
            "serial": self.serial,
            "state": self.state.value,
            "usable": self.usable,
            "kind": self.kind,
            "model": self.model,
            "soc": self.soc,
            "abi": info.abi if info else None,
            "sdk": info.sdk if info else None,
            "ram_bytes": info.ram_bytes if info else None,
            "tier": self.tier,
            "tier_rule": self.tier_rule,
            "problem": self.problem,
        }


@dataclass(frozen=True)
class DiscoveryResult:
    entries: tuple[DeviceEntry, ...]
    unreachable_servers: tuple[tuple[AdbServer, str], ...]  # (server, why it did not answer)

    def warnings(self) -> list[str]:
        """One line per server that did not answer, for the caller to print."""
        return [unreachable_message(server, reason) for server, reason in self.unreachable_servers]


def adb_command(server: AdbServer) -> str:
    """How to point the adb command line at this server, for messages the user acts on."""
    host = "" if server.host in ("127.0.0.1", "localhost") else f" -H {server.host}"
    port = "" if server.port == DEFAULT_ADB_PORT else f" -P {server.port}"
    return f"adb{host}{port}"


def unreachable_message(server: AdbServer, reason: str) -> str:
    return (
        f"adb server {server.address} did not answer ({reason}), so its devices are not listed: "
        f"start it ('{adb_command(server)} start-server', or 'adb -a -P {server.port} server nodaemon' on that host) "
        "or fix the [[servers]] list in farm.toml ('harness config' shows which)"
    )


def state_problem(server: AdbServer, line: AdbDeviceLine) -> str | None:
    """Why a device in this adb state cannot be used, with the fix; None for `device`."""
    adb = adb_command(server)
    serial = line.serial
    fixes = {
        AdbState.DEVICE: None,
        AdbState.UNAUTHORIZED: f"accept the USB debugging prompt on the phone, {_AGAIN}",
        AdbState.AUTHORIZING: f"wait a few seconds and accept the USB debugging prompt on the phone, {_AGAIN}",
        AdbState.OFFLINE: f"reconnect the cable or run '{adb} reconnect offline', {_AGAIN}",
        AdbState.CONNECTING: f"wait a few seconds or replug the phone, {_AGAIN}",
        AdbState.NO_PERMISSIONS: (
            "this user may not open the USB device: install udev rules for Android phones "
            "(e.g. the android-udev-rules package), add your user to the plugdev group, "
            f"replug the phone, {_AGAIN}"
        ),
        AdbState.DETACHED: f"reattach it with '{adb} -s {serial} attach', {_AGAIN}",
        AdbState.BOOTLOADER: f"boot it into Android ('fastboot -s {serial} reboot' or its power button), {_AGAIN}",
        AdbState.RECOVERY: f"boot it into Android ('{adb} -s {serial} reboot'), {_AGAIN}",
        AdbState.RESCUE: f"boot it into Android ('{adb} -s {serial} reboot'), {_AGAIN}",
        AdbState.SIDELOAD: f"finish the sideload or boot it into Android ('{adb} -s {serial} reboot'), {_AGAIN}",
        AdbState.HOST: "this transport is another host, not a phone: nothing to do unless you expected a phone here",
        AdbState.UNKNOWN: f"replug the phone or restart the server ('{adb} kill-server'), {_AGAIN}",
    }
    fix = fixes[line.state]
    if fix is None:
        return None
    # adb's own words after the state (e.g. "(missing udev rules? ...)") help with the diagnosis.
    detail = f" {line.state_detail}" if line.state_detail else ""
    return f"{serial} is '{line.state.value}'{detail} on adb server {server.address}: {fix}"


def discover(servers: Sequence[AdbServer], rules: TierRules, timeout_s: float = DEFAULT_TIMEOUT_S) -> DiscoveryResult:
    """All devices of all servers, with facts and tiers; sorted by server, then serial.

    Servers are asked in parallel, then every phone in `device` state is asked
    for its facts in parallel; each phase waits at most `timeout_s`. A phone
    that fails or misses the deadline is listed with a problem rather than
    holding up the rest. Raises DeviceError only when no server answers.
    """
    if not servers:
        raise UsageError(
            "no adb server to ask", "list one under [[servers]] in farm.toml ('harness init' writes an editable one)"
        )
    servers = list(dict.fromkeys(servers))  # a server listed twice would list its phones twice
    listings = _in_parallel(lambda server: _list_devices(server, timeout_s), servers, timeout_s)
    lines: list[tuple[AdbServer, AdbDeviceLine]] = []
    unreachable: list[tuple[AdbServer, str]] = []
    for server, listing in zip(servers, listings, strict=False):
        if isinstance(listing, BaseException):
            unreachable.append((server, _server_failure(listing, timeout_s)))
        else:
            lines += [(server, line) for line in listing]
    if len(unreachable) == len(servers):
        raise DeviceError("; ".join(unreachable_message(server, reason) for server, reason in unreachable))

    online = [(server, line) for server, line in lines if line.state is AdbState.DEVICE]
    # The phase's deadline is what reports a silent phone ("did not report its facts within N s"); each
    # phone's own socket deadline is set later, so that it never wins the race with a vaguer message.
    answers = _in_parallel(lambda pair: Phone(pair[0], pair[1].serial).facts(2 * timeout_s), online, timeout_s)
    facts_of: dict[tuple[AdbServer, str], PhoneFacts | BaseException] = {
        (server, line.serial): answer for (server, line), answer in zip(online, answers, strict=False)
    }
    entries = []
    for server, line in lines:
        answer = facts_of.get((server, line.serial))
        if isinstance(answer, PhoneFacts):
            classification = rules.classify(answer.info)
            entries.append(
                DeviceEntry(server, line.serial, line.state, answer, classification.tier, classification.rule_id)
            )
        elif answer is None:
            entries.append(DeviceEntry(server, line.serial, line.state, problem=state_problem(server, line)))
        else:
            entries.append(
                DeviceEntry(
                    server, line.serial, line.state, problem=_facts_failure(server, line.serial, answer, timeout_s)
                )
            )
    entries.sort(key=lambda entry: (entry.server.host, entry.server.port, entry.serial))
    return DiscoveryResult(tuple(entries), tuple(unreachable))


def _server_failure(error: BaseException, timeout_s: float) -> str:
    if isinstance(error, TimeoutError):
        return f"no answer within {timeout_s:g} s"
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, (OSError, EOFError, _ProtocolError)):
        return str(error)
    raise error


def _facts_failure(server: AdbServer, serial: str, error: BaseException, timeout_s: float) -> str:
    if isinstance(error, TimeoutError):
        error = DeviceLost(
            f"{serial} on adb server {server.address} did not report its facts within {timeout_s:g} s",
            f"check the cable or network, then '{adb_command(server)} reconnect' and run 'harness devices' again",
        )
    if isinstance(error, HarnessError):
        return str(error)
    raise error


# --- adb host protocol over a raw socket -------------------------------------------


class _ProtocolError(Exception):
    """The peer is not an adb server, or refused the request."""


def _list_devices(server: AdbServer, timeout_s: float) -> list[AdbDeviceLine]:
    return parse_adb_devices_l(_host_request(server, "host:devices-l", timeout_s))


def _host_request(server: AdbServer, service: str, timeout_s: float) -> str:
    """One adb host service that answers with a length-prefixed payload."""
    with socket.create_connection((server.host, server.port), timeout=timeout_s) as sock:
        sock.settimeout(timeout_s)
        request = service.encode()
        sock.sendall(b"%04x" % len(request) + request)
        status = read_exact(sock, 4)
        if status not in (b"OKAY", b"FAIL"):
            raise _ProtocolError(f"answered {status!r}, which is not the adb protocol: is this port an adb server?")
        payload = read_exact(sock, _read_length(sock)).decode("utf-8", errors="replace")
        if status == b"FAIL":
            raise _ProtocolError(f"refused {service}: {payload}")
        return payload


def _read_length(sock: socket.socket) -> int:
    raw = read_exact(sock, 4)
    try:
        return int(raw, 16)
    except ValueError:
        raise _ProtocolError(f"sent length {raw!r}, which is not the adb protocol") from None


def _in_parallel(call: Callable[[_T], _R], items: Sequence[_T], timeout_s: float) -> list[_R | BaseException]:
    """call(item) for all items at once: each result, the exception it raised, or
    TimeoutError when it was still running at the deadline.

    Daemon threads rather than an executor: an executor's workers are joined at
    interpreter exit, so one phone that ignores its deadlines would hold up the
    whole command after discover() has returned.
    """
    outcomes: list[_R | BaseException] = [TimeoutError() for _ in items]

    def run(index: int, item: _T) -> None:
        try:
            outcomes[index] = call(item)
        except Exception as error:  # handed to the caller, which decides what it means
            outcomes[index] = error

    threads = [threading.Thread(target=run, args=pair, daemon=True, name="discovery") for pair in enumerate(items)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout_s
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    return list(outcomes)  # a snapshot: late finishers must not change what the caller saw


in_parallel = _in_parallel  # for other per-phone questions asked of the whole farm (harness.phone.lease)


# --- selection ----------------------------------------------------------------------

_TIER_PREFIX = "tier:"
_MODEL_PREFIX = "model:"


def select(entries: Sequence[DeviceEntry], selector: str) -> list[DeviceEntry]:
    """The devices a `--devices` selector names, in the order of `entries`.

    `all` | SERIAL (or host:port/SERIAL) | tier:NAME | model:GLOB (case-insensitive,
    on ro.product.model), comma-separated and mixable. A part that matches
    nothing is a UsageError listing what exists; a serial naming an unusable
    device is a DeviceError with that device's problem.
    """
    parts = [part.strip() for part in selector.split(",") if part.strip()]
    if not parts:
        raise UsageError("--devices is empty", f"pass 'all', serials, tier:NAME or model:GLOB; {_inventory(entries)}")
    usable = [entry for entry in entries if entry.usable]
    chosen: set[str] = set()
    unmatched: list[str] = []
    for part in parts:
        if part == "all":
            matches = usable
        elif part.startswith(_TIER_PREFIX):
            tier = part[len(_TIER_PREFIX) :]
            matches = [entry for entry in usable if entry.tier == tier]
        elif part.startswith(_MODEL_PREFIX):
            glob = part[len(_MODEL_PREFIX) :].lower()
            matches = [entry for entry in usable if entry.model and fnmatch.fnmatchcase(entry.model.lower(), glob)]
        else:
            named = [entry for entry in entries if part in (entry.serial, entry.key)]
            broken = next((entry for entry in named if not entry.usable), None)
            if broken is not None:
                raise DeviceError(f"cannot use {part}: {broken.problem}")
            matches = named
        if not matches:
            unmatched.append(part)
        chosen.update(entry.key for entry in matches)
    if unmatched:
        names = ", ".join(repr(part) for part in unmatched)
        raise UsageError(
            f"--devices {names} {'matches' if len(unmatched) == 1 else 'match'} no usable device",
            f"choose from what exists: {_inventory(entries)}",
        )
    return [entry for entry in entries if entry.key in chosen]


def _inventory(entries: Sequence[DeviceEntry]) -> str:
    """Every device with model and tier (or why it is unusable), then the tiers present."""
    if not entries:
        return "no devices are attached (see 'harness devices')"
    serial_count: dict[str, int] = {}
    for entry in entries:
        serial_count[entry.serial] = serial_count.get(entry.serial, 0) + 1
    devices = []
    for entry in entries:
        name = entry.serial if serial_count[entry.serial] == 1 else entry.key
        detail = f"{entry.model}, tier {entry.tier}" if entry.usable else f"'{entry.state.value}', not usable"
        devices.append(f"{name} ({detail})")
    tiers = sorted({entry.tier for entry in entries if entry.tier})
    tier_text = ", ".join(f"tier:{tier}" for tier in tiers) or "none (no usable device)"
    return f"devices {', '.join(devices)}; tiers {tier_text}"
