"""Official prebuilt benchmark programs: where they come from, the cache, the lock, farm.toml.

`harness binaries fetch` downloads Google's prebuilt benchmark binaries for Android, keeps
them in a content-addressed cache (`binaries/<sha256[:16]>/<file name>`, mode 0755), pins
each one in `binaries.lock` beside the lab's farm.toml (url, sha256, size) and names it under
`[binaries]` of farm.toml, so `harness run` pushes it to every phone of that ABI.

Two generations of the tool exist (`BenchmarkDialect`):
- classic: TensorFlow Lite's `benchmark_model` (Interpreter API), nightly builds for
  arm64-v8a and armeabi-v7a;
- litert: LiteRT 2.x's `benchmark_model` (CompiledModel API), arm64-v8a only, versioned
  like the `ai-edge-litert` package (the path Google's LiteRT CLI downloads from).
There is no official Android x86_64 build of either.

The lock makes a fetch repeatable: when the cache already holds the pinned sha256 nothing is
downloaded (works offline), and bytes that differ from the pin are refused unless the caller
asks to update. A fetch is all or nothing: every requested file is downloaded and checked
before anything is cached, locked or written to farm.toml.
"""

from __future__ import annotations

import hashlib
import http.client
import importlib.metadata
import os
import socket
import tomllib
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path, PurePosixPath
from typing import TypeVar
from urllib.parse import urlsplit

import tomlkit
from tomlkit.items import KeyType, SingleKey

from harness import __version__
from harness.atomic import write_atomically
from harness.config import LOCK_FILE_NAME, writable_farm_file
from harness.config import farm_file as farm_file_in_effect
from harness.digest import file_sha256
from harness.errors import (
    DownloadError,
    InputFileError,
    PinMismatchError,
    SchemaError,
    UsageError,
)
from harness.locations import user_cache_dir
from harness.phone.profiles import load_binaries
from harness.records import BenchmarkDialect
from harness.versioned import checked_version

OFFICIAL_BASE = "https://storage.googleapis.com"
"""Every official binary lives under this base; `mirror` replaces it (a lab proxy, a test server)."""

LOCK_SCHEMA_VERSION = 1
FARM_SCHEMA_VERSION = 1
DEFAULT_TIMEOUT_S = 60.0
BINARY_MODE = 0o755
_CHUNK = 1 << 16

_LOCK_HEADER = """\
Pinned benchmark binaries, written by `harness binaries fetch` (do not edit by hand).
One [[binaries]] per fetched file: where it came from and the sha256 of its bytes. A later
fetch that receives different bytes is refused unless run with --update; when the cache
already holds a pinned sha256, nothing is downloaded. `harness binaries ls` shows the state.
"""


class Abi(str, Enum):
    """Android ABIs a phone or emulator reports (ro.product.cpu.abi)."""

    ARM64_V8A = "arm64-v8a"
    ARMEABI_V7A = "armeabi-v7a"
    X86_64 = "x86_64"
    X86 = "x86"


@dataclass(frozen=True)
class BinarySource:
    """Where one official binary lives: `path` is relative to OFFICIAL_BASE (or a mirror)."""

    dialect: BenchmarkDialect
    abi: Abi
    path: str  # e.g. "tensorflow-nightly-public/prod/.../android_aarch64_benchmark_model"

    @property
    def file_name(self) -> str:
        return PurePosixPath(self.path).name

    @property
    def url(self) -> str:
        """The official URL: what the lock records, whichever mirror served the bytes."""
        return f"{OFFICIAL_BASE}/{self.path}"

    def url_from(self, mirror: str | None) -> str:
        """The URL to download from: the official one, or the same path under `mirror`."""
        return f"{mirror.rstrip('/')}/{self.path}" if mirror else self.url


_CLASSIC_NIGHTLY = "tensorflow-nightly-public/prod/tensorflow/release/lite/tools/nightly/latest"
_CLASSIC_FILES = {Abi.ARM64_V8A: "android_aarch64_benchmark_model", Abi.ARMEABI_V7A: "android_arm_benchmark_model"}
_LITERT_DIRS = {Abi.ARM64_V8A: "android_arm64"}

