"""`harness policy derive`: compile stored measurements into a policy JSON (schema v2, see harness.policy_file).

Per tier of tiers.toml (harness.config) the choice is the best candidate of
harness.ranking (ran ok on every measured device of the tier, passed the
accuracy gate and the constraints; statistical ties go to the smaller model,
then fewer threads, then lower energy). The fallbacks are the best candidate of
each other delegate in ranking order, up to the first plain-CPU one (a CPU choice
has no fallbacks), so every chain ends on CPU by construction. Configurations that
failed anywhere in the tier never appear: the evidence says where they failed.
The `default` (phones that match no tier, and the end of every chain) is the
plain-CPU configuration with the fewest threads that ran ok on every measured
device, of any tier.

The document's shape is checked by harness.policy_file before it is written.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path
from typing import Any

import pandas as pd

import harness
from harness import config, ranking, sustained
from harness.atomic import write_atomically
from harness.convert_files import read_manifest
from harness.deprecations import NNAPI, NNAPI_DEPRECATION, sdk_range_admits_deprecation
from harness.errors import InputFileError, UsageError
from harness.numerics import NumericsGate
from harness.phone.profiles import load_tiers
from harness.policy_file import POLICY_SCHEMA_VERSION, validate
from harness.policy_resolve import entry_label, tier_entries
from harness.ranking import (
    Candidate,
    Constraints,
    Exclusion,
    ExclusionKind,
    MixingAllowed,
    TierRanking,
    VariantAccuracy,
)
from harness.records import DeviceKind
from harness.stats import MIN_REPETITIONS, NoiseFloor, TieTest, Verdict
from harness.store import ResultsStore, RowFilter

CPU = "cpu"
ALL_DEVICES = "all measured devices"
URL_FIELDS = ("model", "variant", "version", "sha256", "file")
_CONSTRAINT_FLAGS = {
    ExclusionKind.MAX_LATENCY_US: "--max-latency-us",
    ExclusionKind.MAX_MEMORY_MB: "--max-memory-mb",
    ExclusionKind.FRAME_DEADLINE: "a lower --fps, or a faster configuration",
    ExclusionKind.MAX_ACCURACY_DROP: "--max-accuracy-drop",
    ExclusionKind.MAX_ENERGY_MJ: "--max-energy-mj",
    ExclusionKind.FAILURE: "a sweep with working delegates",
    ExclusionKind.NOT_MEASURED: "a sweep that covers every device of the tier",
    ExclusionKind.UNSUPPORTED: "a benchmark program that can ask for the delegate (see [[dialects]] in farm.toml)",
    ExclusionKind.ACCURACY_GATE: "a variant that passes the 'harness convert' accuracy gate",
    ExclusionKind.NUMERICS: "a delegate whose outputs agree with the reference (or --max-output-error / "
    "--min-output-cosine, if the gate is too strict for this model)",
}


class Objective(str, Enum):
    """What load the policy is for: a burst on a cool phone, or minutes of continuous inference."""

    BURST = "burst"
    SUSTAINED = "sustained"  # harness run --sustained: ranked by the sustained p50 (harness.sustained)


@dataclass(frozen=True)
class DeriveRequest:
    results_root: Path
    run_ids: tuple[str, ...] = ()  # empty: every stored run
    model_name: str | None = None  # None: the only model in the results
    manifest_path: Path | None = None  # convert manifest.json (or its folder)
    metric: str = "inference_p50_us"
    constraints: Constraints = Constraints()
    tie_test: TieTest = TieTest()
    model_version: str | None = None  # None: "<date>+<digest of the chosen files>"
    model_url_template: str | None = None  # e.g. https://cdn.example.com/{model}/{version}/{file}
    tiers_file: Path | None = None  # None: the tiers.toml harness.config finds
    mixing: MixingAllowed = MixingAllowed()
    numerics_gate: NumericsGate = NumericsGate()
    objective: Objective = Objective.BURST
    fps: float | None = None  # sustained: the frame rate whose deadline (1/fps) the windows' p95 must meet


@dataclass(frozen=True)
class DerivedPolicy:
    document: dict[str, Any]
    accuracy: Mapping[str, VariantAccuracy]  # by sha256, as derive judged it (coverage takes the same)
    warnings: tuple[str, ...] = field(default_factory=tuple)

    def lines(self) -> list[str]:
        """Per tier name: the chain and why, in plain text."""
        doc = self.document
        out = [
            f"policy for {doc['model']['name']} version {doc['model']['version']} "
            f"(objective {doc['objective']['metric']}"
            f"{' sustained' if doc['objective'].get('load') == Objective.SUSTAINED.value else ''}, "
            f"constraints {doc['objective']['constraints'] or 'none'}):"
        ]
        if doc["source"].get("device_kinds") == [DeviceKind.VIRTUAL.value]:
            out.append(
                "  measured on VIRTUAL devices only: this host's timings under phones' names, not a phone's; "
                "'harness policy validate --require-physical' refuses it"
            )
        seen = set()
        for tier in doc["tiers"]:
            if tier["name"] in seen:
                continue
            seen.add(tier["name"])
            chain = " -> ".join(entry_label(e) for e in [tier["choice"], *tier["fallbacks"]])
            evidence = tier["evidence"]
            why = _why(evidence)
            kinds = "/".join(evidence.get("measured_on", {}).get("device_kinds", []))
            measured = (
                f"p50 {evidence['inference_p50_us']:,.0f} us on {evidence['devices']} {kinds} device(s); "
                if evidence["devices"]
                else ""
            )
            out.append(f"  {tier['name']:<5} {chain}  [{measured}{why}]")
        out.append(f"  default {entry_label(doc['default'])}")
        return out


def _why(evidence: Mapping[str, Any]) -> str:
    """Why a tier's choice won, in the words of harness.stats: a tie, undecided, untested or shown."""
    if not evidence["devices"]:
        note: str = evidence.get("note", "")
        return note
    tie = evidence.get("tie", {})
    if tie.get("tied_with_best"):
        return f"within {tie['min_effect']:.0%} of {', '.join(tie['tied_with_best'])}, decided by {tie['decided_by']}"
    if evidence.get("statistics"):
        return f"best median; untested ({evidence['repetitions']} repetition(s))"
    undecided = evidence.get("undecided", [])
    if undecided:
        names = ", ".join(u["config"] for u in undecided[:3]) + (" ..." if len(undecided) > 3 else "")
        more = max((u["more_repetitions"] or 0 for u in undecided), default=0)
        return f"best median; undecided against {names}" + (f" (about {more} more repetitions)" if more else "")
    return "shown best"


