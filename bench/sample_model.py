"""The bench scripts' sample model, built locally (nothing may be downloaded here).

The benches need a model whose latency behaves like a real mobile vision model
(depthwise convolutions, a few ms per inference) without the minutes a full
MobileNetV2 takes to benchmark on a 2-core machine: MobileNetV2 with width
0.35 at 128x128 and untrained weights. Untrained weights are fine for latency;
they make accuracy figures meaningless, so nothing here reports any.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from pathlib import Path

SAMPLE_MODEL_NAME = "mobilenet_v2_035_128"


def build_sample_model(cache_dir: Path) -> Path:
    """Path of the sample .tflite model, converting it on first use (about 15 s)."""
    path = cache_dir / f"{SAMPLE_MODEL_NAME}_fp32.tflite"
    if path.is_file():
        return path
    cache_dir.mkdir(parents=True, exist_ok=True)
    # TensorFlow's start-up chatter would bury the demo's output.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    import tensorflow as tf

    model = keras.applications.MobileNetV2(input_shape=(128, 128, 3), alpha=0.35, weights=None, classes=1000)
    # Keras prints the exported signature to stdout; the demo's stdout is for results.
    with contextlib.redirect_stdout(io.StringIO()):
        flatbuffer = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    partial = path.with_suffix(".tflite.partial")
    partial.write_bytes(flatbuffer)
    partial.replace(path)  # a killed conversion never leaves a half model behind
    return path


def sample_model(cache_dir: Path, log_path: Path) -> Path:
    """The sample model, converted in a child process so TensorFlow never loads into the calling bench."""
    bench = Path(__file__).resolve().parent
    code = (
        f"import sys; sys.path.insert(0, {str(bench)!r}); from pathlib import Path; "
        "from sample_model import build_sample_model; print(build_sample_model(Path(sys.argv[1])))"
    )
    with open(log_path, "ab") as log:
        done = subprocess.run(
            [sys.executable, "-c", code, str(cache_dir)],
            cwd=bench.parent,
            stdout=subprocess.PIPE,
            stderr=log,
            check=True,
        )
    return Path(done.stdout.decode().strip().splitlines()[-1])
