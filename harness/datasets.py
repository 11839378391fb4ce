"""Calibration and evaluation data for `harness convert`, checked against the model's input.

DATA is one of:
- an `.npz` with `x` (already preprocessed, one sample per row) and optionally `y`
  (integer class ids, or one-hot rows);
- a folder of images, one sub-folder per class (labels are the sorted sub-folder
  names) or images directly in it (no labels), turned into model inputs by a
  `Preprocessing` spec that calibration and evaluation share;
- the word `random`, for calibration only: uniform noise that makes a quantized
  model run but says nothing about its accuracy.

Every mismatch with the model's input (rank, shape, dtype, non-finite values)
is an InputFileError that says how to fix the data, before any conversion runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import numpy as np

from harness.errors import InputFileError, UsageError

RANDOM = "random"
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"})
RANDOM_RANGE = (-1.0, 1.0)


class DataKind(str, Enum):
    NPZ = "npz"
    IMAGES = "images"
    RANDOM = "random"


@dataclass(frozen=True)
class InputSpec:
    """The model input that data must fit: shape with the batch first, None for any size."""

    name: str
    shape: tuple[int | None, ...]
    dtype: str  # numpy dtype name, e.g. "float32"

    def describe(self) -> str:
        dims = ", ".join("N" if i == 0 else ("?" if d is None else str(d)) for i, d in enumerate(self.shape))
        return f"'{self.name}' ({dims}) {self.dtype}"


@dataclass(frozen=True)
class Preprocessing:
    """How an image becomes a model input: resize to (height, width), then (pixel - mean) / std.

    Pixels are 0..255; mean and std hold one value or one per channel. A size of
    None means the model's own input size.
    """

    mean: tuple[float, ...]
    std: tuple[float, ...]
    size: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        if any(s == 0 for s in self.std):
            raise UsageError("--std contains 0", "give a non-zero std, e.g. --std 127.5")

    def to_json(self) -> dict[str, object]:
        return {
            "mean": list(self.mean),
            "std": list(self.std),
            "size": None if self.size is None else list(self.size),
            "pixel_range": [0, 255],
        }


@dataclass(frozen=True, eq=False)  # numpy arrays have no boolean equality
class Dataset:
    """Model-ready samples `x` (batch first), class ids `y` when known."""

    source: str
    kind: DataKind
    x: np.ndarray
    y: np.ndarray | None = None
    class_names: tuple[str, ...] | None = None

    def __len__(self) -> int:
        return len(self.x)

    def describe(self) -> dict[str, object]:
        return {
            "source": self.source,
            "kind": self.kind.value,
            "samples": len(self),
            "labels": self.y is not None,
            "class_names": None if self.class_names is None else list(self.class_names),
        }


def load_data(
    spec: str,
    model_input: InputSpec,
    preprocessing: Preprocessing | None,
    *,
    purpose: str,
    limit: int | None = None,
    seed: int = 0,
) -> Dataset:
    """DATA (an .npz path or an image folder) as model inputs; `limit` keeps a seeded random subset.

    `preprocessing` applies to image folders only: an .npz holds inputs already
    preprocessed. `purpose` ("--calibration", "--eval") names the flag in error messages.
    """
    path = Path(spec)
    if path.is_dir():
        if preprocessing is None:
            raise UsageError(
                f"{purpose} {spec} is an image folder but no preprocessing was given",
                "add --mean and --std (e.g. --mean 127.5 --std 127.5 for inputs in [-1, 1])",
            )
        return _load_images(path, model_input, preprocessing, purpose=purpose, limit=limit, seed=seed)
    if path.is_file():
        if path.suffix != ".npz":
            raise InputFileError(
                f"{purpose} {spec} is neither an .npz file nor an image folder",
                "save the samples with numpy.savez(PATH, x=..., y=...) or point at a folder of images",
            )
        return _subset(_load_npz(path, model_input, purpose=purpose), limit, seed)
    raise InputFileError(f"{purpose} {spec}: no such file or folder", "pass an .npz file or a folder of images")


def random_data(model_input: InputSpec, samples: int, seed: int = 0) -> Dataset:
    """Uniform noise in RANDOM_RANGE shaped like the input: lets int8 convert, says nothing of accuracy."""
    if np.dtype(model_input.dtype).kind != "f":
        raise UsageError(
            f"random calibration needs a float input, but {model_input.describe()} is not",
            "pass real samples with --calibration DATA",
        )
    if any(d is None for d in model_input.shape[1:]):
        raise UsageError(
            f"random calibration needs a fixed input shape, but {model_input.describe()} has free dimensions",
            "pass real samples with --calibration DATA",
        )
    shape = (samples, *(int(d) for d in model_input.shape[1:] if d is not None))  # none is, as just checked
    x = np.random.default_rng(seed).uniform(*RANDOM_RANGE, size=shape).astype(model_input.dtype)
    return Dataset(source=RANDOM, kind=DataKind.RANDOM, x=x)


def _load_npz(path: Path, model_input: InputSpec, *, purpose: str) -> Dataset:
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except (OSError, ValueError) as error:
        raise InputFileError(
            f"{purpose} {path} is not a readable .npz ({error})", "write it with numpy.savez(PATH, x=..., y=...)"
        ) from None
    if "x" not in arrays:
        raise InputFileError(
            f"{purpose} {path} has no array 'x' (it has {sorted(arrays) or 'nothing'})",
            "store the model inputs as x (and class ids as y): numpy.savez(PATH, x=..., y=...)",
        )
    x = _fit_input(arrays["x"], model_input, f"{purpose} {path}")
    y = _labels(arrays["y"], len(x), f"{purpose} {path}") if "y" in arrays else None
    return Dataset(source=str(path), kind=DataKind.NPZ, x=x, y=y)


def _fit_input(x: np.ndarray, model_input: InputSpec, where: str) -> np.ndarray:
    """x cast to the input's dtype, after checking rank, static dimensions, dtype kind and finiteness."""
    expected = model_input.shape[1:]
    if x.ndim != len(expected) + 1 or any(
        d is not None and d != a for d, a in zip(expected, x.shape[1:], strict=False)
    ):
        wanted = "(N, " + ", ".join("?" if d is None else str(d) for d in expected) + ")"
        raise InputFileError(
            f"{where}: x has shape {tuple(x.shape)}, but the model's input {model_input.describe()} takes {wanted}",
            f"reshape x to {wanted} (one sample per row, batch first)",
        )
    if len(x) == 0:
        raise InputFileError(f"{where}: x holds no samples", "store at least one sample (100 or more to calibrate)")
    wanted_kind = np.dtype(model_input.dtype).kind
    if wanted_kind == "f":
        if x.dtype.kind != "f":
            raise InputFileError(
                f"{where}: x is {x.dtype}, but the model's input {model_input.describe()} is floating point",
                "store x preprocessed exactly as the model expects it, as float32 (e.g. images scaled to [0, 1])",
            )
        if not np.isfinite(x).all():
            raise InputFileError(f"{where}: x contains NaN or infinite values", "clean or drop those samples")
    elif wanted_kind in "iu" and x.dtype.kind not in "iu":
        raise InputFileError(
            f"{where}: x is {x.dtype}, but the model's input {model_input.describe()} takes integers",
            f"store x as {model_input.dtype}",
        )
    return x.astype(model_input.dtype, copy=False)


