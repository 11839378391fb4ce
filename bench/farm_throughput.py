"""Throughput and latency of one virtual device through the real adb server.

Starts its own adb server on a free port and one virtual device, then reports:
push of a 100 MB file via adbutils `device.sync.push` and via the `adb push`
command line (MB/s, 1 MB = 10^6 bytes), pull via adbutils, and the median
round trip of 100 `echo hi` calls over shell v1 and v2 (adbutils), plus the
same v2 round trip over a bare socket to the adb server (adbutils sleeps
10 ms on every connection close, which dominates its figures).

Usage: .venv/bin/python bench/farm_throughput.py [--size-mb 100] [--calls 100] [--profile FILE]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import adbutils

from harness.config import packaged_defaults
from harness.virtual_farm import farm as farm_lib

REPO = Path(__file__).resolve().parent.parent


def raw_shell_v2_ms(adb_port: int, serial: str, command: str) -> float:
    """One shell,v2 round trip speaking the adb client protocol directly."""

    def request(sock: socket.socket, text: str) -> None:
        sock.sendall(f"{len(text):04x}{text}".encode())
        status = sock.recv(4)
        assert status == b"OKAY", status

    started = time.perf_counter()
    with socket.create_connection(("127.0.0.1", adb_port)) as sock:
        request(sock, f"host:transport:{serial}")
        request(sock, f"shell,v2:{command}")
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
            if len(data) >= 6 and data[-6] == 3:  # exit packet: id 3, length 1, code
                break
    return (time.perf_counter() - started) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=int, default=100)
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--profile", type=Path, default=packaged_defaults() / "virtual" / "mid_nothing_phone_1.toml")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="farm-bench-"))
    profiles = work / "profiles"
    profiles.mkdir()
    shutil.copy(args.profile, profiles / args.profile.name)
    state_dir = work / "state"
    try:
        state = farm_lib.start_private(state_dir, profiles)
        port = state.adb_server_port
        serial = state.devices[0].serial
        device = adbutils.AdbClient(host="127.0.0.1", port=port).device(serial)
        size = args.size_mb * 1_000_000
        src = work / "payload.bin"
        with open(src, "wb") as f:
            for _ in range(args.size_mb):
                f.write(os.urandom(1_000_000))

        started = time.perf_counter()
        device.sync.push(src, "/data/local/tmp/payload_adbutils.bin")
        adbutils_push_s = time.perf_counter() - started

        started = time.perf_counter()
        cli = subprocess.run(
            [adbutils.adb_path(), "-P", str(port), "-s", serial, "push", str(src), "/data/local/tmp/payload_cli.bin"],
            capture_output=True,
            text=True,
            check=True,
        )
        cli_push_s = time.perf_counter() - started

        want = hashlib.sha256(src.read_bytes()).hexdigest()
        for remote in ("/data/local/tmp/payload_adbutils.bin", "/data/local/tmp/payload_cli.bin"):
            got = device.shell(["sha256sum", remote]).split()[0]
            assert got == want, f"{remote}: sha256 {got} != {want}"

        started = time.perf_counter()
        device.sync.pull("/data/local/tmp/payload_cli.bin", work / "back.bin")
        pull_s = time.perf_counter() - started
        assert hashlib.sha256((work / "back.bin").read_bytes()).hexdigest() == want

        v1 = [_timed(lambda: device.shell("echo hi")) for _ in range(args.calls)]
        v2 = [_timed(lambda: device.shell2("echo hi", v2=True)) for _ in range(args.calls)]
        raw = [raw_shell_v2_ms(port, serial, "echo hi") for _ in range(args.calls)]

        print(
            f"virtual device {state.devices[0].name} ({serial}), adb server port {port}, {args.size_mb} MB file"
            " (sha256 checked on the device after each push and locally after the pull)"
        )
        print(f"push  adbutils device.sync.push : {size / adbutils_push_s / 1e6:7.1f} MB/s ({adbutils_push_s:.2f} s)")
        print(
            f"push  adb push (command line)   : {size / cli_push_s / 1e6:7.1f} MB/s ({cli_push_s:.2f} s wall; adb says: {(cli.stdout + cli.stderr).strip().splitlines()[-1]})"
        )
        print(f"pull  adbutils device.sync.pull : {size / pull_s / 1e6:7.1f} MB/s ({pull_s:.2f} s)")
        print(f"shell v1 'echo hi' (adbutils)   : median {statistics.median(v1):6.2f} ms over {args.calls}")
        print(f"shell v2 'echo hi' (adbutils)   : median {statistics.median(v2):6.2f} ms over {args.calls}")
        print(f"shell v2 'echo hi' (raw socket) : median {statistics.median(raw):6.2f} ms over {args.calls}")
    finally:
        farm_lib.stop_private(state_dir)
        shutil.rmtree(work, ignore_errors=True)
    return 0


def _timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return (time.perf_counter() - started) * 1000


if __name__ == "__main__":
    sys.exit(main())
