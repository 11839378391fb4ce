"""The fast tier: `pytest -m "not slow"` runs the pure tests (parsers, statistics, schema, store,
policy files, profiles, dialects, CLI wiring) in well under a minute.

A fixture that starts a virtual farm or an adb server, imports TensorFlow, builds or launches
the runner, or drives Streamlit or Chromium is declared with `@slow_fixture(...)` instead of
`@pytest.fixture(...)`. conftest.py then marks `slow` every test that uses it, directly or
through another fixture, so a fast test can never pull one in unnoticed. Tests that are slow by
what their body does (a runner subprocess, an AppTest run) carry `pytest.mark.slow` themselves;
a fast test that imports TensorFlow, Keras or Playwright fails (conftest.py) until it is marked.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, overload

import pytest

SLOW_ATTRIBUTE = "_tflite_farm_slow_fixture"

FixtureFunction = TypeVar("FixtureFunction", bound=Callable[..., object])


@overload
def slow_fixture(function: FixtureFunction, /) -> FixtureFunction: ...


@overload
def slow_fixture(**kwargs: Any) -> Callable[[FixtureFunction], FixtureFunction]: ...


def slow_fixture(*args: Any, **kwargs: Any) -> Any:
    """`pytest.fixture`, and every test that uses the fixture is marked slow."""
    if len(args) == 1 and callable(args[0]) and not kwargs:
        setattr(args[0], SLOW_ATTRIBUTE, True)
        return pytest.fixture(args[0])

    def decorate(function: Callable[..., Any]) -> Any:
        setattr(function, SLOW_ATTRIBUTE, True)
        return pytest.fixture(*args, **kwargs)(function)

    return decorate


def uses_a_slow_fixture(item: pytest.Item) -> bool:
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return False
    return any(
        getattr(definition.func, SLOW_ATTRIBUTE, False)
        for name in info.names_closure  # what item.fixturenames is (pytest.Item does not declare it)
        for definition in info.name2fixturedefs.get(name, ())
    )
