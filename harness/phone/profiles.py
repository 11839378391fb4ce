"""Tier rules (tiers.toml) and the farm's adb servers, binaries and rules (farm.toml).

Which files: the caller's, else those harness.config finds (--config, $HARNESS_CONFIG,
./device_profiles/, the user's config folder, the packaged defaults).
"""

from __future__ import annotations

import fnmatch
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import config
from harness.errors import InputFileError, SchemaError
from harness.phone.facts import DeviceInfo
from harness.records import BenchmarkDialect
from harness.versioned import checked_version

SUPPORTED_SCHEMA_VERSION = 1
DEFAULT_ADB_PORT = 5037


@dataclass(frozen=True)
class TierRule:
    """One ordered rule; every condition that is set must hold."""

    id: str
    tier: str
    soc_globs: tuple[str, ...] = ()  # empty: any SoC
    min_ram_bytes: int | None = None
    min_sdk: int | None = None

    def matches(self, device: DeviceInfo | TierFacts) -> bool:
        facts = device if isinstance(device, TierFacts) else tier_facts(device)
        if self.soc_globs and not any(
            fnmatch.fnmatchcase(identity.lower(), glob.lower())
            for identity in facts.soc_identities
            for glob in self.soc_globs
        ):
            return False
        if self.min_ram_bytes is not None and (facts.ram_bytes or 0) < self.min_ram_bytes:
            return False
        if self.min_sdk is not None and (facts.sdk or 0) < self.min_sdk:
            return False
        return True


@dataclass(frozen=True)
class Classification:
    tier: str
    rule_id: str


@dataclass(frozen=True)
class TierRules:
    tiers: tuple[str, ...]  # display order, best first
    rules: tuple[TierRule, ...]

    def classify(self, device: DeviceInfo | TierFacts) -> Classification:
        facts = device if isinstance(device, TierFacts) else tier_facts(device)
        for rule in self.rules:
            if rule.matches(facts):
                return Classification(rule.tier, rule.id)
        # load_tiers guarantees a catch-all rule, so this is a broken invariant.
        raise AssertionError("tier rules without a catch-all rule")


@dataclass(frozen=True)
class TierFacts:
    """All a tier rule looks at: the SoC identities, RAM and SDK of one phone.

    The sweep stores these with every row, so a phone is classified the same way
    when it is discovered, swept, resolved against a policy and judged by coverage.
    """

    soc_identities: tuple[str, ...]
    ram_bytes: int | None = None
    sdk: int | None = None


def soc_identities(device: DeviceInfo) -> tuple[str, ...]:
    """The strings a SoC glob is matched against.

    ro.soc.model is authoritative when the phone sets it (Android 12+); board
    names are shared by several SoCs (lahaina is both SM8350 and SM7325), so
    they only count on phones that do not name their SoC.
    """
    if device.soc_model:
        return (device.soc_model,)
    return tuple(value for value in (device.chipname, device.board_platform, device.hardware) if value)


def tier_facts(device: DeviceInfo) -> TierFacts:
    return TierFacts(soc_identities(device), device.ram_bytes, device.sdk)


def soc_name(device: DeviceInfo) -> str | None:
    """The most specific SoC name the phone gives, for people to read (never for matching)."""
    return device.soc_model or device.chipname or device.board_platform or device.hardware or device.cpu_hardware


def glob_problem(pattern: str) -> str | None:
    """Why `pattern` is not a well-formed glob (`*`, `?`, `[...]`, `[!...]`), or None.

    fnmatch quietly reads an unclosed `[` as a literal character, but an app that
    turns the glob into a regular expression fails on it, and either way it is a
    typo: the harness and the app must not disagree about what a pattern means.
    """
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if char == "[":
            start = index + 1
            if pattern[start : start + 1] == "!":
                start += 1
            if pattern[start : start + 1] == "]":
                start += 1  # a ']' first in a class is a member, as in fnmatch
            close = pattern.find("]", start)
            if close < 0:
                return f"the '[' at position {index + 1} is never closed"
            index = close + 1
        elif char == "]":
            return f"the ']' at position {index + 1} closes no '['"
        else:
            index += 1
    return None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError as error:
        raise InputFileError(
            f"{path} does not exist", "pass an existing file; 'harness config' shows which files are in effect"
        ) from error
    except tomllib.TOMLDecodeError as error:
        raise InputFileError(f"{path} is not valid TOML ({error})", "fix the syntax at the position given") from error


