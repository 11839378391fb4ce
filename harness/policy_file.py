"""The deployment policy file (schema v2; v1 still read): load, validate, resolve for one phone, diff.

An app walks `tiers` in order, takes the first entry whose `match` fits the
phone, tries its `choice`, then each of its `fallbacks`, ending at `default`.
There is one tier entry per rule of device_profiles/tiers.toml, in rule order,
and matching reuses harness.phone.profiles.TierRule, so resolving a phone against a
policy gives exactly the tier `harness devices` shows for it.

harness/policy_schema_v2.json (shipped as package data) holds what a JSON
Schema can say; `validate` adds the checks it cannot express (see
`_semantic_problems`).

Versions: v2 = v1 + delegate `npu` (LiteRT 2.x vendor NPUs). An app whose reader
validates against the v1 schema would reject a whole policy holding `npu`, so a
policy that may hold it says v2. A file is validated against the schema of the
version it says (policy_schema_v1.json for v1 input), and `load_policy` brings an
older one up to POLICY_SCHEMA_VERSION through POLICY_UPGRADES, one step a version.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from enum import Enum
from functools import cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jsonschema import Draft202012Validator, ValidationError

from harness.deprecations import NNAPI_DEPRECATION, deprecated_on
from harness.phone.facts import (
    DeviceInfo,
    device_info_from,
    parse_getprop,
    parse_meminfo,
)
from harness.errors import DeviceError, InputFileError, UsageError
from harness.phone.profiles import TierFacts, TierRule, TierRules, glob_problem, tier_facts
from harness.records import config_label
from harness.versioned import checked_version, upgraded

if TYPE_CHECKING:
    from harness.phone.discovery import DeviceEntry

POLICY_SCHEMA_VERSION = 2
POLICY_KIND = "policy"


def schema_resource(version: int = POLICY_SCHEMA_VERSION) -> str:
    """The package-data file of policy schema `version` (every version this harness reads ships)."""
    return f"policy_schema_v{version}.json"


SCHEMA_RESOURCE = schema_resource()
CPU = "cpu"


def _upgrade_v1_to_v2(document: dict[str, Any]) -> dict[str, Any]:
    # v2 only adds delegate npu: every v1 document is a v2 document once it says so.
    return {**document, "schema_version": 2}


POLICY_UPGRADES: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {1: _upgrade_v1_to_v2}
"""Policy upgrades: POLICY_UPGRADES[n] turns a version-n document into version n+1."""

_DERIVE_AGAIN = "derive the policy again with 'harness policy derive'"
_SHA256 = re.compile(r"[0-9a-f]{64}")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

Place = tuple[str | int, ...]  # a place in the document: ("tiers", 1, "choice")


# --- loading ------------------------------------------------------------------------


def policy_schema(version: int = POLICY_SCHEMA_VERSION) -> dict[str, Any]:
    """The JSON Schema of policy `version` (default: the one derive writes), read from the package data."""
    text = resources.files("harness").joinpath(schema_resource(version)).read_text(encoding="utf-8")
    return json.loads(text)


@cache
def _validator(version: int = POLICY_SCHEMA_VERSION) -> Draft202012Validator:
    return Draft202012Validator(policy_schema(version))


def document_version(document: Any) -> int:
    """The schema version `document` is validated against: the one it says, if this harness has its schema;
    otherwise the current one (whose schema_version const then reports the odd value)."""
    version = document.get("schema_version") if isinstance(document, dict) else None
    known = isinstance(version, int) and not isinstance(version, bool) and 1 <= version <= POLICY_SCHEMA_VERSION
    return version if known else POLICY_SCHEMA_VERSION


def _reject_constant(name: str) -> None:
    # Python's json reads NaN and Infinity, but they are not JSON: an app's parser would fail on them.
    raise ValueError(f"{name} is not a JSON number")


def load_policy(path: Path | str) -> dict[str, Any]:
    """The policy at `path` as POLICY_SCHEMA_VERSION; an older version is upgraded, a newer one refused."""
    document = read_policy(path)
    return upgrade_policy(document, path)


def upgrade_policy(document: dict[str, Any], path: Path | str = "policy") -> dict[str, Any]:
    """`document` (as read by read_policy) brought up to POLICY_SCHEMA_VERSION through POLICY_UPGRADES."""
    return upgraded(document, path, POLICY_KIND, document["schema_version"], POLICY_SCHEMA_VERSION, POLICY_UPGRADES)


def read_policy(path: Path | str) -> dict[str, Any]:
    """The policy JSON object at `path` as written (not upgraded: `validate` checks it against the schema of
    its own version); refuses what is not a policy of a version this harness reads."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputFileError(f"{path} does not exist", "pass the JSON file 'harness policy derive' wrote") from None
    except UnicodeDecodeError:
        raise InputFileError(f"{path} is not UTF-8 text", "pass the policy JSON file, not a model or an archive") from None
    except OSError as error:
        raise InputFileError(f"cannot read {path} ({error.strerror})", "check the path and its permissions") from None
    try:
        document = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as error:
        raise InputFileError(
            f"{path} is not JSON ({error.msg} at line {error.lineno} column {error.colno})",
            f"fix the syntax there, or {_DERIVE_AGAIN}",
        ) from None
    except ValueError as error:
        raise InputFileError(f"{path} is not JSON ({error})", f"write numbers as plain numbers, or {_DERIVE_AGAIN}") from None
    if not isinstance(document, dict):
        raise InputFileError(
            f"{path} holds {_json_kind(document)}, not a policy object",
            "pass a policy file: a JSON object with schema_version, model, tiers and default",
        )
    checked_version(path, POLICY_KIND, document.get("schema_version"), POLICY_SCHEMA_VERSION,
                    f'a policy starts with "schema_version": {POLICY_SCHEMA_VERSION}; {_DERIVE_AGAIN}')
    return document


