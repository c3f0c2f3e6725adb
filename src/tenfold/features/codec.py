"""Feature values <-> cache bytes: compact JSON with a format tag.

``{"v": 1, "f": {...}}`` for an entity's features, ``{"v": 1, "f": null}`` for
"the source has no such entity". Anything else decodes as a miss.
"""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

import orjson

from tenfold.features.view import Features

FORMAT = 1


class FeatureCodecError(ValueError):
    pass


def _default(value: Any) -> Any:
    # PostgreSQL NUMERIC arrives as Decimal; a feature value is a number to a model.
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise TypeError(f"feature value {value} is not a finite number")
        return float(value)
    raise TypeError(f"feature value of type {type(value).__name__} is not JSON-serialisable")


def _check_finite(name: str, value: Any) -> None:
    """JSON has no NaN/Infinity (orjson writes null): refuse them instead."""
    if isinstance(value, float | Decimal):
        if not math.isfinite(value):
            raise FeatureCodecError(f"feature {name!r} is {value}: not a finite number")
    elif isinstance(value, dict):
        for item in value.values():
            _check_finite(name, item)
    elif isinstance(value, list | tuple):
        for item in value:
            _check_finite(name, item)


def encode(features: Features | None) -> bytes:
    """Raises :class:`FeatureCodecError` for a value JSON cannot hold (NaN, infinity,
    an unknown type), naming the feature."""
    try:
        out = orjson.dumps({"v": FORMAT, "f": features}, default=_default)
    except TypeError as exc:
        _check_all_finite(features)  # name the feature if a non-finite Decimal was the cause
        raise FeatureCodecError(str(exc)) from exc
    # A non-finite float can only hide behind a null (orjson writes it so): walk only then.
    if b"null" in out:
        _check_all_finite(features)
    return out


def _check_all_finite(features: Features | None) -> None:
    for name, value in (features or {}).items():
        _check_finite(str(name), value)


def normalise(features: Features) -> Features:
    """What a reader of the cache would get back (Decimal -> float, dates -> str)."""
    decoded: Features = orjson.loads(encode(features))["f"]
    return decoded


def decode(data: bytes) -> tuple[bool, Features | None]:
    """``(found, features)``; raises :class:`FeatureCodecError` for foreign bytes."""
    try:
        record = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise FeatureCodecError(f"not a feature record: {exc}") from exc
    if not isinstance(record, dict) or record.get("v") != FORMAT or "f" not in record:
        raise FeatureCodecError("not a feature record of this format")
    features = record["f"]
    if features is not None and not isinstance(features, dict):
        raise FeatureCodecError("feature record holds no object")
    return features is not None, features