@dataclass(frozen=True)
class _ModelFile:
    """What an entry says about one variant file."""

    file: str
    sha256: str
    size_bytes: int
    io_signature: dict[str, Any] | None


def load_rows(results_root: Path, run_ids: Sequence[str] = (), model_name: str | None = None) -> pd.DataFrame:
    """The stored rows of some runs (all without), of one model when named: read in place, so only that
    model's files are opened."""
    store = ResultsStore(results_root)
    where = RowFilter(run_ids=tuple(run_ids) or None)
    rows = store.read_where(replace(where, model_name=model_name)).frame
    if rows.empty and model_name is not None:
        models = store.query("SELECT DISTINCT model_name FROM rows ORDER BY 1", where=where)["model_name"]
        if len(models):
            raise UsageError(f"no results for model {model_name!r}", f"pick one of {', '.join(models)}")
    if rows.empty:
        which = f"runs {', '.join(run_ids)}" if run_ids else "any run"
        raise UsageError(
            f"no results for {which} under {results_root}",
            "run a sweep first ('harness run' or 'harness demo'), or check --results and --run",
        )
    return rows


def derive(request: DeriveRequest, rows: pd.DataFrame | None = None) -> DerivedPolicy:
    """The policy for one model; `rows` defaults to the stored rows of the request's runs."""
    if request.tiers_file is None:  # resolved once, so the warnings below name the file that was read
        request = replace(request, tiers_file=config.tiers_file())
    rows = load_rows(request.results_root, request.run_ids, request.model_name) if rows is None else rows
    summaries: list[sustained.SustainedSummary] = []
    if request.objective is Objective.SUSTAINED:
        summaries = sustained.summarize(rows, request.tie_test.min_effect)
        rows = sustained.as_ranking_rows(rows, request.tie_test.min_effect)
        if rows.empty:
            raise UsageError(
                "no sustained windows in these results",
                "sweep with 'harness run --sustained 10m --fps 15 ...' first, or derive the burst policy",
            )
        request = _with_frame_deadline(request, rows)
    rules = load_tiers(request.tiers_file)
    stats, assigned = ranking.assign_missing_tiers(ranking.stats_of(rows), rules)
    model_name = _model_name(stats, request.model_name)
    noise = ranking.noise_floors(stats[stats["model_name"] == model_name])
    files, accuracy, warnings = model_facts(request.results_root, rows, model_name, request.manifest_path)
    if assigned:
        names = sorted(set(stats.loc[stats["serial"].isin(assigned), "device_model"]))
        warnings.append(
            f"{len(assigned)} device(s) stored without a tier ({', '.join(names)}) were assigned one "
            f"at derive time from their stored SoC, RAM and SDK by {request.tiers_file}"
        )
    rankings = ranking.rank_tiers(
        stats,
        model_name,
        request.metric,
        request.constraints,
        accuracy,
        request.tie_test,
        tier_order=rules.tiers,
        mixing=request.mixing,
        numerics_gate=request.numerics_gate,
    )
    by_tier = {r.tier: r for r in rankings}
    problems = [_no_candidate_message(r, request.constraints) for r in rankings if not r.candidates]
    if problems:
        raise UsageError(
            "no valid configuration for " + "; ".join(problems),
            "relax the constraint named, or sweep the configurations it needs",
        )

    accuracy_only = Constraints(max_accuracy_drop=request.constraints.max_accuracy_drop)

    @functools.cache
    def relaxed() -> dict[str, TierRanking]:
        # Ranked again without latency, memory and energy limits only if some tier needs it.
        ranked = ranking.rank_tiers(
            stats,
            model_name,
            request.metric,
            accuracy_only,
            accuracy,
            request.tie_test,
            mixing=request.mixing,
            numerics_gate=request.numerics_gate,
        )
        return {r.tier: r for r in ranked}

    default_ranking = _default_ranking(
        stats,
        model_name,
        request.metric,
        accuracy_only,
        accuracy,
        request.tie_test,
        request.mixing,
        request.numerics_gate,
    )
    default = _default_candidate(default_ranking)
    chains = {r.tier: _chain(r, relaxed, default) for r in rankings}
    chosen = {c.config.model_sha256 for chain, _ in chains.values() for c in chain} | {default.config.model_sha256}
    version = request.model_version or _content_version(chosen)

    def entry(candidate: Candidate) -> dict[str, Any]:
        return _entry(candidate, files, model_name, version, request.model_url_template)

    matches = tier_entries(rules)
    tiers = []
    for match in matches:
        tier_ranking = by_tier.get(match["name"])
        if tier_ranking is None:
            tiers.append(
                {
                    **match,
                    "choice": entry(default),
                    "fallbacks": [],
                    "evidence": {
                        "devices": 0,
                        "note": "no device of this tier was measured: it runs the default configuration",
                    },
                }
            )
            continue
        chain, notes = chains[match["name"]]
        notes = [
            *notes,
            *_nnapi_notes(chain, tier_ranking, [m["match"] for m in matches if m["name"] == match["name"]]),
        ]
        tiers.append(
            {
                **match,
                "choice": entry(chain[0]),
                "fallbacks": [entry(c) for c in chain[1:]],
                "evidence": _evidence(tier_ranking, chain, notes, request, assigned, noise, summaries),
            }
        )
    for missing in (t for t in rules.tiers if t not in by_tier):
        warnings.append(f"tier {missing}: no device of this tier was measured; it gets the default configuration")
    unknown = sorted(set(by_tier) - set(rules.tiers))
    if unknown:
        warnings.append(f"results hold tiers {unknown} that {request.tiers_file} does not define: ignored")

    document = {
        "schema_version": POLICY_SCHEMA_VERSION,
        "generated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "generated_by": f"harness {harness.__version__}",
        "model": {"name": model_name, "version": version, "io_signature": _reference_signature(files, default)},
        "objective": {
            "metric": request.metric,
            "aggregate": "median over the tier's devices",
            "constraints": request.constraints.given(),
            "tie_test": request.tie_test.describe(),
            "numerics_gate": request.numerics_gate.describe(),
            "load": request.objective.value,
            **({"fps": request.fps} if request.fps else {}),
        },
        "source": {
            "results": str(request.results_root),
            "runs": sorted(rows["run_id"].unique().tolist()),
            "manifest": str(request.manifest_path) if request.manifest_path else None,
            **ranking.measured_on(stats[stats["model_name"] == model_name]).to_json(),
        },
        "tiers": tiers,
        "default": entry(default),
    }
    invalid = validate(document)
    if invalid:  # a bug here, not the user's: never write a policy an app would reject
        raise AssertionError("derived policy is invalid: " + "; ".join(f"{p.where}: {p.message}" for p in invalid))
    return DerivedPolicy(document, accuracy, tuple(warnings))


