"""One phone behind an adb server: facts, content-addressed push, shell with deadlines.

adbutils is used for the connection handshake only. Every exchange here has
its own deadline, because adbutils' own calls can block forever on a frozen
device (sync has no timeout at all) and a plain `shell()` on a dying device
can return partial output without an error: shell v2's exit-code packet is
the only proof a command finished.
"""

from __future__ import annotations

import shlex
import socket
import struct
import time
from dataclasses import dataclass
from pathlib import Path

import adbutils

from harness.errors import DeviceError
from harness.phone.facts import BATCHED_FACTS_COMMAND, DeviceInfo, device_info_from, parse_getprop, split_batched_facts
from harness.phone.profiles import AdbServer

REMOTE_ROOT = "/data/local/tmp/harness"
CONNECT_TIMEOUT_S = 10.0
DEFAULT_COMMAND_TIMEOUT_S = 30.0
_SYNC_CHUNK_BYTES = 64 * 1024  # adb's sync DATA limit
EXIT_NOT_FOUND = 127  # what sh (mksh, toolbox's sh) returns for a command it cannot find
SHELL_STDOUT, SHELL_STDERR, SHELL_EXIT = 1, 2, 3  # shell v2 packet ids (adb's shell_protocol.h)


class DeviceLost(DeviceError):
    """The transport to the phone is gone (unplugged, offline, frozen past a deadline)."""


@dataclass(frozen=True)
class ShellResult:
    """What one shell v2 command did. exit_code is None when it did not finish."""

    exit_code: int | None
    stdout: bytes
    stderr: bytes
    timed_out: bool = False

    @property
    def text(self) -> str:
        return self.stdout.decode("utf-8", errors="replace")


@dataclass(frozen=True)
class PhoneFacts:
    info: DeviceInfo
    props: dict[str, str]

    @property
    def modelled_sensors(self) -> bool:
        """A phone of this project's virtual farm: its battery and thermal zones follow a
        documented model (harness/defaults/virtual/README.md), they measure nothing."""
        return self.props.get("ro.harness.virtual") == "1"


def remote_path_for(sha256: str, name: str) -> str:
    """Where a file with this content lives on the phone: a folder per content hash."""
    return f"{REMOTE_ROOT}/{sha256[:16]}/{name}"


