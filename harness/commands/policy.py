"""`harness policy ...`: thin shells over harness.policy (derive), harness.coverage and
harness.policy_file (validate, resolve, diff)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from harness.errors import InputFileError, UsageError
from harness.locations import DEFAULT_RESULTS

if TYPE_CHECKING:
    from harness.numerics import NumericsGate
    from harness.policy_file import Problem

_F = TypeVar("_F", bound=Callable[..., Any])

# harness.policy_file (and jsonschema with it) is imported inside each command, as the other
# command modules do with their libraries, so that every other `harness` command starts fast.

# Exit status of `validate`, `resolve` and `diff` for an invalid policy, as for any other error.
EXIT_INVALID = 2
# Exit status of `diff` when an app must not hot-swap to the new policy's models.
EXIT_INCOMPATIBLE = 1


allow_mixed_kinds_option = click.option(
    "--allow-mixed-kinds",
    is_flag=True,
    help="Rank physical and virtual devices together (refused by default: not measured the same way).",
)
allow_mixed_binaries_option = click.option(
    "--allow-mixed-binaries",
    is_flag=True,
    help="Compare rows of different benchmark binaries (refused by default: different instruments).",
)


def numerics_gate_options(command: _F) -> _F:
    """--max-output-error, --min-output-cosine, --max-sym-kl, --max-mse: the numerics gate's limits."""
    from harness.numerics import NumericsGate

    default = NumericsGate()
    options = (
        click.option(
            "--max-output-error",
            type=click.FloatRange(0),
            default=default.max_output_error,
            show_default=True,
            help="Numerics gate: largest |output - reference| over the reference's largest magnitude on a device.",
        ),
        click.option(
            "--min-output-cosine",
            type=click.FloatRange(-1, 1),
            default=default.min_output_cosine,
            show_default=True,
            help="Numerics gate: smallest cosine of a device's outputs with the reference's.",
        ),
        click.option(
            "--max-sym-kl",
            type=click.FloatRange(0),
            default=default.max_sym_kl,
            show_default=True,
            help="Numerics gate for probability outputs: symmetric KL divergence below this (as TFLite's "
            "Delegate Performance Benchmark).",
        ),
        click.option(
            "--max-mse",
            type=click.FloatRange(0),
            default=default.max_mse,
            show_default=True,
            help="Numerics gate for probability outputs: mean squared error below this.",
        ),
    )
    for option in reversed(options):
        command = option(command)
    return command


def numerics_gate(max_output_error: float, min_output_cosine: float, max_sym_kl: float, max_mse: float) -> NumericsGate:
    from harness.numerics import NumericsGate

    return NumericsGate(max_output_error, min_output_cosine, max_sym_kl, max_mse)


@click.group("policy")
def policy() -> None:
    """Tiered deployment policy: derive, validate, resolve, diff, coverage."""


def _problems_on_stderr(file: Path, problems: tuple[Problem, ...]) -> None:
    for problem in problems:
        click.echo(f"{problem.where}: {problem.message}", err=True)
    click.echo(f"{file}: invalid ({len(problems)} problem{'s' if len(problems) > 1 else ''})", err=True)


def _load_valid(ctx: click.Context, file: Path) -> dict[str, Any]:
    """The policy at `file`, checked as written (v1 against the v1 schema) then upgraded to the current
    version; an invalid one ends the command with its problems and exit status 2."""
    from harness.policy_file import read_policy, upgrade_policy, validate

    document = read_policy(file)
    problems = validate(document)
    if problems:
        _problems_on_stderr(file, problems)
        ctx.exit(EXIT_INVALID)
    return upgrade_policy(document, file)