# --- validation ---------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a policy: where (`tiers[1].fallbacks[0].model.sha256`) and what to do."""

    where: str
    message: str

    def to_json(self) -> dict[str, str]:
        return {"where": self.where, "message": self.message}


def validate(document: Any) -> tuple[Problem, ...]:
    """Every problem of `document`, schema errors first (sorted by place), then semantic ones.

    Empty means valid. Never raises: the semantic checks skip the parts that
    already fail the schema, so one run lists everything to fix. The schema is the
    one of the version the document says (v1 input is checked against v1: no npu).
    """
    version = document_version(document)
    placed = sorted(
        (pair for error in _validator(version).iter_errors(document) for pair in _schema_problems(error, version)),
        key=lambda pair: (_sort_key(pair[0]), pair[1]),
    )
    problems = [Problem(_where(place), message) for place, message in placed]
    if isinstance(document, dict):
        problems += _semantic_problems(document, version)
    # jsonschema gives each missing key its own error, and each is turned into all of them here.
    return tuple(dict.fromkeys(problems))


def provenance_warnings(document: dict[str, Any]) -> tuple[str, ...]:
    """What a person should know about where a valid policy's numbers come from (`validate` prints it).

    A policy measured on virtual devices is valid, but its latencies are the
    host's, not a phone's: fine for trying the pipeline, never for shipping.
    """
    kinds = document.get("source", {}).get("device_kinds")
    if kinds is None:
        return ("the policy does not say which kind of device measured it (an older harness derived it): "
                "derive it again to know",)
    warnings = []
    if "virtual" in kinds:
        share = "every number" if kinds == ["virtual"] else "some numbers"
        warnings.append(f"{share} in this policy were measured on virtual devices: this host's timings under phones' "
                        "names, not a phone's; derive it from a phone lab's results before shipping it")
    if "unknown" in kinds:
        warnings.append("some numbers come from rows that do not say which kind of device measured them "
                        "(an older harness)")
    return tuple(warnings)


def physical_only(document: dict[str, Any]) -> bool:
    """True when every number of the policy was measured on physical phones (`validate --require-physical`)."""
    return document.get("source", {}).get("device_kinds") == ["physical"]


def _sort_key(path: Iterable[str | int]) -> tuple[tuple[int, str | int], ...]:
    return tuple((0, part) if isinstance(part, int) else (1, part) for part in path)


def _where(path: Iterable[str | int]) -> str:
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        elif _IDENTIFIER.fullmatch(part):
            text += f".{part}" if text else part
        else:
            text += f"[{json.dumps(part)}]"
    return text or "(top level)"


def _short(value: Any) -> str:
    """A value for a message: strings quoted as in the other messages, the rest as JSON."""
    text = repr(value) if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 40 else text[:37] + "..."


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _expected_kinds(expected: str | list[str]) -> str:
    names = {"object": "an object", "array": "an array", "string": "a string", "integer": "an integer",
             "number": "a number", "boolean": "a boolean", "null": "null"}
    kinds = [expected] if isinstance(expected, str) else expected
    return " or ".join(names[kind] for kind in kinds)


