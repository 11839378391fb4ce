"""One virtual phone as a real Linux sandbox: bubblewrap namespaces, Android's real shell and tools.

A long-lived `bwrap` per phone holds a private mount and pid namespace:

    /usr, /lib*, /bin      read-only binds of the host's (toybox, mksh and the loader live there)
    /system/bin            mksh as `sh`, one symlink per toybox command, the Android shims, `python3`
    <venv>, <base python>  read-only binds at their host paths (the runner zipapp's interpreter)
    /data                  a tmpfs of the profile's storage quota: a full disk is a real ENOSPC
    /sdcard                -> /data/media/0, as on a phone
    /proc                  the sandbox's own procfs, with /proc/cpuinfo and /proc/meminfo bound over
    /sys                   a generated tree (cpufreq, thermal zones, power supply) the model rewrites
    /dev                   bwrap's minimal /dev, plus the phone's own folders the shims use:
                           /dev/__properties__ (getprop/setprop), /dev/__services__ (generated reports),
                           /dev/__control__ (requests to the phone's model), /dev/__bench__ (the host-wide lock)

Each shell command enters it with `nsenter` (mount + pid namespace, the sandbox's root and working
directory) and runs `/system/bin/sh -c CMD`, so what the command executes is confined by the
namespaces, not by path translation.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import select
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from harness.errors import DeviceError

SANDBOX_TOOLS = ("bwrap", "mksh", "toybox", "nsenter")
TOYBOX = "/usr/bin/toybox"
MKSH = "/usr/bin/mksh"
# The shell adbd starts: PATH, HOME and TMPDIR as on a phone's `adb shell`.
SHELL_ENV = {
    "PATH": "/system/bin",
    "HOME": "/",
    "TMPDIR": "/data/local/tmp",
    "ANDROID_DATA": "/data",
    "ANDROID_ROOT": "/system",
    "EXTERNAL_STORAGE": "/sdcard",
}
SHELL_UID = 2000  # adb's `shell` user, as on a phone
WRITABLE_DIRS = ("data/local/tmp", "data/media/0")
# Commands toybox would otherwise provide that a phone's shell must not have, or that a shim replaces.
_NOT_FROM_TOYBOX = frozenset({"sh", "taskset"})


class SandboxUnavailable(DeviceError):
    """Namespaces cannot be created here (or a tool is missing): names the cause and the fix."""


@functools.cache
def _python_prefixes() -> tuple[str, ...]:
    """The interpreter and every folder the runner's imports come from, bound read-only at their host paths.

    That is the prefixes, sys.path as the interpreter sees it on its own (-I: site-packages and the folders
    .pth files add, as in a pipx venv or a test's venv that reuses installed packages; not the device
    process's PYTHONPATH, which may be the project's checkout), and the targets of packages linked into them.
    """
    probe = subprocess.run(
        [sys.executable, "-I", "-c", "import json, sys; print(json.dumps(sys.path))"],
        capture_output=True,
        text=True,
        check=True,
    )
    folders = {sys.prefix, sys.base_prefix}
    for entry in json.loads(probe.stdout):
        if not os.path.isdir(entry):
            continue
        folders.add(entry)
        with os.scandir(entry) as items:
            folders.update(os.path.dirname(os.path.realpath(item.path)) for item in items if item.is_symlink())
    kept: list[str] = []
    for path in sorted({os.path.realpath(folder) for folder in folders}):  # a folder before those inside it
        already_bound = path in ("/", "/usr") or path.startswith("/usr/")
        if already_bound or any(path.startswith(k + os.sep) for k in kept):
            continue
        kept.append(path)
    return tuple(kept)


@dataclass(frozen=True)
class SandboxSpec:
    """What one phone's sandbox is made of; `folder` is the phone's host folder (generated files, /system/bin)."""

    folder: Path
    quota_bytes: int
    python_prefixes: tuple[str, ...] = field(default_factory=_python_prefixes)
    shims: Mapping[str, str] = field(default_factory=dict)  # name -> script text, installed in /system/bin
    real_cpu_tree: bool = False  # bind the host's /sys/devices/system/cpu instead of the generated one
    hostname: str = "localhost"
    bench_lock: Path | None = None  # host-wide lock file the python3 shim takes (None: parallel mode)
    data_limit_kb: int | None = None  # RLIMIT_DATA of programs python3 starts (ulimit -d)
    python_env: Mapping[str, str] = field(default_factory=dict)  # exported by the python3 shim

    @property
    def system_bin(self) -> Path:
        return self.folder / "system" / "bin"

    @property
    def generated(self) -> Path:
        return self.folder / "generated"

    @property
    def properties(self) -> Path:
        return self.folder / "properties"

    @property
    def control(self) -> Path:
        return self.folder / "control"


def check_available() -> None:
    """Raises SandboxUnavailable naming the cause and the fix when a phone sandbox cannot be made here."""
    missing = [tool for tool in SANDBOX_TOOLS if shutil.which(tool) is None]
    if missing:
        packages = {"bwrap": "bubblewrap", "nsenter": "util-linux"}
        names = " ".join(sorted({packages.get(t, t) for t in missing}))
        raise SandboxUnavailable(
            f"virtual phones run Android's shell and tools in a sandbox and need {', '.join(missing)}",
            f"install them with 'apt-get install -y {names}' (make demo and make test do it when run as root)",
        )
    probe = subprocess.run(
        [
            *("bwrap", "--unshare-user", "--uid", str(SHELL_UID), "--gid", str(SHELL_UID), "--unshare-pid"),
            *("--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--", "/bin/true"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if probe.returncode != 0:
        raise SandboxUnavailable(
            "virtual phones need user, mount and pid namespaces, and bwrap cannot create them here "
            f"({probe.stderr.strip() or f'exit code {probe.returncode}'})",
            "allow unprivileged user namespaces (sysctl -w kernel.unprivileged_userns_clone=1; on Ubuntu 24.04 also "
            "kernel.apparmor_restrict_unprivileged_userns=0; in Docker run with --security-opt seccomp=unconfined "
            "--security-opt apparmor=unconfined), then run 'harness farm up' again",
        )


def populate_system_bin(spec: SandboxSpec) -> None:
    """mksh as sh, toybox's commands, the shims and a python3 that starts the project's environment."""
    bin_dir = spec.system_bin
    if bin_dir.exists():
        shutil.rmtree(bin_dir)
    bin_dir.mkdir(parents=True)
    (bin_dir / "sh").symlink_to(MKSH)
    listing = subprocess.run([TOYBOX], capture_output=True, text=True, check=True).stdout.split()
    for name in listing:
        if name not in _NOT_FROM_TOYBOX and "/" not in name:
            (bin_dir / name).symlink_to(TOYBOX)
    (bin_dir / "toybox").symlink_to(TOYBOX)
    shims = {"python3": python3_shim(spec), **spec.shims}
    for name, text in shims.items():
        path = bin_dir / name
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        path.write_text(text)
        path.chmod(0o755)


def python3_shim(spec: SandboxSpec) -> str:
    """The runner zipapp's interpreter (its #! is /usr/bin/env python3): the project's environment, one benchmark
    at a time across the host (an flock held until the program exits), with the profile's RLIMIT_DATA.

    A symlink to the venv's python would not find pyvenv.cfg; it is exec'd by its path instead.
    """
    lines = ["#!/system/bin/sh"]
    if spec.data_limit_kb is not None:
        lines.append(f"ulimit -d {spec.data_limit_kb}")
    lines.append("ulimit -c 0")
    env = {"PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONNOUSERSITE": "1", **spec.python_env}
    lines.append("export " + " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items()))
    python = os.path.join(sys.prefix, "bin", "python3")
    if spec.bench_lock is not None:
        # toybox's flock only locks an fd, and mksh opens `exec 9>file` close-on-exec: util-linux's flock
        # holds the lock while the program runs, and passes its exit status (128 + signal) through.
        lines.append(f'exec /usr/bin/flock /dev/__bench__/lock {python} "$@"')
    else:
        lines.append(f'exec {python} "$@"')
    return "\n".join(lines) + "\n"


def prepare_folder(spec: SandboxSpec, props: Mapping[str, str]) -> None:
    """The host side of the sandbox: /system/bin, the properties file, the control folder.

    There is no /etc/passwd, as on a phone (bionic knows its users without one), so toybox's `id` cannot name
    uid 2000 here."""
    populate_system_bin(spec)
    spec.properties.mkdir(parents=True, exist_ok=True)
    (spec.properties / "props").write_text("".join(f"{k}={v}\n" for k, v in sorted(props.items())))
    spec.control.mkdir(parents=True, exist_ok=True)
    for leftover in spec.control.iterdir():
        leftover.unlink()
    (spec.generated / "services").mkdir(parents=True, exist_ok=True)
    (spec.generated / "sys").mkdir(parents=True, exist_ok=True)


def write_generated(root: Path, files: Mapping[str, Callable[[], bytes]]) -> None:
    """Writes each generated device file (device path -> content) under root, in place.

    In place (same inode), because /proc/cpuinfo and /proc/meminfo are bind-mounted file by file: a rename would
    leave the sandbox reading the old inode. The new content is written before the tail is cut, so a reader
    never sees an empty file.
    """
    for device_path, render in files.items():
        path = root / device_path.lstrip("/")
        data = render()
        try:
            fd = os.open(path, os.O_WRONLY)
        except FileNotFoundError:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o444)
        try:
            os.pwrite(fd, data, 0)
            os.ftruncate(fd, len(data))
        finally:
            os.close(fd)


# The sandbox's first process: says it is up (bwrap reports its pid before the mounts are done), then waits.
READY_LINE = b"ready\n"
INIT = ("/system/bin/sh", "-c", "echo ready; exec /system/bin/sleep 2147483647")


def bwrap_argv(spec: SandboxSpec, init: Iterable[str] = INIT) -> list[str]:
    gen = spec.generated
    argv = [
        "bwrap",
        "--die-with-parent",
        "--unshare-user",
        "--uid",
        str(SHELL_UID),
        "--gid",
        str(SHELL_UID),
        "--cap-drop",
        "ALL",
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
        "--hostname",
        spec.hostname,
        "--ro-bind",
        "/usr",
        "/usr",
    ]
    for link in ("lib", "lib64", "bin", "sbin"):
        if os.path.islink(f"/{link}"):
            argv += ["--symlink", os.readlink(f"/{link}"), f"/{link}"]
        elif os.path.isdir(f"/{link}"):
            argv += ["--ro-bind", f"/{link}", f"/{link}"]
    argv += ["--ro-bind", "/etc/ld.so.cache", "/etc/ld.so.cache"]
    for prefix in spec.python_prefixes:
        argv += ["--ro-bind", prefix, prefix]
    argv += ["--ro-bind", str(spec.system_bin), "/system/bin"]
    argv += ["--size", str(spec.quota_bytes), "--perms", "0771", "--tmpfs", "/data"]
    for rel in WRITABLE_DIRS:
        argv += ["--dir", f"/{rel}"]
    # As for adb's shell user on a phone, /data, /data/local and /data/media are not writable, their tmp and 0 are.
    argv += ["--chmod", "0551", "/data/local", "--chmod", "0551", "/data/media", "--chmod", "0551", "/data"]
    argv += ["--symlink", "/data/media/0", "/sdcard"]
    argv += ["--proc", "/proc", "--dev", "/dev"]
    for name in ("cpuinfo", "meminfo", "version", "uptime"):
        if (gen / "proc" / name).exists():
            argv += ["--ro-bind", str(gen / "proc" / name), f"/proc/{name}"]
    argv += ["--ro-bind", str(gen / "sys"), "/sys"]
    argv += ["--bind", str(spec.properties), "/dev/__properties__"]
    argv += ["--bind", str(spec.control), "/dev/__control__"]
    argv += ["--ro-bind", str(gen / "services"), "/dev/__services__"]
    if spec.bench_lock is not None:
        spec.bench_lock.touch()
        argv += ["--dir", "/dev/__bench__", "--bind", str(spec.bench_lock), "/dev/__bench__/lock"]
    if spec.real_cpu_tree:
        argv += ["--ro-bind", "/sys/devices/system/cpu", "/sys/devices/system/cpu"]
    argv += ["--remount-ro", "/"]  # as on a phone, / is read-only (bwrap's root is a tmpfs otherwise writable)
    argv += ["--clearenv"]
    for key, value in SHELL_ENV.items():
        argv += ["--setenv", key, value]
    argv += ["--chdir", "/", "--", *init]
    return argv


class PhoneSandbox:
    """The long-lived sandbox of one phone; `command_argv` runs a shell command inside it."""

    def __init__(self, spec: SandboxSpec) -> None:
        self.spec = spec
        self._proc: subprocess.Popen[bytes] | None = None
        self._nsenter = shutil.which("nsenter") or "/usr/bin/nsenter"
        self.init_pid = 0  # host pid of the sandbox's first process (pid 2 inside; bwrap's reaper is 1)

    def start(self, timeout_s: float = 10.0) -> None:
        read_fd, write_fd = os.pipe()
        try:
            self._proc = subprocess.Popen(
                [*bwrap_argv(self.spec)[:1], "--info-fd", str(write_fd), *bwrap_argv(self.spec)[1:]],
                pass_fds=(write_fd,),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            os.close(write_fd)
            write_fd = -1
            info = _read_all(read_fd, timeout_s)
        finally:
            os.close(read_fd)
            if write_fd >= 0:
                os.close(write_fd)
        assert self._proc.stdout is not None
        if info and _read_all(self._proc.stdout.fileno(), timeout_s, until=READY_LINE) != READY_LINE:
            info = b""
        if not info:
            err = b""
            if self._proc.poll() is not None and self._proc.stderr is not None:
                err = self._proc.stderr.read()
            raise SandboxUnavailable(f"bwrap did not start the phone's sandbox: {err.decode(errors='replace').strip()}")
        self.init_pid = int(json.loads(info)["child-pid"])

    @property
    def root(self) -> Path:
        """The sandbox's / as the host reaches it (for pushes: real quota, real ENOSPC)."""
        return Path(f"/proc/{self.init_pid}/root")

    def command_argv(self, command: str | None) -> list[str]:
        """argv that runs `sh -c command` (or an interactive sh when None) inside the sandbox."""
        return self.exec_argv(["/system/bin/sh"] if command is None else ["/system/bin/sh", "-c", command])

    def exec_argv(self, argv: list[str]) -> list[str]:
        """argv that runs a program (not through the shell) inside the sandbox."""
        enter = [self._nsenter, "-t", str(self.init_pid), "-U", "-m", "-p", "-r", "-w", "--preserve-credentials"]
        return [*enter, "--", *argv]

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGKILL)
            self._proc.wait()
        if self._proc is not None and self._proc.stderr is not None:
            self._proc.stderr.close()
        self._proc = None


def _read_all(fd: int, timeout_s: float, until: bytes | None = None) -> bytes:
    """Reads until EOF (bwrap closes --info-fd once the sandbox is up), or until `until` has come."""
    deadline = time.monotonic() + timeout_s
    chunks = []
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            break
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        chunks.append(chunk)
        if until is not None and b"".join(chunks).endswith(until):
            break
    return b"".join(chunks)
