"""Device leases: one sweep at a time per phone, even across hosts and CI jobs.

A lease lives on the phone itself, so every host that reaches the phone (through
any adb server) sees the same one:

    /data/local/tmp/harness/lease/          the lease: created by `mkdir`, atomic on every Android shell
    /data/local/tmp/harness/lease/info      version, host, pid, run, token, ttl_s, acquired_s, expires_s
    /data/local/tmp/harness/lease.stale.T   a lease being taken over (or released) by the holder of token T

Times are the phone's epoch seconds (`date +%s` on the phone), so hosts with
skewed clocks judge expiry alike. The holder renews (`expires_s` moves on) every
TTL/4 by writing `info.T` and renaming it over `info`. An expired lease is taken
over safely against other contenders: rename the lease folder to a name only
this taker uses (`lease.stale.T`, one atomic rename: of two contenders only one
gets it), read the renamed `info` and compare it with what was judged expired;
if it differs (renewed meanwhile, or already taken over by another), put it
back; else remove it and `mkdir` a fresh lease (which may still lose to a third
contender's `mkdir`: then that one holds it). Releasing goes the same way, so a
holder never removes a lease that is no longer its own.

A lease folder without `info` (its creator died between `mkdir` and the write,
which share one shell command) counts from the folder's mtime on the phone.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import secrets
import shlex
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from harness.errors import DeviceError, UsageError
from harness.phone.device import REMOTE_ROOT, DeviceLost, Phone
from harness.phone.discovery import DeviceEntry, in_parallel

LEASE_DIR = f"{REMOTE_ROOT}/lease"
LEASE_INFO = f"{LEASE_DIR}/info"
LEASE_VERSION = 1
DEFAULT_TTL_S = 120.0
ENV_TTL = "HARNESS_LEASE_TTL_S"  # tests (and impatient farms) shorten the TTL with it
MAX_POLL_S = 10.0
_TIMEOUT_S = 15.0
_INFO_WRITE_WAIT_S = 0.05  # a lease folder young and still without info: its creator is writing it


def default_ttl_s() -> float:
    """The lease TTL: $HARNESS_LEASE_TTL_S when set, else 120 s."""
    raw = os.environ.get(ENV_TTL)
    if not raw:
        return DEFAULT_TTL_S
    try:
        ttl = float(raw)
    except ValueError:
        raise UsageError(f"{ENV_TTL}={raw!r} is not a number of seconds", f"e.g. {ENV_TTL}=120") from None
    if ttl < 2:
        raise UsageError(
            f"{ENV_TTL}={raw!r} is too short (renewals need time)", f"use 2 seconds or more, e.g. {ENV_TTL}=120"
        )
    return ttl


def poll_s(ttl_s: float) -> float:
    """How often a waiting sweep looks again: a quarter TTL, at least 0.5 s and at most 10 s."""
    return max(0.5, min(MAX_POLL_S, ttl_s / 4))


def utc_text(epoch_s: float) -> str:
    return dt.datetime.fromtimestamp(epoch_s, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@dataclass(frozen=True)
class Owner:
    """Who takes a lease: this process on this host, for one run."""

    host: str
    pid: int
    run_id: str

    @classmethod
    def here(cls, run_id: str) -> Owner:
        return cls(socket.gethostname(), os.getpid(), run_id)


@dataclass(frozen=True)
class LeaseInfo:
    """The contents of a lease's `info` file."""

    host: str
    pid: int
    run_id: str
    token: str
    ttl_s: float
    acquired_s: int
    expires_s: int
    version: int = LEASE_VERSION

    def holder(self) -> str:
        return f"{self.host} pid {self.pid} (run {self.run_id})"

    def describe(self) -> str:
        """'leased by HOST pid N (run R) until T', what a skipped case says."""
        return f"leased by {self.holder()} until {utc_text(self.expires_s)}"

    def text(self) -> str:
        fields = {
            "version": self.version,
            "host": self.host,
            "pid": self.pid,
            "run": self.run_id,
            "token": self.token,
            "ttl_s": f"{self.ttl_s:g}",
            "acquired_s": self.acquired_s,
            "expires_s": self.expires_s,
        }
        return "".join(f"{key}={value}\n" for key, value in fields.items())

    @classmethod
    def parse(cls, text: str) -> LeaseInfo | None:
        """The info of `text`; None when it is not a whole lease file (being written, damaged)."""
        fields = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
        try:
            return cls(
                host=fields["host"],
                pid=int(fields["pid"]),
                run_id=fields["run"],
                token=fields["token"],
                ttl_s=float(fields["ttl_s"]),
                acquired_s=int(fields["acquired_s"]),
                expires_s=int(fields["expires_s"]),
                version=int(fields.get("version", LEASE_VERSION)),
            )
        except (KeyError, ValueError):
            return None


