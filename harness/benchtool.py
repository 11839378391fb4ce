"""The benchmark program each phone runs: chosen among the farm's binaries, its dialect learnt from itself.

farm.toml's [binaries] gives each ABI one benchmark_model or two (the classic
tool and LiteRT 2.x's); [[dialects]] rules name the phones that run the
LiteRT one when both exist (the only one that reaches NPUs); [npu.FAMILY]
names the vendor libraries the LiteRT tool needs for an SoC family's NPU. A
phone runs one program for the whole run: numbers from two programs are two
instruments, and the rankings refuse to mix them.
"""

from __future__ import annotations

import hashlib
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from harness.dialect import DialectCache, detect
from harness.digest import file_sha256
from harness.errors import DeviceError, InputFileError
from harness.phone.device import REMOTE_ROOT, Phone
from harness.phone.facts import DeviceInfo
from harness.phone.profiles import DialectRule, NpuLibraries
from harness.records import BenchmarkDialect, CaseStatus, ErrorType

HELP_TIMEOUT_S = 30.0
RUNNER_NAMES = {
    BenchmarkDialect.CLASSIC: "benchmark_model_x86_64",
    BenchmarkDialect.LITERT: "litert_benchmark_model_x86_64",
}


def where_to_get(abi: str | None, dialect: BenchmarkDialect | None = None) -> str:
    """How a user gets a benchmark binary for `abi`: the command first, then the by-hand ways."""
    option = f" --dialect {dialect.value}" if dialect is BenchmarkDialect.LITERT else ""
    return (
        f"run 'harness binaries fetch --abi {abi or 'ABI'}{option}' (the official prebuilt, pinned in "
        "binaries.lock beside your farm.toml), or name a benchmark_model under [binaries] in farm.toml ('harness "
        "config' shows which; 'harness init' writes an editable one), "
        "or pass --binary ABI=PATH to 'harness run'"
    )


@dataclass(frozen=True)
class BenchmarkBinaries:
    """The farm's benchmark programs (farm.toml, plus the project's own x86_64 runners)."""

    by_abi: Mapping[str, tuple[Path, ...]]
    dialect_rules: tuple[DialectRule, ...] = ()
    npu_libraries: tuple[NpuLibraries, ...] = ()
    known: Mapping[Path, BenchmarkDialect] = field(default_factory=dict)  # the runners the harness built itself

    def wanted_dialect(self, device: DeviceInfo) -> BenchmarkDialect | None:
        """The dialect a [[dialects]] rule asks of this phone; None: whatever its ABI has (classic first)."""
        for rule in self.dialect_rules:
            if rule.phones.matches(device):
                return rule.dialect
        return None

    def npu_family(self, device: DeviceInfo) -> NpuLibraries | None:
        return next((family for family in self.npu_libraries if family.phones.matches(device)), None)

    def manifest(self) -> dict[str, list[dict[str, str]]]:
        """What run.json records of the binaries: per ABI each file and its sha256."""
        return {
            abi: [{"path": str(path), "sha256": file_sha256(path)} for path in paths]
            for abi, paths in self.by_abi.items()
        }


@dataclass(frozen=True)
class PhoneTool:
    """The benchmark program chosen for one phone, on the phone."""

    local: Path
    sha256: str
    dialect: BenchmarkDialect
    remote: str


class NoTool(Exception):
    """No benchmark program can run on this phone; every case of it is stored with this status."""

    def __init__(self, status: CaseStatus, error_type: ErrorType, message: str) -> None:
        super().__init__(message)
        self.status, self.error_type, self.message = status, error_type, message


def build_binaries(
    configured: Mapping[str, tuple[Path, ...]], run_dir: Path, farm_file: Path | None = None
) -> BenchmarkBinaries:
    """The farm's binaries: `configured` (farm.toml's [binaries], or --binary) plus the project's x86_64
    runners in both dialects, built into the run's folder so the exact programs stay beside its results."""
    from harness.config import farm_file as farm_file_in_effect
    from harness.phone.profiles import load_dialect_rules, load_npu_libraries
    from harness.runner_zipapp import build_runner

    for abi, paths in configured.items():
        for path in paths:
            if not path.is_file():
                raise InputFileError(f"benchmark binary for {abi} not found: {path}", where_to_get(abi))
    by_abi = dict(configured)
    known: dict[Path, BenchmarkDialect] = {}
    if "x86_64" not in by_abi:
        runners = []
        for dialect, name in RUNNER_NAMES.items():
            runner = run_dir / "bin" / name
            runners.append(runner if runner.is_file() else build_runner(runner, dialect.value))
            known[runner] = dialect
        by_abi["x86_64"] = tuple(runners)
    farm_file = farm_file or farm_file_in_effect()
    return BenchmarkBinaries(by_abi, load_dialect_rules(farm_file), load_npu_libraries(farm_file), known)


