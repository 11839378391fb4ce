"""Running a program the device was asked to execute, for real, on this host.

Only the project's x86_64 runner (a Python zipapp holding
harness/runner/__main__.py) runs: `[sys.executable, file, *args]`, limited to
the profile's cores mapped onto this host's CPUs, with RLIMIT_DATA from the
profile, its output streamed as it comes. Other files fail as on a phone.
One program at a time per host (an flock on a lock file in the farm's state
folder) unless the farm runs in parallel mode.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import fcntl
import logging
import os
import resource
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import IO

from harness.virtual_farm.device_model import CpuAccounting
from harness.virtual_farm.processes import ProcessTable
from harness.virtual_farm.shell_io import ShellIO, Sink

RUNNER_MARKER = "harness/runner/__main__.py"
CRASH_DELAY_S = 0.5  # crash-next fires at the first output, or after this long
_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)


class ProgramKind(str, Enum):
    RUNNER_ZIPAPP = "runner_zipapp"
    SHELL_SCRIPT = "shell_script"
    ELF = "elf"
    FOREIGN_SCRIPT = "foreign_script"  # a #! interpreter the device does not have


@dataclass(frozen=True)
class Program:
    kind: ProgramKind
    elf_bits: int | None = None


def classify(host_file: Path) -> Program:
    with open(host_file, "rb") as f:
        head = f.read(64)
    if head.startswith(b"\x7fELF"):
        return Program(ProgramKind.ELF, 32 if head[4:5] == b"\x01" else 64)
    if head.startswith(b"#!"):
        interpreter = head[2:].split(b"\n", 1)[0].strip()
        if interpreter.split()[:1] in ([b"/system/bin/sh"], [b"/bin/sh"]):
            return Program(ProgramKind.SHELL_SCRIPT)
        if zipfile.is_zipfile(host_file):
            with zipfile.ZipFile(host_file) as z:
                names = set(z.namelist())
            if RUNNER_MARKER in names and "__main__.py" in names:
                return Program(ProgramKind.RUNNER_ZIPAPP)
        return Program(ProgramKind.FOREIGN_SCRIPT)
    # mksh runs a file without #! that the kernel refuses (ENOEXEC) as a script.
    return Program(ProgramKind.SHELL_SCRIPT)


@dataclass(frozen=True)
class ExitStatus:
    code: int  # what the shell reports: 128 + signal when killed
    signal: int | None


class CoreMap:
    """Device core i runs on host CPU host_cpus[i % len(host_cpus)]."""

    def __init__(self, core_count: int, host_cpus: Iterable[int]) -> None:
        self.core_count = core_count
        self.host_cpus = sorted(host_cpus)

    def host_cpus_for(self, device_cores: Iterable[int]) -> set[int]:
        return {self.host_cpus[c % len(self.host_cpus)] for c in device_cores}

    def describe(self) -> str:
        return ", ".join(f"cpu{c}->host{self.host_cpus[c % len(self.host_cpus)]}" for c in range(self.core_count))


def _child_setup(host_cpus: set[int], data_limit_bytes: int) -> Callable[[], None]:
    def setup() -> None:
        os.sched_setaffinity(0, host_cpus)
        resource.setrlimit(resource.RLIMIT_DATA, (data_limit_bytes, data_limit_bytes))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a crash must not drop core files in the sandbox
        # Die with the device process, even if it is SIGKILLed.
        _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)

    return setup


class Executor:
    def __init__(
        self,
        root: Path,
        core_map: CoreMap,
        data_limit_bytes: int,
        delegates: str,
        accounting: CpuAccounting,
        processes: ProcessTable,
        lock_path: Path | None,
        log: logging.Logger,
    ) -> None:
        self.root = root
        self.core_map = core_map
        self.data_limit_bytes = data_limit_bytes
        self.delegates = delegates
        self.accounting = accounting
        self.processes = processes
        self.lock_path = lock_path
        self.log = log
        self.crash_next = False  # set by the `crash-next` fault, consumed by the next run
        self.corrupt_outputs: set[str] = set()  # delegates whose saved outputs the `corrupt-outputs` fault garbles

    @contextlib.asynccontextmanager
    async def _host_lock(self) -> AsyncIterator[None]:
        if self.lock_path is None:
            yield
            return
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            waited = False
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if not waited:
                        self.log.info("waiting for the host benchmark lock %s", self.lock_path)
                        waited = True
                    await asyncio.sleep(0.05)
            yield
        finally:
            os.close(fd)  # releases the lock

    def child_env(self, shell_env: dict[str, str]) -> dict[str, str]:
        env = dict(shell_env)
        # Device paths mean nothing to a host process: point these into the sandbox.
        env["HOME"] = str(self.root)
        env["TMPDIR"] = str(self.root / "data/local/tmp")
        env.update(
            {
                "HARNESS_DEVICE_ROOT": str(self.root),
                "HARNESS_DEVICE_DELEGATES": self.delegates,
                "PYTHONUNBUFFERED": "1",  # stream output as it comes, as a native binary would
                "PYTHONDONTWRITEBYTECODE": "1",
                "PYTHONNOUSERSITE": "1",
            }
        )
        if "LD_LIBRARY_PATH" in os.environ and "LD_LIBRARY_PATH" not in shell_env:
            env["LD_LIBRARY_PATH"] = os.environ["LD_LIBRARY_PATH"]
        return env

    async def run(
        self,
        host_file: Path,
        argv: list[str],
        host_cwd: Path,
        shell_env: dict[str, str],
        device_cores: frozenset[int],
        io: ShellIO,
        ppid: int,
    ) -> ExitStatus:
        host_cpus = self.core_map.host_cpus_for(device_cores)
        async with self._host_lock():
            started = time.monotonic()
            proc = subprocess.Popen(
                [sys.executable, str(host_file), *argv[1:]],
                cwd=host_cwd,
                env=self.child_env(shell_env),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                preexec_fn=_child_setup(host_cpus, self.data_limit_bytes),
                close_fds=True,
            )
            entry = self.processes.add(argv[0].rsplit("/", 1)[-1], ppid, lambda sig: os.kill(proc.pid, sig), proc.pid)
            self.accounting.started(proc.pid, device_cores)
            self.log.info(
                "exec pid=%d (device pid %d) cores=%s host_cpus=%s argv=%s",
                proc.pid,
                entry.pid,
                sorted(device_cores),
                sorted(host_cpus),
                argv,
            )
            first_output = asyncio.Event()
            crash: asyncio.Task[None] | None = None
            if self.crash_next:
                self.crash_next = False
                crash = asyncio.create_task(self._crash_soon(proc.pid, first_output))
            pumps = [
                asyncio.create_task(_pump(proc.stdout, io.stdout, first_output)),
                asyncio.create_task(_pump(proc.stderr, io.stderr, first_output)),
            ]
            status: int | None = None
            cpu_s = 0.0
            try:
                status, cpu_s = await _wait_exit(proc.pid)
                await asyncio.gather(*pumps)
            finally:
                if crash is not None:
                    crash.cancel()
                if status is None:  # cancelled: the server closed the stream or the shell was killed
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(proc.pid, signal.SIGKILL)
                    _, status, usage = os.wait4(proc.pid, 0)
                    cpu_s = usage.ru_utime + usage.ru_stime
                    for p in pumps:
                        p.cancel()
                proc.returncode = os.waitstatus_to_exitcode(status)  # we reaped it, not Popen
                self.accounting.finished(proc.pid, cpu_s)
                self.processes.remove(entry.pid)
                for pipe in (proc.stdout, proc.stderr):
                    if pipe is not None:
                        pipe.close()
                self.log.info(
                    "exit pid=%d code=%d cpu=%.2fs wall=%.2fs",
                    proc.pid,
                    proc.returncode,
                    cpu_s,
                    time.monotonic() - started,
                )
        code = proc.returncode
        return ExitStatus(128 - code, -code) if code < 0 else ExitStatus(code, None)

    def garble_outputs(self, argv: list[str], host_file: Callable[[str], Path | None]) -> None:
        """The `corrupt-outputs DELEGATE` fault, a stand-in for a buggy delegate driver: a program that ran on
        that delegate and saved its outputs (--output_filepath) finds them byte-reversed, still the right size."""
        flags = dict(arg[2:].split("=", 1) for arg in argv[1:] if arg.startswith("--") and "=" in arg)
        if not flags.get("output_filepath") or delegate_of(flags) not in self.corrupt_outputs:
            return
        path = host_file(flags["output_filepath"])
        if path is not None and path.is_file():
            self.log.info("corrupt-outputs: garbling %s", flags["output_filepath"])
            path.write_bytes(path.read_bytes()[::-1])

    async def _crash_soon(self, host_pid: int, first_output: asyncio.Event) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(first_output.wait(), CRASH_DELAY_S)
        self.log.info("crash-next: sending SIGSEGV to pid %d", host_pid)
        with contextlib.suppress(ProcessLookupError):
            os.kill(host_pid, signal.SIGSEGV)


def delegate_of(flags: dict[str, str]) -> str:
    """Which delegate benchmark_model's flags ask for (as the harness passes them: one per run).

    LiteRT 2.x's tool asks with use_npu / use_gpu / use_cpu; its CPU path is XNNPACK.
    """
    for delegate in ("npu", "gpu", "nnapi", "xnnpack"):
        if flags.get(f"use_{delegate}", "").lower() in ("true", "1"):
            return delegate
    return "xnnpack" if "use_cpu" in flags else "cpu"


async def _wait_exit(pid: int) -> tuple[int, float]:
    """Wait without blocking the loop (pidfd), then reap with wait4 for the CPU time."""
    loop = asyncio.get_running_loop()
    pidfd = os.pidfd_open(pid)
    done: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not done.done():
            done.set_result(None)

    loop.add_reader(pidfd, wake)
    try:
        await done
    finally:
        loop.remove_reader(pidfd)
        os.close(pidfd)
    _, status, usage = os.wait4(pid, 0)
    return status, usage.ru_utime + usage.ru_stime


async def _pump(pipe: IO[bytes] | None, sink: Sink, first_output: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), pipe)
    broken = False
    try:
        while chunk := await reader.read(64 * 1024):
            first_output.set()
            if broken:
                continue  # keep draining so the program never blocks on a full pipe
            try:
                await sink.write(chunk)
                await sink.flush()
            except OSError:  # full disk, closed pipe, closed adb stream (WriteError, BrokenPipeError, StreamClosed)
                broken = True
    finally:
        transport.close()