def write_policy(document: Mapping[str, Any], path: Path) -> Path:
    text = json.dumps(document, indent=2) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, lambda out: out.write(text.encode("utf-8")))
    return path


# --- choosing ----------------------------------------------------------------------


def _chain(
    tier: TierRanking, relaxed: Callable[[], Mapping[str, TierRanking]], default: Candidate
) -> tuple[list[Candidate], list[str]]:
    """The choice, then the best candidate of each delegate not yet in the chain, in ranking
    order, up to and including the first plain-CPU one: every chain ends on CPU by construction,
    and a CPU choice needs no fallback.

    A delegate ranked below the best CPU configuration is left out: falling back to it
    would be slower than CPU. `relaxed()` gives every tier ranked without latency, memory
    and energy limits: when no CPU configuration meets them, the chain still ends on the
    best CPU configuration that ran everywhere, and the evidence says so. A tier whose phones' benchmark
    program cannot ask for plain CPU (LiteRT 2.x's) ends on the default's CPU entry, measured on other
    phones, and the evidence says that too.
    """
    chain: list[Candidate] = []
    for candidate in tier.candidates:
        if candidate.config.delegate in {c.config.delegate for c in chain}:
            continue
        chain.append(candidate)
        if candidate.config.delegate == CPU:
            return chain, []
    cpu = next((c for c in relaxed()[tier.tier].candidates if c.config.delegate == CPU), None)
    unaskable = [e for e in tier.excluded if e.config.delegate == CPU and e.constraint is ExclusionKind.UNSUPPORTED]
    if (
        cpu is None
        and unaskable
        and not any(e.config.delegate == CPU and e.constraint is ExclusionKind.FAILURE for e in tier.excluded)
    ):
        return [*chain, default], [
            f"plain CPU was not measured on this tier ({unaskable[0].reason}); the chain ends "
            f"on the default's {default.config.label}, measured on the other phones"
        ]
    if cpu is None:
        raise UsageError(
            f"tier {tier.tier}: no plain-CPU configuration of {tier.model_name} ran ok on every device of the tier",
            "sweep with --delegates including cpu: every fallback chain must end on CPU",
        )
    reason = next(e.reason for e in tier.excluded if e.config == cpu.config)
    return [*chain, cpu], [f"the CPU fallback {cpu.config.label} is outside the constraints ({reason})"]


