"""Tiny real .tflite models for tests, built with TensorFlow and cached in a folder.

- dense: float32 [1, 8] -> Dense(4, relu) -> Dense(2)
- conv: float32 [1, 16, 16, 3] -> Conv2D(4, 3x3) -> global average pool -> Dense(2)
- conv_ms: float32 [1, 96, 96, 3] -> 3x (Conv2D(32, 3x3) + max pool) -> Dense(2): about a millisecond
  per inference, so a run measures the model rather than an API's per-call overhead
- custom_op: dense with its first op turned into the custom op `HarnessUnknownOp`,
  which no runtime resolves (fails at AllocateTensors, like a model that needs
  an unregistered custom kernel)
"""

from __future__ import annotations

import os
from pathlib import Path

CUSTOM_OP_NAME = "HarnessUnknownOp"
MODEL_NAMES = ("dense", "conv", "conv_ms", "custom_op")


def build_tiny_models(cache_dir: Path) -> dict[str, Path]:
    """name -> path of each model, building only the ones not yet in `cache_dir`."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    paths = {name: cache_dir / f"{name}.tflite" for name in MODEL_NAMES}
    if not paths["dense"].exists():
        paths["dense"].write_bytes(_convert(_dense_model()))
    if not paths["conv"].exists():
        paths["conv"].write_bytes(_convert(_conv_model()))
    if not paths["conv_ms"].exists():
        paths["conv_ms"].write_bytes(_convert(_conv_ms_model()))
    if not paths["custom_op"].exists():
        paths["custom_op"].write_bytes(with_custom_op(paths["dense"].read_bytes(), CUSTOM_OP_NAME))
    return paths


def _keras():
    # TensorFlow's C++ start-up chatter would bury test output; imported late
    # because it costs seconds and only model building needs it.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras

    return keras


def _dense_model():
    keras = _keras()
    return keras.Sequential(
        [
            keras.Input((8,), name="input"),
            keras.layers.Dense(4, activation="relu"),
            keras.layers.Dense(2),
        ]
    )


def _conv_model():
    keras = _keras()
    return keras.Sequential(
        [
            keras.Input((16, 16, 3), name="image"),
            keras.layers.Conv2D(4, 3, activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(2),
        ]
    )


def _conv_ms_model():
    keras = _keras()
    layers = [keras.Input((96, 96, 3), name="image")]
    for _ in range(3):
        layers += [keras.layers.Conv2D(32, 3, padding="same", activation="relu"), keras.layers.MaxPooling2D()]
    return keras.Sequential([*layers, keras.layers.Flatten(), keras.layers.Dense(2)])


def _convert(model) -> bytes:
    import tensorflow as tf

    return tf.lite.TFLiteConverter.from_keras_model(model).convert()


def with_custom_op(model: bytes, op_name: str) -> bytes:
    """`model` with its first operator code rewritten into the custom op `op_name`."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    parsed = schema.ModelT.InitFromPackedBuf(model, 0)
    code = parsed.operatorCodes[0]
    code.builtinCode = schema.BuiltinOperator.CUSTOM
    code.deprecatedBuiltinCode = schema.BuiltinOperator.CUSTOM
    code.customCode = op_name.encode()
    builder = flatbuffers.Builder(len(model))
    builder.Finish(parsed.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())
