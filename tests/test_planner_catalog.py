"""The GPU catalog: the shipped file, device matching, user overrides, errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from tenfold.planner.catalog import CatalogError, load_catalog, parse_catalog
from tenfold.planner.memory import GIB, activation_bytes_per_item, memory_advice
from tenfold.planner.plan import translate
from tenfold.planner.profile import Profile, ProfilePoint


def test_shipped_catalog_has_the_common_gpus_with_a_date() -> None:
    cat = load_catalog()
    assert set(cat.keys()) == {"a10g", "l4", "a100-40gb", "a100-80gb", "h100", "h200", "cpu"}
    assert cat.prices_as_of
    assert cat.get("a10g").price_per_hour_usd == 1.006  # the seed's g5.xlarge price
    for g in cat.gpus:
        assert 0 < g.spot_price_per_hour_usd < g.price_per_hour_usd
        assert g.memory_gib > 0 and g.relative_speed > 0
    assert cat.get("H100").price_per_hour(spot=True) == cat.get("h100").spot_price_per_hour_usd


@pytest.mark.parametrize(
    ("device", "key"),
    [
        ("NVIDIA A10G", "a10g"),
        ("NVIDIA L4", "l4"),
        ("NVIDIA L40S", None),  # "l4" must not match a different card
        ("NVIDIA A100-SXM4-40GB", "a100-40gb"),
        ("NVIDIA A100-SXM4-80GB", "a100-80gb"),
        ("NVIDIA A100 80GB PCIe", "a100-80gb"),
        ("NVIDIA H100 80GB HBM3", "h100"),
        ("NVIDIA H200", "h200"),
        ("cpu: AMD EPYC (2 logical cores)", "cpu"),
        ("Apple M3", None),
    ],
)
def test_device_matching(device: str, key: str | None) -> None:
    found = load_catalog().for_device(device)
    assert (found.key if found else None) == key


def test_unknown_gpu_lists_the_known_ones() -> None:
    with pytest.raises(CatalogError, match="unknown GPU 'b200'; the catalog has: a10g, l4"):
        load_catalog().get("b200")


def test_user_catalog_file_overrides(tmp_path: Path) -> None:
    path = tmp_path / "mine.toml"
    path.write_text(
        'prices_as_of = "2026-11-30"\n'
        "[gpus.a10g]\nprice_per_hour_usd = 0.5\nspot_price_per_hour_usd = 0.2\n"
        "memory_gib = 24\nrelative_speed = 1.0\n"
    )
    cat = load_catalog(path)
    assert cat.prices_as_of == "2026-11-30"
    assert cat.keys() == ["a10g"] and cat.get("a10g").price_per_hour_usd == 0.5


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("prices_as_of = ", "not valid TOML"),
        ("[gpus.x]\nprice_per_hour_usd = 1", "prices_as_of"),
        ('prices_as_of = "2025"\n', "at least one"),
        ('prices_as_of = "2025"\n[gpus.x]\nprice_per_hour_usd = "cheap"', "must be a number"),
        (
            'prices_as_of = "2025"\n[gpus.x]\nprice_per_hour_usd = 1\nspot_price_per_hour_usd = 1\n'
            "memory_gib = 0\nrelative_speed = 1",
            r"\[gpus.x\]: `memory_gib` must be > 0",
        ),
    ],
)
def test_bad_catalogs(text: str, message: str) -> None:
    with pytest.raises(CatalogError, match=message):
        parse_catalog(text)


def test_missing_catalog_file(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="cannot read catalog"):
        load_catalog(tmp_path / "none.toml")


# --- carrying a profile between devices ---


def _profile(device: str) -> Profile:
    return Profile("m", "1", device, (ProfilePoint(1, 10, 12, 100), ProfilePoint(8, 20, 25, 400)))


def test_translate_scales_by_relative_speed() -> None:
    cat = load_catalog()
    moved = translate(_profile("NVIDIA A10G"), cat.get("h100"), cat)
    assert moved.speed_factor == pytest.approx(4.0)
    assert moved.points[0].items_per_s == pytest.approx(400)
    assert moved.points[1].latency_p99_ms == pytest.approx(25 / 4)
    assert "scaled" in moved.note


def test_translate_same_device_and_unknown_device() -> None:
    cat = load_catalog()
    same = translate(_profile("NVIDIA A10G"), cat.get("a10g"), cat)
    assert same.speed_factor == 1 and same.points == _profile("x").points
    unknown = translate(_profile("Apple M3"), cat.get("a10g"), cat)
    assert unknown.speed_factor == 1 and "not in the catalog" in unknown.note
    forced = translate(_profile("Apple M3"), cat.get("a10g"), cat, source=cat.get("cpu"))
    assert forced.speed_factor == pytest.approx(1 / 0.04)


# --- memory: vertical vs horizontal ---


def test_memory_fits() -> None:
    cat = load_catalog()
    a = memory_advice(
        weights_bytes=0.1 * GIB,
        activation_bytes_per_item=2**20,
        batch_size=32,
        gpu=cat.get("a10g"),
        catalog=cat,
    )
    assert a.fits and a.tensor_parallel_degree is None
    assert a.needed_gib == pytest.approx(0.1 + 32 / 1024)
    assert a.message.startswith("fits on one a10g")


def test_memory_activations_too_big_for_the_batch() -> None:
    cat = load_catalog()
    a = memory_advice(
        weights_bytes=14 * GIB,
        activation_bytes_per_item=0.5 * GIB,
        batch_size=32,
        gpu=cat.get("a10g"),
        catalog=cat,
    )
    assert not a.fits
    assert a.max_batch_that_fits == 15  # (21.6 - 14) / 0.5
    assert a.bigger_gpus == ("a100-40gb", "a100-80gb", "h100", "h200")  # 30 GiB needed
    assert a.tensor_parallel_degree == 2
    assert "a batch of at most 15 would fit" in a.message
    assert "bigger GPU" in a.message and "tensor parallelism over 2 x a10g" in a.message


def test_memory_weights_alone_too_big() -> None:
    cat = load_catalog()
    a = memory_advice(
        weights_bytes=140 * GIB,  # a 70B model in bf16
        activation_bytes_per_item=0,
        batch_size=1,
        gpu=cat.get("h100"),
        catalog=cat,
    )
    assert not a.fits and a.max_batch_that_fits is None
    assert a.bigger_gpus == ()  # 126.9 GiB usable on an H200 is still too small
    assert a.tensor_parallel_degree == 2
    assert "the weights alone (140.00 GiB) exceed one h100's 72.0 GiB usable" in a.message


def test_activation_slope_from_profile_memory() -> None:
    pts = tuple(
        ProfilePoint(b, 1, 2, 100 * b, memory_bytes=700_000_000 + b * 3_000_000) for b in (1, 8, 64)
    )
    assert activation_bytes_per_item(Profile("m", "1", "cpu", pts)) == pytest.approx(3_000_000)
    assert activation_bytes_per_item(_profile("cpu")) is None
