"""`harness convert` and `harness examples`: thin shells over harness.convert and harness.examples.

Progress and warnings go to stderr, the per-variant table (or JSON with
--json) to stdout. Exit 0 when every requested variant converted (rejected
variants are results, not errors), 1 when any failed to convert.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

from harness.convert import DEFAULT_CALIBRATION_SAMPLES, DEFAULT_MAX_ACCURACY_DROP, DEFAULT_MAX_MSE
from harness.errors import UsageError
from harness.locations import DEFAULT_RESULTS

if TYPE_CHECKING:
    from harness.convert import ConversionResult
    from harness.datasets import Preprocessing

_OFF = "off"


def _floats(text: str, flag: str) -> tuple[float, ...]:
    try:
        return tuple(float(part) for part in text.split(","))
    except ValueError:
        raise UsageError(
            f"{flag} {text!r} is not a number or comma-separated numbers",
            f"e.g. {flag} 127.5 or {flag} 123.7,116.3,103.5",
        ) from None


def _size(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    height, _, width = text.lower().partition("x")
    try:
        size = (int(height), int(width or height))
    except ValueError:
        raise UsageError(f"--image-size {text!r} is not N or HEIGHTxWIDTH", "e.g. --image-size 224") from None
    if min(size) < 1:
        raise UsageError(f"--image-size {text!r} must be positive", "e.g. --image-size 224")
    return size


def _threshold(text: str, flag: str) -> float | None:
    if text.lower() == _OFF:
        return None
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"{flag} {text!r} is neither a number nor '{_OFF}'", f"e.g. {flag} 0.01") from None
    if value < 0:
        raise UsageError(f"{flag} must not be negative", f"e.g. {flag} 0.01, or {flag} {_OFF}")
    return value


def _preprocessing(mean: str | None, std: str | None, image_size: str | None) -> Preprocessing | None:
    from harness.datasets import Preprocessing

    if mean is None and std is None and image_size is None:
        return None
    if mean is None or std is None:
        raise UsageError(
            "image preprocessing needs both --mean and --std",
            "e.g. --mean 127.5 --std 127.5 for inputs in [-1, 1], or --mean 0 --std 255 for [0, 1]",
        )
    return Preprocessing(mean=_floats(mean, "--mean"), std=_floats(std, "--std"), size=_size(image_size))


def _number(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _print_table(result: ConversionResult) -> None:
    headers = (
        "variant",
        "status",
        "size_bytes",
        "sha256",
        "fully_int8",
        "top1",
        "agreement",
        "mse",
        "max_abs_err",
        "cosine",
        "verdict",
    )
    rows = [headers]
    for v in result.variants:
        figures = v.accuracy
        if v.error:
            verdict = v.error
        elif v.accepted is None:
            verdict = f"not assessed: {v.reason}"
        else:
            verdict = "accepted" if v.accepted else f"rejected: {v.reason}"
        rows.append(
            (
                v.variant.value,
                v.status.value,
                _number(v.size_bytes, "d"),
                (v.sha256 or "-")[:12],
                "-" if v.fully_int8 is None else ("yes" if v.fully_int8 else "no"),
                _number(None if figures is None else figures.accuracy, ".4f"),
                _number(None if figures is None else figures.agreement, ".4f"),
                _number(None if figures is None else figures.mse, ".2e"),
                _number(None if figures is None else figures.max_abs_error, ".2e"),
                _number(None if figures is None else figures.cosine, ".6f"),
                verdict,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(headers) - 1)]
    for row in rows:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + "  " + row[-1])


@click.command("convert")
@click.argument("model", type=click.Path(path_type=Path))
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(path_type=Path, file_okay=False),
    help="Folder for <model>_<variant>.tflite and manifest.json.",
)
@click.option("--variants", default="fp32,fp16,dynamic,int8", show_default=True)
@click.option(
    "--calibration",
    default=None,
    metavar="DATA|random",
    help="int8 calibration data: .npz (x) or image folder; 'random' only for latency-only models.",
)
@click.option(
    "--calibration-samples",
    default=DEFAULT_CALIBRATION_SAMPLES,
    show_default=True,
    type=click.IntRange(1),
    help="Calibrate int8 on at most N samples (a seeded random subset).",
)
@click.option(
    "--eval",
    "evaluation",
    default=None,
    metavar="DATA",
    help="Eval data: .npz (x, y) or image folder (class sub-folders).",
)
@click.option("--eval-samples", default=None, type=click.IntRange(1), help="Evaluate on at most N samples.")
@click.option("--mean", default=None, help="Image folders: subtracted from 0..255 pixels (one or per channel).")
@click.option("--std", default=None, help="Image folders: then divided by this (one or per channel).")
@click.option("--image-size", default=None, metavar="N|HxW", help="Image folders: resize to (default: the model's).")
@click.option(
    "--max-accuracy-drop",
    default=str(DEFAULT_MAX_ACCURACY_DROP),
    show_default=True,
    help="Reject a variant losing more top-1 accuracy (or agreement, without labels); 'off' disables.",
)
@click.option(
    "--max-mse",
    default=str(DEFAULT_MAX_MSE),
    show_default=True,
    help="Reject a variant whose output MSE vs fp32 is larger; 'off' disables.",
)
@click.option("--untrained", is_flag=True, help="The weights are untrained (weights=None): report no accuracy.")
@click.option("--name", default=None, help="Model name in file names (default: MODEL's name).")
@click.option(
    "--results",
    "results_dir",
    default=DEFAULT_RESULTS,
    show_default=True,
    type=click.Path(path_type=Path),
    help="Results root; accuracy rows go to RESULTS/accuracy/.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the manifest entry as JSON.")
@click.pass_context
def convert_command(
    ctx: click.Context,
    model: Path,
    out_dir: Path,
    variants: str,
    calibration: str | None,
    calibration_samples: int,
    evaluation: str | None,
    eval_samples: int | None,
    mean: str | None,
    std: str | None,
    image_size: str | None,
    max_accuracy_drop: str,
    max_mse: str,
    untrained: bool,
    name: str | None,
    results_dir: Path,
    as_json: bool,
) -> None:
    """Convert a .keras file or SavedModel folder into TFLite variants and judge each one's accuracy."""
    from harness.convert import (
        RANDOM_CALIBRATION_WARNING,
        ConvertRequest,
        Thresholds,
        convert_model,
        parse_variants,
        require_convert_extra,
    )

    require_convert_extra("'harness convert'")

    request = ConvertRequest(
        model_path=model,
        out_dir=out_dir,
        variants=parse_variants(variants),
        calibration=calibration,
        evaluation=evaluation,
        preprocessing=_preprocessing(mean, std, image_size),
        calibration_samples=calibration_samples,
        eval_samples=eval_samples,
        thresholds=Thresholds(_threshold(max_accuracy_drop, "--max-accuracy-drop"), _threshold(max_mse, "--max-mse")),
        untrained=untrained,
        name=name,
        results_root=results_dir,
    )
    result = convert_model(request, say=lambda line: click.echo(line, err=True))
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2))
    else:
        click.echo(f"{result.model_name}: {result.manifest_path} (accuracy rows: {result.accuracy_path})")
        if result.entry["accuracy_note"]:
            click.echo(result.entry["accuracy_note"])
        _print_table(result)
    for warning in result.warnings:
        if warning == RANDOM_CALIBRATION_WARNING:
            click.echo(f"{'!' * 78}\nWARNING: {warning}\n{'!' * 78}", err=True)
        else:
            click.echo(f"warning: {warning}", err=True)
    if result.failed:
        names = ", ".join(v.variant.value for v in result.failed)
        click.echo(f"error: {len(result.failed)} variant(s) failed ({names}); the others were written", err=True)
        ctx.exit(1)


@click.command("examples")
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path, file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the example files as JSON.")
def examples_command(out_dir: Path, as_json: bool) -> None:
    """Build the example models: a digits CNN (trained here) and MobileNetV2 (untrained)."""
    from harness.convert import EXAMPLES_MODULES, require_convert_extra
    from harness.examples import build_examples

    require_convert_extra("'harness examples'", EXAMPLES_MODULES)
    click.echo(f"building the example models in {out_dir} ...", err=True)
    examples = build_examples(out_dir)
    if as_json:
        click.echo(json.dumps(examples.to_json(), indent=2))
        return
    spec = examples.mobilenet_preprocessing
    click.echo(
        f"harness convert {examples.digits_model} --calibration {examples.digits_calibration} "
        f"--eval {examples.digits_eval} --out models"
    )
    click.echo(
        f"harness convert {examples.mobilenet_model} --calibration {examples.digit_images} "
        f"--eval {examples.digit_images} --mean {spec.mean[0]} --std {spec.std[0]} --untrained --out models"
    )
