"""Run one virtual device: `python -m harness.virtual_farm --profile P --root DIR --ready-file F`.

`harness farm up` starts these detached; running one by hand is for debugging.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import resource
import sys
from pathlib import Path

from harness.virtual_farm.device import VirtualDevice
from harness.virtual_farm.profile import load_profile
from harness.virtual_farm.server import DeviceServer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.virtual_farm", description=__doc__)
    parser.add_argument("--profile", type=Path, required=True, help="device profile TOML")
    parser.add_argument(
        "--root", type=Path, required=True, help="the phone's host folder (/system/bin, generated files)"
    )
    parser.add_argument("--ready-file", type=Path, required=True, help="where to write pid and ports once listening")
    parser.add_argument("--exec-lock", type=Path, help="host-wide lock file serialising benchmarks (omit for parallel)")
    args = parser.parse_args(argv)

    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # nsenter re-raises the signal that killed a phone's program: no core file may land on this host.
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    profile = load_profile(args.profile)
    log = logging.getLogger(f"device.{profile.name}")
    args.root.mkdir(parents=True, exist_ok=True)
    device = VirtualDevice(profile, args.root, args.exec_lock, log)
    asyncio.run(DeviceServer(device, log).serve(args.ready_file))
    return 0


if __name__ == "__main__":
    sys.exit(main())
