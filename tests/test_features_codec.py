"""Feature values <-> cache bytes."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from tenfold.features.codec import FeatureCodecError, decode, encode


@pytest.mark.parametrize(
    "value",
    [float("nan"), float("inf"), float("-inf"), [1.0, float("nan")], Decimal("NaN")],
)
def test_non_finite_values_are_rejected_naming_the_feature(value: Any):
    with pytest.raises(FeatureCodecError, match="'ratio'"):
        encode({"ok": 1, "ratio": value})


def test_finite_values_round_trip():
    features = {"a": 1.5, "b": [1, 2.0], "c": Decimal("2.5"), "d": None}
    assert decode(encode(features)) == (True, {"a": 1.5, "b": [1, 2.0], "c": 2.5, "d": None})