def _description(schema: Any, version: int = POLICY_SCHEMA_VERSION) -> str:
    """A subschema's description, following a local $ref when it has none of its own."""
    if not isinstance(schema, dict):
        return f"see harness/{schema_resource(version)}"
    if "description" in schema:
        return schema["description"]
    reference = schema.get("$ref", "")
    if reference.startswith("#/$defs/"):
        return _description(_validator(version).schema["$defs"].get(reference.removeprefix("#/$defs/")), version)
    return f"see harness/{schema_resource(version)}"


def _schema_problems(error: ValidationError, version: int = POLICY_SCHEMA_VERSION) -> list[tuple[Place, str]]:
    """A jsonschema error as (place, message) pairs saying what to write there."""
    path = tuple(error.absolute_path)
    value = error.instance
    schema = error.schema if isinstance(error.schema, dict) else {}
    about = _description(schema, version)
    kind = error.validator
    if kind == "required":
        properties = schema.get("properties", {})
        return [
            ((*path, key), f"is missing: add it ({_description(properties.get(key), version)})")
            for key in error.validator_value
            if isinstance(value, dict) and key not in value
        ]
    if kind == "additionalProperties":
        allowed = list(schema.get("properties", {}))
        message = (
            f"is not a key of policy v{version} here: remove it or fix its spelling "
            f"(keys here: {', '.join(allowed)})"
        )
        return [((*path, key), message) for key in value if key not in allowed]
    if kind == "type":
        message = f"{_short(value)} is {_json_kind(value)}; write {_expected_kinds(error.validator_value)} ({about})"
    elif kind == "enum":
        message = f"{_short(value)} is not one of {', '.join(error.validator_value)}; use one of them"
        if version < POLICY_SCHEMA_VERSION and path[-1:] == ("delegate",) and value in _delegates():
            message += (f" (policy v{version} has no delegate {value!r}; policy v{POLICY_SCHEMA_VERSION} has it: "
                        f"{_DERIVE_AGAIN})")
    elif kind == "const":
        message = f"is {_short(value)}; write {_short(error.validator_value)} ({about})"
    elif kind == "pattern":
        message = f"{_short(value)} does not have the expected form; write {about}"
    elif kind == "minimum":
        message = f"{_short(value)} is below the minimum {error.validator_value}; write {about}"
    elif kind == "exclusiveMinimum":
        message = f"{_short(value)} is not above {error.validator_value}; write {about}"
    elif kind == "exclusiveMaximum":
        message = f"{_short(value)} is not below {error.validator_value}; write {about}"
    elif kind in ("minLength", "minItems"):
        message = f"is empty; write {about}"
    else:
        message = f"{error.message}; see {about}"
    return [(path, message)]


def _dicts(value: Any) -> list[tuple[int, dict]]:
    """The (index, item) pairs of a list that are objects; [] for anything else."""
    if not isinstance(value, list):
        return []
    return [(index, item) for index, item in enumerate(value) if isinstance(item, dict)]


@dataclass(frozen=True)
class _Chain:
    entries: tuple[tuple[Place, dict], ...]  # the choice and fallbacks that are objects
    complete: bool  # all of them are: only then is the last entry the chain's real end


def _chain_at(tier: dict, at: Place) -> _Chain:
    choice, fallbacks = tier.get("choice"), tier.get("fallbacks")
    entries = [((*at, "choice"), choice)] if isinstance(choice, dict) else []
    entries += [((*at, "fallbacks", index), entry) for index, entry in _dicts(fallbacks)]
    complete = isinstance(choice, dict) and isinstance(fallbacks, list) and len(entries) == len(fallbacks) + 1
    return _Chain(tuple(entries), complete)


def _semantic_problems(document: dict, version: int = POLICY_SCHEMA_VERSION) -> list[Problem]:
    """What the schema cannot say.

    - every chain (choice + fallbacks) ends on delegate cpu, and the default is on cpu:
      plain CPU kernels are the one configuration every phone runs (XNNPACK can fail
      to apply too);
    - the delegates within one chain differ: a chain exists to try another delegate;
    - soc_any globs are well-formed; a catch-all entry comes last; rule ids are unique;
    - entries of one tier carry the same chain, whichever of its rules matched;
    - every model file belongs to the top-level model.version, so an update swaps all
      of them together;
    - one sha256 has one size and one file name, and one file name one sha256, since
      apps keep downloaded files by name and check them by hash.
    """
    tiers = _dicts(document.get("tiers"))
    chains = [_chain_at(tier, ("tiers", index)) for index, tier in tiers]
    every_entry = [pair for chain in chains for pair in chain.entries]
    if isinstance(document.get("default"), dict):
        every_entry.append((("default",), document["default"]))
    return [
        *_chain_problems(chains, document.get("default"), _delegates(version)),
        *_match_problems(document.get("tiers"), tiers),
        *_tier_consistency_problems(tiers),
        *_model_file_problems(every_entry, document.get("model")),
    ]