def _check_version(data: Mapping[str, Any], path: Path) -> None:
    checked_version(path, "configuration file", data.get("schema_version"), SUPPORTED_SCHEMA_VERSION)


def load_tiers(path: Path | None = None) -> TierRules:
    path = path or config.tiers_file()
    data = _read_toml(path)
    _check_version(data, path)
    families: dict[str, list[str]] = data.get("families", {})
    tiers = tuple(data.get("tiers", ()))
    for name, globs in families.items():
        for glob in globs:
            why = glob_problem(glob) if isinstance(glob, str) and glob else "it is not a non-empty string"
            if why:
                raise SchemaError(
                    f"{path}: SoC family {name!r} has a bad pattern {glob!r}: {why}",
                    "write a glob of *, ? and [...] (an app turns it into a regular expression)",
                )
    rules = []
    for index, raw in enumerate(data.get("rules", ())):
        where = f"{path} rule #{index + 1}"
        if not isinstance(raw.get("id"), str) or raw.get("tier") not in tiers:
            raise SchemaError(
                f"{where} needs an `id` and a `tier` from {list(tiers)}",
                "add them, or add the tier's name to the `tiers` list",
            )
        unknown = [name for name in raw.get("families", ()) if name not in families]
        if unknown:
            raise SchemaError(
                f"{where} names unknown SoC families {unknown}", f"define them under [families] in {path}"
            )
        rules.append(
            TierRule(
                id=raw["id"],
                tier=raw["tier"],
                soc_globs=tuple(glob for name in raw.get("families", ()) for glob in families[name]),
                min_ram_bytes=raw.get("min_ram_bytes"),
                min_sdk=raw.get("min_sdk"),
            )
        )
    last = rules[-1] if rules else None
    if last is None or last.soc_globs or last.min_ram_bytes is not None or last.min_sdk is not None:
        raise SchemaError(
            f"{path}: the last rule must have no conditions, so that every device gets a tier",
            'end the file with a catch-all rule, e.g. [[rules]] id = "low-fallback" tier = "low"',
        )
    return TierRules(tiers=tiers, rules=tuple(rules))


@dataclass(frozen=True)
class AdbServer:
    host: str
    port: int

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


def load_binaries(path: Path | None = None) -> dict[str, tuple[Path, ...]]:
    """[binaries] of farm.toml: ABI -> its benchmark binaries (paths relative to the file).

    An ABI names one path, or a list when it has both the classic and the LiteRT 2.x benchmark_model;
    which is which the harness learns from each binary itself (harness.dialect).
    """
    path = path or config.farm_file()
    data = _read_toml(path)
    _check_version(data, path)
    binaries = {}
    for abi, locations in data.get("binaries", {}).items():
        listed = [locations] if isinstance(locations, str) else locations
        if not isinstance(listed, list) or not listed or not all(isinstance(p, str) and p for p in listed):
            raise SchemaError(
                f"{path}: [binaries] {abi!r} is {locations!r}",
                'name a path, or a list of paths: "arm64-v8a" = ["classic/benchmark_model", "litert/benchmark_model"]',
            )
        binaries[abi] = tuple((path.parent / location).resolve() for location in listed)
    return binaries


@dataclass(frozen=True)
class PhoneMatch:
    """Which phones a farm.toml rule is about: product models (exact) or SoC globs, as tiers.toml matches SoCs."""

    models: tuple[str, ...] = ()
    soc_globs: tuple[str, ...] = ()

    def matches(self, device: DeviceInfo) -> bool:
        if device.model is not None and device.model in self.models:
            return True
        return any(
            fnmatch.fnmatchcase(identity.lower(), glob.lower())
            for identity in soc_identities(device)
            for glob in self.soc_globs
        )


@dataclass(frozen=True)
class DialectRule:
    dialect: BenchmarkDialect
    phones: PhoneMatch


@dataclass(frozen=True)
class NpuLibraries:
    """One SoC family's NPU dispatch / compiler-plugin libraries, pushed beside the LiteRT binary."""

    family: str
    phones: PhoneMatch
    libraries: tuple[Path, ...]


