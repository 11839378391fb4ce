"""Which tier and chain of a policy one phone gets: from a live phone, or saved getprop/meminfo dumps.

Matching reuses harness.phone.profiles.TierRule, so resolving a phone against a policy gives exactly the tier
`harness devices` shows for it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from harness.deprecations import NNAPI_DEPRECATION, deprecated_on
from harness.errors import DeviceError, InputFileError, UsageError
from harness.phone.facts import (
    DeviceInfo,
    device_info_from,
    parse_getprop,
    parse_meminfo,
)
from harness.phone.profiles import TierFacts, TierRule, TierRules, tier_facts
from harness.records import config_label

if TYPE_CHECKING:
    from harness.phone.discovery import DeviceEntry


def tier_entries(rules: TierRules) -> list[dict[str, Any]]:
    """One `{"name", "rule", "match"}` per rule of tiers.toml, in rule order; match keys only when set."""
    entries = []
    for rule in rules.rules:
        match: dict[str, Any] = {}
        if rule.soc_globs:
            match["soc_any"] = list(rule.soc_globs)
        if rule.min_ram_bytes is not None:
            match["min_ram_bytes"] = rule.min_ram_bytes
        if rule.min_sdk is not None:
            match["min_sdk"] = rule.min_sdk
        entries.append({"name": rule.tier, "rule": rule.id, "match": match})
    return entries


def _rule_of(entry: dict[str, Any]) -> TierRule:
    match = entry["match"]
    return TierRule(
        id=entry["rule"],
        tier=entry["name"],
        soc_globs=tuple(match.get("soc_any", ())),
        min_ram_bytes=match.get("min_ram_bytes"),
        min_sdk=match.get("min_sdk"),
    )


def device_from_dumps(getprop_text: str, meminfo_text: str | None = None, serial: str = "dump") -> DeviceInfo:
    """A phone's facts from saved `adb shell getprop` (and optionally `cat /proc/meminfo`) output.

    Without meminfo, RAM comes from props that state it (ro.boot.ddr_size, ...), else it is unknown.
    """
    if not parse_getprop(getprop_text):
        raise InputFileError(
            "the getprop dump has no '[key]: [value]' lines",
            "save the output of 'adb shell getprop' to a file and pass that",
        )
    if meminfo_text is not None and parse_meminfo(meminfo_text).mem_total_bytes is None:
        raise InputFileError(
            "the meminfo dump has no 'MemTotal: N kB' line",
            "save the output of 'adb shell cat /proc/meminfo' to a file and pass that",
        )
    return device_info_from(serial, getprop_text, meminfo_text or "", "", "")


def device_for_serial(entries: Sequence[DeviceEntry], serial: str) -> DeviceInfo:
    """The facts of the device `serial` (or HOST:PORT/SERIAL) names among discover()'s entries."""
    named = [entry for entry in entries if serial in (entry.serial, entry.key)]
    if not named:
        present = ", ".join(entry.key for entry in entries) or "none"
        raise DeviceError(
            f"no device {serial!r} on the farm's adb servers (devices there: {present})",
            "pass a serial that 'harness devices' lists, or attach the phone and run 'harness devices' to check",
        )
    if len(named) > 1:
        raise UsageError(
            f"{serial!r} is on several adb servers ({', '.join(entry.key for entry in named)})",
            "pass HOST:PORT/SERIAL, the 'key' that 'harness devices --json' prints",
        )
    entry = named[0]
    if not entry.usable:
        raise DeviceError(f"cannot use {serial}: {entry.problem}")
    assert entry.facts is not None  # usable: the phone answered
    return entry.facts.info


@dataclass(frozen=True)
class Resolution:
    """What the policy gives one phone, and why.

    `chain` is what the app tries in order: the tier's choice, its fallbacks,
    then the default (each the policy's entry object); a phone no entry
    matches gets the default alone. `reasons` has one line per tier entry
    tried, in order, up to the one that matched. `notes` says what the phone
    should know about its chain (NNAPI on Android 15 and later).
    """

    tier: str | None
    rule: str | None
    chain: tuple[dict[str, Any], ...]
    identity: tuple[str, ...]
    ram_bytes: int | None
    sdk: int | None
    reasons: tuple[str, ...]
    notes: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "tier": self.tier,
            "rule": self.rule,
            "identity": list(self.identity),
            "ram_bytes": self.ram_bytes,
            "sdk": self.sdk,
            "reasons": list(self.reasons),
            "notes": list(self.notes),
            "chain": list(self.chain),
        }


