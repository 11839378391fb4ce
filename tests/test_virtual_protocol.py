"""adb framing and the device's flow control, spoken by hand to a real device process."""

from __future__ import annotations

import json
import socket
import struct
import subprocess
import sys
import time

import pytest
from tiers import slow_fixture

from harness.config import packaged_defaults
from harness.virtual_farm.protocol import (
    A_VERSION,
    HEADER_SIZE,
    Command,
    ProtocolError,
    decode_header,
    device_banner,
    encode_header,
)

PROFILE = packaged_defaults() / "virtual" / "high_pixel_8_pro.toml"


def test_header_round_trip_and_magic():
    raw = encode_header(Command.WRTE, 7, 9, 1234)
    assert len(raw) == HEADER_SIZE == 24
    assert raw[:4] == b"WRTE" and struct.unpack("<6I", raw)[5] == struct.unpack("<I", b"WRTE")[0] ^ 0xFFFFFFFF
    header = decode_header(raw)
    assert (header.command, header.arg0, header.arg1, header.data_length) == (Command.WRTE, 7, 9, 1234)
    with pytest.raises(ProtocolError):
        decode_header(raw[:20] + bytes(4))


def test_banner_has_no_trailing_nul():
    banner = device_banner("husky", "Pixel 8 Pro", "husky")
    assert banner.startswith(
        b"device::ro.product.name=husky;ro.product.model=Pixel 8 Pro;ro.product.device=husky;features="
    )
    assert b"shell_v2" in banner and b"stat_v2" in banner and not banner.endswith(b"\0")
    with pytest.raises(ValueError):
        device_banner("a;b", "m", "d")


class RawServerSide:
    """Just enough of the adb server's side of the transport to probe a device."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)

    def send(self, command: Command, arg0: int, arg1: int, payload: bytes = b"") -> None:
        self.sock.sendall(encode_header(command, arg0, arg1, len(payload)) + payload)

    def recv(self, timeout: float = 5.0) -> tuple[Command, int, int, bytes]:
        self.sock.settimeout(timeout)
        header = decode_header(self._exactly(HEADER_SIZE))
        return header.command, header.arg0, header.arg1, self._exactly(header.data_length)

    def _exactly(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("device closed the connection")
            data += chunk
        return data


@slow_fixture(scope="module")
def device_port(tmp_path_factory):
    base = tmp_path_factory.mktemp("rawdev")
    ready = base / "ready.json"
    with open(base / "device.log", "wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "harness.virtual_farm",
                "--profile",
                str(PROFILE),
                "--root",
                str(base / "root"),
                "--ready-file",
                str(ready),
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 20
        while not ready.exists():
            assert proc.poll() is None and time.monotonic() < deadline, (base / "device.log").read_text()
            time.sleep(0.02)
        yield json.loads(ready.read_text())["adb_port"]
    finally:
        proc.terminate()
        proc.wait(10)


def connect(port: int, max_payload: int) -> RawServerSide:
    link = RawServerSide(port)
    link.send(Command.CNXN, A_VERSION, max_payload, b"host::features=shell_v2\0")
    command, version, device_max, banner = link.recv()
    assert command is Command.CNXN and version == A_VERSION and device_max == 1024 * 1024
    assert banner.startswith(b"device::ro.product.name=husky;ro.product.model=Virtual Pixel 8 Pro;")
    return link


def test_one_unacknowledged_write_per_stream(device_port):
    link = connect(device_port, max_payload=4096)  # the device must use min(ours, its own)
    link.send(Command.OPEN, 11, 0, b"shell:cat /proc/cpuinfo\0")
    command, local_id, remote_id, _ = link.recv()
    assert (command, remote_id) == (Command.OKAY, 11)
    command, arg0, arg1, first = link.recv()
    assert command is Command.WRTE and (arg0, arg1) == (local_id, 11) and len(first) == 4096
    with pytest.raises(socket.timeout):
        link.recv(timeout=0.5)  # nothing more until we acknowledge
    received = first
    while True:
        link.send(Command.OKAY, 11, local_id)
        command, _, _, payload = link.recv()
        if command is Command.CLSE:
            break
        assert command is Command.WRTE and len(payload) <= 4096
        received += payload
    assert received.count(b"processor\t:") == 9


def test_unknown_services_are_refused_and_writes_are_reassembled(device_port):
    link = connect(device_port, max_payload=1024 * 1024)
    link.send(Command.OPEN, 21, 0, b"reboot:\0")
    assert link.recv()[:3] == (Command.CLSE, 0, 21)
    link.send(Command.OPEN, 22, 0, b"sync:\0")
    command, local_id, _, _ = link.recv()
    assert command is Command.OKAY
    request = b"STAT" + struct.pack("<I", len(b"/proc/cpuinfo")) + b"/proc/cpuinfo"
    for piece in (request[:3], request[3:10], request[10:]):  # WRTE boundaries are not message boundaries
        link.send(Command.WRTE, 22, local_id, piece)
    packets = [link.recv() for _ in range(4)]  # 3 OKAYs and the reply, in whichever order
    assert sum(p[:3] == (Command.OKAY, local_id, 22) for p in packets) == 3
    reply = next(p[3] for p in packets if p[0] is Command.WRTE)
    ident, mode, size, _mtime = struct.unpack("<4sIII", reply)
    # The phone's /proc/cpuinfo is the model's generated file bound over procfs's: a regular read-only file
    # with its real size (the kernel's own procfs files report 0).
    assert ident == b"STAT" and mode == 0o100444 and size > 0
    link.send(Command.OKAY, 22, local_id)
    link.send(Command.CLSE, 22, local_id)