def _labels(y: np.ndarray, count: int, where: str) -> np.ndarray:
    if y.ndim == 2:  # one-hot rows
        y = y.argmax(axis=1)
    if y.ndim != 1 or len(y) != count:
        raise InputFileError(
            f"{where}: y has shape {tuple(y.shape)}, but x holds {count} samples",
            f"store one class id per sample: y of shape ({count},)",
        )
    if y.dtype.kind not in "iu":
        raise InputFileError(f"{where}: y is {y.dtype}, not integer class ids", "store y as integers (e.g. int64)")
    if (y < 0).any():
        raise InputFileError(f"{where}: y holds negative class ids", "class ids start at 0")
    return y.astype(np.int64)


def _subset(data: Dataset, limit: int | None, seed: int) -> Dataset:
    if limit is None or len(data) <= limit:
        return data
    keep = np.sort(np.random.default_rng(seed).choice(len(data), size=limit, replace=False))
    y = None if data.y is None else data.y[keep]
    return Dataset(source=data.source, kind=data.kind, x=data.x[keep], y=y, class_names=data.class_names)


def _load_images(
    folder: Path, model_input: InputSpec, preprocessing: Preprocessing, *, purpose: str, limit: int | None, seed: int
) -> Dataset:
    where = f"{purpose} {folder}"
    height, width, channels = _image_geometry(model_input, preprocessing, where)
    class_dirs = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    loose = _images_in(folder)
    if class_dirs and loose:
        raise InputFileError(
            f"{where} holds both images and sub-folders",
            "put every image in its class's sub-folder, or drop the sub-folders for unlabeled data",
        )
    if class_dirs:
        files = [(image, label) for label, sub in enumerate(class_dirs) for image in _images_in(sub)]
        class_names: tuple[str, ...] | None = tuple(p.name for p in class_dirs)
    else:
        files = [(image, -1) for image in loose]
        class_names = None
    if not files:
        raise InputFileError(
            f"{where} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})",
            "put the images in one sub-folder per class",
        )
    if limit is not None and len(files) > limit:
        # Choose before decoding: a large folder costs only the images used.
        picked = np.sort(np.random.default_rng(seed).choice(len(files), size=limit, replace=False))
        files = [files[i] for i in picked]
    x = np.stack([_read_image(image, (height, width), channels, preprocessing) for image, _ in files])
    y = np.array([label for _, label in files], dtype=np.int64) if class_names else None
    x = _fit_input(x, model_input, where)
    return Dataset(source=str(folder), kind=DataKind.IMAGES, x=x, y=y, class_names=class_names)