def _nnapi_notes(chain: Sequence[Candidate], tier: TierRanking, matches: Sequence[Mapping[str, Any]]) -> list[str]:
    """The deprecation note when the chain tries NNAPI and the tier's phones can be on SDK 35 or later:
    measured there, or admitted by a rule of the tier (no rule caps the SDK, so today every one does)."""
    tried = [c.config.label for c in chain if c.config.delegate == NNAPI]
    if not tried:
        return []
    measured = tier.deprecated_on(NNAPI)
    if measured:
        where = f"measured on {', '.join(measured)}"
    elif any(sdk_range_admits_deprecation(m.get("min_sdk"), m.get("max_sdk")) for m in matches):
        where = "no measured device is on SDK 35 or later, but the tier's match admits such phones"
    else:
        return []
    return [f"{NNAPI_DEPRECATION} (the chain tries {', '.join(tried)}; {where})"]


def _default_ranking(
    stats: pd.DataFrame,
    model_name: str,
    metric: str,
    constraints: Constraints,
    accuracy: Mapping[str, VariantAccuracy],
    tie_test: TieTest,
    mixing: MixingAllowed,
    numerics_gate: NumericsGate,
) -> TierRanking:
    """All measured devices as one group, plain CPU only (the default is a CPU entry): any phone may end up
    on the default. A phone whose benchmark program cannot ask for plain CPU (LiteRT 2.x's) has only
    skipped CPU rows, so it neither blocks the default nor mixes its program into the evidence."""
    everyone = stats[stats["delegate"] == CPU].assign(tier=ALL_DEVICES)
    return ranking.rank_tiers(
        everyone, model_name, metric, constraints, accuracy, tie_test, mixing=mixing, numerics_gate=numerics_gate
    )[0]


