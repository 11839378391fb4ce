"""One virtual device: its profile, files, model, processes and executor.

Everything a service (shell, sync) needs hangs off this object; the adb
transport itself lives in server.py / transport.py.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

from harness.virtual_farm.commands import BUILTINS
from harness.virtual_farm.device_model import CpuAccounting, DeviceModel
from harness.virtual_farm.execution import CoreMap, Executor
from harness.virtual_farm.processes import ProcessTable
from harness.virtual_farm.procfs import generated_files
from harness.virtual_farm.profile import Profile
from harness.virtual_farm.sandbox import DeviceFS

MODEL_TICK_S = 0.5


class VirtualDevice:
    def __init__(self, profile: Profile, root: Path, lock_path: Path | None, log: logging.Logger) -> None:
        self.profile = profile
        self.log = log
        self.props = dict(profile.props)  # setprop changes this copy only
        self.accounting = CpuAccounting()
        self.model = DeviceModel(profile, self.accounting)
        self.fs = DeviceFS(root, profile.storage_quota_bytes, generated_files(profile, self.model, self.accounting))
        self.processes = ProcessTable()
        self.builtins = BUILTINS
        self.core_map = CoreMap(profile.core_count, os.sched_getaffinity(0))
        self.executor = Executor(
            root=self.fs.root,
            core_map=self.core_map,
            data_limit_bytes=profile.process_mem_limit_bytes,
            delegates=",".join(d.value for d in profile.delegates),
            accounting=self.accounting,
            processes=self.processes,
            lock_path=lock_path,
            log=log,
        )
        log.info(
            "device %s (%s): %d cores mapped onto host CPUs: %s",
            profile.name,
            profile.model,
            profile.core_count,
            self.core_map.describe(),
        )

    @property
    def all_cores(self) -> frozenset[int]:
        return frozenset(range(self.profile.core_count))

    async def run_model(self) -> None:
        """Keep the power/thermal model integrating while programs run."""
        while True:
            self.model.advance()
            await asyncio.sleep(MODEL_TICK_S)