def _image_geometry(model_input: InputSpec, preprocessing: Preprocessing, where: str) -> tuple[int, int, int]:
    """(height, width, channels) for an NHWC image input with 1 or 3 channels."""
    shape = model_input.shape
    if len(shape) != 4 or shape[3] not in (1, 3):
        raise InputFileError(
            f"{where} is an image folder, but the model's input {model_input.describe()} is not an "
            "NHWC image with 1 or 3 channels",
            "pass the inputs as an .npz instead",
        )
    if np.dtype(model_input.dtype).kind != "f":
        raise InputFileError(
            f"{where} is an image folder, but the model's input {model_input.describe()} is not float",
            "pass the inputs as an .npz instead",
        )
    channels = int(shape[3])
    for name, values in (("--mean", preprocessing.mean), ("--std", preprocessing.std)):
        if len(values) not in (1, channels):
            raise UsageError(
                f"{name} has {len(values)} values but the model's images have {channels} channels",
                f"give one value or {channels} comma-separated values",
            )
    model_size = (shape[1], shape[2])
    if preprocessing.size is None:
        height, width = model_size
        if height is None or width is None:
            raise UsageError(
                f"the model's input {model_input.describe()} has no fixed image size",
                "give one with --image-size HEIGHTxWIDTH",
            )
        return int(height), int(width), channels
    if any(m is not None and m != s for m, s in zip(model_size, preprocessing.size, strict=False)):
        raise UsageError(
            f"--image-size {preprocessing.size[0]}x{preprocessing.size[1]} does not fit the model's "
            f"input {model_input.describe()}",
            "drop --image-size to use the model's own size",
        )
    return preprocessing.size[0], preprocessing.size[1], channels


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _read_image(path: Path, size: tuple[int, int], channels: int, preprocessing: Preprocessing) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            pixels = image.convert("L" if channels == 1 else "RGB").resize(
                (size[1], size[0]), Image.Resampling.BILINEAR
            )
    except (OSError, UnidentifiedImageError) as error:
        raise InputFileError(f"cannot read image {path} ({error})", "remove or replace the file") from None
    array = np.asarray(pixels, dtype=np.float32).reshape(size[0], size[1], channels)
    mean = np.asarray(preprocessing.mean, dtype=np.float32)
    std = np.asarray(preprocessing.std, dtype=np.float32)
    return (array - mean) / std