_NO_X86_64 = (
    "Google publishes no Android x86_64 benchmark_model. The virtual farm runs the project's own runner "
    "and needs none; for an emulator, build //tensorflow/lite/tools/benchmark:benchmark_model with bazel "
    "--config=android_x86_64 and pass --binary x86_64=PATH to harness run"
)


def litert_version() -> str:
    """The LiteRT binaries' version: the installed ai-edge-litert's, else "latest" (as Google's LiteRT CLI does)."""
    try:
        return importlib.metadata.version("ai-edge-litert")
    except importlib.metadata.PackageNotFoundError:
        return "latest"


def official_builds() -> dict[BenchmarkDialect, tuple[Abi, ...]]:
    """The ABIs that have an official build, per dialect."""
    return {BenchmarkDialect.CLASSIC: tuple(_CLASSIC_FILES), BenchmarkDialect.LITERT: tuple(_LITERT_DIRS)}


def _what_exists() -> str:
    return "; ".join(
        f"{dialect.value}: {', '.join(abi.value for abi in abis)}" for dialect, abis in official_builds().items()
    )


def parse_abi(text: str) -> Abi:
    try:
        return Abi(text.strip())
    except ValueError:
        raise UsageError(f"unknown ABI {text.strip()!r}", f"use one of {', '.join(abi.value for abi in Abi)}") from None


def parse_dialect(text: str) -> BenchmarkDialect:
    try:
        return BenchmarkDialect(text.strip())
    except ValueError:
        raise UsageError(
            f"unknown benchmark dialect {text.strip()!r}", f"use one of {', '.join(d.value for d in BenchmarkDialect)}"
        ) from None


def official_source(dialect: BenchmarkDialect, abi: Abi, litert_version_: str | None = None) -> BinarySource:
    """The official build of `dialect` for `abi`; UsageError (naming what exists) when there is none."""
    dialect, abi = BenchmarkDialect(dialect), Abi(abi)
    if dialect is BenchmarkDialect.CLASSIC and abi in _CLASSIC_FILES:
        return BinarySource(dialect, abi, f"{_CLASSIC_NIGHTLY}/{_CLASSIC_FILES[abi]}")
    if dialect is BenchmarkDialect.LITERT and abi in _LITERT_DIRS:
        version = litert_version_ or litert_version()
        return BinarySource(dialect, abi, f"litert/binaries/{version}/{_LITERT_DIRS[abi]}/benchmark_model")
    if abi is Abi.X86_64:
        raise UsageError(
            f"no official {dialect.value} benchmark binary for x86_64",
            f"{_NO_X86_64} (official builds: {_what_exists()})",
        )
    raise UsageError(
        f"no official {dialect.value} benchmark binary for {abi.value}",
        f"official builds exist for {_what_exists()}; for another ABI build one yourself and pass --binary "
        f"{abi.value}=PATH to harness run",
    )


# ---------------------------------------------------------------- cache


def cached_path(root: Path, sha256: str, file_name: str) -> Path:
    """Where the file with `sha256` lives in the cache at `root`."""
    return root / "binaries" / sha256[:16] / file_name


def cached_file(root: Path, sha256: str, file_name: str) -> Path | None:
    """The cached file, when it is there with exactly these bytes."""
    path = cached_path(root, sha256, file_name)
    if path.is_file() and file_sha256(path) == sha256:
        return path
    return None


Progress = Callable[[str, int, "int | None"], None]
"""progress(url, bytes_so_far, total_bytes_or_None), called as a download streams."""


@dataclass(frozen=True)
class Download:
    """A complete, checked download waiting in the cache folder under a temporary name."""

    url: str
    temp: Path
    sha256: str
    size_bytes: int


def _download_fix(source: BinarySource | None, farm_file: Path | None) -> str:
    where = f"under [binaries] in {farm_file}" if farm_file else "under [binaries] in farm.toml"
    abi = source.abi.value if source else "ABI"
    official = f" ({source.url})" if source else ""
    return (
        f"download it by hand{official} and pass --binary {abi}=PATH to harness run, or name it {where}; "
        "behind a proxy, pass --mirror URL"
    )


