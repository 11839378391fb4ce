"""What changed between two policies, and whether an app reading the old one can take the new one."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any, overload

from harness.policy_resolve import entry_label, gb_text


class ChangeKind(str, Enum):
    MODEL = "model"  # the model's name or version
    TIER_ADDED = "tier_added"
    TIER_REMOVED = "tier_removed"
    CHAIN = "chain"  # one position of a tier's choice + fallbacks
    MATCH = "match"  # a rule's conditions, a rule added to or removed from a tier, rule order
    DEFAULT = "default"
    SIGNATURE = "signature"  # the inputs/outputs an app feeds


@dataclass(frozen=True)
class Change:
    kind: ChangeKind
    subject: str  # what changed: "model", "tier 'high'", "tier 'high' fallbacks[0]", "default"
    detail: str
    incompatible: bool = False  # an app must not hot-swap to the new model

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "subject": self.subject,
            "detail": self.detail,
            "incompatible": self.incompatible,
        }


@dataclass(frozen=True)
class PolicyDiff:
    changes: tuple[Change, ...]

    @property
    def incompatible(self) -> bool:
        return any(change.incompatible for change in self.changes)

    def to_json(self) -> dict[str, Any]:
        return {"incompatible": self.incompatible, "changes": [change.to_json() for change in self.changes]}


def diff(old: dict[str, Any], new: dict[str, Any]) -> PolicyDiff:
    """What changed from `old` to `new` (both valid), per tier name, with signature compatibility.

    A signature change is incompatible when the number of inputs or outputs, a
    shape, a dtype or a quantization differs: the app feeds buffers laid out for
    the old signature. Renamed tensors are reported but compatible, since the
    interpreter feeds tensors by index.
    """
    changes: list[Change] = []
    for key in ("name", "version"):
        if old["model"][key] != new["model"][key]:
            changes.append(Change(ChangeKind.MODEL, "model", f"{key} {old['model'][key]!r} -> {new['model'][key]!r}"))
    changes += _signature_changes("model", old["model"]["io_signature"], new["model"]["io_signature"])

    old_tiers, new_tiers = _by_name(old["tiers"]), _by_name(new["tiers"])
    for name, entries in old_tiers.items():
        if name not in new_tiers:
            rules = ", ".join(entry["rule"] for entry in entries)
            changes.append(
                Change(
                    ChangeKind.TIER_REMOVED,
                    f"tier {name!r}",
                    f"removed (rules {rules}): its phones now match a later entry or get the default",
                )
            )
    for name, entries in new_tiers.items():
        if name not in old_tiers:
            rules = ", ".join(entry["rule"] for entry in entries)
            chain = ", then ".join(_describe(entry) for entry in _chain(entries[0]))
            changes.append(Change(ChangeKind.TIER_ADDED, f"tier {name!r}", f"added (rules {rules}): {chain}"))
            continue
        changes += _tier_changes(name, old_tiers[name], entries)

    old_order = [entry["rule"] for entry in old["tiers"]]
    new_order = [entry["rule"] for entry in new["tiers"]]
    common_old = [rule for rule in old_order if rule in new_order]
    common_new = [rule for rule in new_order if rule in old_order]
    if common_old != common_new:
        changes.append(
            Change(
                ChangeKind.MATCH,
                "tiers",
                f"rule order {', '.join(common_old)} -> {', '.join(common_new)}: the first entry that matches wins, "
                "so phones may change tier",
            )
        )

    if _comparable(old["default"]) != _comparable(new["default"]):
        changes.append(Change(ChangeKind.DEFAULT, "default", _entry_change(old["default"], new["default"])))
    changes += _signature_changes(
        "default", old["default"]["model"]["io_signature"], new["default"]["model"]["io_signature"]
    )
    return PolicyDiff(tuple(changes))


def _by_name(tiers: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = {}
    for entry in tiers:
        grouped.setdefault(entry["name"], []).append(entry)
    return grouped


def _chain(entry: dict[str, Any]) -> list[dict[str, Any]]:
    return [entry["choice"], *entry["fallbacks"]]


def _describe(entry: dict[str, Any] | None) -> str:
    if entry is None:
        return "(none)"
    return f"{entry_label(entry)} sha256 {entry['model']['sha256'][:12]}"


@overload
def _comparable(entry: dict[str, Any]) -> dict[str, Any]: ...
@overload
def _comparable(entry: dict[str, Any] | None) -> dict[str, Any] | None: ...
def _comparable(entry: dict[str, Any] | None) -> dict[str, Any] | None:
    """An entry without its model version: a version change is reported once, for the whole file."""
    if entry is None:
        return None
    return {**entry, "model": {key: value for key, value in entry["model"].items() if key != "version"}}


def _entry_change(old: dict[str, Any] | None, new: dict[str, Any] | None) -> str:
    text = f"{_describe(old)} -> {_describe(new)}"
    if old is not None and new is not None and _describe(old) == _describe(new):
        # Same configuration and bytes: say which of the file's other facts moved.
        before, after = _comparable(old)["model"], _comparable(new)["model"]
        moved = sorted(key for key in before.keys() | after.keys() if before.get(key) != after.get(key))
        text += f" ({', '.join(moved)} changed)"
    return text


def _tier_changes(name: str, old: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[Change]:
    changes = []
    # validate() guarantees every entry of a tier has the same chain: the first stands for all.
    old_chain, new_chain = _chain(old[0]), _chain(new[0])
    for position in range(max(len(old_chain), len(new_chain))):
        before = old_chain[position] if position < len(old_chain) else None
        after = new_chain[position] if position < len(new_chain) else None
        if _comparable(before) != _comparable(after):
            label = "choice" if position == 0 else f"fallbacks[{position - 1}]"
            changes.append(Change(ChangeKind.CHAIN, f"tier {name!r} {label}", _entry_change(before, after)))
    changes += _signature_changes(
        f"tier {name!r} choice", old_chain[0]["model"]["io_signature"], new_chain[0]["model"]["io_signature"]
    )
    old_rules = {entry["rule"]: entry["match"] for entry in old}
    new_rules = {entry["rule"]: entry["match"] for entry in new}
    for rule in [*old_rules, *(rule for rule in new_rules if rule not in old_rules)]:
        subject = f"tier {name!r} rule {rule!r}"
        if rule not in new_rules:
            changes.append(Change(ChangeKind.MATCH, subject, f"removed (matched {_describe_match(old_rules[rule])})"))
        elif rule not in old_rules:
            changes.append(Change(ChangeKind.MATCH, subject, f"added (matches {_describe_match(new_rules[rule])})"))
        elif old_rules[rule] != new_rules[rule]:
            changes.append(Change(ChangeKind.MATCH, subject, _match_change(old_rules[rule], new_rules[rule])))
    return changes


def _describe_match(match: dict[str, Any]) -> str:
    parts = []
    if "soc_any" in match:
        parts.append(f"{len(match['soc_any'])} SoC patterns")
    if "min_ram_bytes" in match:
        parts.append(f"RAM >= {gb_text(match['min_ram_bytes'])}")
    if "min_sdk" in match:
        parts.append(f"SDK >= {match['min_sdk']}")
    return ", ".join(parts) or "every phone"


def _match_change(old: dict[str, Any], new: dict[str, Any]) -> str:
    parts = []
    old_globs, new_globs = old.get("soc_any"), new.get("soc_any")
    if old_globs is None or new_globs is None:
        if old_globs != new_globs:
            parts.append(f"soc_any {_globs_text(old_globs)} -> {_globs_text(new_globs)}")
    elif old_globs != new_globs:
        added = [glob for glob in new_globs if glob not in old_globs]
        removed = [glob for glob in old_globs if glob not in new_globs]
        moved = ([f"+{added}"] if added else []) + ([f"-{removed}"] if removed else [])
        parts.append(f"soc_any {' '.join(moved) or 'reordered (no effect)'}")
    for key in ("min_ram_bytes", "min_sdk"):
        if old.get(key) != new.get(key):
            parts.append(f"{key} {old.get(key)} -> {new.get(key)}")
    return "; ".join(parts)


def _globs_text(globs: list[str] | None) -> str:
    return "absent (any SoC)" if globs is None else f"{len(globs)} patterns"


def _signature_changes(subject: str, old: dict[str, Any] | None, new: dict[str, Any] | None) -> list[Change]:
    if old == new:
        return []
    if old is None or new is None:
        return [
            Change(
                ChangeKind.SIGNATURE,
                subject,
                f"signature {'unknown' if old is None else 'known'} -> {'unknown' if new is None else 'known'}: "
                "compatibility cannot be checked, so treat it as incompatible (derive both policies from a convert "
                "manifest)",
                incompatible=True,
            )
        ]
    breaking: list[str] = []
    renamed: list[str] = []
    for side in ("inputs", "outputs"):
        before, after = old[side], new[side]
        if len(before) != len(after):
            breaking.append(f"{len(before)} {side} -> {len(after)}")
            continue
        for index, (was, now) in enumerate(zip(before, after, strict=False)):
            label = f"{side[:-1]} {index}"
            if was["name"] != now["name"]:
                renamed.append(f"{label} name {was['name']!r} -> {now['name']!r}")
            if was["shape"] != now["shape"]:
                breaking.append(f"{label} shape {was['shape']} -> {now['shape']}")
            if was["dtype"] != now["dtype"]:
                breaking.append(f"{label} dtype {was['dtype']} -> {now['dtype']}")
            if was["quantization"] != now["quantization"]:
                breaking.append(f"{label} quantization {_quantization(was)} -> {_quantization(now)}")
    if breaking:
        return [
            Change(
                ChangeKind.SIGNATURE,
                subject,
                "; ".join(breaking + renamed)
                + ": apps feed buffers laid out for the old signature, so never hot-swap; "
                "ship an app update that handles the new one first",
                incompatible=True,
            )
        ]
    return [Change(ChangeKind.SIGNATURE, subject, "; ".join(renamed) + " (compatible: tensors are fed by index)")]


def _quantization(tensor: dict[str, Any]) -> str:
    quantization = tensor["quantization"]
    if quantization is None:
        return "none"
    return f"scale {quantization['scale']!r} zero_point {quantization['zero_point']}"


def format_diff(policy_diff: PolicyDiff) -> str:
    """One line per change; incompatible ones start with INCOMPATIBLE:."""
    if not policy_diff.changes:
        return "no changes"
    return "\n".join(
        f"{'INCOMPATIBLE: ' if change.incompatible else ''}{change.subject}: {change.detail}"
        for change in policy_diff.changes
    )
