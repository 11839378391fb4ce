"""How long does `harness convert` take on MobileNetV2 224, and how large are its variants?

Target (issue 5): conversion and accuracy of MobileNetV2 (224x224, ~3.5 M
parameters, weights=None) into fp32, fp16, dynamic and int8 in under 60 s on
this machine, with fp32 ~14 MB and int8 ~3.5-4 MB.

    .venv/bin/python bench/convert_mobilenet.py [--work DIR]

The model and the digit images it is calibrated and run on come from
`harness.examples` (built once under DIR, default .cache/examples, and not
timed). The timed part is one `convert_model` call in a fresh process, as
`harness convert` runs it: TensorFlow import, Keras load and export, four
conversions (int8 calibrated on 120 real images), the fp32 reference on the
eval images, and every variant run through LiteRT on them. Untrained weights
make accuracy figures meaningless, so the manifest reports none; the variants
still run on every eval image.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
TARGET_S = 60.0


def build(work: Path) -> None:
    from harness.examples import build_examples

    build_examples(work)


def convert(work: Path, out_dir: Path) -> None:
    """One timed conversion; prints the wall time and the variants as 'variant size_bytes status'."""
    from harness.convert import convert_model
    from harness.examples import build_examples

    _, mobilenet = build_examples(work).conversion_requests(out_dir, results_root=out_dir / "results")
    started = time.perf_counter()
    result = convert_model(mobilenet)
    elapsed_s = time.perf_counter() - started
    print(f"wall_s {elapsed_s:.1f}")
    entry: dict[str, Any] = result.entry  # the manifest entry: a JSON document
    print(f"samples {entry['calibration']['samples']} {entry['evaluation']['samples']}")
    for variant in result.variants:
        print(
            f"variant {variant.variant.value} {variant.size_bytes or 0} {variant.status.value} "
            f"fully_int8={variant.fully_int8} {variant.reason or variant.error or ''}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=REPO / ".cache" / "examples")
    args = parser.parse_args()
    print(f"building the examples in {args.work} (once, not timed) ...", flush=True)
    subprocess.run([sys.executable, __file__, "build", str(args.work)], check=True, cwd=REPO)
    with tempfile.TemporaryDirectory(prefix="convert-bench-") as out_dir:
        completed = subprocess.run(
            [sys.executable, __file__, "convert", str(args.work), out_dir],
            check=True,
            cwd=REPO,
            capture_output=True,
            text=True,
        )
    lines = [line.split(" ", 1) for line in completed.stdout.splitlines()]
    wall_s = float(next(rest for key, rest in lines if key == "wall_s"))
    calibration, evaluation = next(rest for key, rest in lines if key == "samples").split()
    print(f"MobileNetV2 224 (weights=None): calibration {calibration} images, eval {evaluation} images")
    for key, rest in lines:
        if key == "variant":
            name, size_bytes, status, *notes = rest.split(" ")
            print(f"  {name:<8} {int(size_bytes) / 1e6:6.2f} MB  {status}  {' '.join(notes)}")
    verdict = "within" if wall_s < TARGET_S else "OVER"
    print(f"conversion + accuracy, all four variants: {wall_s:.1f} s ({verdict} the {TARGET_S:.0f} s target)")
    return 0 if wall_s < TARGET_S else 1


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "build":
        build(Path(sys.argv[2]))
    elif len(sys.argv) > 1 and sys.argv[1] == "convert":
        convert(Path(sys.argv[2]), Path(sys.argv[3]))
    else:
        sys.exit(main())
