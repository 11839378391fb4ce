"""The emulated device shell: runs parsed scripts against the device.

Never the host's /bin/sh: builtins (commands.py) act on the sandboxed file
system and the device model; an executable path runs through execution.py
only when it is the project's runner zipapp or a shell script.
Messages follow Android's mksh: `/system/bin/sh: CMD: not found` (127),
`can't execute: Permission denied` (126), `not executable: 64-bit ELF file` (126).
"""

from __future__ import annotations

import asyncio
import errno
import fnmatch
import signal
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from harness.virtual_farm.execution import ProgramKind, classify
from harness.virtual_farm.sandbox import normalize
from harness.virtual_farm.shell_io import (
    AsyncPipe,
    BufferSink,
    EmptySource,
    FileSink,
    FileSource,
    NullSink,
    ShellIO,
    Sink,
    Source,
    WriteError,
)
from harness.virtual_farm.shell_syntax import (
    AndOr,
    CompoundCommand,
    ForLoop,
    Group,
    IfClause,
    Loop,
    PartKind,
    Pipeline,
    Redirect,
    Script,
    ShellSyntaxError,
    SimpleCommand,
    Word,
    parse,
)

if TYPE_CHECKING:
    from pathlib import Path

    from harness.virtual_farm.device import VirtualDevice

SH = "/system/bin/sh"
SYSTEM_BIN_DIRS = ("/system/bin", "/system/xbin", "/vendor/bin", "/bin")
QUIET_SIGNALS = (signal.SIGINT, signal.SIGPIPE)  # mksh prints no message for these
DEFAULT_ENV = {
    "PATH": "/product/bin:/apex/com.android.runtime/bin:/apex/com.android.art/bin:/system_ext/bin"
    ":/system/bin:/system/xbin:/odm/bin:/vendor/bin:/vendor/xbin",
    "HOME": "/",
    "TMPDIR": "/data/local/tmp",
    "ANDROID_DATA": "/data",
    "ANDROID_ROOT": "/system",
    "ANDROID_STORAGE": "/storage",
    "EXTERNAL_STORAGE": "/sdcard",
    "USER": "shell",
    "HOSTNAME": "localhost",
}
GLOB_CHARS = "*?["