def _default_candidate(everyone: TierRanking) -> Candidate:
    cpu = [c for c in everyone.candidates if c.config.delegate == CPU]
    if not cpu:
        raise UsageError(
            f"no plain-CPU configuration of {everyone.model_name} ran ok on every measured device, "
            "so there is no safe default",
            "sweep with --delegates including cpu and --threads including 1",
        )
    fewest = min(c.config.num_threads for c in cpu)
    return next(c for c in cpu if c.config.num_threads == fewest)


def _no_candidate_message(tier: TierRanking, constraints: Constraints) -> str:
    counts: dict[ExclusionKind, list[Exclusion]] = {}
    for exclusion in tier.excluded:
        counts.setdefault(exclusion.constraint, []).append(exclusion)
    parts = []
    for constraint, items in sorted(counts.items(), key=lambda kv: -len(kv[1])):
        example = min(items, key=lambda e: float("inf") if e.value is None else e.value)
        flag = _CONSTRAINT_FLAGS[constraint]
        parts.append(
            f"{constraint.value} excluded {len(items)} (e.g. {example.config.label}: {example.reason}; needs {flag})"
        )
    given = ", ".join(f"{k}={v:g}" for k, v in constraints.given().items()) or "no constraints"
    return f"tier {tier.tier} of {tier.model_name} ({given}): " + ", ".join(parts)


# --- describing ---------------------------------------------------------------------


