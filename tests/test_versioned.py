"""One rule and one wording for every versioned file (harness.versioned)."""

from __future__ import annotations

import pytest

from harness.errors import SchemaError
from harness.versioned import UPGRADE_FIX, checked_version, upgraded


def test_versions_are_checked_with_one_wording() -> None:
    assert checked_version("f.json", "policy", 1, 2) == 1
    with pytest.raises(SchemaError) as newer:
        checked_version("f.json", "policy", 3, 2)
    assert str(newer.value) == f"f.json is policy v3, but this tflite-farm reads up to v2: {UPGRADE_FIX}"
    for odd in (None, "1", 1.0, True, 0):
        with pytest.raises(SchemaError, match="is not a tflite-farm policy"):
            checked_version("f.json", "policy", odd, 2)
    with pytest.raises(SchemaError, match="start over"):
        checked_version("f.json", "policy", None, 2, not_ours_fix="start over")


def test_an_old_version_climbs_the_chain_one_named_step_at_a_time() -> None:
    steps = {
        1: lambda doc: {**doc, "seen": [*doc["seen"], "1->2"]},
        2: lambda doc: {**doc, "seen": [*doc["seen"], "2->3"]},
    }
    assert upgraded({"seen": []}, "f", "thing", 1, 3, steps) == {"seen": ["1->2", "2->3"]}
    assert upgraded({"seen": []}, "f", "thing", 3, 3, steps) == {"seen": []}
    with pytest.raises(SchemaError, match="thing v1 and there is no upgrade from v2"):
        upgraded({"seen": []}, "f", "thing", 1, 3, {1: steps[1]})