def resolve(document: Mapping[str, Any], device: DeviceInfo | TierFacts) -> Resolution:
    """The chain the app on `device` walks. `document` must be valid (see `validate`)."""
    facts = device if isinstance(device, TierFacts) else tier_facts(device)
    reasons = []
    for entry in document["tiers"]:
        rule = _rule_of(entry)
        matched = rule.matches(facts)
        reasons.append(f"{rule.tier} ({rule.id}): {'yes' if matched else 'no'}: {_why(rule, facts, matched)}")
        if matched:
            chain = (entry["choice"], *entry["fallbacks"], document["default"])
            return Resolution(
                tier=rule.tier,
                rule=rule.id,
                chain=chain,
                identity=facts.soc_identities,
                ram_bytes=facts.ram_bytes,
                sdk=facts.sdk,
                reasons=tuple(reasons),
                notes=_phone_notes(chain, facts.sdk),
            )
    chain = (document["default"],)
    return Resolution(
        None,
        None,
        chain,
        facts.soc_identities,
        facts.ram_bytes,
        facts.sdk,
        tuple(reasons),
        _phone_notes(chain, facts.sdk),
    )


def _phone_notes(chain: Sequence[Mapping[str, Any]], sdk: int | None) -> tuple[str, ...]:
    deprecated = [entry_label(entry) for entry in chain if deprecated_on(entry["delegate"], sdk)]
    if not deprecated:
        return ()
    return (f"{NNAPI_DEPRECATION} (this phone is on SDK {sdk}; its chain tries {', '.join(deprecated)})",)


def gb_text(size_bytes: int) -> str:
    # Decimal GB, like the min_ram_bytes thresholds (and `harness devices`).
    return f"{size_bytes / 1e9:.2f} GB"


def _why(rule: TierRule, facts: TierFacts, matched: bool) -> str:
    """Each condition of `rule`, judged by a TierRule holding that condition alone.

    The verdict itself comes from `rule.matches`; judging the conditions through
    TierRule too keeps this explanation from drifting away from it.
    """
    checks: list[tuple[bool, str]] = []
    if rule.soc_globs:
        identity = facts.soc_identities
        # Which identity matched which glob: each is judged on its own.
        hit = next(
            (
                (value, glob)
                for glob in rule.soc_globs
                for value in identity
                if TierRule(rule.id, rule.tier, soc_globs=(glob,)).matches(replace(facts, soc_identities=(value,)))
            ),
            None,
        )
        if hit is not None:
            checks.append((True, f"SoC {hit[0]!r} matches {hit[1]!r}"))
        else:
            named = " or ".join(repr(value) for value in identity) or (
                "unknown (the phone sets none of ro.soc.model, ro.chipname, ro.board.platform, ro.hardware)"
            )
            count = len(rule.soc_globs)
            checks.append((False, f"SoC {named} matches none of {count} pattern{'s' if count > 1 else ''}"))
    if rule.min_ram_bytes is not None:
        held = TierRule(rule.id, rule.tier, min_ram_bytes=rule.min_ram_bytes).matches(facts)
        if facts.ram_bytes is None:
            checks.append((held, f"RAM unknown, needs >= {gb_text(rule.min_ram_bytes)}"))
        else:
            checks.append(
                (held, f"RAM {gb_text(facts.ram_bytes)} {'>=' if held else '<'} {gb_text(rule.min_ram_bytes)}")
            )
    if rule.min_sdk is not None:
        held = TierRule(rule.id, rule.tier, min_sdk=rule.min_sdk).matches(facts)
        if facts.sdk is None:
            checks.append((held, f"SDK unknown, needs >= {rule.min_sdk}"))
        else:
            checks.append((held, f"SDK {facts.sdk} {'>=' if held else '<'} {rule.min_sdk}"))
    if not checks:
        return "no conditions (catch-all)"
    return "; ".join(text for held, text in checks if matched or not held)


def entry_label(entry: Mapping[str, Any]) -> str:
    """The configuration of a policy entry (choice, fallback, default), as records.config_label names it."""
    return config_label(entry["variant"], entry["delegate"], entry["num_threads"])


def format_resolution(resolution: Resolution) -> str:
    """The tier, why, and the numbered chain, default last."""
    if resolution.tier is None:
        lines = ["tier: none (no entry matches: the phone gets the default)"]
    else:
        lines = [f"tier: {resolution.tier} (rule {resolution.rule})"]
    soc = " or ".join(repr(value) for value in resolution.identity) or "unknown"
    ram = gb_text(resolution.ram_bytes) if resolution.ram_bytes is not None else "unknown"
    sdk = resolution.sdk if resolution.sdk is not None else "unknown"
    lines += [f"phone: SoC {soc}, RAM {ram}, SDK {sdk}", "why:"]
    lines += [f"  {reason}" for reason in resolution.reasons]
    lines += [f"note: {note}" for note in resolution.notes]
    lines.append("chain (each entry is tried when the one before it fails):")
    for number, entry in enumerate(resolution.chain, start=1):
        model = entry["model"]
        suffix = "  (default)" if number == len(resolution.chain) else ""
        lines.append(f"  {number}. {entry_label(entry)}  {model['file']} sha256 {model['sha256'][:12]}..{suffix}")
    return "\n".join(lines)