def download(
    url: str,
    folder: Path,
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    progress: Progress | None = None,
    fix: str | None = None,
) -> Download:
    """Stream `url` into a temporary file inside `folder`, hashing as it goes.

    The body must be as long as its Content-Length; on any failure the temporary file is
    removed and DownloadError names the URL and `fix`.
    """
    fix = fix or _download_fix(None, None)
    folder.mkdir(parents=True, exist_ok=True)
    temp = folder / f".download-{uuid.uuid4().hex}.tmp"
    request = urllib.request.Request(url, headers={"User-Agent": f"tflite-farm/{__version__}"})
    digest = hashlib.sha256()
    received = 0
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response, open(temp, "wb") as out:
            length_text = response.headers.get("Content-Length")
            expected = int(length_text) if length_text and length_text.isdigit() else None
            if progress:
                progress(url, 0, expected)
            while True:
                try:
                    block = response.read(_CHUNK)
                except http.client.IncompleteRead as error:
                    block = error.partial
                    digest.update(block)
                    received += len(block)
                    break
                if not block:
                    break
                out.write(block)
                digest.update(block)
                received += len(block)
                if progress:
                    progress(url, received, expected)
            if expected is not None and received != expected:
                raise DownloadError(
                    f"download of {url} was cut short: {received} of {expected} bytes arrived (nothing was cached)", fix
                )
            out.flush()
            os.fsync(out.fileno())
    except DownloadError:
        temp.unlink(missing_ok=True)
        raise
    except urllib.error.HTTPError as error:
        temp.unlink(missing_ok=True)
        raise DownloadError(f"cannot download {url}: HTTP {error.code} {error.reason}", fix) from None
    except urllib.error.URLError as error:
        temp.unlink(missing_ok=True)
        reason = error.reason
        what = reason.strerror if isinstance(reason, OSError) and reason.strerror else str(reason)
        if isinstance(reason, socket.gaierror):
            what = f"host name lookup failed ({what}); offline?"
        raise DownloadError(f"cannot reach {url}: {what}", fix) from None
    except TimeoutError:
        temp.unlink(missing_ok=True)
        raise DownloadError(f"download of {url} timed out after {timeout_s:g} s", fix) from None
    except (OSError, http.client.HTTPException) as error:
        temp.unlink(missing_ok=True)
        raise DownloadError(f"download of {url} failed: {error}", fix) from None
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return Download(url=url, temp=temp, sha256=digest.hexdigest(), size_bytes=received)


def store_in_cache(root: Path, download_: Download, file_name: str) -> Path:
    """Move a checked download to its content address in the cache, executable."""
    target = cached_path(root, download_.sha256, file_name)
    target.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(download_.temp, BINARY_MODE)
    os.replace(download_.temp, target)
    return target


# ---------------------------------------------------------------- lock


@dataclass(frozen=True)
class LockEntry:
    """One pinned file: the official URL it comes from and the sha256 of its bytes."""

    dialect: BenchmarkDialect
    abi: Abi
    url: str
    sha256: str
    size_bytes: int
    fetched_at: str  # ISO 8601, UTC

    @property
    def key(self) -> tuple[str, str]:
        return (self.dialect.value, self.abi.value)

    @property
    def file_name(self) -> str:
        return PurePosixPath(urlsplit(self.url).path).name

    def to_json(self) -> dict[str, object]:
        return {
            "dialect": self.dialect.value,
            "abi": self.abi.value,
            "url": self.url,
            "sha256": self.sha256,
            "size_bytes": self.size_bytes,
            "fetched_at": self.fetched_at,
        }


@dataclass(frozen=True)
class BinaryLock:
    entries: tuple[LockEntry, ...] = ()

    def get(self, dialect: BenchmarkDialect, abi: Abi) -> LockEntry | None:
        return next((entry for entry in self.entries if entry.key == (dialect.value, abi.value)), None)

    def with_entry(self, new: LockEntry) -> BinaryLock:
        kept = [entry for entry in self.entries if entry.key != new.key]
        return BinaryLock(tuple(sorted([*kept, new], key=lambda entry: entry.key)))


