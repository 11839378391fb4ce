from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from model_factory import build_tiny_models
from tiers import slow_fixture, uses_a_slow_fixture

from harness.convert import ConversionResult, convert_model
from harness.examples import Examples, build_examples
from harness.virtual_farm import farm as farm_lib


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark slow every test that uses a slow fixture (tests/tiers.py), however indirectly."""
    for item in items:
        if uses_a_slow_fixture(item) and item.get_closest_marker("slow") is None:
            item.add_marker(pytest.mark.slow)


# Imported by a test, these make it slow: a fast test that pulls one in fails and says so.
HEAVY_MODULES = ("tensorflow", "keras", "playwright")


@pytest.fixture(autouse=True)
def _fast_tests_stay_light(request: pytest.FixtureRequest):
    if request.node.get_closest_marker("slow") is not None:
        yield
        return
    before = {name for name in HEAVY_MODULES if name in sys.modules}
    yield
    pulled = sorted({name for name in HEAVY_MODULES if name in sys.modules} - before)
    assert not pulled, f"{request.node.nodeid} imported {', '.join(pulled)}: mark it pytest.mark.slow"


@pytest.fixture(autouse=True, scope="module")
def _restore_adb_port_variable():
    """start_private points ANDROID_ADB_SERVER_PORT at each farm it starts; later modules must not see it."""
    saved = os.environ.get(farm_lib.ENV_ADB_PORT)
    yield
    if saved is None:
        os.environ.pop(farm_lib.ENV_ADB_PORT, None)
    else:
        os.environ[farm_lib.ENV_ADB_PORT] = saved


# The tester's own folders must never leak in: the user cache (downloaded binaries, learnt dialects), the
# user state (a virtual farm they left up) and the configuration (their lab's farm.toml and tier rules, found
# through $HARNESS_CONFIG or their user config folder), so every test sees the packaged defaults unless it
# says otherwise.
_PRIVATE_FOLDERS = {"HARNESS_CACHE_DIR": "user_cache", "HARNESS_STATE_DIR": "user_state", "XDG_CONFIG_HOME": "config"}


@pytest.fixture(autouse=True, scope="session")
def _private_user_folders(tmp_path_factory: pytest.TempPathFactory):
    saved = {name: os.environ.get(name) for name in (*_PRIVATE_FOLDERS, "HARNESS_CONFIG")}
    for name, folder in _PRIVATE_FOLDERS.items():
        os.environ[name] = str(tmp_path_factory.mktemp(folder))
    os.environ.pop("HARNESS_CONFIG", None)
    yield
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@slow_fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """name -> path of tiny real .tflite models (see tests/model_factory.py)."""
    return build_tiny_models(tmp_path_factory.mktemp("tiny_models"))


@slow_fixture(scope="session")
def digits_example(tmp_path_factory: pytest.TempPathFactory) -> Examples:
    """The demo's digits CNN (trained here on scikit-learn's digits) with its calibration and held-out data."""
    return build_examples(tmp_path_factory.mktemp("digits_example"), mobilenet=False)


@slow_fixture(scope="session")
def digits_converted(digits_example: Examples, tmp_path_factory: pytest.TempPathFactory) -> ConversionResult:
    """The digits example converted into all four variants, judged on its held-out digits."""
    root = tmp_path_factory.mktemp("digits")
    request, _ = digits_example.conversion_requests(root / "models", results_root=root / "results")
    return convert_model(request)
