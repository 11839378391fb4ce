"""Example models for the demo, built here because nothing can be downloaded.

- `digits_cnn.keras`: a small CNN trained in seconds on scikit-learn's bundled
  `digits` images (1,797 real 8x8 handwritten digits that ship inside the
  package), with `digits_calibration.npz` (training images) and
  `digits_eval.npz` (held-out images with labels): real accuracy for every variant.
- `mobilenet_v2.keras`: MobileNetV2 at 224x224 with `weights=None`, for
  latency. Untrained, its outputs are near-uniform, so it is converted with
  `untrained=True` and reports no accuracy (see `Examples.conversion_requests`). `digit_images/` (the digits as
  PNGs, one sub-folder per class) gives it real images to calibrate and run
  on, resized to 224x224 and scaled to [-1, 1] as MobileNetV2 expects.

Every file is written under a temporary name and renamed into place, and an
existing file is reused, so a second build costs nothing.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from harness.atomic import replace_atomically
from harness.convert import EXAMPLES_MODULES, ConvertRequest, require_convert_extra
from harness.datasets import Preprocessing

if TYPE_CHECKING:
    import keras

DIGITS_MODEL = "digits_cnn.keras"
DIGITS_CALIBRATION = "digits_calibration.npz"
DIGITS_EVAL = "digits_eval.npz"
MOBILENET_MODEL = "mobilenet_v2.keras"
DIGIT_IMAGES = "digit_images"
MOBILENET_INPUT_SIZE = 224
MOBILENET_PREPROCESSING = Preprocessing(mean=(127.5,), std=(127.5,))  # pixels to [-1, 1]
DIGIT_IMAGES_PER_CLASS = 12  # 120 images: above the 100-sample calibration minimum
DIGITS_EPOCHS = 30
DIGITS_TEST_FRACTION = 0.2
SEED = 0


@dataclass(frozen=True)
class Examples:
    folder: Path
    digits_model: Path
    digits_calibration: Path
    digits_eval: Path
    mobilenet_model: Path
    digit_images: Path
    mobilenet_preprocessing: Preprocessing = MOBILENET_PREPROCESSING

    def conversion_requests(self, out_dir: Path, results_root: Path) -> tuple[ConvertRequest, ConvertRequest]:
        """How the demo converts the examples into out_dir: the digits CNN calibrated on training
        digits and judged on held-out ones; MobileNetV2 calibrated and run on the digit images,
        reporting no accuracy."""
        digits = ConvertRequest(
            model_path=self.digits_model,
            out_dir=out_dir,
            calibration=str(self.digits_calibration),
            evaluation=str(self.digits_eval),
            results_root=results_root,
        )
        mobilenet = ConvertRequest(
            model_path=self.mobilenet_model,
            out_dir=out_dir,
            calibration=str(self.digit_images),
            evaluation=str(self.digit_images),
            preprocessing=self.mobilenet_preprocessing,
            untrained=True,
            results_root=results_root,
        )
        return digits, mobilenet

    def to_json(self) -> dict[str, object]:
        return {
            "folder": str(self.folder),
            "digits_model": str(self.digits_model),
            "digits_calibration": str(self.digits_calibration),
            "digits_eval": str(self.digits_eval),
            "mobilenet_model": str(self.mobilenet_model),
            "digit_images": str(self.digit_images),
            "mobilenet_preprocessing": self.mobilenet_preprocessing.to_json(),
        }


def build_examples(folder: Path, mobilenet: bool = True) -> Examples:
    """Write (or reuse) every example file under `folder` (MobileNetV2 and its images only if `mobilenet`)."""
    require_convert_extra("building the example models", EXAMPLES_MODULES)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    examples = Examples(
        folder=folder,
        digits_model=folder / DIGITS_MODEL,
        digits_calibration=folder / DIGITS_CALIBRATION,
        digits_eval=folder / DIGITS_EVAL,
        mobilenet_model=folder / MOBILENET_MODEL,
        digit_images=folder / DIGIT_IMAGES,
    )
    (x_train, y_train), (x_test, y_test) = digits_split()
    if not examples.digits_calibration.exists():
        _save_npz(examples.digits_calibration, x=x_train, y=y_train)
    if not examples.digits_eval.exists():
        _save_npz(examples.digits_eval, x=x_test, y=y_test)
    if not examples.digits_model.exists():
        _save_keras(train_digits_cnn(x_train, y_train), examples.digits_model)
    if not mobilenet:
        return examples
    if not examples.mobilenet_model.exists():
        _save_keras(untrained_mobilenet_v2(), examples.mobilenet_model)
    if not examples.digit_images.exists():
        _write_digit_images(examples.digit_images, x_test, y_test)
    return examples


def digits_split() -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """scikit-learn's digits as float32 [N, 8, 8, 1] in [0, 1] and int64 labels, split train/test
    (stratified, seeded)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[..., None]  # pixel values are 0..16
    y = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=DIGITS_TEST_FRACTION, stratify=y, random_state=SEED
    )
    return (x_train, y_train), (x_test, y_test)


def train_digits_cnn(x: np.ndarray, y: np.ndarray) -> keras.Model:
    """A two-convolution CNN for 8x8 digits (about 6k parameters); a few seconds on two cores."""
    keras = _keras()
    keras.utils.set_random_seed(SEED)
    model = keras.Sequential(
        [
            keras.Input((8, 8, 1), name="digit"),
            keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(10, activation="softmax"),
        ],
        name="digits_cnn",
    )
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=DIGITS_EPOCHS, batch_size=32, verbose=0)
    return model


def untrained_mobilenet_v2() -> keras.Model:
    keras = _keras()
    return keras.applications.MobileNetV2(
        input_shape=(MOBILENET_INPUT_SIZE, MOBILENET_INPUT_SIZE, 3), weights=None, classes=1000
    )


def _write_digit_images(folder: Path, x: np.ndarray, y: np.ndarray) -> None:
    """The first DIGIT_IMAGES_PER_CLASS test digits of each class as 8x8 grayscale PNGs."""
    from PIL import Image

    staging = folder.with_name(f".{folder.name}.{uuid.uuid4().hex}.tmp")
    for label in range(10):
        (staging / str(label)).mkdir(parents=True)
        for i, image in enumerate(x[y == label][:DIGIT_IMAGES_PER_CLASS]):
            pixels = np.round(image[..., 0] * 255).astype(np.uint8)
            Image.fromarray(pixels).save(staging / str(label) / f"{i:03d}.png")
    os.replace(staging, folder)


def _save_npz(path: Path, **arrays: np.ndarray) -> None:
    named: dict[str, Any] = arrays  # numpy's stub would read a key as its allow_pickle flag
    replace_atomically(path, lambda temp: np.savez(temp, **named), suffix=".npz")  # numpy adds .npz otherwise


def _save_keras(model: keras.Model, path: Path) -> None:
    replace_atomically(path, model.save, suffix=".keras")  # Keras insists on the suffix


def _keras() -> Any:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    return keras