def _evidence(
    tier: TierRanking,
    chain: Sequence[Candidate],
    notes: Sequence[str],
    request: DeriveRequest,
    assigned: frozenset[str],
    noise: Mapping[str, NoiseFloor],
    summaries: Sequence[sustained.SustainedSummary] = (),
) -> dict[str, object]:
    best = chain[0]
    failed = [e for e in tier.excluded if e.constraint is ExclusionKind.FAILURE]
    min_effect = request.tie_test.min_effect
    evidence: dict[str, object] = {
        "devices": len(tier.devices),
        "device_models": sorted({tier.device_models.get(s, s) for s in tier.devices}),
        "runs": best.runs,
        "repetitions": best.repetitions,
        "inference_p50_us": round(best.p50_us, 1),
        request.metric: round(best.value, 3),
        f"worst_device_{request.metric}": round(best.worst_value, 3),
        "failures": len(failed),
        "candidates": len(tier.candidates),
        "tie": {
            "tied_with_best": list(tier.tie_break.tied_with_best),
            "decided_by": tier.tie_break.decided_by.value if tier.tie_break.decided_by else None,
            **request.tie_test.describe(),
        },
        # Not shown different and not shown equivalent: the better median won, no tie-breaker was used.
        "undecided": [
            {"config": c.config.label, **c.versus_best.to_json()}
            for c in tier.candidates
            if c.versus_best is not None and c.versus_best.verdict is Verdict.UNDECIDED
        ],
        "excluded": [{"config": e.config.label, "kind": e.constraint.value, "reason": e.reason} for e in tier.excluded],
        "numerics": _numerics_evidence(best, tier.device_models),
        "measured_on": tier.measured_on.to_json(),
        "noise_floor": {tier.device_models.get(s, s): noise[s].to_json() for s in tier.devices if s in noise},
    }
    if tier.tie_break.untested:
        evidence["statistics"] = (
            f"no statistical claim: fewer than {MIN_REPETITIONS} repetitions on a device; "
            "the medians alone ordered the configurations"
        )
    warnings = [
        f"{tier.device_models.get(s, s)}: {w}"
        for s in tier.devices
        if s in noise
        if (w := noise[s].warning(min_effect))
    ]
    if assigned & set(tier.devices):
        # Stored without a tier: classified now, by today's rules, not when it was measured.
        evidence["tier_assigned_at_derive"] = sorted(tier.device_models.get(s, s) for s in assigned & set(tier.devices))
    if tier.unmeasured_devices:
        evidence["unmeasured_devices"] = sorted(tier.device_models.get(s, s) for s in tier.unmeasured_devices)
    if best.memory_mb is not None:
        evidence["memory_mb"] = round(best.memory_mb, 2)
    if best.energy_mj_per_inference is not None:
        evidence["energy_mj_per_inference"] = round(best.energy_mj_per_inference, 4)
    if best.accuracy_drop is not None:
        evidence["accuracy_drop"] = round(best.accuracy_drop, 5)
    if summaries:
        evidence["sustained"] = _sustained_evidence(best, tier, summaries)
    if notes or tier.notes or warnings:
        evidence["notes"] = [*tier.notes, *notes, *warnings]
    return evidence


def _with_frame_deadline(request: DeriveRequest, rows: pd.DataFrame) -> DeriveRequest:
    """The request with its frame deadline: 1/--fps, else 1/the rate the windows ran at (when one rate)."""
    fps = request.fps
    if fps is None:
        rates = {float(r) for r in rows["target_fps"].dropna()} if "target_fps" in rows.columns else set()
        fps = rates.pop() if len(rates) == 1 else None
    if fps is None:
        return request
    return replace(request, fps=fps, constraints=replace(request.constraints, frame_deadline_us=round(1e6 / fps, 1)))


