"""The profile.json format: round trip and schema errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tenfold.planner.profile import (
    Profile,
    ProfileError,
    ProfilePoint,
    load_profile,
    save_profile,
)


def _full() -> Profile:
    return Profile(
        model="embed",
        version="all-MiniLM-L6-v2",
        device="NVIDIA A10G",
        points=(
            ProfilePoint(1, 9.5, 12.25, 105.0, busy_fraction=0.97, memory_bytes=500_000_000),
            ProfilePoint(8, 21.0, 25.5, 380.0, busy_fraction=0.99, memory_bytes=520_000_000),
        ),
        weights_bytes=90_000_000,
        utilization_source="nvml",
    )


def _doc(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "model": "m",
        "version": "1",
        "device": "cpu",
        "points": [
            {"batch_size": 1, "latency_p50_ms": 1.0, "latency_p99_ms": 2.0, "items_per_s": 900.0}
        ],
    }
    doc.update(changes)
    return doc


def test_round_trip_with_every_field() -> None:
    p = _full()
    assert Profile.from_json(p.to_json()) == p


def test_round_trip_through_a_file(tmp_path: Path) -> None:
    path = tmp_path / "profile.json"
    save_profile(_full(), path)
    assert load_profile(path) == _full()


def test_optional_fields_are_omitted_not_null() -> None:
    p = Profile.from_dict(_doc())
    data = json.loads(p.to_json())
    assert set(data) == {"model", "version", "device", "points"}
    assert set(data["points"][0]) == {
        "batch_size",
        "latency_p50_ms",
        "latency_p99_ms",
        "items_per_s",
    }
    assert p.points[0].busy_fraction is None


def test_unknown_keys_are_ignored_for_forward_compatibility() -> None:
    doc = _doc(created_by="tenfold 9")
    doc["points"][0]["energy_j"] = 3.0
    assert Profile.from_dict(doc) == Profile.from_dict(_doc())


def test_points_are_sorted_by_batch_size() -> None:
    doc = _doc(
        points=[
            {"batch_size": 8, "latency_p50_ms": 3, "latency_p99_ms": 4, "items_per_s": 2000},
            {"batch_size": 1, "latency_p50_ms": 1, "latency_p99_ms": 2, "items_per_s": 900},
        ]
    )
    assert [p.batch_size for p in Profile.from_dict(doc).points] == [1, 8]


def _point(**changes: Any) -> dict[str, Any]:
    pt: dict[str, Any] = {
        "batch_size": 1,
        "latency_p50_ms": 1.0,
        "latency_p99_ms": 2.0,
        "items_per_s": 900.0,
    }
    pt.update(changes)
    return pt


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        ({k: v for k, v in _doc().items() if k != "model"}, "model: Field required"),
        (_doc(points=[]), "points: List should have at least 1 item"),
        (_doc(points=[_point(batch_size=0)]), "points[0].batch_size: Input should be greater"),
        (_doc(points=[_point(latency_p50_ms=-1)]), "points[0].latency_p50_ms"),
        (_doc(points=[_point(items_per_s="fast")]), "points[0].items_per_s"),
        (_doc(points=[_point(busy_fraction=1.5)]), "points[0].busy_fraction"),
        (_doc(points=[_point(latency_p99_ms=0.5)]), "is below latency_p50_ms"),
        (_doc(points=[_point(), _point()]), "batch sizes appear more than once: [1]"),
        ([1, 2], "Input should be a valid dictionary"),
    ],
)
def test_schema_errors_name_the_field(doc: Any, expected: str) -> None:
    with pytest.raises(ProfileError) as info:
        Profile.from_dict(doc)
    assert str(info.value).startswith("invalid profile: ")
    assert expected in str(info.value)


def test_not_json_is_a_profile_error() -> None:
    with pytest.raises(ProfileError, match="not valid JSON"):
        Profile.from_json("{model: embed")


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match=r"cannot read profile .*nope\.json"):
        load_profile(tmp_path / "nope.json")


def test_bad_file_error_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(_doc(points=[_point(batch_size=-3)])))
    with pytest.raises(ProfileError, match=r"bad\.json: invalid profile: points\[0\]\.batch_size"):
        load_profile(path)


def test_direct_construction_is_validated_too() -> None:
    with pytest.raises(ProfileError, match="items_per_s"):
        ProfilePoint(1, 1.0, 2.0, 0.0)
    with pytest.raises(ProfileError, match="increasing order"):
        Profile("m", "1", "cpu", (ProfilePoint(8, 1, 2, 9), ProfilePoint(1, 1, 2, 9)))