def read_lock(path: Path) -> BinaryLock:
    """The lock at `path` (empty when there is none yet)."""
    path = Path(path)
    if not path.exists():
        return BinaryLock()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise InputFileError(
            f"cannot read {path} ({error})", "fix the file, or delete it and run harness binaries fetch"
        ) from None
    checked_version(path, "binaries lock", data.get("schema_version"), LOCK_SCHEMA_VERSION)
    entries = []
    for index, raw in enumerate(data.get("binaries", ())):
        try:
            entries.append(
                LockEntry(
                    dialect=BenchmarkDialect(raw["dialect"]),
                    abi=Abi(raw["abi"]),
                    url=str(raw["url"]),
                    sha256=str(raw["sha256"]).lower(),
                    size_bytes=int(raw["size_bytes"]),
                    fetched_at=str(raw["fetched_at"]),
                )
            )
        except (KeyError, ValueError, TypeError) as error:
            raise SchemaError(
                f"{path} [[binaries]] #{index + 1} is malformed ({error!r})",
                "delete that entry (or the file) and run harness binaries fetch again",
            ) from None
    return BinaryLock(tuple(sorted(entries, key=lambda entry: entry.key)))


def write_lock(path: Path, lock: BinaryLock) -> None:
    """Write the lock atomically, entries sorted by (dialect, abi)."""
    document = tomlkit.document()
    for line in _LOCK_HEADER.splitlines():
        document.add(tomlkit.comment(line))
    document.add("schema_version", LOCK_SCHEMA_VERSION)
    tables = tomlkit.aot()
    for entry in sorted(lock.entries, key=lambda entry: entry.key):
        table = tomlkit.table()
        for name, value in entry.to_json().items():
            table.add(name, value)
        tables.append(table)
    document.add("binaries", tables)
    text = tomlkit.dumps(document)
    write_atomically(Path(path), lambda out: out.write(text.encode("utf-8")))


# ---------------------------------------------------------------- farm.toml


def _farm_document(farm_file: Path) -> tomlkit.TOMLDocument:
    if not farm_file.exists():
        document = tomlkit.document()
        document.add(
            tomlkit.comment("The device farm: adb servers and benchmark binaries (see harness/phone/profiles.py).")
        )
        document.add("schema_version", FARM_SCHEMA_VERSION)
        return document
    try:
        document = tomlkit.parse(farm_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomlkit.exceptions.TOMLKitError) as error:
        raise InputFileError(f"cannot read {farm_file} ({error})", "fix its TOML syntax") from None
    checked_version(farm_file, "farm file", document.get("schema_version"), FARM_SCHEMA_VERSION)
    return document


def farm_paths(farm_file: Path) -> dict[str, tuple[Path, ...]]:
    """[binaries] of farm.toml as ABI -> paths; {} when there is no farm file yet."""
    farm_file = Path(farm_file)
    return load_binaries(farm_file) if farm_file.exists() else {}


def _is_cache_copy(path_text: str, sha256: str, file_name: str) -> bool:
    """Whether `path_text` names the cached copy of these bytes, under whatever cache root wrote it."""
    path = PurePosixPath(path_text.replace(os.sep, "/"))
    return path.name == file_name and path.parent.name == sha256[:16] and path.parent.parent.name == "binaries"


def wire_into_farm(farm_file: Path, abi: Abi, new_path: Path, replaces: Iterable[tuple[str, str]] = ()) -> None:
    """Name `new_path` under [binaries] for `abi`, editing farm.toml in place (comments survive).

    `replaces` lists (sha256, file name) of binaries this one supersedes (what the lock pinned
    for the same dialect and ABI); their paths leave the entry, any other path stays. One
    path is written as a string, several as a list.
    """
    farm_file = Path(farm_file)
    document = _farm_document(farm_file)
    if "binaries" not in document:
        document.add(tomlkit.nl())
        document.add("binaries", tomlkit.table())
    table = document["binaries"]
    current = table.get(abi.value)
    paths = (
        [current] if isinstance(current, str) else [str(item) for item in current] if isinstance(current, list) else []
    )
    new_text = str(Path(new_path).resolve())
    replaced = [(sha, name) for sha, name in replaces]
    result: list[str] = []
    placed = False
    for text in paths:
        stale = any(_is_cache_copy(text, sha, name) for sha, name in replaced)
        same = (farm_file.parent / text).resolve() == Path(new_text)
        if stale or same:
            if not placed:
                result.append(new_text)
                placed = True
            continue
        result.append(str(text))
    if not placed:
        result.append(new_text)
    if len(result) == 1:
        value: object = result[0]
    else:
        value = tomlkit.array()
        value.extend(result)
        value.multiline(True)
    if abi.value in table:
        table[abi.value] = value
    else:
        # Quoted like the commented example in the shipped farm.toml: "arm64-v8a" = "PATH".
        table.add(SingleKey(abi.value, KeyType.Basic), value)
    text = tomlkit.dumps(document)
    write_atomically(farm_file, lambda out: out.write(text.encode("utf-8")))