class ShellExit(Exception):
    """`exit` ran: unwinds to the script runner with its status."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


class LoopControl(Exception):
    """`break N` / `continue N`: unwinds to the Nth enclosing loop."""

    def __init__(self, kind: str, levels: int) -> None:
        super().__init__(kind, levels)
        self.kind = kind
        self.levels = levels


@dataclass
class _Field:
    text: str = ""
    pattern: str = ""
    has_glob: bool = False
    started: bool = False

    def add(self, text: str, quoted: bool) -> None:
        self.text += text
        if quoted:
            self.pattern += "".join(f"[{c}]" if c in GLOB_CHARS else c for c in text)
            self.started = True
        else:
            self.pattern += text
            self.has_glob = self.has_glob or any(c in text for c in GLOB_CHARS)
            self.started = self.started or bool(text)


@dataclass
class CommandContext:
    """What a builtin gets: its argv, its I/O, and the session it runs in."""

    session: Session
    argv: list[str]
    io: ShellIO
    env: dict[str, str] = field(default_factory=dict)  # NAME=value prefixes of this command
    cores: frozenset[int] = frozenset()

    @property
    def device(self) -> VirtualDevice:
        return self.session.device

    async def out(self, text: str | bytes) -> None:
        await self.io.stdout.write(text.encode() if isinstance(text, str) else text)

    async def err(self, text: str) -> None:
        await self.io.stderr.write(text.encode())


class Session:
    """One shell process on the device: cwd, variables, last status."""

    def __init__(
        self,
        device: VirtualDevice,
        cwd: str = "/",
        variables: dict[str, str] | None = None,
        exported: set[str] | None = None,
        positional: tuple[str, ...] = (),
        script_name: str = SH,
        ppid: int = 521,
    ) -> None:
        self.device = device
        self.cwd = cwd
        self.vars = dict(DEFAULT_ENV) if variables is None else dict(variables)
        self.exported = set(DEFAULT_ENV) if exported is None else set(exported)
        self.positional = positional
        self.script_name = script_name
        self.last_status = 0
        self.affinity = device.all_cores
        self.killed_by: int | None = None
        self.exited = False  # `exit` ran: an interactive shell stops reading
        self.task: asyncio.Task[Any] | None = None
        self.proc = device.processes.add("sh", ppid, self._deliver)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _deliver(self, signum: int) -> None:
        if signum in (0, signal.SIGCONT, signal.SIGWINCH, signal.SIGCHLD):
            return
        self.killed_by = signum
        if self.task is not None:
            self.task.cancel()

    def close(self) -> None:
        self.device.processes.remove(self.pid)

    def subshell(self, positional: tuple[str, ...] | None = None, script_name: str | None = None) -> Session:
        sub = Session(
            self.device,
            self.cwd,
            self.vars,
            self.exported,
            self.positional if positional is None else positional,
            script_name or self.script_name,
            ppid=self.pid,
        )
        sub.affinity = self.affinity
        sub.task = self.task
        return sub

    def environment(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = {k: v for k, v in self.vars.items() if k in self.exported}
        env.update(extra or {})
        return env

    # --- running --------------------------------------------------------------

    async def run_script(self, src: str, io: ShellIO) -> int:
        try:
            script = parse(src)
        except ShellSyntaxError as e:
            await _safe_write(io.stderr, f"{SH}: {e}\n")
            await _safe_flush(io)
            return 1
        try:
            status = await self.run_list(script, io)
        except ShellExit as e:
            status = e.code
            self.exited = True
        except LoopControl:  # break/continue outside a loop: nothing to leave
            status = 0
        await _safe_flush(io)
        return status

    async def run_list(self, script: Script, io: ShellIO) -> int:
        status = 0
        for item in script:
            status = await self.run_and_or(item, io)
        return status

    async def run_and_or(self, item: AndOr, io: ShellIO) -> int:
        status = await self.run_pipeline(item.first, io)
        for op, pipeline in item.rest:
            if (op == "&&") == (status == 0):
                status = await self.run_pipeline(pipeline, io)
        return status

    async def run_pipeline(self, pipeline: Pipeline, io: ShellIO) -> int:
        commands = pipeline.commands
        if len(commands) == 1:
            status = await self.run_command(commands[0], io)
        else:
            pipes = [AsyncPipe().ends() for _ in commands[1:]]

            async def element(i: int, cmd: SimpleCommand | CompoundCommand) -> int:
                stdin = pipes[i - 1][1] if i > 0 else io.stdin
                stdout = pipes[i][0] if i < len(pipes) else io.stdout
                try:
                    return await self.run_command(cmd, ShellIO(stdin, stdout, io.stderr))
                finally:
                    if i < len(pipes):
                        pipes[i][0].close()
                    if i > 0:
                        pipes[i - 1][1].close()

            statuses = await asyncio.gather(*(element(i, c) for i, c in enumerate(commands)))
            status = statuses[-1]
        if pipeline.negated:
            status = 0 if status else 1
        self.last_status = status
        return status

    async def run_command(self, cmd: SimpleCommand | CompoundCommand, io: ShellIO) -> int:
        if isinstance(cmd, SimpleCommand):
            return await self.run_simple(cmd, io)
        opened: list[FileSink | FileSource] = []
        cmd_io = await self._redirected(cmd.redirects, io, opened)
        if cmd_io is None:
            return 1
        try:
            return await self.run_compound(cmd.body, cmd_io)
        finally:
            await _safe_flush(cmd_io)
            for f in opened:
                f.close()

    async def run_compound(self, node: ForLoop | IfClause | Loop | Group, io: ShellIO) -> int:
        if isinstance(node, IfClause):
            for condition, body in node.branches:
                if await self.run_list(condition, io) == 0:
                    return await self.run_list(body, io)
            return await self.run_list(node.otherwise, io) if node.otherwise else 0
        if isinstance(node, Group):
            if not node.subshell:
                return await self.run_list(node.body, io)
            sub = self.subshell()
            try:
                return await sub.run_list(node.body, io)
            except ShellExit as e:
                return e.code
            finally:
                sub.close()
        status = 0
        if isinstance(node, ForLoop):
            items: list[str] = list(self.positional) if node.items is None else []
            for word in node.items or ():
                items += await self.expand(word, io)
            rounds = iter(items)
        while True:
            # Yield every round: a busy loop must not starve the device's other streams.
            await asyncio.sleep(0)
            if isinstance(node, ForLoop):
                value = next(rounds, None)
                if value is None:
                    return status
                self.vars[node.name] = value
            elif (await self.run_list(node.condition, io) == 0) == node.until:
                return status
            try:
                status = await self.run_list(node.body, io)
            except LoopControl as e:
                if e.levels > 1:
                    raise LoopControl(e.kind, e.levels - 1) from None
                if e.kind == "break":
                    return 0
                status = 0

    async def run_simple(self, cmd: SimpleCommand, io: ShellIO) -> int:
        try:
            argv: list[str] = []
            for word in cmd.words:
                argv += await self.expand(word, io)
            assigned = {name: await self.expand_one(value, io) for name, value in cmd.assignments}
        except ShellSyntaxError as e:
            await io.stderr.write(f"{SH}: {e}\n".encode())
            return 1
        opened: list[FileSink | FileSource] = []
        cmd_io = await self._redirected(cmd.redirects, io, opened)
        if cmd_io is None:
            return 1
        try:
            if not argv:
                self.vars.update(assigned)
                return 0
            return await self.execute(argv, cmd_io, assigned, self.affinity)
        finally:
            await _safe_flush(cmd_io)
            for f in opened:
                f.close()

    async def execute(self, argv: list[str], io: ShellIO, env: dict[str, str], cores: frozenset[int]) -> int:
        builtins = self.device.builtins
        name = argv[0]
        if "/" in name:
            head, base = name.rsplit("/", 1)
            if head not in SYSTEM_BIN_DIRS or base not in builtins:
                return await self.run_program(name, argv, io, env, cores)
            name = base
        builtin = builtins.get(name)
        if builtin is None:
            await io.stderr.write(f"{SH}: {name}: not found\n".encode())
            return 127
        ctx = CommandContext(self, argv, io, env, cores)
        try:
            return await builtin(ctx)
        except WriteError as e:
            await _safe_write(io.stderr, f"{name}: write error: {e.strerror}\n")
            return 1
        except BrokenPipeError:
            return 128 + signal.SIGPIPE
        except OSError as e:
            await _safe_write(io.stderr, f"{name}: {e.strerror}\n")
            return 1

    async def run_program(
        self, path: str, argv: list[str], io: ShellIO, env: dict[str, str], cores: frozenset[int]
    ) -> int:
        fs = self.device.fs
        try:
            node = fs.resolve(path, self.cwd)
            st = fs.stat(node.path)
        except OSError as e:
            if e.errno in (errno.ENOENT, errno.ENOTDIR):
                await io.stderr.write(f"{SH}: {path}: not found\n".encode())
                return 127
            await io.stderr.write(f"{SH}: {path}: can't execute: {e.strerror}\n".encode())
            return 126
        if st.is_dir:
            await io.stderr.write(f"{SH}: {path}: can't execute: Is a directory\n".encode())
            return 126
        if node.host is None or not st.mode & 0o111:
            await io.stderr.write(f"{SH}: {path}: can't execute: Permission denied\n".encode())
            return 126
        program = classify(node.host)
        if program.kind is ProgramKind.ELF:
            await io.stderr.write(f"{SH}: {path}: not executable: {program.elf_bits}-bit ELF file\n".encode())
            return 126
        if program.kind is ProgramKind.FOREIGN_SCRIPT:
            await io.stderr.write(f"{SH}: {path}: No such file or directory\n".encode())
            return 127
        if program.kind is ProgramKind.SHELL_SCRIPT:
            src = fs.read_bytes(node.path).decode(errors="replace")
            sub = self.subshell(positional=tuple(argv[1:]), script_name=path)
            try:
                return await sub.run_script(src, io)
            finally:
                sub.close()
        cwd_node = fs.resolve(self.cwd)
        host_cwd = cwd_node.host if cwd_node.host is not None and cwd_node.host.is_dir() else fs.root
        result = await self.device.executor.run(node.host, argv, host_cwd, self.environment(env), cores, io, self.pid)
        if result.code == 0:
            self.device.executor.garble_outputs(argv, self._host_file)
        if result.signal is not None and result.signal not in QUIET_SIGNALS:
            await _safe_write(io.stderr, f"{signal.strsignal(result.signal)}\n")
        return result.code

    def _host_file(self, device_path: str) -> Path | None:
        try:
            return self.device.fs.resolve(device_path, self.cwd).host
        except OSError:
            return None

    # --- expansion ------------------------------------------------------------

    def variable(self, name: str) -> str:
        if name == "?":
            return str(self.last_status)
        if name == "$":
            return str(self.pid)
        if name == "#":
            return str(len(self.positional))
        if name in ("@", "*"):
            return " ".join(self.positional)
        if name == "!":
            return ""
        if name == "0":
            return self.script_name
        if name.isdigit():
            i = int(name)
            return self.positional[i - 1] if i <= len(self.positional) else ""
        return self.vars.get(name, "")

    async def substitute(self, src: str, io: ShellIO) -> str:
        sub = self.subshell()
        out = BufferSink()
        try:
            await sub.run_script(src, ShellIO(EmptySource(), out, io.stderr))
        finally:
            sub.close()
        return out.data.decode(errors="replace").rstrip("\n")

    async def expand(self, word: Word, io: ShellIO) -> list[str]:
        fields = [_Field()]
        for part in word.parts:
            if part.kind is PartKind.LITERAL:
                fields[-1].add(part.text, part.quoted)
                continue
            if part.kind is PartKind.VARIABLE and part.text == "@" and part.quoted:
                for i, arg in enumerate(self.positional):  # "$@": one field per argument
                    if i:
                        fields.append(_Field())
                    fields[-1].add(arg, True)
                continue
            value = self.variable(part.text) if part.kind is PartKind.VARIABLE else await self.substitute(part.text, io)
            if part.quoted:
                fields[-1].add(value, True)
                continue
            pieces = value.split()
            if not pieces:
                continue
            if value[0].isspace() and fields[-1].started:
                fields.append(_Field())
            for i, piece in enumerate(pieces):
                if i:
                    fields.append(_Field())
                fields[-1].add(piece, False)
            if value[-1].isspace():
                fields.append(_Field())
        out: list[str] = []
        for f in fields:
            if not f.started:
                continue
            matches = self.glob(f.pattern) if f.has_glob else []
            out += matches or [f.text]
        return out

    async def expand_one(self, word: Word, io: ShellIO) -> str:
        """Expansion without field splitting or globbing (assignments, redirect targets)."""
        out = []
        for part in word.parts:
            if part.kind is PartKind.LITERAL:
                out.append(part.text)
            elif part.kind is PartKind.VARIABLE:
                out.append(self.variable(part.text))
            else:
                out.append(await self.substitute(part.text, io))
        return "".join(out)

    def glob(self, pattern: str) -> list[str]:
        fs = self.device.fs
        bases = ["/" if pattern.startswith("/") else ""]
        for comp in (c for c in pattern.split("/") if c):
            found = []
            for base in bases:
                if any(ch in comp for ch in GLOB_CHARS):
                    try:
                        names = fs.listdir(normalize(base or ".", self.cwd))
                    except OSError:
                        continue
                    found += [
                        _join(base, n)
                        for n in names
                        if (comp.startswith(".") or not n.startswith(".")) and fnmatch.fnmatchcase(n, comp)
                    ]
                else:
                    found.append(_join(base, comp))
            bases = found
        return sorted(b for b in bases if fs.exists(b, self.cwd))

    # --- redirections -----------------------------------------------------------

    async def _redirected(
        self, redirects: tuple[Redirect, ...], io: ShellIO, opened: list[FileSink | FileSource]
    ) -> ShellIO | None:
        """_redirect, or None after reporting why the redirections failed (the command then exits 1)."""
        try:
            return await self._redirect(redirects, io, opened)
        except _RedirectError as e:
            for f in opened:
                f.close()
            await io.stderr.write(f"{SH}: {e}\n".encode())
            return None

    async def _redirect(
        self, redirects: tuple[Redirect, ...], io: ShellIO, opened: list[FileSink | FileSource]
    ) -> ShellIO:
        fds: dict[int, Source | Sink] = {0: io.stdin, 1: io.stdout, 2: io.stderr}
        fs = self.device.fs
        for r in redirects:
            target = await self.expand_one(r.target, io)
            if r.op in (">&", "<&"):
                if target == "-":
                    fds[r.fd] = NullSink() if r.op == ">&" else EmptySource()
                elif target.isdigit() and int(target) in fds:
                    fds[r.fd] = fds[int(target)]
                else:
                    raise _RedirectError(f"{target}: bad file descriptor")
            elif r.op in (">", ">>"):
                if normalize(target, self.cwd) == "/dev/null":
                    fds[r.fd] = NullSink()
                    continue
                try:
                    sink = FileSink(fs.open_write(target, self.cwd, append=r.op == ">>"))
                except OSError as e:
                    raise _RedirectError(f"can't create {target}: {e.strerror}") from None
                opened.append(sink)
                fds[r.fd] = sink
            else:
                if normalize(target, self.cwd) == "/dev/null":
                    fds[r.fd] = EmptySource()
                    continue
                try:
                    source = FileSource(fs.open_read(target, self.cwd))
                except OSError as e:
                    raise _RedirectError(f"can't open {target}: {e.strerror}") from None
                opened.append(source)
                fds[r.fd] = source
        stdin, stdout, stderr = fds[0], fds[1], fds[2]
        if not isinstance(stdin, Source) or not isinstance(stdout, Sink) or not isinstance(stderr, Sink):
            raise _RedirectError("bad file descriptor")
        return ShellIO(stdin, stdout, stderr)


class _RedirectError(Exception):
    pass


def _join(base: str, name: str) -> str:
    if not base:
        return name
    return base + name if base.endswith("/") else f"{base}/{name}"


async def _safe_write(sink: Sink, text: str) -> None:
    try:
        await sink.write(text.encode())
    except (WriteError, BrokenPipeError):
        pass


async def _safe_flush(io: ShellIO) -> None:
    try:
        await io.flush()
    except (WriteError, BrokenPipeError):
        pass