def _delegates(version: int = POLICY_SCHEMA_VERSION) -> list[str]:
    """The delegates an entry of policy `version` may name."""
    return _validator(version).schema["$defs"]["entry"]["properties"]["delegate"]["enum"]


def _chain_problems(chains: list[_Chain], default: Any, known: list[str]) -> list[Problem]:
    problems = []
    for chain in chains:
        seen: dict[str, Place] = {}
        for path, entry in chain.entries:
            delegate = entry.get("delegate")
            if delegate not in known:
                continue  # the schema reports it
            if delegate in seen:
                problems.append(Problem(
                    _where((*path, "delegate")),
                    f"'{delegate}' is already tried at {_where(seen[delegate])}: a fallback is there to try "
                    "another delegate, so give this entry a different one or remove it",
                ))
            seen.setdefault(delegate, path)
        if chain.complete:
            path, last = chain.entries[-1]
            if last.get("delegate") in known and last.get("delegate") != CPU:
                problems.append(Problem(
                    _where((*path, "delegate")),
                    f"the chain ends on '{last['delegate']}': end it with an entry on delegate '{CPU}' "
                    "(plain CPU kernels run on every phone; NPU, GPU, NNAPI and even XNNPACK can fail to apply)",
                ))
    if isinstance(default, dict) and default.get("delegate") in known and default["delegate"] != CPU:
        problems.append(Problem(
            "default.delegate",
            f"is '{default['delegate']}': the default is the last resort and must run on every phone; "
            f"use delegate '{CPU}'",
        ))
    return problems


def _match_problems(raw_tiers: Any, tiers: list[tuple[int, dict]]) -> list[Problem]:
    problems = []
    count = len(raw_tiers) if isinstance(raw_tiers, list) else 0
    catch_all_reported = False
    rule_at: dict[str, int] = {}
    for index, tier in tiers:
        match = tier.get("match")
        if isinstance(match, dict):
            for position, pattern in enumerate(match.get("soc_any") or ()):
                why = glob_problem(pattern) if isinstance(pattern, str) and pattern else None
                if why:
                    problems.append(Problem(
                        _where(("tiers", index, "match", "soc_any", position)),
                        f"{pattern!r} is not a well-formed glob: {why}; close the [...] class or remove the bracket",
                    ))
        if match == {} and index < count - 1 and not catch_all_reported:
            # Only the first: every later catch-all is already among the unreachable entries.
            catch_all_reported = True
            later = [f"{item.get('name')} ({item.get('rule')})" for position, item in tiers if position > index]
            problems.append(Problem(
                _where(("tiers", index, "match")),
                f"is empty, so it matches every phone and the {count - index - 1} entries after it "
                f"({', '.join(later)}) are never reached: move this catch-all entry to the end or give it conditions",
            ))
        rule = tier.get("rule")
        if isinstance(rule, str):
            if rule in rule_at:
                problems.append(Problem(
                    _where(("tiers", index, "rule")),
                    f"{rule!r} is already the rule of tiers[{rule_at[rule]}]: each entry stands for one "
                    f"tiers.toml rule and 'harness policy diff' compares them by id; give each its own rule id",
                ))
            rule_at.setdefault(rule, index)
    return problems


def _tier_consistency_problems(tiers: list[tuple[int, dict]]) -> list[Problem]:
    problems = []
    first_of: dict[str, tuple[int, dict]] = {}
    for index, tier in tiers:
        name = tier.get("name")
        if not isinstance(name, str):
            continue
        if name not in first_of:
            first_of[name] = (index, tier)
            continue
        first_index, first = first_of[name]
        for key in ("choice", "fallbacks"):
            if tier.get(key) != first.get(key):
                problems.append(Problem(
                    _where(("tiers", index, key)),
                    f"differs from tiers[{first_index}].{key} of the same tier '{name}': all entries of a tier "
                    f"carry one chain, whichever of its rules matched; make them equal or {_DERIVE_AGAIN}",
                ))
    return problems