# ---------------------------------------------------------------- fetch


class FetchAction(str, Enum):
    DOWNLOADED = "downloaded"  # first pin of this dialect and ABI
    CACHED = "cached"  # the cache held the pinned bytes: nothing downloaded
    UNCHANGED = "unchanged"  # downloaded again (--update, or the cache lacked it) and the bytes are those pinned
    UPDATED = "updated"  # --update took bytes that differ from the old pin


@dataclass(frozen=True)
class FetchRequest:
    abis: tuple[Abi, ...] = (Abi.ARM64_V8A,)
    dialects: tuple[BenchmarkDialect, ...] = (BenchmarkDialect.CLASSIC,)
    farm_file: Path | None = None  # default: the farm.toml in effect, when it is the lab's (not the packaged one)
    lock_file: Path | None = None  # default: binaries.lock beside farm_file
    cache_root: Path | None = None  # default: user_cache_dir()
    mirror: str | None = None
    update: bool = False
    litert_version: str | None = None  # default: litert_version()
    timeout_s: float = DEFAULT_TIMEOUT_S

    @property
    def farm_path(self) -> Path:
        return Path(self.farm_file) if self.farm_file else writable_farm_file()

    @property
    def lock_path(self) -> Path:
        return Path(self.lock_file) if self.lock_file else self.farm_path.parent / LOCK_FILE_NAME


@dataclass(frozen=True)
class FetchedBinary:
    entry: LockEntry
    path: Path
    action: FetchAction
    downloaded_from: str | None  # None when the cache served it
    previous_sha256: str | None = None

    def to_json(self) -> dict[str, object]:
        return {
            **self.entry.to_json(),
            "path": str(self.path),
            "action": self.action.value,
            "downloaded_from": self.downloaded_from,
            "previous_sha256": self.previous_sha256,
        }


@dataclass(frozen=True)
class FetchResult:
    farm_file: Path
    lock_file: Path
    binaries: tuple[FetchedBinary, ...]

    def to_json(self) -> dict[str, object]:
        return {
            "farm_file": str(self.farm_file),
            "lock_file": str(self.lock_file),
            "binaries": [binary.to_json() for binary in self.binaries],
        }


def _check_mirror(mirror: str | None) -> None:
    if mirror is None:
        return
    parts = urlsplit(mirror)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise UsageError(f"--mirror {mirror!r} is not an http(s) URL", "e.g. --mirror https://proxy.lab.example/gcs")