def _read_dump(path: Path, what: str) -> str:
    """A saved dump as text. Windows PowerShell's `>` writes UTF-16 with a BOM, so a BOM decides."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise InputFileError(
            f"{path} does not exist", f"save the output of '{what}' to a file and pass its path"
        ) from None
    except OSError as error:
        raise InputFileError(f"cannot read {path} ({error.strerror})", "check the path and its permissions") from None
    encoding = "utf-16" if raw[:2] in (b"\xff\xfe", b"\xfe\xff") else "utf-8-sig"
    return raw.decode(encoding, errors="replace")


@policy.command("validate")
@click.argument("file", type=click.Path(path_type=Path))
@click.option(
    "--require-physical",
    is_flag=True,
    help="Also refuse a policy whose numbers were not all measured on physical phones (for a CI step "
    "that publishes policies).",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help='Print {"valid": bool, "problems": [{"where", "message"}], "warnings": [...]}.',
)
@click.pass_context
def validate_command(ctx: click.Context, file: Path, require_physical: bool, as_json: bool) -> None:
    """Check FILE against the policy schema of its version (v1 or v2) and the rules a schema cannot express.

    Exit status 0 when valid, 2 when not (each problem on stderr: where, what is
    wrong, how to fix it), when FILE is not a policy at all, or, with
    --require-physical, when any of its numbers come from virtual devices.
    Warnings (e.g. measured on virtual devices) go to stderr and keep exit 0.
    """
    from harness.policy_file import (
        POLICY_SCHEMA_VERSION,
        Problem,
        document_version,
        physical_only,
        provenance_warnings,
        read_policy,
        validate,
    )

    document = read_policy(file)  # as written: a v1 file is checked against the v1 schema
    version = document_version(document)
    problems = validate(document)
    warnings = provenance_warnings(document) if not problems else ()
    if require_physical and not problems and not physical_only(document):
        kinds = document.get("source", {}).get("device_kinds")
        problems = (
            Problem(
                "source.device_kinds",
                f"is {kinds!r}, not ['physical']: --require-physical refuses a "
                "policy measured on virtual devices (or an unknown kind); derive "
                "it from a phone lab's results",
            ),
        )
    if as_json:
        click.echo(
            json.dumps(
                {
                    "valid": not problems,
                    "schema_version": version,
                    "problems": [problem.to_json() for problem in problems],
                    "warnings": list(warnings),
                },
                indent=2,
            )
        )
    else:
        for warning in warnings:
            click.echo(f"warning: {warning}", err=True)
        if problems:
            _problems_on_stderr(file, problems)
        else:
            names = {entry["name"] for entry in document["tiers"]}
            older = (
                (
                    f"; an older version: this harness reads it as v{POLICY_SCHEMA_VERSION} (nothing changes but "
                    "the version), and apps built for v1 or later read it as it is"
                )
                if version < POLICY_SCHEMA_VERSION
                else ""
            )
            click.echo(
                f"{file}: valid policy v{version} ({len(document['tiers'])} tier entries, {len(names)} tiers{older})"
            )
    if problems:
        ctx.exit(EXIT_INVALID)


@policy.command("resolve")
@click.argument("file", type=click.Path(path_type=Path))
@click.option(
    "--getprop", "getprop_path", type=click.Path(path_type=Path), help="Saved 'adb shell getprop' output of the phone."
)
@click.option(
    "--meminfo",
    "meminfo_path",
    type=click.Path(path_type=Path),
    help="Saved 'adb shell cat /proc/meminfo' output (with --getprop); "
    "without it RAM comes from props such as ro.boot.ddr_size.",
)
@click.option(
    "--serial", help="A phone on the farm's adb servers (SERIAL or HOST:PORT/SERIAL, as 'harness devices' lists it)."
)
@click.option("--json", "as_json", is_flag=True, help="Print the resolution as JSON.")
@click.pass_context
def resolve_command(
    ctx: click.Context,
    file: Path,
    getprop_path: Path | None,
    meminfo_path: Path | None,
    serial: str | None,
    as_json: bool,
) -> None:
    """Which tier, rule and chain the policy in FILE gives one phone, and why.

    The phone comes from saved dumps (--getprop, optionally --meminfo) or from
    the farm (--serial). Exit status 2 when FILE is not a valid policy.
    """
    from harness.policy_resolve import device_for_serial, device_from_dumps, format_resolution, resolve

    if (getprop_path is None) == (serial is None):
        raise UsageError("pass exactly one of --getprop DUMP or --serial SERIAL", "e.g. --getprop getprop.txt")
    if meminfo_path is not None and getprop_path is None:
        raise UsageError(
            "--meminfo goes with --getprop", "with --serial the phone is asked for its RAM itself; drop --meminfo"
        )
    document = _load_valid(ctx, file)
    if getprop_path is not None:
        device = device_from_dumps(
            _read_dump(getprop_path, "adb shell getprop"),
            None if meminfo_path is None else _read_dump(meminfo_path, "adb shell cat /proc/meminfo"),
            serial=getprop_path.name,
        )
    else:
        from harness.phone.discovery import discover
        from harness.phone.profiles import load_farm, load_tiers

        found = discover(load_farm(), load_tiers())
        for warning in found.warnings():
            click.echo(f"warning: {warning}", err=True)
        assert serial is not None  # exactly one of --getprop and --serial, as checked above
        device = device_for_serial(found.entries, serial)
    resolution = resolve(document, device)
    if as_json:
        click.echo(json.dumps(resolution.to_json(), indent=2))
    else:
        click.echo(format_resolution(resolution))


@policy.command("diff")
@click.argument("old", type=click.Path(path_type=Path))
@click.argument("new", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help='Print {"incompatible": bool, "changes": [...]}.')
@click.pass_context
def diff_command(ctx: click.Context, old: Path, new: Path, as_json: bool) -> None:
    """What changed from policy OLD to policy NEW, per tier.

    Exit status: 0 when NEW is safe to roll out to installed apps (no change, or
    only compatible ones); 1 when a model's inputs or outputs changed in number,
    shape, dtype or quantization (lines start with INCOMPATIBLE:), so apps must
    not hot-swap to it; 2 when OLD or NEW is unreadable or not a valid policy.
    """
    from harness.policy_diff import diff, format_diff

    old_document, new_document = _load_valid(ctx, old), _load_valid(ctx, new)
    changes = diff(old_document, new_document)
    if as_json:
        click.echo(json.dumps(changes.to_json(), indent=2))
    else:
        click.echo(format_diff(changes))
    if changes.incompatible:
        ctx.exit(EXIT_INCOMPATIBLE)


@policy.command("derive")
@click.option(
    "--results",
    "results_dir",
    type=click.Path(path_type=Path),
    default=DEFAULT_RESULTS,
    show_default=True,
    help="Results folder the sweeps wrote.",
)
@click.option("--run", "run_ids", multiple=True, help="Only these runs (repeatable); default: every run.")
@click.option("--model", "model_name", help="Model name; needed when the results hold several.")
@click.option(
    "--manifest",
    "manifest_path",
    type=click.Path(path_type=Path),
    help="Convert manifest (DIR/manifest.json): file names, I/O signatures, accuracy gate. "
    "Default: the manifests next to the swept files and the results' accuracy table.",
)
@click.option(
    "--metric",
    default="inference_p50_us",
    show_default=True,
    help="What 'best' means: inference_p50_us, inference_avg_us, inference_p95_us, memory_mb, "
    "energy_mj_per_inference or accuracy_drop (all lower is better).",
)
@click.option(
    "--objective",
    type=click.Choice(["burst", "sustained"]),
    default="burst",
    show_default=True,
    help="burst: the bursts of a normal sweep; sustained: the sustained p50 of 'harness run --sustained' "
    "windows, excluding configurations that miss the frame deadline for more than 5% of inferences.",
)
@click.option(
    "--fps",
    type=click.FloatRange(0, min_open=True),
    help="With --objective sustained: the frame rate whose deadline (1/fps) counts; default: the sweep's.",
)
@click.option("--max-latency-us", type=float, help="Limit on every device of a tier (the latency metric).")
@click.option("--max-memory-mb", type=float, help="Limit on the benchmark's peak RSS on every device of a tier.")
@click.option("--max-accuracy-drop", type=float, help="Limit on the variant's accuracy drop vs fp32.")
@click.option("--max-energy-mj", type=float, help="Limit on energy per inference on every device of a tier.")
@click.option(
    "--alpha", type=float, help="Significance level of the tie test (Mann-Whitney interval, TOST); default 0.05."
)
@click.option(
    "--min-effect", type=float, help="Relative latency difference below which configurations always tie; default 0.05."
)
@click.option("--model-version", help="Version written into the policy; default: <date>+<digest of the files>.")
@click.option(
    "--model-url-template",
    help="URL of each file, e.g. https://cdn.example.com/{model}/{version}/{file} "
    "(placeholders: model, variant, version, sha256, file).",
)
@click.option(
    "--tiers",
    "tiers_file",
    type=click.Path(path_type=Path),
    help="Tier rules; default: the tiers.toml in effect (see 'harness config').",
)
@click.option("--out", "out_path", type=click.Path(path_type=Path), required=True, help="Policy JSON to write.")
@numerics_gate_options
@allow_mixed_kinds_option
@allow_mixed_binaries_option
@click.option("--json", "as_json", is_flag=True, help="Print the policy JSON on stdout too.")
def derive_command(
    results_dir: Path,
    run_ids: tuple[str, ...],
    model_name: str | None,
    manifest_path: Path | None,
    metric: str,
    objective: str,
    fps: float | None,
    max_latency_us: float | None,
    max_memory_mb: float | None,
    max_accuracy_drop: float | None,
    max_energy_mj: float | None,
    alpha: float | None,
    min_effect: float | None,
    model_version: str | None,
    model_url_template: str | None,
    tiers_file: Path | None,
    out_path: Path,
    max_output_error: float,
    min_output_cosine: float,
    max_sym_kl: float,
    max_mse: float,
    allow_mixed_kinds: bool,
    allow_mixed_binaries: bool,
    as_json: bool,
) -> None:
    """Compile the measurements into a tiered deployment policy (one model)."""
    from harness.policy import DeriveRequest, Objective, check_url_template, derive, write_policy
    from harness.ranking import Constraints, MixingAllowed, TieTest

    given = {"alpha": alpha, "min_effect": min_effect}
    request = DeriveRequest(
        results_root=results_dir,
        run_ids=run_ids,
        model_name=model_name,
        manifest_path=manifest_path,
        metric=metric,
        constraints=Constraints(max_latency_us, max_memory_mb, max_accuracy_drop, max_energy_mj),
        tie_test=TieTest(**{k: v for k, v in given.items() if v is not None}),
        model_version=model_version,
        model_url_template=check_url_template(model_url_template) if model_url_template else None,
        tiers_file=tiers_file,
        mixing=MixingAllowed(allow_mixed_kinds, allow_mixed_binaries),
        numerics_gate=numerics_gate(max_output_error, min_output_cosine, max_sym_kl, max_mse),
        objective=Objective(objective),
        fps=fps,
    )
    if fps is not None and request.objective is not Objective.SUSTAINED:
        raise UsageError("--fps is for --objective sustained", "add --objective sustained, or leave out --fps")
    derived = derive(request)
    write_policy(derived.document, out_path)
    for warning in derived.warnings:
        click.echo(f"warning: {warning}", err=True)
    if as_json:
        click.echo(json.dumps(derived.document, indent=2))
        return
    for line in derived.lines():
        click.echo(line)
    click.echo(f"wrote {out_path}")


@policy.command("coverage")
@click.argument("policy_file", type=click.Path(path_type=Path))
@click.option("--results", "results_dir", type=click.Path(path_type=Path), default=DEFAULT_RESULTS, show_default=True)
@click.option("--run", "run_ids", multiple=True, help="Only these runs (repeatable); default: every run.")
@click.option(
    "--manifest",
    "manifest_path",
    type=click.Path(path_type=Path),
    help="Convert manifest whose accuracy figures rule variants out of 'best' (as for derive).",
)
@allow_mixed_binaries_option
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_context
def coverage_command(
    ctx: click.Context,
    policy_file: Path,
    results_dir: Path,
    run_ids: tuple[str, ...],
    manifest_path: Path | None,
    allow_mixed_binaries: bool,
    as_json: bool,
) -> None:
    """Per measured device: the policy's configuration there vs the best measured there."""
    from harness.coverage import coverage
    from harness.policy import load_rows, model_facts
    from harness.ranking import MixingAllowed

    document = _load_valid(ctx, policy_file)
    rows = load_rows(results_dir, run_ids, document["model"]["name"])
    _, accuracy, _ = model_facts(results_dir, rows, document["model"]["name"], manifest_path)
    report = coverage(document, rows, accuracy, mixing=MixingAllowed(binaries=allow_mixed_binaries))
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2, default=str))
        return
    for line in report.lines():
        click.echo(line)