@dataclass(frozen=True)
class LeaseState:
    """What a phone says of its lease, read in one shell command: its clock, the lease folder, `info`."""

    serial: str
    now_s: int
    present: bool  # the lease folder exists
    info: LeaseInfo | None
    folder_mtime_s: int | None = None
    raw: str = ""  # the info file as read: what a takeover compares

    def expires_s(self, ttl_s: float) -> int | None:
        if not self.present:
            return None
        if self.info is not None:
            return self.info.expires_s
        # No (whole) info: its creator died between mkdir and write; the folder's age decides.
        return int((self.folder_mtime_s or self.now_s) + ttl_s)

    def expired(self, ttl_s: float) -> bool:
        expires = self.expires_s(ttl_s)
        return expires is not None and self.now_s >= expires

    @property
    def status(self) -> str:
        """free | held | expired (judged on the phone's clock)."""
        if not self.present:
            return "free"
        return "expired" if self.expired(default_ttl_s()) else "held"

    def describe(self) -> str:
        """The LEASE column of `harness devices`: free, HOST pid N run R until T, or expired (...)."""
        if not self.present:
            return "free"
        if self.info is None:
            holder = "an unfinished lease (no info file)"
        else:
            holder = (
                f"{self.info.host} pid {self.info.pid} run {self.info.run_id} until {utc_text(self.info.expires_s)}"
            )
        return f"expired ({holder})" if self.status == "expired" else holder

    def to_json(self) -> dict[str, object]:
        info = self.info
        return {
            "status": self.status,
            "host": info.host if info else None,
            "pid": info.pid if info else None,
            "run_id": info.run_id if info else None,
            "expires_at": dt.datetime.fromtimestamp(info.expires_s, dt.UTC).isoformat() if info else None,
            "phone_now": dt.datetime.fromtimestamp(self.now_s, dt.UTC).isoformat(),
            "description": self.describe(),
        }


class LeaseBusy(DeviceError):
    """The phone is leased by someone else (and the wait for it, if any, ran out)."""

    def __init__(self, state: LeaseState, waited_s: float | None = None) -> None:
        self.state = state
        info = state.info
        reason = (
            info.describe()
            if info is not None
            else (
                f"leased by someone whose lease is still being written (until "
                f"{utc_text(state.expires_s(default_ttl_s()) or state.now_s)})"
            )
        )
        if waited_s:
            reason += f" (waited {waited_s:.0f} s)"
        self.reason = reason
        super().__init__(
            f"{state.serial} is {reason}",
            "wait for it with 'harness run --wait-for-lease', resume later with 'harness run --resume', "
            f"or if its holder died: 'harness lease release {state.serial}'",
        )


# --- phone side ------------------------------------------------------------------


def read_state(phone: Phone) -> LeaseState:
    """The phone's clock and lease, in one shell round trip."""
    command = (
        f"echo now=$(date +%s); stat -c folder_mtime=%Y {shlex.quote(LEASE_DIR)} 2>/dev/null; "
        f"echo ---; cat {shlex.quote(LEASE_INFO)} 2>/dev/null; true"
    )
    head, _, raw = phone.check_output(command, timeout_s=_TIMEOUT_S).partition("---\n")
    fields = dict(line.split("=", 1) for line in head.splitlines() if "=" in line)
    try:
        now = int(fields["now"])
    except (KeyError, ValueError):
        raise DeviceError(
            f"{phone.serial} did not tell its clock ('date +%s' printed {head.strip()[:80]!r})",
            "leases need toybox's date (Android 6 and later); sweep newer phones",
        ) from None
    mtime = fields.get("folder_mtime")
    return LeaseState(
        phone.serial,
        now,
        present=mtime is not None,
        info=LeaseInfo.parse(raw),
        folder_mtime_s=int(mtime) if mtime and mtime.isdigit() else None,
        raw=raw,
    )


def _write_info_command(info: LeaseInfo, path: str) -> str:
    return (
        "printf '%s\\n' " + " ".join(shlex.quote(line) for line in info.text().splitlines()) + f" > {shlex.quote(path)}"
    )