def _phone_match(raw: Mapping[str, Any], where: str, path: Path) -> PhoneMatch:
    models, socs = raw.get("models", []), raw.get("socs", [])
    for name, value in (("models", models), ("socs", socs)):
        if not isinstance(value, list) or not all(isinstance(item, str) and item for item in value):
            raise SchemaError(f"{path}: {where} `{name}` is {value!r}", f"write `{name}` as a list of strings")
    for glob in socs:
        why = glob_problem(glob)
        if why:
            raise SchemaError(
                f"{path}: {where} has a bad SoC pattern {glob!r}: {why}", "write a glob of *, ? and [...]"
            )
    if not models and not socs:
        raise SchemaError(f"{path}: {where} matches no phone", "give it `models` and/or `socs`")
    return PhoneMatch(tuple(models), tuple(socs))


def load_dialect_rules(path: Path | None = None) -> tuple[DialectRule, ...]:
    """[[dialects]] of farm.toml: which phones run the LiteRT 2.x benchmark when their ABI has both."""
    path = path or config.farm_file()
    data = _read_toml(path)
    _check_version(data, path)
    rules = []
    for index, raw in enumerate(data.get("dialects", ())):
        where = f"[[dialects]] #{index + 1}"
        try:
            dialect = BenchmarkDialect(raw.get("dialect"))
        except ValueError:
            raise SchemaError(
                f"{path}: {where} has dialect {raw.get('dialect')!r}",
                f"use one of {', '.join(d.value for d in BenchmarkDialect)}",
            ) from None
        rules.append(DialectRule(dialect, _phone_match(raw, where, path)))
    return tuple(rules)


def load_npu_libraries(path: Path | None = None) -> tuple[NpuLibraries, ...]:
    """[npu.FAMILY] of farm.toml: per SoC family, the vendor libraries the LiteRT tool needs for --use_npu."""
    path = path or config.farm_file()
    data = _read_toml(path)
    _check_version(data, path)
    families = []
    for family, raw in data.get("npu", {}).items():
        where = f"[npu.{family}]"
        libraries = raw.get("libraries", [])
        if not isinstance(libraries, list) or not libraries or not all(isinstance(p, str) and p for p in libraries):
            raise SchemaError(
                f"{path}: {where} `libraries` is {libraries!r}",
                "list the dispatch and compiler-plugin .so files (paths relative to farm.toml)",
            )
        resolved = tuple((path.parent / library).resolve() for library in libraries)
        names = [library.name for library in resolved]
        if len(set(names)) != len(names):
            raise SchemaError(
                f"{path}: {where} lists two libraries with one file name",
                "the libraries share one folder on the phone: keep their names distinct",
            )
        families.append(NpuLibraries(family, _phone_match(raw, where, path), resolved))
    return tuple(families)


def load_farm(path: Path | None = None, environ: Mapping[str, str] | None = None) -> tuple[AdbServer, ...]:
    """The adb servers of the farm.

    A farm.toml without [[servers]] (as shipped) means one local server the
    way adb itself finds it: ANDROID_ADB_SERVER_HOST / ANDROID_ADB_SERVER_PORT,
    else 127.0.0.1:5037.
    """
    environ = os.environ if environ is None else environ
    path = path or config.farm_file()
    data = _read_toml(path)
    _check_version(data, path)
    servers = []
    for index, raw in enumerate(data.get("servers", ())):
        port = raw.get("port", DEFAULT_ADB_PORT)
        if not isinstance(port, int) or not 0 < port < 65536:
            raise SchemaError(f"{path} server #{index + 1} has port {port!r}", "use a TCP port number (1-65535)")
        servers.append(AdbServer(str(raw.get("host", "127.0.0.1")), port))
    if servers:
        return tuple(servers)
    port_text = environ.get("ANDROID_ADB_SERVER_PORT", str(DEFAULT_ADB_PORT))
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise InputFileError(
            f"ANDROID_ADB_SERVER_PORT={port_text!r} is not a port number", "set it to the adb server's port, e.g. 5037"
        )
    return (AdbServer(environ.get("ANDROID_ADB_SERVER_HOST", "127.0.0.1"), int(port_text)),)
