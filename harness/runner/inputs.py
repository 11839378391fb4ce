"""Input layers: --input_layer* flags and the data the model is fed.

Messages follow BenchmarkTfLiteModel's; where the real tool aborts (a CHECK
or LOG(FATAL)) this runner fails the benchmark with the same text instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from harness.runner.flags import BenchmarkFailed, Params

# Random values per type, as CreateRandomTensorData draws them.
_FLOAT_RANGE = (-0.5, 0.5)
_DEFAULT_INT_RANGES: dict[type, tuple[int, int]] = {
    np.uint8: (0, 254),
    np.int8: (-127, 127),
    np.bool_: (0, 1),
}
_DEFAULT_INT_RANGE = (0, 99)
# What ResetInputsAndOutputs writes into string tensors.
_RANDOM_STRING = b"we're have some friends over saturday to hang out in the yard"


@dataclass(frozen=True)
class InputLayer:
    name: str
    shape: tuple[int, ...]
    value_range: tuple[int, int] | None = None
    value_file: str | None = None


def _split(text: str, sep: str) -> list[str]:
    return text.split(sep) if text else []


def parse_input_layers(params: Params) -> tuple[InputLayer, ...]:
    """PopulateInputLayerInfo: one InputLayer per --input_layer name, in order."""
    names = _split(params.input_layer, ",")
    shapes = _split(params.input_layer_shape, ":")
    if len(names) != len(shapes):
        raise BenchmarkFailed(
            f"The number of items in --input_layer_shape ({params.input_layer_shape}, with "
            f"{len(shapes)} items) must match the number of items in --input_layer "
            f"({params.input_layer}, with {len(names)} items). For example "
            f"--input_layer=input1,input2 --input_layer_shape=1,224,224,4:1,20"
        )
    parsed_shapes: list[tuple[int, ...]] = []
    for shape in shapes:
        try:
            dims = tuple(int(dim) for dim in _split(shape, ","))
        except ValueError:
            raise BenchmarkFailed(f"Incorrect size string specified: {shape}") from None
        if -1 in dims:
            raise BenchmarkFailed(
                "Any unknown sizes in the shapes (-1's) must be replaced with the size you want to benchmark with."
            )
        parsed_shapes.append(dims)

    ranges: dict[str, tuple[int, int]] = {}
    for item in _split(params.input_layer_value_range, ":"):
        name_range = item.split(",")
        if len(name_range) != 3:
            raise BenchmarkFailed(f"Wrong input value range item specified: {item}")
        _require_known(name_range[0], names, params.input_layer)
        bad_range = f"Wrong low and high value of the input value range specified: {item}"
        try:
            low, high = int(name_range[1]), int(name_range[2])
        except ValueError:
            raise BenchmarkFailed(bad_range) from None
        if low > high:
            raise BenchmarkFailed(bad_range)
        ranges[name_range[0]] = (low, high)

    files: dict[str, str] = {}
    for item in _split(params.input_layer_value_files, ","):
        name_file = split_name_and_value_file(item)
        if name_file is None:
            raise BenchmarkFailed(f"Wrong input value file item specified: {item}")
        _require_known(name_file[0], names, params.input_layer)
        files[name_file[0]] = name_file[1]

    return tuple(
        InputLayer(name, shape, ranges.get(name), files.get(name))
        for name, shape in zip(names, parsed_shapes, strict=False)
    )


def split_name_and_value_file(item: str) -> tuple[str, str] | None:
    """SplitInputLayerNameAndValueFile: the one ':' that is not doubled splits name and path, and a
    doubled '::' in either stands for ':' (converted models name tensors like "serving_default_x:0")."""
    delimiter = -1
    index = 0
    while index < len(item) - 1:
        if item[index] == ":":
            if item[index + 1] == ":":
                index += 1
            elif delimiter == -1:
                delimiter = index
            else:
                return None  # more than one delimiter
        index += 1
    if delimiter == -1:
        return None
    return item[:delimiter].replace("::", ":"), item[delimiter + 1 :].replace("::", ":")


def _require_known(name: str, names: list[str], names_flag: str) -> None:
    if name not in names:
        raise BenchmarkFailed(
            f"Cannot find the corresponding input_layer name({name}) in --input_layer as {names_flag}"
        )


def read_value_file(user_path: str, host_path: str | None, dtype: type, shape: tuple[int, ...]) -> np.ndarray:
    """LoadInputTensorData: the file's raw bytes must fill the tensor exactly.

    `host_path` is None when the device path cannot be resolved.
    """
    expected = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    unreadable = BenchmarkFailed(f"Failed to read the input_layer_value_file:{user_path}")
    if host_path is None:
        raise unreadable
    try:
        with open(host_path, "rb") as value_file:
            data = value_file.read()
    except OSError:
        raise unreadable from None
    if np.dtype(dtype).kind in "SUO":
        strings = data.split(b"\0")
        if strings and strings[-1] == b"":
            strings.pop()
        count = int(np.prod(shape, dtype=np.int64))
        if len(strings) != count:
            raise BenchmarkFailed(
                f"The number of string in the input_layer_value_file({user_path}) is "
                f"{len(strings)}. It should be {count}."
            )
        return np.array(strings, dtype=object).reshape(shape)
    if len(data) != expected:
        raise BenchmarkFailed(f"The size of {user_path} is {len(data)} bytes. It should be {expected} bytes.")
    return np.frombuffer(data, dtype=dtype).reshape(shape)


def random_data(
    rng: np.random.Generator, dtype: type, shape: tuple[int, ...], value_range: tuple[int, int] | None
) -> np.ndarray:
    """CreateRandomTensorData: uniform values in the type's benchmark range."""
    kind = np.dtype(dtype).kind
    if kind in "SUO":
        return np.full(shape, _RANDOM_STRING, dtype=object)
    if kind in "fc":
        return rng.uniform(*_FLOAT_RANGE, size=shape).astype(dtype)
    low, high = value_range or _DEFAULT_INT_RANGES.get(dtype, _DEFAULT_INT_RANGE)
    return rng.integers(low, high, size=shape, endpoint=True).astype(dtype)
