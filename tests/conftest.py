from __future__ import annotations

from pathlib import Path

import pytest

from model_factory import build_tiny_models


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """name -> path of tiny real .tflite models (see tests/model_factory.py)."""
    return build_tiny_models(tmp_path_factory.mktemp("tiny_models"))