def _try_create(phone: Phone, owner: Owner, token: str, ttl_s: float) -> LeaseInfo | None:
    """mkdir the lease and write its info in one command; None when the folder exists already."""
    now = read_state(phone).now_s
    info = LeaseInfo(owner.host, owner.pid, owner.run_id, token, ttl_s, now, int(now + ttl_s))
    result = phone.shell(
        f"mkdir -p {shlex.quote(REMOTE_ROOT)} && mkdir {shlex.quote(LEASE_DIR)} 2>/dev/null && "
        f"{_write_info_command(info, LEASE_INFO)}",
        timeout_s=_TIMEOUT_S,
    )
    if result.exit_code is None:
        raise DeviceLost(
            f"{phone.serial} stopped answering while taking its lease", "check the cable or network, then run again"
        )
    return info if result.exit_code == 0 else None


def _claim(phone: Phone, token: str, accept: Callable[[str], bool]) -> bool:
    """Rename the lease to `lease.stale.TOKEN` (atomic: only one claimer gets it); keep and remove it when
    `accept(its info text)`, else put it back. True when removed."""
    stale = f"{LEASE_DIR}.stale.{token}"
    moved = phone.shell(
        f"mv {shlex.quote(LEASE_DIR)} {shlex.quote(stale)} 2>/dev/null && "
        f"{{ echo moved; cat {shlex.quote(stale + '/info')} 2>/dev/null; }}; true",
        timeout_s=_TIMEOUT_S,
    )
    if moved.exit_code is None:
        raise DeviceLost(f"{phone.serial} stopped answering while its lease was claimed", "run again")
    head, _, text = moved.text.partition("\n")
    if head != "moved":
        return False  # someone else renamed it first (or it is gone)
    if accept(text):
        phone.check_output(f"rm -r {shlex.quote(stale)}", timeout_s=_TIMEOUT_S)
        return True
    # Not the one judged: put it back, unless a new lease appeared meanwhile (then the old one is gone
    # for good and its holder finds out at its next renewal).
    phone.shell(
        f"[ -e {shlex.quote(LEASE_DIR)} ] || mv {shlex.quote(stale)} {shlex.quote(LEASE_DIR)}; "
        f"rm -rf {shlex.quote(stale)}",
        timeout_s=_TIMEOUT_S,
    )
    return False


def try_acquire(phone: Phone, owner: Owner, ttl_s: float, token: str | None = None) -> LeaseInfo | LeaseState:
    """Take the phone's lease (a free one, or an expired one): its info; else the state of the live lease."""
    token = token or secrets.token_hex(8)
    for _ in range(3):
        created = _try_create(phone, owner, token, ttl_s)
        if created is not None:
            return created
        state = read_state(phone)
        if not state.present:
            continue  # released between the mkdir and the look
        if state.info is None and not state.expired(ttl_s):
            # Caught between another contender's mkdir and its info write (one command): look again, so
            # that what we report names the holder.
            time.sleep(_INFO_WRITE_WAIT_S)
            continue
        if not state.expired(ttl_s):
            return state

        def unchanged(text: str, judged: str = state.raw) -> bool:
            return text == judged

        _claim(phone, token, unchanged)
    return read_state(phone)


def release(phone: Phone, token: str) -> bool:
    """Remove the lease if it is still the one of `token`; True when removed."""

    def ours(text: str) -> bool:
        info = LeaseInfo.parse(text)
        return info is not None and info.token == token

    return _claim(phone, token, ours)


def force_release(phone: Phone, force: bool = False) -> LeaseState:
    """`harness lease release`: remove a lease whose holder is gone. A live lease is refused (naming its
    holder) unless `force`. Returns the state found before."""
    state = read_state(phone)
    if not state.present:
        return state
    if not force and not state.expired(default_ttl_s()):
        holder = state.info.holder() if state.info else "a lease still being written"
        raise UsageError(
            f"{phone.serial} is leased by {holder} until "
            f"{utc_text(state.expires_s(default_ttl_s()) or state.now_s)}, which is not expired",
            f"let that sweep finish; if {holder} is dead, 'harness lease release {phone.serial} --force'",
        )
    judged = state.raw
    token = secrets.token_hex(8)
    if not _claim(phone, token, lambda text: force or text == judged):
        raise UsageError(
            f"the lease of {phone.serial} changed while it was being released",
            "look again with 'harness lease ls' and release again if it is still stale",
        )
    return state


