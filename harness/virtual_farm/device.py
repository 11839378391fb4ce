"""One virtual device: its profile, its sandbox (real mksh and toybox), its model and its faults.

Everything a service (shell, sync) needs hangs off this object; the adb
transport itself lives in server.py / transport.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from pathlib import Path

from harness.virtual_farm.device_model import CpuAccounting, DeviceModel
from harness.virtual_farm.procfs import generated_files
from harness.virtual_farm.profile import Profile
from harness.virtual_farm.sandbox import PhoneSandbox, SandboxSpec, prepare_folder, write_generated
from harness.virtual_farm.shims import shims

MODEL_TICK_S = 0.5
CONTROL_POLL_S = 0.025  # how often the model looks for a `dumpsys battery unplug|reset` request


class CoreMap:
    """Device core i runs on host CPU host_cpus[i % len(host_cpus)]."""

    def __init__(self, core_count: int, host_cpus: set[int] | list[int]) -> None:
        self.core_count = core_count
        self.host_cpus = sorted(host_cpus)

    def describe(self) -> str:
        return ", ".join(f"cpu{c}->host{self.host_cpus[c % len(self.host_cpus)]}" for c in range(self.core_count))


class VirtualDevice:
    def __init__(self, profile: Profile, folder: Path, lock_path: Path | None, log: logging.Logger) -> None:
        self.profile = profile
        self.log = log
        self.props = dict(profile.props)
        self.core_map = CoreMap(profile.core_count, os.sched_getaffinity(0))
        self.spec = SandboxSpec(
            folder=folder.resolve(),
            quota_bytes=profile.storage_quota_bytes,
            shims=shims(profile.core_count, self.core_map.host_cpus),
            hostname=profile.props.get("ro.product.device", "localhost"),
            bench_lock=lock_path.resolve() if lock_path is not None else None,
            data_limit_kb=profile.process_mem_limit_bytes // 1024,
            python_env={"HARNESS_DEVICE_DELEGATES": ",".join(d.value for d in profile.delegates)},
        )
        self.sandbox = PhoneSandbox(self.spec)
        self.accounting = CpuAccounting(profile.core_count, self._proc_root)
        self.model = DeviceModel(profile, self.accounting)
        self.files = generated_files(profile, self.model, self.accounting)
        self.crash_next = False  # set by the `crash-next` fault, consumed by the next program a shell starts
        self.corrupt_outputs: set[str] = set()  # delegates whose saved outputs the `corrupt-outputs` fault garbles
        self.hidden: set[str] = set()  # commands the `hide` fault removed from /system/bin
        prepare_folder(self.spec, self.props)
        write_generated(self.spec.generated, self.files)
        self.sandbox.start()
        log.info(
            "device %s (%s): sandbox pid %d; %d cores mapped onto host CPUs: %s",
            profile.name,
            profile.model,
            self.sandbox.init_pid,
            profile.core_count,
            self.core_map.describe(),
        )

    def _proc_root(self) -> str | None:
        return f"/proc/{self.sandbox.init_pid}/root/proc" if self.sandbox.init_pid else None

    @property
    def all_cores(self) -> frozenset[int]:
        return frozenset(range(self.profile.core_count))

    def hide(self, command: str) -> None:
        """The `hide` fault: the command is gone from /system/bin, as on a phone without it."""
        path = self.spec.system_bin / command
        if not os.path.lexists(path):
            raise ValueError(f"hide needs one of the device's commands, got {command!r}")
        path.unlink()
        self.hidden.add(command)

    def _apply_control(self) -> bool:
        request = self.spec.control / "battery"
        try:
            op = request.read_text().strip()
        except FileNotFoundError:
            return False
        if op == "unplug":
            self.model.unplug()
        elif op == "reset":
            self.model.reset()
        write_generated(self.spec.generated, self.files)
        with contextlib.suppress(FileNotFoundError):
            request.unlink()  # the shim waits for this: the model has taken the request
        return True

    async def run_model(self) -> None:
        """Keep the power/thermal model integrating and its files current while programs run."""
        last = 0.0
        while True:
            now = time.monotonic()
            if not self._apply_control() and now - last >= MODEL_TICK_S:
                last = now
                self.model.advance()
                write_generated(self.spec.generated, self.files)
            await asyncio.sleep(CONTROL_POLL_S)

    def running_programs(self) -> int:
        """Processes in the sandbox besides its own two (bwrap's reaper and the waiting first process)."""
        root = self._proc_root()
        if root is None:
            return 0
        try:
            return max(0, sum(1 for name in os.listdir(root) if name.isdigit()) - 2)
        except OSError:
            return 0

    def close(self) -> None:
        self.sandbox.stop()
