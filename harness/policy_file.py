"""The deployment policy file (schema v2; v1 still read): load and validate it (resolve: policy_resolve, diff:
policy_diff).

An app walks `tiers` in order, takes the first entry whose `match` fits the
phone, tries its `choice`, then each of its `fallbacks`, ending at `default`.
There is one tier entry per rule of tiers.toml, in rule order,
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
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jsonschema import Draft202012Validator, ValidationError

from harness.errors import InputFileError
from harness.phone.profiles import glob_problem
from harness.versioned import checked_version, upgraded

if TYPE_CHECKING:
    pass

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
    schema: dict[str, Any] = json.loads(text)
    return schema


@cache
def _validator(version: int = POLICY_SCHEMA_VERSION) -> Draft202012Validator:
    return Draft202012Validator(policy_schema(version))


def _schema(version: int = POLICY_SCHEMA_VERSION) -> Mapping[str, Any]:
    """The schema `_validator(version)` checks against (policy_schema's object)."""
    schema = _validator(version).schema
    assert isinstance(schema, Mapping)  # a JSON object: policy_schema() returns a dict
    return schema


def document_version(document: Any) -> int:
    """The schema version `document` is validated against: the one it says, if this harness has its schema;
    otherwise the current one (whose schema_version const then reports the odd value)."""
    version = document.get("schema_version") if isinstance(document, dict) else None
    if isinstance(version, int) and not isinstance(version, bool) and 1 <= version <= POLICY_SCHEMA_VERSION:
        return version
    return POLICY_SCHEMA_VERSION


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
        raise InputFileError(
            f"{path} is not UTF-8 text", "pass the policy JSON file, not a model or an archive"
        ) from None
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
        raise InputFileError(
            f"{path} is not JSON ({error})", f"write numbers as plain numbers, or {_DERIVE_AGAIN}"
        ) from None
    if not isinstance(document, dict):
        raise InputFileError(
            f"{path} holds {_json_kind(document)}, not a policy object",
            "pass a policy file: a JSON object with schema_version, model, tiers and default",
        )
    checked_version(
        path,
        POLICY_KIND,
        document.get("schema_version"),
        POLICY_SCHEMA_VERSION,
        f'a policy starts with "schema_version": {POLICY_SCHEMA_VERSION}; {_DERIVE_AGAIN}',
    )
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
        return (
            "the policy does not say which kind of device measured it (an older harness derived it): "
            "derive it again to know",
        )
    warnings = []
    if "virtual" in kinds:
        share = "every number" if kinds == ["virtual"] else "some numbers"
        warnings.append(
            f"{share} in this policy were measured on virtual devices: this host's timings under phones' "
            "names, not a phone's; derive it from a phone lab's results before shipping it"
        )
    if "unknown" in kinds:
        warnings.append(
            "some numbers come from rows that do not say which kind of device measured them (an older harness)"
        )
    return tuple(warnings)


def physical_only(document: dict[str, Any]) -> bool:
    """True when every number of the policy was measured on physical phones (`validate --require-physical`)."""
    kinds: object = document.get("source", {}).get("device_kinds")
    return kinds == ["physical"]


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
    names = {
        "object": "an object",
        "array": "an array",
        "string": "a string",
        "integer": "an integer",
        "number": "a number",
        "boolean": "a boolean",
        "null": "null",
    }
    kinds = [expected] if isinstance(expected, str) else expected
    return " or ".join(names[kind] for kind in kinds)


def _description(schema: Any, version: int = POLICY_SCHEMA_VERSION) -> str:
    """A subschema's description, following a local $ref when it has none of its own."""
    if not isinstance(schema, dict):
        return f"see harness/{schema_resource(version)}"
    if "description" in schema:
        description: str = schema["description"]
        return description
    reference = schema.get("$ref", "")
    if reference.startswith("#/$defs/"):
        return _description(_schema(version)["$defs"].get(reference.removeprefix("#/$defs/")), version)
    return f"see harness/{schema_resource(version)}"


def _schema_problems(error: ValidationError, version: int = POLICY_SCHEMA_VERSION) -> list[tuple[Place, str]]:
    """A jsonschema error as (place, message) pairs saying what to write there."""
    path = tuple(error.absolute_path)
    # Both are set on every error that validation reports (the stubs allow them to be unset).
    value: Any = error.instance
    expected: Any = error.validator_value
    schema = error.schema if isinstance(error.schema, dict) else {}
    about = _description(schema, version)
    kind = error.validator
    if kind == "required":
        properties = schema.get("properties", {})
        return [
            ((*path, key), f"is missing: add it ({_description(properties.get(key), version)})")
            for key in expected
            if isinstance(value, dict) and key not in value
        ]
    if kind == "additionalProperties":
        allowed = list(schema.get("properties", {}))
        message = (
            f"is not a key of policy v{version} here: remove it or fix its spelling (keys here: {', '.join(allowed)})"
        )
        return [((*path, key), message) for key in value if key not in allowed]
    if kind == "type":
        message = f"{_short(value)} is {_json_kind(value)}; write {_expected_kinds(expected)} ({about})"
    elif kind == "enum":
        message = f"{_short(value)} is not one of {', '.join(expected)}; use one of them"
        if version < POLICY_SCHEMA_VERSION and path[-1:] == ("delegate",) and value in _delegates():
            message += (
                f" (policy v{version} has no delegate {value!r}; policy v{POLICY_SCHEMA_VERSION} has it: "
                f"{_DERIVE_AGAIN})"
            )
    elif kind == "const":
        message = f"is {_short(value)}; write {_short(expected)} ({about})"
    elif kind == "pattern":
        message = f"{_short(value)} does not have the expected form; write {about}"
    elif kind == "minimum":
        message = f"{_short(value)} is below the minimum {expected}; write {about}"
    elif kind == "exclusiveMinimum":
        message = f"{_short(value)} is not above {expected}; write {about}"
    elif kind == "exclusiveMaximum":
        message = f"{_short(value)} is not below {expected}; write {about}"
    elif kind in ("minLength", "minItems"):
        message = f"is empty; write {about}"
    else:
        message = f"{error.message}; see {about}"
    return [(path, message)]


def _dicts(value: Any) -> list[tuple[int, dict[str, Any]]]:
    """The (index, item) pairs of a list that are objects; [] for anything else."""
    if not isinstance(value, list):
        return []
    return [(index, item) for index, item in enumerate(value) if isinstance(item, dict)]


@dataclass(frozen=True)
class _Chain:
    entries: tuple[tuple[Place, dict[str, Any]], ...]  # the choice and fallbacks that are objects
    complete: bool  # all of them are: only then is the last entry the chain's real end


def _chain_at(tier: dict[str, Any], at: Place) -> _Chain:
    choice, fallbacks = tier.get("choice"), tier.get("fallbacks")
    entries = [((*at, "choice"), choice)] if isinstance(choice, dict) else []
    entries += [((*at, "fallbacks", index), entry) for index, entry in _dicts(fallbacks)]
    complete = isinstance(choice, dict) and isinstance(fallbacks, list) and len(entries) == len(fallbacks) + 1
    return _Chain(tuple(entries), complete)


def _semantic_problems(document: dict[str, Any], version: int = POLICY_SCHEMA_VERSION) -> list[Problem]:
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
    delegates: list[str] = _schema(version)["$defs"]["entry"]["properties"]["delegate"]["enum"]
    return delegates


def _chain_problems(chains: list[_Chain], default: Any, known: list[str]) -> list[Problem]:
    problems = []
    for chain in chains:
        seen: dict[str, Place] = {}
        for path, entry in chain.entries:
            delegate = entry.get("delegate")
            if delegate not in known:
                continue  # the schema reports it
            if delegate in seen:
                problems.append(
                    Problem(
                        _where((*path, "delegate")),
                        f"'{delegate}' is already tried at {_where(seen[delegate])}: a fallback is there to try "
                        "another delegate, so give this entry a different one or remove it",
                    )
                )
            seen.setdefault(delegate, path)
        if chain.complete:
            path, last = chain.entries[-1]
            if last.get("delegate") in known and last.get("delegate") != CPU:
                problems.append(
                    Problem(
                        _where((*path, "delegate")),
                        f"the chain ends on '{last['delegate']}': end it with an entry on delegate '{CPU}' "
                        "(plain CPU kernels run on every phone; NPU, GPU, NNAPI and even XNNPACK can fail to apply)",
                    )
                )
    if isinstance(default, dict) and default.get("delegate") in known and default["delegate"] != CPU:
        problems.append(
            Problem(
                "default.delegate",
                f"is '{default['delegate']}': the default is the last resort and must run on every phone; "
                f"use delegate '{CPU}'",
            )
        )
    return problems


def _match_problems(raw_tiers: Any, tiers: list[tuple[int, dict[str, Any]]]) -> list[Problem]:
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
                    problems.append(
                        Problem(
                            _where(("tiers", index, "match", "soc_any", position)),
                            f"{pattern!r} is not a well-formed glob: {why}; close the [...] class "
                            "or remove the bracket",
                        )
                    )
        if match == {} and index < count - 1 and not catch_all_reported:
            # Only the first: every later catch-all is already among the unreachable entries.
            catch_all_reported = True
            later = [f"{item.get('name')} ({item.get('rule')})" for position, item in tiers if position > index]
            problems.append(
                Problem(
                    _where(("tiers", index, "match")),
                    f"is empty, so it matches every phone and the {count - index - 1} entries after it "
                    f"({', '.join(later)}) are never reached: move this catch-all entry to the end or give "
                    "it conditions",
                )
            )
        rule = tier.get("rule")
        if isinstance(rule, str):
            if rule in rule_at:
                problems.append(
                    Problem(
                        _where(("tiers", index, "rule")),
                        f"{rule!r} is already the rule of tiers[{rule_at[rule]}]: each entry stands for one "
                        f"tiers.toml rule and 'harness policy diff' compares them by id; give each its own rule id",
                    )
                )
            rule_at.setdefault(rule, index)
    return problems


def _tier_consistency_problems(tiers: list[tuple[int, dict[str, Any]]]) -> list[Problem]:
    problems = []
    first_of: dict[str, tuple[int, dict[str, Any]]] = {}
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
                problems.append(
                    Problem(
                        _where(("tiers", index, key)),
                        f"differs from tiers[{first_index}].{key} of the same tier '{name}': all entries of a tier "
                        f"carry one chain, whichever of its rules matched; make them equal or {_DERIVE_AGAIN}",
                    )
                )
    return problems


def _model_file_problems(entries: list[tuple[Place, dict[str, Any]]], model: Any) -> list[Problem]:
    version = model.get("version") if isinstance(model, dict) else None
    problems = []
    by_sha: dict[str, tuple[Place, dict[str, Any]]] = {}
    by_file: dict[str, tuple[Place, str]] = {}
    for path, entry in entries:
        file_info = entry.get("model")
        if not isinstance(file_info, dict):
            continue
        at = (*path, "model")
        if isinstance(version, str) and isinstance(file_info.get("version"), str) and file_info["version"] != version:
            problems.append(
                Problem(
                    _where((*at, "version")),
                    f"is {file_info['version']!r} but model.version is {version!r}: one policy file carries one model "
                    f"release, so that an update replaces all of its files at once; set {version!r} or {_DERIVE_AGAIN}",
                )
            )
        sha = file_info.get("sha256")
        if not isinstance(sha, str) or not _SHA256.fullmatch(sha):
            continue  # the schema reports it
        if sha in by_sha:
            first_path, first = by_sha[sha]
            for key, what in (("size_bytes", "size"), ("file", "file name")):
                if file_info.get(key) != first.get(key):
                    problems.append(
                        Problem(
                            _where((*at, key)),
                            f"is {_short(file_info.get(key))} but the same sha256 {sha[:12]}.. has {what} "
                            f"{_short(first.get(key))} at {_where(first_path)}: one content has one {what}; "
                            "correct the wrong one",
                        )
                    )
        by_sha.setdefault(sha, (at, file_info))
        name = file_info.get("file")
        if isinstance(name, str):
            if name in by_file and by_file[name][1] != sha:
                first_path, first_sha = by_file[name]
                problems.append(
                    Problem(
                        _where((*at, "sha256")),
                        f"is {sha[:12]}.. but {name!r} has sha256 {first_sha[:12]}.. at {_where(first_path)}: apps "
                        "keep downloaded files by name and would reject one of them; give different contents "
                        "different file names",
                    )
                )
            by_file.setdefault(name, (at, sha))
    return problems