def _sustained_evidence(
    best: Candidate, tier: TierRanking, summaries: Sequence[sustained.SustainedSummary]
) -> dict[str, object]:
    """The choice's sustained figures on the tier's devices: burst vs sustained p50, the first lasting
    slow-down, the frame-deadline misses, and how temperatures and clocks were measured."""
    config = best.config
    mine = [
        s
        for s in summaries
        if s.serial in tier.devices
        and (s.variant, s.delegate, s.num_threads) == (config.variant, config.delegate, config.num_threads)
    ]
    ratios = [s.ratio for s in mine if s.ratio is not None]
    slowdowns = [s.throttle_at_s for s in mine if s.throttle_at_s is not None]
    highs = [s.missed_high for s in mine if s.missed_high is not None]
    lows = [s.missed_low for s in mine if s.missed_low is not None]
    return {
        "cases": len(mine),
        "window_s": mine[0].window_s if mine else None,
        "windows": max((s.windows for s in mine), default=0),
        "burst_p50_us": _median_or_none([s.burst_p50_us for s in mine]),
        "sustained_p50_us": _median_or_none([s.sustained_p50_us for s in mine]),
        "sustained_over_burst": round(max(ratios), 3) if ratios else None,  # the worst device's
        "first_slowdown_s": min(slowdowns) if slowdowns else None,
        "deadline_missed_share": [round(max(lows), 3), round(max(highs), 3)] if highs else None,
        "temperature_methods": sorted({s.temperature_method for s in mine if s.temperature_method}),
        "clock_methods": sorted({s.clock_method for s in mine if s.clock_method}),
    }