class Phone:
    def __init__(self, server: AdbServer, serial: str) -> None:
        self.server = server
        self.serial = serial
        self._client = adbutils.AdbClient(host=server.host, port=server.port, socket_timeout=CONNECT_TIMEOUT_S)

    def __repr__(self) -> str:
        return f"Phone({self.serial!r} on {self.server.address})"

    def _lost(self, what: str, error: BaseException) -> DeviceLost:
        return DeviceLost(
            f"{self.serial} on adb server {self.server.address} stopped answering during {what} ({error})",
            f"check the cable or network, then 'adb -P {self.server.port} reconnect' and run again",
        )

    def _open(self, service: str, timeout_s: float) -> adbutils.AdbConnection:
        try:
            # host:transport:SERIAL, which every adb server version knows: adbutils' open_transport first
            # asks the server's version on a second connection, which cost 10 ms per command (see close_stream).
            connection = self._client.make_connection(timeout=min(timeout_s, CONNECT_TIMEOUT_S))
            connection.send_command(f"host:transport:{self.serial}")
            connection.check_okay()
            connection.send_command(service)
            connection.check_okay()
        except (adbutils.AdbError, OSError) as error:
            raise self._lost(service.split(":", 1)[0], error) from error
        return connection

    # --- shell ---------------------------------------------------------------

    def shell(self, command: str, timeout_s: float = DEFAULT_COMMAND_TIMEOUT_S) -> ShellResult:
        """Run `command` with shell v2; on the deadline the stream is closed, which kills it.

        A transport that breaks mid-command gives a result with exit_code None
        (the caller decides whether that is a lost device); one that cannot
        even open raises DeviceLost.
        """
        deadline = time.monotonic() + timeout_s
        connection = self._open(f"shell,v2,raw:{command}", timeout_s)
        stdout, stderr = bytearray(), bytearray()
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return ShellResult(None, bytes(stdout), bytes(stderr), timed_out=True)
                connection.conn.settimeout(remaining)
                try:
                    kind, payload = read_shell_packet(connection.conn)
                except TimeoutError:
                    return ShellResult(None, bytes(stdout), bytes(stderr), timed_out=True)
                except (OSError, EOFError):
                    return ShellResult(None, bytes(stdout), bytes(stderr))
                if kind == SHELL_STDOUT:
                    stdout += payload
                elif kind == SHELL_STDERR:
                    stderr += payload
                elif kind == SHELL_EXIT:
                    return ShellResult(payload[0] if payload else 255, bytes(stdout), bytes(stderr))
        finally:
            close_stream(connection)

    def open_shell(self, command: str, timeout_s: float = CONNECT_TIMEOUT_S) -> adbutils.AdbConnection:
        """A shell v2 stream running `command`, left open: the caller reads it (read_shell_packet)
        and closes it, which ends the command. Raises DeviceLost when it cannot open."""
        return self._open(f"shell,v2,raw:{command}", timeout_s)

    def check_output(self, command: str, timeout_s: float = DEFAULT_COMMAND_TIMEOUT_S) -> str:
        """stdout of a command that must succeed; anything else means the phone is unusable."""
        result = self.shell(command, timeout_s)
        if result.exit_code is None:
            raise self._lost(
                f"'{command[:60]}'", TimeoutError("timed out") if result.timed_out else EOFError("no exit code")
            )
        if result.exit_code != 0:
            message = result.stderr.decode("utf-8", errors="replace").strip() or result.text.strip()
            raise DeviceError(
                f"'{command[:60]}' failed on {self.serial} with exit code {result.exit_code}: {message[:300]}",
                "run it by hand with 'adb shell' to see why",
            )
        return result.text

    # --- facts ---------------------------------------------------------------

    def facts(self, timeout_s: float = DEFAULT_COMMAND_TIMEOUT_S) -> PhoneFacts:
        sections = split_batched_facts(self.check_output(BATCHED_FACTS_COMMAND, timeout_s))
        info = device_info_from(
            self.serial,
            sections.get("getprop", ""),
            sections.get("meminfo", ""),
            sections.get("cpuinfo", ""),
            sections.get("cpufreq", ""),
        )
        return PhoneFacts(info, parse_getprop(sections.get("getprop", "")))

    # --- files ---------------------------------------------------------------

    def remote_sha256(self, remote: str) -> str | None:
        """The file's sha256 as the phone computes it; None when it is absent (or unreadable)."""
        result = self.shell(f"sha256sum {shlex.quote(remote)} 2>/dev/null")
        if result.exit_code == EXIT_NOT_FOUND:
            raise DeviceError(
                f"{self.serial} has no 'sha256sum' command (exit code 127), so pushed files cannot be checked",
                "the harness needs toybox's sha256sum (Android 6 and later); on an older phone put a static "
                "busybox on its PATH as sha256sum, or sweep newer phones",
            )
        if result.exit_code != 0:
            return None
        first = result.text.split(maxsplit=1)
        return first[0] if first else None

    def ensure_file(
        self, local: Path, sha256: str, mode: int = 0o644, timeout_s: float = 300.0, remote: str | None = None
    ) -> tuple[str, int]:
        """Put `local` at `remote` (default: its content-addressed path); returns (remote path, bytes pushed).

        The device's own sha256sum decides: an identical file already there
        costs one shell round trip and zero bytes.
        """
        remote = remote or remote_path_for(sha256, local.name)
        if self.remote_sha256(remote) == sha256:
            return remote, 0
        self.check_output(f"mkdir -p {shlex.quote(remote.rsplit('/', 1)[0])}")
        pushed = self.push(local, remote, mode, timeout_s)
        if self.remote_sha256(remote) != sha256:
            raise DeviceError(
                f"{local.name} arrived corrupted on {self.serial} (sha256 differs after push)",
                "check the device's free space ('adb shell df /data') and run again",
            )
        return remote, pushed

    def push(self, local: Path, remote: str, mode: int = 0o644, timeout_s: float = 300.0) -> int:
        """adb sync SEND with a deadline (adbutils' push has none)."""
        deadline = time.monotonic() + timeout_s
        connection = self._open("sync:", timeout_s)
        sent = 0
        try:
            sock = connection.conn
            target = f"{remote},{0o100000 | mode}".encode()
            sock.settimeout(max(0.1, deadline - time.monotonic()))
            sock.sendall(b"SEND" + struct.pack("<I", len(target)) + target)
            with local.open("rb") as handle:
                for chunk in iter(lambda: handle.read(_SYNC_CHUNK_BYTES), b""):
                    sock.settimeout(max(0.1, deadline - time.monotonic()))
                    sock.sendall(b"DATA" + struct.pack("<I", len(chunk)) + chunk)
                    sent += len(chunk)
            sock.sendall(b"DONE" + struct.pack("<I", int(time.time())))
            sock.settimeout(max(0.1, deadline - time.monotonic()))
            status = read_exact(sock, 8)
            if status[:4] != b"OKAY":
                reason = read_exact(sock, struct.unpack("<I", status[4:])[0]).decode("utf-8", errors="replace")
                raise DeviceError(
                    f"pushing {local.name} to {self.serial}:{remote} failed: {reason}",
                    "free space on the phone ('adb shell df /data') or check the path, then run again",
                )
        except (OSError, EOFError) as error:
            raise self._lost(f"push of {local.name}", error) from error
        finally:
            close_stream(connection)
        return sent

    def pull(self, remote: str, timeout_s: float = 60.0, max_bytes: int = 256 * 1024 * 1024) -> bytes:
        """A file's bytes by adb sync RECV, with a deadline (adbutils' pull has none).

        Raises DeviceError when the phone refuses (no such file: the message says so),
        DeviceLost when the transport breaks.
        """
        deadline = time.monotonic() + timeout_s
        connection = self._open("sync:", timeout_s)
        data = bytearray()
        try:
            sock = connection.conn
            path = remote.encode()
            sock.settimeout(max(0.1, deadline - time.monotonic()))
            sock.sendall(b"RECV" + struct.pack("<I", len(path)) + path)
            while True:
                sock.settimeout(max(0.1, deadline - time.monotonic()))
                header = read_exact(sock, 8)
                kind, length = header[:4], struct.unpack("<I", header[4:])[0]
                if kind == b"DONE":
                    return bytes(data)
                payload = read_exact(sock, length)
                if kind == b"FAIL":
                    raise DeviceError(
                        f"pulling {remote} from {self.serial} failed: {payload.decode('utf-8', errors='replace')}",
                        "check that the file exists ('adb shell ls -l PATH')",
                    )
                if kind != b"DATA" or len(data) + length > max_bytes:
                    raise DeviceError(
                        f"pulling {remote} from {self.serial}: unexpected {kind!r} after {len(data)} bytes",
                        "run again; if it persists, update the adb server",
                    )
                data += payload
        except (OSError, EOFError) as error:
            raise self._lost(f"pull of {remote}", error) from error
        finally:
            try:
                connection.conn.sendall(b"QUIT" + struct.pack("<I", 0))
            except OSError:
                pass
            close_stream(connection)


def close_stream(connection: adbutils.AdbConnection) -> None:
    """Closes an adb stream at once, which ends it (and kills its command) on the phone.

    adbutils' own close() shuts down the write side and sleeps 10 ms "to make sure the shutdown is
    processed"; the adb server needs no such wait, and a sweep paid it on every command: an `echo ok`
    round trip to a virtual phone took 21 ms through it and under 1 ms on the raw protocol.
    """
    try:
        connection.conn.close()
    except OSError:
        pass


def read_shell_packet(sock: socket.socket) -> tuple[int, bytes]:
    """One shell v2 packet: (id, payload). EOFError when the stream ends, socket.timeout on the socket's deadline."""
    header = read_exact(sock, 5)
    return header[0], read_exact(sock, struct.unpack("<I", header[1:])[0])


def read_exact(sock: socket.socket, size: int) -> bytes:
    """Exactly `size` bytes from a socket; EOFError when the peer closes first."""
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise EOFError(f"connection closed after {len(data)} of {size} bytes")
        data += chunk
    return bytes(data)
