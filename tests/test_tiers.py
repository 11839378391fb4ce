"""The fast tier's marking (tests/tiers.py, conftest.py): a slow fixture marks every test that
reaches it, however indirectly, so `-m "not slow"` can never run one by accident."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

CONFTEST = """
import pytest
from tiers import slow_fixture, uses_a_slow_fixture


def pytest_collection_modifyitems(config, items):
    for item in items:
        if uses_a_slow_fixture(item):
            item.add_marker(pytest.mark.slow)


@slow_fixture(scope="session")
def expensive():
    return 1


@slow_fixture
def bare_expensive():
    return 2


@pytest.fixture
def wraps_expensive(expensive):
    return expensive + 1


@pytest.fixture
def cheap():
    return 0
"""

TESTS = """
def test_direct(expensive): pass
def test_bare(bare_expensive): pass
def test_indirect(wraps_expensive): pass
def test_cheap(cheap): pass
def test_plain(): pass
"""


def test_slow_fixtures_mark_their_users_even_through_other_fixtures(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_example=TESTS)
    pytester.makeini("[pytest]\nmarkers =\n    slow: slow\n")
    result = pytester.runpytest("-m", "not slow", "-v", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, deselected=3)
    result.stdout.fnmatch_lines(["*test_cheap PASSED*", "*test_plain PASSED*"])
    assert "test_indirect" not in result.stdout.str()
