"""The GPU catalog: prices, memory and relative speed, from an editable TOML file.

The default ships as ``tenfold/data/gpus.toml``; ``load_catalog(path)`` reads a user's
copy. Prices are assumptions with a date (``prices_as_of``) that every plan prints.

    catalog = load_catalog()            # the shipped file
    gpu = catalog.get("a10g")           # CatalogError naming the known keys if absent
    gpu.price_per_hour(spot=True)
    catalog.for_device("NVIDIA A100-SXM4-80GB")   # -> the a100-80gb entry, or None
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any


class CatalogError(ValueError):
    """A catalog file that cannot be read or lacks a field, or an unknown GPU name."""


@dataclass(frozen=True, slots=True)
class Gpu:
    key: str
    name: str
    price_per_hour_usd: float
    spot_price_per_hour_usd: float
    memory_gib: float
    relative_speed: float
    match: tuple[str, ...] = ()

    def price_per_hour(self, *, spot: bool = False) -> float:
        return self.spot_price_per_hour_usd if spot else self.price_per_hour_usd

    def matches(self, device: str) -> bool:
        words = set(_words(device))
        return any(set(_words(m)) <= words for m in self.match if _words(m))


@dataclass(frozen=True, slots=True)
class Catalog:
    gpus: tuple[Gpu, ...]
    prices_as_of: str
    source: str = ""

    def keys(self) -> list[str]:
        return [g.key for g in self.gpus]

    def get(self, key: str) -> Gpu:
        wanted = key.strip().lower()
        for g in self.gpus:
            if g.key == wanted:
                return g
        raise CatalogError(f"unknown GPU {key!r}; the catalog has: {', '.join(self.keys())}")

    def for_device(self, device: str) -> Gpu | None:
        """The entry a profile's ``device`` string names, or ``None``."""
        for g in self.gpus:
            if g.matches(device):
                return g
        return None


def _words(text: str) -> list[str]:
    return [w for w in re.split(r"[^a-z0-9]+", text.lower()) if w]


def default_catalog_text() -> str:
    return resources.files("tenfold").joinpath("data/gpus.toml").read_text(encoding="utf-8")


def parse_catalog(text: str, *, origin: str = "catalog") -> Catalog:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CatalogError(f"{origin}: not valid TOML: {exc}") from exc
    as_of = data.get("prices_as_of")
    if not isinstance(as_of, str) or not as_of:
        raise CatalogError(
            f'{origin}: needs `prices_as_of = "YYYY-MM"` (the date prices were taken)'
        )
    table = data.get("gpus")
    if not isinstance(table, dict) or not table:
        raise CatalogError(f"{origin}: needs at least one [gpus.NAME] table")
    gpus = tuple(_gpu(key, entry, origin) for key, entry in table.items())
    return Catalog(gpus=gpus, prices_as_of=as_of, source=str(data.get("source", "")))


def _gpu(key: str, entry: Any, origin: str) -> Gpu:
    where = f"{origin}: [gpus.{key}]"
    if not isinstance(entry, dict):
        raise CatalogError(f"{where} must be a table")

    def number(field: str, *, positive: bool = True) -> float:
        value = entry.get(field)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise CatalogError(f"{where}: `{field}` must be a number, got {value!r}")
        if value < 0 or (positive and value == 0):
            raise CatalogError(f"{where}: `{field}` must be > 0, got {value}")
        return float(value)

    match = entry.get("match", [])
    if not (isinstance(match, list) and all(isinstance(m, str) for m in match)):
        raise CatalogError(f"{where}: `match` must be a list of strings")
    return Gpu(
        key=key.lower(),
        name=str(entry.get("name", key)),
        price_per_hour_usd=number("price_per_hour_usd", positive=False),
        spot_price_per_hour_usd=number("spot_price_per_hour_usd", positive=False),
        memory_gib=number("memory_gib"),
        relative_speed=number("relative_speed"),
        match=tuple(match),
    )


def load_catalog(path: str | Path | None = None) -> Catalog:
    """The shipped catalog, or the TOML file at ``path``."""
    if path is None:
        return parse_catalog(default_catalog_text(), origin="tenfold/data/gpus.toml")
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise CatalogError(f"cannot read catalog {p}: {exc.strerror or exc}") from exc
    return parse_catalog(text, origin=str(p))