def _model_file_problems(entries: list[tuple[Place, dict]], model: Any) -> list[Problem]:
    version = model.get("version") if isinstance(model, dict) else None
    problems = []
    by_sha: dict[str, tuple[Place, dict]] = {}
    by_file: dict[str, tuple[Place, str]] = {}
    for path, entry in entries:
        file_info = entry.get("model")
        if not isinstance(file_info, dict):
            continue
        at = (*path, "model")
        if isinstance(version, str) and isinstance(file_info.get("version"), str) and file_info["version"] != version:
            problems.append(Problem(
                _where((*at, "version")),
                f"is {file_info['version']!r} but model.version is {version!r}: one policy file carries one model "
                f"release, so that an update replaces all of its files at once; set {version!r} or {_DERIVE_AGAIN}",
            ))
        sha = file_info.get("sha256")
        if not isinstance(sha, str) or not _SHA256.fullmatch(sha):
            continue  # the schema reports it
        if sha in by_sha:
            first_path, first = by_sha[sha]
            for key, what in (("size_bytes", "size"), ("file", "file name")):
                if file_info.get(key) != first.get(key):
                    problems.append(Problem(
                        _where((*at, key)),
                        f"is {_short(file_info.get(key))} but the same sha256 {sha[:12]}.. has {what} "
                        f"{_short(first.get(key))} at {_where(first_path)}: one content has one {what}; correct the wrong one",
                    ))
        by_sha.setdefault(sha, (at, file_info))
        name = file_info.get("file")
        if isinstance(name, str):
            if name in by_file and by_file[name][1] != sha:
                first_path, first_sha = by_file[name]
                problems.append(Problem(
                    _where((*at, "sha256")),
                    f"is {sha[:12]}.. but {name!r} has sha256 {first_sha[:12]}.. at {_where(first_path)}: apps keep "
                    "downloaded files by name and would reject one of them; give different contents different file names",
                ))
            by_file.setdefault(name, (at, sha))
    return problems


# --- matching a phone ------------------------------------------------------------------


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


def resolve(document: dict[str, Any], device: DeviceInfo | TierFacts) -> Resolution:
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
    return Resolution(None, None, chain, facts.soc_identities, facts.ram_bytes, facts.sdk, tuple(reasons),
                      _phone_notes(chain, facts.sdk))


def _phone_notes(chain: Sequence[Mapping[str, Any]], sdk: int | None) -> tuple[str, ...]:
    deprecated = [entry_label(entry) for entry in chain if deprecated_on(entry["delegate"], sdk)]
    if not deprecated:
        return ()
    return (f"{NNAPI_DEPRECATION} (this phone is on SDK {sdk}; its chain tries {', '.join(deprecated)})",)


def _gb(size_bytes: int) -> str:
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
            checks.append((held, f"RAM unknown, needs >= {_gb(rule.min_ram_bytes)}"))
        else:
            checks.append((held, f"RAM {_gb(facts.ram_bytes)} {'>=' if held else '<'} {_gb(rule.min_ram_bytes)}"))
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
    ram = _gb(resolution.ram_bytes) if resolution.ram_bytes is not None else "unknown"
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


# --- diff ---------------------------------------------------------------------------


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
        return {"kind": self.kind.value, "subject": self.subject, "detail": self.detail, "incompatible": self.incompatible}


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
            changes.append(Change(
                ChangeKind.TIER_REMOVED, f"tier {name!r}",
                f"removed (rules {rules}): its phones now match a later entry or get the default",
            ))
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
        changes.append(Change(
            ChangeKind.MATCH, "tiers",
            f"rule order {', '.join(common_old)} -> {', '.join(common_new)}: the first entry that matches wins, "
            "so phones may change tier",
        ))

    if _comparable(old["default"]) != _comparable(new["default"]):
        changes.append(Change(ChangeKind.DEFAULT, "default", _entry_change(old["default"], new["default"])))
    changes += _signature_changes("default", old["default"]["model"]["io_signature"], new["default"]["model"]["io_signature"])
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
        parts.append(f"RAM >= {_gb(match['min_ram_bytes'])}")
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
        return [Change(
            ChangeKind.SIGNATURE, subject,
            f"signature {'unknown' if old is None else 'known'} -> {'unknown' if new is None else 'known'}: "
            "compatibility cannot be checked, so treat it as incompatible (derive both policies from a convert manifest)",
            incompatible=True,
        )]
    breaking: list[str] = []
    renamed: list[str] = []
    for side in ("inputs", "outputs"):
        before, after = old[side], new[side]
        if len(before) != len(after):
            breaking.append(f"{len(before)} {side} -> {len(after)}")
            continue
        for index, (was, now) in enumerate(zip(before, after)):
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
        return [Change(
            ChangeKind.SIGNATURE, subject,
            "; ".join(breaking + renamed) + ": apps feed buffers laid out for the old signature, so never hot-swap; "
            "ship an app update that handles the new one first",
            incompatible=True,
        )]
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