def renew(phone: Phone, info: LeaseInfo) -> LeaseInfo | None:
    """Move the lease's expiry on by its TTL: the renewed info, or None when the lease is no longer this
    one's (taken over, released by force, or expired on the phone's clock: someone may be taking it)."""
    for attempt in range(3):
        state = read_state(phone)
        if state.info is not None and state.info.token == info.token:
            if state.expired(info.ttl_s):
                return None
            renewed = replace(info, expires_s=int(state.now_s + info.ttl_s))
            scratch = f"{LEASE_DIR}/info.{info.token}"
            result = phone.shell(
                f"{_write_info_command(renewed, scratch)} && mv {shlex.quote(scratch)} {shlex.quote(LEASE_INFO)}",
                timeout_s=_TIMEOUT_S,
            )
            if result.exit_code == 0:
                return renewed
        elif state.present and state.info is not None:
            return None  # another's lease
        time.sleep(0.2 * (attempt + 1))  # a contender's claim may hold it renamed for a moment
    return None


def read_states(entries: Sequence[DeviceEntry], timeout_s: float = _TIMEOUT_S) -> dict[str, LeaseState | str]:
    """Each usable phone's lease state, asked at once (by DeviceEntry.key); a string says why it is unknown."""
    usable = [entry for entry in entries if entry.usable]
    answers = in_parallel(lambda entry: read_state(Phone(entry.server, entry.serial)), usable, timeout_s)
    states: dict[str, LeaseState | str] = {}
    for entry, answer in zip(usable, answers, strict=False):
        if isinstance(answer, LeaseState):
            states[entry.key] = answer
        elif isinstance(answer, (DeviceError, TimeoutError)):
            states[entry.key] = f"unknown ({answer or 'no answer in time'})"
        else:
            raise answer
    return states


# --- the holder ------------------------------------------------------------------


class Lease:
    """A held lease: renewed in the background every TTL/4 until `release()`; `lost` is set when the
    renewal finds it is no longer ours."""

    def __init__(self, phone: Phone, info: LeaseInfo, renew_phone: Phone | None = None) -> None:
        self.phone = phone
        self.info = info
        self.lost = threading.Event()
        self.lost_reason = ""
        self._stop = threading.Event()
        self._renew_phone = renew_phone or phone
        self._thread = threading.Thread(target=self._renew_loop, daemon=True, name=f"lease-{phone.serial}")
        self._thread.start()

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.info.ttl_s / 4):
            try:
                renewed = renew(self._renew_phone, self.info)
            except DeviceError:
                continue  # unreachable for now: try again; the lease runs out if it stays so
            if renewed is None:
                with contextlib.suppress(DeviceError):
                    state = read_state(self._renew_phone)
                    self.lost_reason = LeaseBusy(state).reason if state.present else "the lease was released by force"
                self.lost_reason = self.lost_reason or "the lease expired before it could be renewed"
                self.lost.set()
                return
            self.info = renewed

    def release(self) -> None:
        """Stop renewing and remove the lease when it is still ours; a lost phone keeps it until it expires."""
        self._stop.set()
        # A renewal in flight on a frozen phone may take its deadlines; it never recreates a removed
        # lease (it writes inside the folder only), so the release need not wait for it.
        self._thread.join(timeout=1.0)
        if self.lost.is_set():
            return
        with contextlib.suppress(DeviceError):
            release(self.phone, self.info.token)


def acquire(
    phone: Phone,
    owner: Owner,
    ttl_s: float | None = None,
    wait_s: float | None = 0.0,
    stop: threading.Event | None = None,
    on_wait: Callable[[LeaseState], None] | None = None,
) -> Lease:
    """Take the phone's lease and start renewing it. `wait_s`: 0 raises LeaseBusy at once when someone
    else holds it, a number waits at most that long, None waits as long as it takes (polling every
    quarter TTL, at most every 10 s). `stop` ends a wait early (LeaseBusy)."""
    ttl_s = ttl_s or default_ttl_s()
    token = secrets.token_hex(8)
    started = time.monotonic()
    while True:
        taken = try_acquire(phone, owner, ttl_s, token)
        if isinstance(taken, LeaseInfo):
            return Lease(phone, taken, Phone(phone.server, phone.serial))
        waited = time.monotonic() - started
        if wait_s is not None and waited >= wait_s:
            raise LeaseBusy(taken, waited if wait_s else None)
        if on_wait is not None:
            on_wait(taken)
        pause = poll_s(ttl_s)
        if wait_s is not None:
            pause = min(pause, max(0.0, wait_s - waited))
        if stop is not None and stop.wait(pause):
            raise LeaseBusy(taken, waited)
        if stop is None:
            time.sleep(pause)