def choose_tool(
    phone: Phone, device: DeviceInfo, binaries: BenchmarkBinaries, cache: DialectCache
) -> tuple[PhoneTool, int]:
    """The program this phone runs, pushed; and the bytes pushed. Raises NoTool, DeviceLost, DeviceError.

    A binary's dialect comes from the cache (by sha256) or from its own --help on the phone, once ever.
    """
    candidates = binaries.by_abi.get(device.abi or "", ())
    wanted = binaries.wanted_dialect(device)
    if not candidates:
        raise NoTool(
            CaseStatus.SKIPPED,
            ErrorType.NO_BINARY,
            f"no benchmark binary for ABI {device.abi}: {where_to_get(device.abi, wanted)}",
        )
    pushed = 0
    learnt: list[tuple[Path, str, BenchmarkDialect | None, str | None]] = []
    said: dict[str, str] = {}  # what an unrecognised binary answered, for the message
    for local in candidates:
        sha = file_sha256(local)
        dialect = binaries.known.get(local) or cache.get(sha)
        remote = None
        if dialect is None:
            remote, sent = phone.ensure_file(local, sha, mode=0o755)
            pushed += sent
            answer = probe(phone, remote)
            dialect = detect(answer)
            if dialect is not None:
                cache.put(sha, dialect)
            else:
                said[local.name] = " ".join(answer.split())[:160]
        learnt.append((local, sha, dialect, remote))
    order = [wanted] if wanted else [BenchmarkDialect.CLASSIC, BenchmarkDialect.LITERT]
    for dialect in order:
        for local, sha, found, remote in learnt:
            if found is dialect:
                if remote is None:
                    remote, sent = phone.ensure_file(local, sha, mode=0o755)
                    pushed += sent
                return PhoneTool(local, sha, dialect, remote), pushed
    unknown = "; ".join(f"{name} answered {answer!r}" for name, answer in said.items())
    if wanted is not None:
        message = (
            f"farm.toml's [[dialects]] asks for the {wanted.value} benchmark_model on this phone, but "
            f"[binaries] has none for ABI {device.abi}: {where_to_get(device.abi, wanted)}"
        )
        raise NoTool(CaseStatus.SKIPPED, ErrorType.NO_BINARY, message)
    raise NoTool(
        CaseStatus.FAILED,
        ErrorType.UNKNOWN_BINARY,
        f"cannot tell which benchmark program this is: asked --help, {unknown}, which names neither the "
        f"classic nor the LiteRT 2.x benchmark_model's flags; {where_to_get(device.abi)}",
    )


def probe(phone: Phone, remote_binary: str) -> str:
    """What a binary on the phone answers to --help (both tools print their flags table)."""
    result = phone.shell(f"{shlex.quote(remote_binary)} --help 2>&1", timeout_s=HELP_TIMEOUT_S)
    return f"(no answer within {HELP_TIMEOUT_S:g} s)" if result.timed_out else result.text


def npu_folder(family: NpuLibraries) -> str:
    """Where the family's libraries live on a phone: one folder (the LiteRT tool takes a folder), named by
    their contents. Raises DeviceError when a library is missing here."""
    return f"{REMOTE_ROOT}/npu-{hashlib.sha256(''.join(_library_shas(family)).encode()).hexdigest()[:16]}"


def _library_shas(family: NpuLibraries) -> list[str]:
    for library in family.libraries:
        if not library.is_file():
            raise DeviceError(
                f"NPU library of [npu.{family.family}] not found: {library}",
                "fix the path in farm.toml (relative to it; 'harness config' shows which file), or remove the entry",
            )
    return [file_sha256(library) for library in family.libraries]


def push_npu_libraries(phone: Phone, family: NpuLibraries) -> int:
    """Puts the family's libraries into npu_folder(family) on the phone; returns the bytes pushed."""
    folder = npu_folder(family)
    pushed = 0
    for library, sha in zip(family.libraries, _library_shas(family), strict=False):
        pushed += phone.ensure_file(library, sha, remote=f"{folder}/{library.name}")[1]
    return pushed