def _now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def fetch_binaries(request: FetchRequest, progress: Progress | None = None) -> FetchResult:
    """Fetch, cache, pin and wire the official binaries `request` asks for (all or nothing)."""
    _check_mirror(request.mirror)
    farm_file = request.farm_path.resolve()
    lock_path = request.lock_path.resolve()
    root = Path(request.cache_root).resolve() if request.cache_root else user_cache_dir()
    # Every combination must exist before anything is downloaded.
    sources = [
        official_source(dialect, abi, request.litert_version)
        for dialect in dict.fromkeys(request.dialects)
        for abi in dict.fromkeys(request.abis)
    ]
    lock = read_lock(lock_path)
    if farm_file.exists():
        _farm_document(farm_file)  # refuse a newer or broken farm.toml before downloading
    staging = root / "binaries"
    pending: list[tuple[BinarySource, LockEntry | None, Download | None, Path | None]] = []
    try:
        for source in sources:
            pinned = lock.get(source.dialect, source.abi)
            if pinned and pinned.url != source.url and not request.update:
                raise PinMismatchError(
                    f"{lock_path} pins {source.dialect.value} {source.abi.value} from {pinned.url}, not {source.url}",
                    "pass --update to pin the new source"
                    + (", or the --litert-version the lock pins" if source.dialect is BenchmarkDialect.LITERT else ""),
                )
            hit = cached_file(root, pinned.sha256, source.file_name) if pinned and pinned.url == source.url else None
            if hit and not request.update:
                pending.append((source, pinned, None, hit))
                continue
            url = source.url_from(request.mirror)
            fetched = download(
                url, staging, timeout_s=request.timeout_s, progress=progress, fix=_download_fix(source, farm_file)
            )
            pending.append((source, pinned, fetched, None))
            if pinned and fetched.sha256 != pinned.sha256 and not request.update:
                raise PinMismatchError(
                    f"{url} sent different bytes than {lock_path} pins for {source.dialect.value} {source.abi.value}: "
                    f"sha256 {fetched.sha256} ({fetched.size_bytes} bytes), pinned {pinned.sha256} "
                    f"({pinned.size_bytes} bytes); nothing was replaced",
                    "if a new build is expected (nightlies change), run harness binaries fetch again with --update; "
                    "otherwise check what sits between you and the server (--mirror, proxy)",
                )
    except BaseException:
        for _, _, staged, _ in pending:
            if staged:
                staged.temp.unlink(missing_ok=True)
        raise
    # Everything arrived and checked: cache, pin, wire.
    results = []
    for source, pinned, arrived, hit in pending:
        if arrived is None:
            assert pinned is not None and hit is not None
            results.append(FetchedBinary(pinned, hit, FetchAction.CACHED, None))
            continue
        path = store_in_cache(root, arrived, source.file_name)
        same = pinned is not None and pinned.sha256 == arrived.sha256 and pinned.url == source.url
        entry = (
            pinned
            if pinned is not None and same
            else LockEntry(source.dialect, source.abi, source.url, arrived.sha256, arrived.size_bytes, _now())
        )
        action = FetchAction.DOWNLOADED if pinned is None else FetchAction.UNCHANGED if same else FetchAction.UPDATED
        results.append(
            FetchedBinary(entry, path, action, arrived.url, None if same or pinned is None else pinned.sha256)
        )
        lock = lock.with_entry(entry)
    write_lock(lock_path, lock)
    for binary, (_, pinned, _, _) in zip(results, pending, strict=False):
        stale = [(pinned.sha256, pinned.file_name)] if pinned else []
        wire_into_farm(farm_file, binary.entry.abi, binary.path, replaces=stale)
    return FetchResult(farm_file, lock_path, tuple(results))


# ---------------------------------------------------------------- ls


@dataclass(frozen=True)
class PinStatus:
    """One lock entry and where it stands on this machine."""

    entry: LockEntry
    path: Path  # where the cache keeps it
    in_cache: bool  # the file is there with the pinned sha256
    in_farm: bool  # farm.toml's [binaries] names that path for its ABI

    def to_json(self) -> dict[str, object]:
        return {**self.entry.to_json(), "path": str(self.path), "in_cache": self.in_cache, "in_farm": self.in_farm}


def list_pins(
    farm: Path | None = None, lock_file: Path | None = None, root: Path | None = None
) -> tuple[PinStatus, ...]:
    """What the lock pins, whether each file is cached with the right bytes, and whether farm.toml names it.

    `farm` defaults to the farm.toml in effect (harness.config), packaged or not: this only reads."""
    farm_file = Path(farm).resolve() if farm else farm_file_in_effect()
    lock_path = Path(lock_file).resolve() if lock_file else farm_file.parent / LOCK_FILE_NAME
    root = Path(root).resolve() if root else user_cache_dir()
    wired = farm_paths(farm_file)
    statuses = []
    for entry in read_lock(lock_path).entries:
        path = cached_path(root, entry.sha256, entry.file_name)
        statuses.append(
            PinStatus(
                entry=entry,
                path=path,
                in_cache=cached_file(root, entry.sha256, entry.file_name) is not None,
                in_farm=path.resolve() in wired.get(entry.abi.value, ()),
            )
        )
    return tuple(statuses)


_T = TypeVar("_T")


def parse_list(text: str, parse: Callable[[str], _T], flag: str) -> tuple[_T, ...]:
    values = tuple(parse(item) for item in text.split(",") if item.strip())
    if not values:
        raise UsageError(f"{flag} is empty", f"give at least one value to {flag}")
    return values
