"""Builtin commands of the emulated shell (toybox-like output and errors).

Each takes a CommandContext and returns an exit status. File access goes
through the device's sandboxed file system only.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import signal
import stat as stat_mod
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import BinaryIO

from harness.virtual_farm.device_model import DUMPSYS_STATUS_CODE
from harness.virtual_farm.sandbox import Stat, normalize
from harness.virtual_farm.shell import SH, CommandContext, LoopControl, ShellExit

Builtin = Callable[[CommandContext], Awaitable[int]]
BUILTINS: dict[str, Builtin] = {}
COPY_CHUNK_BYTES = 1 << 20


def builtin(*names: str) -> Callable[[Builtin], Builtin]:
    def register(fn: Builtin) -> Builtin:
        for name in names:
            BUILTINS[name] = fn
        return fn

    return register


class _Usage(Exception):
    pass


def _flags(
    args: list[str], allowed: str, with_value: str = "", min_operands: int = 0
) -> tuple[set[str], dict[str, str], list[str]]:
    """Parse toybox-style short options ('-rf', '-n 5', '--' ends options); fewer than
    `min_operands` operands after them is a usage error, worded as toybox words it."""
    flags: set[str] = set()
    values: dict[str, str] = {}
    rest = list(args)
    while rest and rest[0].startswith("-") and rest[0] != "-":
        arg = rest.pop(0)
        if arg == "--":
            break
        for i, ch in enumerate(arg[1:], 1):
            if ch in with_value:
                value = arg[i + 1 :] or (rest.pop(0) if rest else None)
                if value is None:
                    raise _Usage(f"Needs 1 argument after -{ch}")
                values[ch] = value
                break
            if ch not in allowed:
                raise _Usage(f"Unknown option '{ch}'")
            flags.add(ch)
    if len(rest) < min_operands:
        raise _Usage(f"Needs {min_operands} argument{'s' if min_operands > 1 else ''}")
    return flags, values, rest


async def _usage(ctx: CommandContext, message: str) -> int:
    await ctx.err(f"{ctx.argv[0]}: {message}\n")
    return 1


# --- trivial ------------------------------------------------------------------


@builtin("true", ":")
async def _true(ctx: CommandContext) -> int:
    return 0


@builtin("false")
async def _false(ctx: CommandContext) -> int:
    return 1


@builtin("exit")
async def _exit(ctx: CommandContext) -> int:
    code = ctx.session.last_status
    if len(ctx.argv) > 1:
        if not ctx.argv[1].lstrip("-").isdigit():
            await ctx.err(f"{SH}: exit: {ctx.argv[1]}: bad number\n")
            code = 1
        else:
            code = int(ctx.argv[1]) & 0xFF
    raise ShellExit(code)


@builtin("break", "continue")
async def _loop_control(ctx: CommandContext) -> int:
    arg = ctx.argv[1] if len(ctx.argv) > 1 else "1"
    if not arg.isdigit() or int(arg) < 1:
        await ctx.err(f"{SH}: {ctx.argv[0]}: {arg}: bad number\n")
        return 1
    raise LoopControl(ctx.argv[0], int(arg))


@builtin("read")
async def _read(ctx: CommandContext) -> int:
    try:
        flags, _, names = _flags(ctx.argv[1:], "r")
    except _Usage as e:
        return await _usage(ctx, str(e))
    line = bytearray()
    while True:
        # One byte at a time: what follows the line stays for the next reader.
        byte = await ctx.io.stdin.read(1)
        if not byte or byte == b"\n":
            break
        line += byte
    if not byte and not line:
        return 1
    text = line.decode(errors="replace")
    if "r" not in flags:
        text = re.sub(r"\\(.)", r"\1", text)
    names = names or ["REPLY"]
    fields = text.split(maxsplit=len(names) - 1) if names != ["REPLY"] else [text]
    for i, name in enumerate(names):
        ctx.session.vars[name] = fields[i] if i < len(fields) else ""
    return 0


_PRINTF_SPEC = re.compile(r"%([-+ 0#]*\d*(?:\.\d+)?)([sdiouxXfgecb%])")


@builtin("printf")
async def _printf(ctx: CommandContext) -> int:
    if len(ctx.argv) < 2:
        return await _usage(ctx, "Needs 1 argument")
    fmt = ctx.argv[1].encode("latin-1", "backslashreplace").decode("unicode_escape")
    args = ctx.argv[2:]
    status = 0
    out = []

    def convert(match: re.Match[str]) -> str:
        nonlocal status
        flags, kind = match.groups()
        if kind == "%":
            return "%"
        value = args.pop(0) if args else ""
        if kind in "diouxXc":
            try:
                number = int(value or "0", 0)
            except ValueError:
                status = 1
                number = 0
            if kind == "c":
                return value[:1]
            return f"%{flags}{'d' if kind in 'iu' else kind}" % number
        if kind in "feg":
            try:
                return f"%{flags}{kind}" % float(value or "0")
            except ValueError:
                status = 1
                return f"%{flags}{kind}" % 0.0
        if kind == "b":
            value = value.encode("latin-1", "backslashreplace").decode("unicode_escape")
        return f"%{flags}s" % value

    while True:
        consumed_before = len(args)
        out.append(_PRINTF_SPEC.sub(convert, fmt))
        if not args or len(args) == consumed_before:
            break
    await ctx.out("".join(out))
    return status


@builtin("echo")
async def _echo(ctx: CommandContext) -> int:
    args = ctx.argv[1:]
    newline, escapes = True, False
    while args and re.fullmatch(r"-[neE]+", args[0]):
        for ch in args.pop(0)[1:]:
            newline = newline and ch != "n"
            escapes = (escapes or ch == "e") and ch != "E"
    text = " ".join(args)
    if escapes:
        text = text.encode("latin-1", "backslashreplace").decode("unicode_escape")
    await ctx.out(text + ("\n" if newline else ""))
    return 0


@builtin("sleep")
async def _sleep(ctx: CommandContext) -> int:
    total = 0.0
    for arg in ctx.argv[1:] or [""]:
        m = re.fullmatch(r"(\d+(?:\.\d*)?|\.\d+)([smhd]?)", arg)
        if not m:
            return await _usage(ctx, f"Not a number '{arg}'" if arg else "Needs 1 argument")
        total += float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
    await asyncio.sleep(total)
    return 0


@builtin("pwd")
async def _pwd(ctx: CommandContext) -> int:
    await ctx.out(ctx.session.cwd + "\n")
    return 0


@builtin("cd")
async def _cd(ctx: CommandContext) -> int:
    target = ctx.argv[1] if len(ctx.argv) > 1 else ctx.session.vars.get("HOME", "/")
    path = normalize(target, ctx.session.cwd)
    try:
        if not ctx.device.fs.stat(path).is_dir:
            await ctx.err(f"{SH}: cd: {target}: Not a directory\n")
            return 2
    except OSError as e:
        await ctx.err(f"{SH}: cd: {target}: {e.strerror}\n")
        return 2
    ctx.session.cwd = path
    return 0


@builtin("export")
async def _export(ctx: CommandContext) -> int:
    for arg in ctx.argv[1:]:
        name, eq, value = arg.partition("=")
        if eq:
            ctx.session.vars[name] = value
        ctx.session.exported.add(name)
    return 0


@builtin("unset")
async def _unset(ctx: CommandContext) -> int:
    for name in ctx.argv[1:]:
        ctx.session.vars.pop(name, None)
        ctx.session.exported.discard(name)
    return 0


@builtin("sh")
async def _sh(ctx: CommandContext) -> int:
    args = ctx.argv[1:]
    if args[:1] == ["-c"]:
        if len(args) < 2:
            return await _usage(ctx, "-c: option requires an argument")
        sub = ctx.session.subshell(positional=tuple(args[3:]), script_name=args[2] if len(args) > 2 else SH)
        src = args[1]
    elif args:
        try:
            src = ctx.device.fs.read_bytes(args[0], ctx.session.cwd).decode(errors="replace")
        except OSError as e:
            await ctx.err(f"{SH}: {args[0]}: {e.strerror}\n")
            return 127
        sub = ctx.session.subshell(positional=tuple(args[1:]), script_name=args[0])
    else:
        src = (await ctx.io.stdin.read_all()).decode(errors="replace")
        sub = ctx.session.subshell()
    sub.vars.update(ctx.env)
    try:
        return await sub.run_script(src, ctx.io)
    finally:
        sub.close()


@builtin("id")
async def _id(ctx: CommandContext) -> int:
    await ctx.out(
        "uid=2000(shell) gid=2000(shell) groups=2000(shell),1004(input),1007(log),1011(adb),"
        "1015(sdcard_rw),1028(sdcard_r),3001(net_bt_admin),3002(net_bt),3003(inet),3006(net_bw_stats)"
        " context=u:r:shell:s0\n"
    )
    return 0


# --- test / [ -------------------------------------------------------------------


@builtin("test", "[")
async def _test(ctx: CommandContext) -> int:
    args = ctx.argv[1:]
    if ctx.argv[0].endswith("["):
        if not args or args[-1] != "]":
            await ctx.err("[: missing ]\n")
            return 2
        args = args[:-1]
    try:
        return 0 if _evaluate(ctx, args) else 1
    except _Usage as e:
        await ctx.err(f"{ctx.argv[0]}: {e}\n")
        return 2


def _evaluate(ctx: CommandContext, args: list[str]) -> bool:
    if "-o" in args:
        i = args.index("-o")
        return _evaluate(ctx, args[:i]) or _evaluate(ctx, args[i + 1 :])
    if "-a" in args[1:]:
        i = args.index("-a", 1)
        return _evaluate(ctx, args[:i]) and _evaluate(ctx, args[i + 1 :])
    if args[:1] == ["!"]:
        return not _evaluate(ctx, args[1:])
    if not args:
        return False
    if len(args) == 1:
        return args[0] != ""
    if len(args) == 2:
        op, operand = args
        if op == "-z":
            return operand == ""
        if op == "-n":
            return operand != ""
        fs = ctx.device.fs
        try:
            st = fs.stat(operand, ctx.session.cwd, follow=op not in ("-L", "-h"))
        except OSError:
            return False
        checks: dict[str, Callable[[], bool]] = {
            "-e": lambda: True,
            "-f": lambda: st.is_file,
            "-d": lambda: st.is_dir,
            "-s": lambda: st.size > 0,
            "-x": lambda: bool(st.mode & 0o111),
            "-r": lambda: bool(st.mode & 0o444),
            "-w": lambda: bool(st.mode & 0o222),
            "-L": lambda: stat_mod.S_ISLNK(st.mode),
            "-h": lambda: stat_mod.S_ISLNK(st.mode),
        }
        if op not in checks:
            raise _Usage(f"unknown operator '{op}'")
        return checks[op]()
    if len(args) == 3:
        a, op, b = args
        if op in ("=", "=="):
            return a == b
        if op == "!=":
            return a != b
        numeric = {
            "-eq": int.__eq__,
            "-ne": int.__ne__,
            "-lt": int.__lt__,
            "-le": int.__le__,
            "-gt": int.__gt__,
            "-ge": int.__ge__,
        }
        if op in numeric:
            try:
                return numeric[op](int(a), int(b))
            except ValueError:
                raise _Usage(f"bad number '{a if not a.lstrip('-').isdigit() else b}'") from None
        raise _Usage(f"unknown operator '{op}'")
    raise _Usage("too many arguments")


# --- files ----------------------------------------------------------------------


def _owner(uid: int) -> str:
    return {0: "root", 2000: "shell"}.get(uid, str(uid))


@builtin("cat")
async def _cat(ctx: CommandContext) -> int:
    try:
        _, _, paths = _flags(ctx.argv[1:], "uv")
    except _Usage as e:
        return await _usage(ctx, str(e))
    status = 0
    for path in paths or ["-"]:
        if path == "-":
            while chunk := await ctx.io.stdin.read():
                await ctx.out(chunk)
            continue
        try:
            f = ctx.device.fs.open_read(path, ctx.session.cwd)
        except OSError as e:
            await ctx.err(f"cat: {path}: {e.strerror}\n")
            status = 1
            continue
        with f:
            while chunk := f.read(COPY_CHUNK_BYTES):
                await ctx.out(chunk)
    return status


async def _digest(ctx: CommandContext, algorithm: str) -> int:
    status = 0
    for path in ctx.argv[1:] or ["-"]:
        h = hashlib.new(algorithm)
        if path == "-":
            while chunk := await ctx.io.stdin.read():
                h.update(chunk)
        else:
            try:
                f = ctx.device.fs.open_read(path, ctx.session.cwd)
            except OSError as e:
                await ctx.err(f"{ctx.argv[0]}: {path}: {e.strerror}\n")
                status = 1
                continue
            with f:
                # hashlib drops the GIL on big buffers: hash off the event loop.
                await asyncio.to_thread(_hash_file, h, f)
        await ctx.out(f"{h.hexdigest()}  {path}\n")
    return status


def _hash_file(h: hashlib._Hash, f: BinaryIO) -> None:
    while chunk := f.read(COPY_CHUNK_BYTES):
        h.update(chunk)


@builtin("sha256sum")
async def _sha256sum(ctx: CommandContext) -> int:
    return await _digest(ctx, "sha256")


@builtin("md5sum")
async def _md5sum(ctx: CommandContext) -> int:
    return await _digest(ctx, "md5")


def _ls_line(name: str, st: Stat, widths: tuple[int, int], link: str | None) -> str:
    when = time.strftime("%Y-%m-%d %H:%M", time.gmtime(st.mtime_s))
    user = _owner(st.uid)
    shown = f"{name} -> {link}" if link is not None else name
    mode = stat_mod.filemode(st.mode)
    return f"{mode} {st.nlink:>{widths[0]}} {user:<5} {user:<5} {st.size:>{widths[1]}} {when} {shown}\n"


@builtin("ls")
async def _ls(ctx: CommandContext) -> int:
    try:
        flags, _, operands = _flags(ctx.argv[1:], "laAd1")
    except _Usage as e:
        return await _usage(ctx, str(e))
    fs, cwd = ctx.device.fs, ctx.session.cwd
    status = 0
    files: list[tuple[str, Stat]] = []
    dirs: list[str] = []
    for op in operands or ["."]:
        try:
            st = fs.stat(op, cwd)
        except OSError as e:
            await ctx.err(f"ls: {op}: {e.strerror}\n")
            status = 1
            continue
        if st.is_dir and "d" not in flags:
            dirs.append(op)
        else:
            files.append((op, st))

    async def show(entries: list[tuple[str, Stat]], base: str | None) -> None:
        if "l" not in flags:
            await ctx.out("".join(f"{name}\n" for name, _ in entries))
            return
        if base is not None:
            blocks = sum((st.size + 4095) // 4096 * 4 for _, st in entries)
            await ctx.out(f"total {blocks}\n")
        widths = (
            max((len(str(st.nlink)) for _, st in entries), default=1),
            max((len(str(st.size)) for _, st in entries), default=1),
        )
        lines = []
        for name, st in entries:
            link = None
            if stat_mod.S_ISLNK(st.mode):
                node = fs.resolve(name if base is None else f"{base}/{name}", cwd, follow_last=False)
                link = node.host.readlink().as_posix() if node.host is not None else None
            lines.append(_ls_line(name, st, widths, link))
        await ctx.out("".join(lines))

    await show(files, None)
    for i, d in enumerate(dirs):
        if len(dirs) + len(files) > 1:
            separator = "" if i == 0 and not files else "\n"
            await ctx.out(f"{separator}{d}:\n")
        try:
            names = fs.listdir(d, cwd)
        except OSError as e:
            await ctx.err(f"ls: {d}: {e.strerror}\n")
            status = 1
            continue
        if "a" in flags:
            names = [".", ".."] + names
        elif "A" not in flags:
            names = [n for n in names if not n.startswith(".")]
        entries = []
        for n in names:
            try:
                entries.append((n, fs.stat(f"{normalize(d, cwd)}/{n}", follow=False)))
            except OSError:
                continue
        await show(entries, d)
    return status


_STAT_TYPES = {
    stat_mod.S_IFREG: "regular file",
    stat_mod.S_IFDIR: "directory",
    stat_mod.S_IFLNK: "symbolic link",
    stat_mod.S_IFIFO: "fifo",
    stat_mod.S_IFSOCK: "socket",
}


def _stat_format(fmt: str, name: str, st: Stat) -> str:
    def iso(t: int) -> str:
        return time.strftime("%Y-%m-%d %H:%M:%S.000000000 +0000", time.gmtime(t))

    fields: dict[str, Callable[[], str]] = {
        "n": lambda: name,
        "s": lambda: str(st.size),
        "a": lambda: f"{stat_mod.S_IMODE(st.mode):o}",
        "A": lambda: stat_mod.filemode(st.mode),
        "F": lambda: _STAT_TYPES.get(stat_mod.S_IFMT(st.mode), "weird file"),
        "f": lambda: f"{st.mode:x}",
        "u": lambda: str(st.uid),
        "U": lambda: _owner(st.uid),
        "g": lambda: str(st.gid),
        "G": lambda: _owner(st.gid),
        "i": lambda: str(st.ino),
        "h": lambda: str(st.nlink),
        "b": lambda: str((st.size + 511) // 512),
        "B": lambda: "512",
        "X": lambda: str(st.atime_s),
        "Y": lambda: str(st.mtime_s),
        "Z": lambda: str(st.ctime_s),
        "x": lambda: iso(st.atime_s),
        "y": lambda: iso(st.mtime_s),
        "z": lambda: iso(st.ctime_s),
        "%": lambda: "%",
    }
    return re.sub(r"%(.)", lambda m: fields[m.group(1)]() if m.group(1) in fields else m.group(0), fmt)


_STAT_DEFAULT = (
    "  File: %n\n  Size: %s\t Blocks: %b\t IO Blocks: 4096\t%F\n"
    "Device: fd05h/64773d\t Inode: %i\t Links: %h\n"
    "Access: (0%a/%A)\tUid: ( %u/   %U)\tGid: ( %g/   %G)\n"
    "Access: %x\nModify: %y\nChange: %z\n"
)


@builtin("stat")
async def _stat(ctx: CommandContext) -> int:
    try:
        flags, values, paths = _flags(ctx.argv[1:], "L", with_value="c")
    except _Usage as e:
        return await _usage(ctx, str(e))
    if not paths:
        return await _usage(ctx, "Needs 1 argument")
    fmt = values["c"] + "\n" if "c" in values else _STAT_DEFAULT
    status = 0
    for path in paths:
        try:
            st = ctx.device.fs.stat(path, ctx.session.cwd, follow="L" in flags)
        except OSError as e:
            await ctx.err(f"stat: '{path}': {e.strerror}\n")
            status = 1
            continue
        await ctx.out(_stat_format(fmt, path, st))
    return status


@builtin("mkdir")
async def _mkdir(ctx: CommandContext) -> int:
    try:
        flags, values, paths = _flags(ctx.argv[1:], "pv", with_value="m")
    except _Usage as e:
        return await _usage(ctx, str(e))
    mode = int(values["m"], 8) if "m" in values else 0o775
    status = 0
    for path in paths:
        try:
            ctx.device.fs.mkdir(path, ctx.session.cwd, parents="p" in flags, mode=mode)
        except OSError as e:
            await ctx.err(f"mkdir: {path}: {e.strerror}\n")
            status = 1
    return status


@builtin("rm")
async def _rm(ctx: CommandContext) -> int:
    try:
        flags, _, paths = _flags(ctx.argv[1:], "rRfiv")
    except _Usage as e:
        return await _usage(ctx, str(e))
    status = 0
    for path in paths:
        try:
            ctx.device.fs.remove(path, ctx.session.cwd, recursive=bool(flags & {"r", "R"}))
        except OSError as e:
            if "f" in flags and e.errno == 2:
                continue
            await ctx.err(f"rm: {path}: {e.strerror}\n")
            status = 1
    return status


def _parse_mode(spec: str, current: int) -> int:
    if re.fullmatch(r"[0-7]{1,4}", spec):
        return int(spec, 8)
    mode = current
    for clause in spec.split(","):
        m = re.fullmatch(r"([ugoa]*)([-+=])([rwxXst]*)", clause)
        if not m:
            raise _Usage(f"bad mode '{spec}'")
        who = m.group(1) or "a"
        bits = 0
        for perm in m.group(3):
            for w in "ugo" if "a" in who else who:
                shift = {"u": 6, "g": 3, "o": 0}[w]
                if perm in "rwxX":
                    bits |= {"r": 4, "w": 2, "x": 1, "X": 1}[perm] << shift
        op = m.group(2)
        if op == "+":
            mode |= bits
        elif op == "-":
            mode &= ~bits
        else:
            mask = sum(7 << {"u": 6, "g": 3, "o": 0}[w] for w in ("ugo" if "a" in who else who))
            mode = (mode & ~mask) | bits
    return mode


@builtin("chmod")
async def _chmod(ctx: CommandContext) -> int:
    try:
        flags, _, args = _flags(ctx.argv[1:], "Rfv", min_operands=2)
    except _Usage as e:
        return await _usage(ctx, str(e))
    spec, paths = args[0], args[1:]
    fs, cwd = ctx.device.fs, ctx.session.cwd
    status = 0
    for path in paths:
        try:
            current = stat_mod.S_IMODE(fs.stat(path, cwd).mode)
            fs.chmod(path, _parse_mode(spec, current), cwd)
        except _Usage as e:
            return await _usage(ctx, str(e))
        except OSError as e:
            await ctx.err(f"chmod: {path}: {e.strerror}\n")
            status = 1
    return status


@builtin("touch")
async def _touch(ctx: CommandContext) -> int:
    fs, cwd = ctx.device.fs, ctx.session.cwd
    status = 0
    for path in ctx.argv[1:]:
        try:
            if fs.exists(path, cwd):
                fs.set_mtime(path, int(time.time()), cwd)
            else:
                fs.open_write(path, cwd).close()
        except OSError as e:
            await ctx.err(f"touch: {path}: {e.strerror}\n")
            status = 1
    return status


@builtin("mv")
async def _mv(ctx: CommandContext) -> int:
    try:
        _, _, args = _flags(ctx.argv[1:], "fin", min_operands=2)
    except _Usage as e:
        return await _usage(ctx, str(e))
    status = 0
    for src in args[:-1]:
        try:
            ctx.device.fs.rename(src, args[-1], ctx.session.cwd)
        except OSError as e:
            await ctx.err(f"mv: {src}: {e.strerror}\n")
            status = 1
    return status


async def _copy_file(ctx: CommandContext, src: str, dst: str) -> None:
    fs = ctx.device.fs
    st = fs.stat(src)
    with fs.open_read(src) as f, fs.open_write(dst, mode=stat_mod.S_IMODE(st.mode)) as out:
        while chunk := f.read(COPY_CHUNK_BYTES):
            out.write(chunk)
            await asyncio.sleep(0)  # let other streams of the device progress


async def _copy_tree(ctx: CommandContext, src: str, dst: str) -> None:
    fs = ctx.device.fs
    if fs.stat(src).is_dir:
        fs.mkdir(dst, parents=True)
        for name in fs.listdir(src):
            await _copy_tree(ctx, f"{src}/{name}", f"{dst}/{name}")
    else:
        await _copy_file(ctx, src, dst)


@builtin("cp")
async def _cp(ctx: CommandContext) -> int:
    try:
        flags, _, args = _flags(ctx.argv[1:], "rRfpaiv", min_operands=2)
    except _Usage as e:
        return await _usage(ctx, str(e))
    fs, cwd = ctx.device.fs, ctx.session.cwd
    target = normalize(args[-1], cwd)
    into_dir = fs.exists(target) and fs.stat(target).is_dir
    status = 0
    for src_arg in args[:-1]:
        src = normalize(src_arg, cwd)
        dst = f"{target}/{src.rsplit('/', 1)[1]}" if into_dir else target
        try:
            if fs.stat(src).is_dir:
                if not flags & {"r", "R", "a"}:
                    await ctx.err(f"cp: {src_arg}: Is a directory (use -r)\n")
                    status = 1
                    continue
                await _copy_tree(ctx, src, dst)
            else:
                await _copy_file(ctx, src, dst)
        except OSError as e:
            await ctx.err(f"cp: {e.filename or src_arg}: {e.strerror}\n")
            status = 1
    return status


# --- text filters (pipelines) -------------------------------------------------


async def _inputs(ctx: CommandContext, paths: list[str]) -> AsyncIterator[tuple[str, bytes | None]]:
    """(name, bytes) of each input file, stdin for none or '-'."""
    for path in paths or ["-"]:
        if path == "-":
            yield path, await ctx.io.stdin.read_all()
            continue
        try:
            yield path, ctx.device.fs.read_bytes(path, ctx.session.cwd)
        except OSError as e:
            await ctx.err(f"{ctx.argv[0]}: {path}: {e.strerror}\n")
            yield path, None


@builtin("grep")
async def _grep(ctx: CommandContext) -> int:
    try:
        flags, values, args = _flags(ctx.argv[1:], "ivcqEFlnow", with_value="e")
        if "e" not in values and not args:
            raise _Usage("Needs 1 argument")
    except _Usage as e:
        return await _usage(ctx, str(e))
    pattern = values.get("e") or args.pop(0)
    regex = re.compile(re.escape(pattern) if "F" in flags else pattern, re.IGNORECASE if "i" in flags else 0)
    found = False
    error = False
    many = len(args) > 1
    async for name, data in _inputs(ctx, args):
        if data is None:
            error = True
            continue
        count = 0
        out = []
        for n, line in enumerate(data.decode(errors="replace").splitlines(), 1):
            if bool(regex.search(line)) != ("v" in flags):
                count += 1
                out.append(f"{name + ':' if many else ''}{str(n) + ':' if 'n' in flags else ''}{line}\n")
        found = found or count > 0
        if "q" in flags:
            continue
        if "c" in flags:
            await ctx.out(f"{name + ':' if many else ''}{count}\n")
        elif "l" in flags:
            await ctx.out(f"{name}\n" if count else "")
        else:
            await ctx.out("".join(out))
    return 0 if found else (2 if error else 1)


def _count_arg(args: list[str]) -> tuple[int, list[str]]:
    if args and re.fullmatch(r"-\d+", args[0]):
        return int(args[0][1:]), args[1:]
    _, values, rest = _flags(args, "", with_value="n")
    return int(values.get("n", "10")), rest


@builtin("head")
async def _head(ctx: CommandContext) -> int:
    try:
        n, paths = _count_arg(ctx.argv[1:])
    except (_Usage, ValueError) as e:
        return await _usage(ctx, str(e))
    status = 0
    async for _name, data in _inputs(ctx, paths):
        if data is None:
            status = 1
            continue
        await ctx.out(b"".join(data.splitlines(keepends=True)[:n]))
    return status


@builtin("tail")
async def _tail(ctx: CommandContext) -> int:
    try:
        n, paths = _count_arg(ctx.argv[1:])
    except (_Usage, ValueError) as e:
        return await _usage(ctx, str(e))
    status = 0
    async for _name, data in _inputs(ctx, paths):
        if data is None:
            status = 1
            continue
        await ctx.out(b"".join(data.splitlines(keepends=True)[-n:] if n else []))
    return status


@builtin("wc")
async def _wc(ctx: CommandContext) -> int:
    try:
        flags, _, paths = _flags(ctx.argv[1:], "lwc")
    except _Usage as e:
        return await _usage(ctx, str(e))
    status = 0
    async for name, data in _inputs(ctx, paths):
        if data is None:
            status = 1
            continue
        counts = {"l": data.count(b"\n"), "w": len(data.split()), "c": len(data)}
        shown = [str(counts[f]) for f in "lwc" if f in flags] or [f"{counts[f]:>7}" for f in "lwc"]
        await ctx.out(" ".join(shown) + (f" {name}" if name != "-" else "") + "\n")
    return status


# --- processes --------------------------------------------------------------------


def _signal_number(spec: str) -> int | None:
    if spec.isdigit():
        return int(spec)
    name = spec.upper()
    name = name if name.startswith("SIG") else "SIG" + name
    return getattr(signal.Signals, name, None)


@builtin("kill")
async def _kill(ctx: CommandContext) -> int:
    args = ctx.argv[1:]
    signum = int(signal.SIGTERM)
    if args[:1] == ["-l"]:
        await ctx.out(" ".join(s.name[3:] for s in signal.Signals if not s.name.startswith("SIGRT")) + "\n")
        return 0
    if args[:1] in (["-s"], ["-n"]) and len(args) > 1:
        spec, args = args[1], args[2:]
    elif args and args[0].startswith("-") and len(args[0]) > 1:
        spec, args = args[0][1:], args[1:]
    else:
        spec = None
    if spec is not None:
        parsed = _signal_number(spec)
        if parsed is None:
            return await _usage(ctx, f"Unknown signal '{spec}'")
        signum = int(parsed)
    if not args:
        return await _usage(ctx, "Needs 1 argument")
    status = 0
    for arg in args:
        try:
            if not arg.isdigit() or not ctx.device.processes.signal(int(arg), signum):
                await ctx.err(f"kill: {arg}: No such process\n")
                status = 1
        except PermissionError:
            await ctx.err(f"kill: {arg}: Operation not permitted\n")
            status = 1
    return status


@builtin("ps")
async def _ps(ctx: CommandContext) -> int:
    lines = [f"{'USER':<15}{'PID':>6}{'PPID':>6}{'VSZ':>8}{'RSS':>7} {'WCHAN':<16}{'ADDR':>5} S NAME\n"]
    for p in ctx.device.processes.all():
        vsz_kb = rss_kb = 0
        if p.host_pid is not None:
            try:
                with open(f"/proc/{p.host_pid}/statm") as f:
                    pages = f.read().split()
                vsz_kb, rss_kb = int(pages[0]) * 4, int(pages[1]) * 4
            except OSError:
                pass
        state = "R" if p.host_pid is not None else "S"
        lines.append(f"{p.user:<15}{p.pid:>6}{p.ppid:>6}{vsz_kb:>8}{rss_kb:>7} {'0':<16}{'0':>5} {state} {p.name}\n")
    await ctx.out("".join(lines))
    return 0


@builtin("taskset")
async def _taskset(ctx: CommandContext) -> int:
    args = ctx.argv[1:]
    all_mask = (1 << ctx.device.profile.core_count) - 1
    if args[:1] == ["-p"]:
        if len(args) != 2 or not args[1].isdigit() or ctx.device.processes.get(int(args[1])) is None:
            return await _usage(ctx, f"pid {args[1] if len(args) > 1 else ''}: No such process")
        await ctx.out(f"pid {args[1]}'s affinity mask: {all_mask:x}\n")
        return 0
    if args[:1] == ["-a"]:
        args = args[1:]
    if len(args) < 2:
        return await _usage(ctx, "Needs 2 arguments")
    try:
        mask = int(args[0], 16)
    except ValueError:
        return await _usage(ctx, f"bad mask '{args[0]}'")
    cores = frozenset(c for c in range(ctx.device.profile.core_count) if mask >> c & 1) & ctx.cores
    if not cores:
        await ctx.err("taskset: sched_setaffinity: Invalid argument\n")
        return 1
    return await ctx.session.execute(args[1:], ctx.io, ctx.env, cores)


@builtin("nproc")
async def _nproc(ctx: CommandContext) -> int:
    await ctx.out(f"{len(ctx.cores)}\n")
    return 0


@builtin("uname")
async def _uname(ctx: CommandContext) -> int:
    try:
        flags, _, _ = _flags(ctx.argv[1:], "amnrsvpio")
    except _Usage as e:
        return await _usage(ctx, str(e))
    release = ctx.device.profile.kernel_release
    parts = {"s": "Linux", "n": "localhost", "r": release, "v": "#1 SMP PREEMPT", "m": "x86_64", "o": "Toybox"}
    if "a" in flags:
        flags = set("snrvmo")
    order = [k for k in "snrvmo" if k in (flags or {"s"})]
    await ctx.out(" ".join(parts[k] for k in order) + "\n")
    return 0


@builtin("date")
async def _date(ctx: CommandContext) -> int:
    """toybox's `date [-u] [+FORMAT]` (reading the clock only; the phone runs on UTC). %s is the
    epoch seconds, as toybox and glibc print it whatever the timezone."""
    try:
        _, _, args = _flags(ctx.argv[1:], "u")
    except _Usage as e:
        return await _usage(ctx, str(e))
    if len(args) > 1 or (args and not args[0].startswith("+")):
        return await _usage(ctx, "setting the clock needs root" if args else "Max 1 argument")
    now = time.time()
    fmt = args[0][1:] if args else "%a %b %e %H:%M:%S %Z %Y"
    fmt = re.sub(
        r"%(.)", lambda m: str(int(now)) if m.group(1) == "s" else ("UTC" if m.group(1) == "Z" else m.group(0)), fmt
    )
    await ctx.out(time.strftime(fmt, time.gmtime(now)) + "\n")
    return 0


# --- properties and services ----------------------------------------------------


@builtin("getprop")
async def _getprop(ctx: CommandContext) -> int:
    props = ctx.device.props
    args = ctx.argv[1:]
    if not args:
        await ctx.out("".join(f"[{k}]: [{v}]\n" for k, v in sorted(props.items())))
    else:
        await ctx.out(props.get(args[0], args[1] if len(args) > 1 else "") + "\n")
    return 0


@builtin("setprop")
async def _setprop(ctx: CommandContext) -> int:
    if len(ctx.argv) != 3:
        return await _usage(ctx, "usage: setprop NAME VALUE")
    name, value = ctx.argv[1], ctx.argv[2]
    if name.startswith("ro.") and name in ctx.device.props:
        await ctx.err(f"Failed to set property '{name}' to '{value}'.\nSee dmesg for error reason.\n")
        return 1
    ctx.device.props[name] = value
    return 0


def _battery_report(ctx: CommandContext) -> str:
    model = ctx.device.model
    model.advance()
    lines = ["Current Battery Service state:"]
    if model.updates_stopped:
        lines.append("  (UPDATES STOPPED -- use 'reset' to restart)")
    lines += [
        "  AC powered: false",
        f"  USB powered: {'true' if model.plugged else 'false'}",
        "  Wireless powered: false",
        "  Dock powered: false",
        "  Max charging current: 500000",
        "  Max charging voltage: 5000000",
        f"  Charge counter: {model.charge_counter_uah}",
        f"  status: {DUMPSYS_STATUS_CODE[model.status]}",
        "  health: 2",
        "  present: true",
        f"  level: {model.level_percent}",
        "  scale: 100",
        f"  voltage: {int(round(model.voltage_mv))}",
        f"  temperature: {int(round(model.battery_temp_c * 10))}",
        f"  technology: {ctx.device.profile.battery.technology}",
    ]
    return "\n".join(lines) + "\n"


async def _battery(ctx: CommandContext, args: list[str], tool: str) -> int:
    if not args:
        await ctx.out(_battery_report(ctx))
        return 0
    if args == ["unplug"]:
        ctx.device.model.unplug()
        return 0
    if args == ["reset"]:
        ctx.device.model.reset()
        return 0
    await ctx.err(f"{tool}: battery: unknown command '{' '.join(args)}' (the virtual device supports unplug, reset)\n")
    return 255


@builtin("dumpsys")
async def _dumpsys(ctx: CommandContext) -> int:
    args = ctx.argv[1:]
    if args[:1] == ["-l"] or not args:
        await ctx.out("Currently running services:\n  battery\n")
        return 0
    if args[0] == "battery":
        return await _battery(ctx, args[1:], "dumpsys")
    await ctx.err(f"Can't find service: {args[0]}\n")
    return 0


@builtin("cmd")
async def _cmd(ctx: CommandContext) -> int:
    args = ctx.argv[1:]
    if not args:
        await ctx.err("cmd: No service specified; use -l to list all running services.\n")
        return 20
    if args[0] == "-l":
        await ctx.out("Currently running services:\n  battery\n")
        return 0
    if args[0] == "battery":
        return await _battery(ctx, args[1:], "cmd")
    await ctx.err(f"cmd: Can't find service: {args[0]}\n")
    return 20
