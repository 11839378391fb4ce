"""Platform deprecations that change what a measured configuration is worth: the one home of the rule.

NNAPI is deprecated from Android 15 (API level 35): the platform keeps it for now, but
vendors stop shipping NNAPI drivers and LiteRT 2.x reaches NPUs through its own dispatch
libraries (delegate `npu`). Rankings flag nnapi rows measured on such phones, `policy
derive` notes nnapi in a chain, `policy resolve` notes it for such a phone, and the
dashboard shows a caption; all of them ask this module.
"""

from __future__ import annotations

import math

NNAPI = "nnapi"
NNAPI_DEPRECATED_FROM_SDK = 35
NNAPI_DEPRECATION = "NNAPI is deprecated from Android 15 (SDK 35); prefer the LiteRT npu/gpu delegates"


def nnapi_deprecated(sdk: float | None) -> bool:
    """True when NNAPI is deprecated on a phone of Android API level `sdk` (None or NaN: unknown, False)."""
    if sdk is None or isinstance(sdk, bool):
        return False
    try:
        level = float(sdk)  # numpy ints and the float NaN pandas uses for a missing value
    except (TypeError, ValueError):
        return False
    return not math.isnan(level) and level >= NNAPI_DEPRECATED_FROM_SDK


def deprecated_on(delegate: str, sdk: float | None) -> bool:
    """True when `delegate` is deprecated on a phone of API level `sdk`."""
    return delegate == NNAPI and nnapi_deprecated(sdk)


def sdk_range_admits_deprecation(min_sdk: int | None, max_sdk: int | None = None) -> bool:
    """True when phones of a tier match (min_sdk .. max_sdk, either open) can be on SDK 35 or later.

    Policy matches (schema v1 and v2) have no upper SDK bound, so every match admits them.
    """
    return max_sdk is None or max_sdk >= NNAPI_DEPRECATED_FROM_SDK