def _median_or_none(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return round(float(pd.Series(known).median()), 1) if known else None


def _numerics_evidence(best: Candidate, device_models: Mapping[str, str]) -> dict[str, object]:
    """The choice's outputs against the reference, per device: checked ok (worst figures), or why not checked."""
    return {
        device_models.get(serial, serial): {
            "status": cell.status.value if cell.status else None,
            **({"reference": cell.reference} if cell.reference else {}),
            **{k: round(v, 6) for k, v in cell.figures().items()},
            **({"reason": cell.reason} if cell.reason else {}),
        }
        for serial, cell in sorted(best.numerics.items())
    }


def _entry(
    candidate: Candidate, files: Mapping[str, _ModelFile], model_name: str, version: str, url_template: str | None
) -> dict[str, Any]:
    config = candidate.config
    known = files.get(config.model_sha256)
    if known is None:
        # An app loads the file a policy names: a made-up name would ship a policy that cannot work.
        raise InputFileError(
            f"the policy would choose {config.label} of {model_name}, whose file (sha256 "
            f"{config.model_sha256[:16]}...) "
            "no convert manifest and no run's plan names",
            "pass --manifest DIR/manifest.json of the conversion that made it",
        )
    model = {"file": known.file, "sha256": known.sha256, "size_bytes": known.size_bytes, "version": version}
    if url_template:
        model["url"] = url_template.format(
            model=model_name, variant=config.variant, version=version, sha256=known.sha256, file=known.file
        )
    model["io_signature"] = known.io_signature
    return {"variant": config.variant, "delegate": config.delegate, "num_threads": config.num_threads, "model": model}


def check_url_template(template: str) -> str:
    """Fail early on a placeholder the entries cannot fill."""
    try:
        template.format(**{name: "x" for name in URL_FIELDS})
    except (KeyError, IndexError, ValueError) as error:
        raise UsageError(
            f"--model-url-template {template!r} has a bad placeholder ({error})",
            f"use only {{{'}, {'.join(URL_FIELDS)}}}",
        ) from None
    return template


def _reference_signature(files: Mapping[str, _ModelFile], default: Candidate) -> dict[str, Any] | None:
    """The model-level signature: the default's file (plain CPU, usually float)."""
    known = files.get(default.config.model_sha256)
    return known.io_signature if known else None


def _content_version(shas: set[str]) -> str:
    digest = hashlib.sha256("".join(sorted(shas)).encode()).hexdigest()[:8]
    return f"{dt.datetime.now(dt.UTC):%Y.%m.%d}+{digest}"


# --- where the facts come from ------------------------------------------------------


def _model_name(stats: pd.DataFrame, wanted: str | None) -> str:
    models: list[str] = sorted(stats["model_name"].unique())
    if wanted is None:
        if len(models) == 1:
            return models[0]
        raise UsageError(f"the results hold several models ({', '.join(models)})", "pick one with --model NAME")
    if wanted not in models:
        raise UsageError(f"no results for model {wanted!r}", f"pick one of {', '.join(models)}")
    return wanted


def model_facts(
    results_root: Path, rows: pd.DataFrame, model_name: str, manifest_path: Path | None = None
) -> tuple[dict[str, _ModelFile], dict[str, VariantAccuracy], list[str]]:
    """File names, signatures and accuracy of the model's files, by sha256.

    From --manifest when given; otherwise from the convert manifests next to the
    files the runs swept (run.json's plan) and the results' accuracy table. A
    swept file that no manifest describes is still named as the run's plan names
    it (without a signature); a file nothing names stays unknown.
    """
    warnings: list[str] = []
    plan_files: dict[str, _ModelFile] = {}
    if manifest_path:
        manifests = [_read_manifest_file(manifest_path)]
        accuracy = ranking.accuracy_from_manifest(manifests[0])
    else:
        manifests, plan_files = _manifests_of_runs(results_root, rows["run_id"].unique())
        accuracy = ranking.accuracy_from_results(results_root)
        for manifest in manifests:
            accuracy = {**ranking.accuracy_from_manifest(manifest), **accuracy}
    files: dict[str, _ModelFile] = dict(plan_files)
    for manifest in manifests:
        for variant in manifest.get("models", {}).get(model_name, {}).get("variants", {}).values():
            if variant.get("sha256"):
                files[variant["sha256"]] = _ModelFile(
                    variant["file"], variant["sha256"], variant["size_bytes"], _signature(variant)
                )
    swept = set(rows.loc[rows["model_name"] == model_name, "model_sha256"])
    unsigned = sorted(sha for sha in swept if sha in files and files[sha].io_signature is None)
    if unsigned:
        warnings.append(
            f"{len(unsigned)} file(s) of {model_name} are in no convert manifest: their entries "
            "carry no input/output signature (pass --manifest DIR/manifest.json)"
        )
    if not any(sha in accuracy for sha in swept):
        warnings.append(f"no accuracy figures for {model_name}: the accuracy gate was not applied")
    return files, accuracy, warnings


def _read_manifest_file(path: Path) -> dict[str, Any]:
    folder = path if path.is_dir() else path.parent
    if not (folder / "manifest.json").is_file():
        raise InputFileError(
            f"no convert manifest at {path}", "pass the manifest.json that 'harness convert --out DIR' wrote"
        )
    return read_manifest(folder)


def _manifests_of_runs(
    results_root: Path, run_ids: Iterable[str]
) -> tuple[list[dict[str, Any]], dict[str, _ModelFile]]:
    """The convert manifests next to the files the runs swept, and each swept file as its run's plan names it.

    A run without a readable run.json still ranks; it only lacks file facts. A
    manifest of a newer version is refused (SchemaError), never skipped.
    """
    store = ResultsStore(results_root)
    folders: dict[Path, None] = {}
    plan_files: dict[str, _ModelFile] = {}
    for run_id in run_ids:
        try:
            plan = store.read_run_manifest(run_id).get("plan", {})
        except UsageError:
            continue  # no run.json
        for model in plan.get("models", []):
            path = Path(model["path"])
            folders[path.parent] = None
            plan_files[model["sha256"]] = _ModelFile(path.name, model["sha256"], model["size_bytes"], None)
    manifests = [read_manifest(folder) for folder in folders if (folder / "manifest.json").is_file()]
    return manifests, plan_files


def _signature(variant: Mapping[str, Any]) -> dict[str, Any] | None:
    if "inputs" not in variant or "outputs" not in variant:
        return None

    def tensor(info: Mapping[str, Any]) -> dict[str, Any]:
        scale = info.get("scale")
        quantized = bool(scale) and info.get("dtype") in ("int8", "uint8", "int16")
        return {
            "name": info["name"],
            "shape": list(info["shape"]),
            "dtype": info["dtype"],
            "quantization": {"scale": scale, "zero_point": info.get("zero_point", 0)} if quantized else None,
        }

    return {"inputs": [tensor(t) for t in variant["inputs"]], "outputs": [tensor(t) for t in variant["outputs"]]}
