"""Variant names, the ``variant.json`` manifest, and what a builder hands back.

``variant.json`` is the contract with ``tenfold serve --variant DIR``::

    {"target": "tenfold.optimize.serving:OnnxEmbed",
     "options": {"path": "/abs/DIR", "version": "all-MiniLM-L6-v2+onnx-int8"},
     "version": "all-MiniLM-L6-v2+onnx-int8"}

The server instantiates ``cls(**options)`` and calls ``load()``; the version
(base version + variant name) keeps cache entries of two variants apart.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from tenfold.optimize.errors import VariantError

MANIFEST = "variant.json"


class VariantName(StrEnum):
    ONNX_FP32 = "onnx-fp32"
    ONNX_INT8 = "onnx-int8"
    TORCH_INT8 = "torch-int8"
    FP16 = "fp16"
    BF16 = "bf16"

    @classmethod
    def parse_list(cls, text: str) -> list[VariantName]:
        """``"onnx-fp32,onnx-int8"`` -> members, in the order given, without repeats."""
        out: list[VariantName] = []
        for part in (p.strip() for p in text.split(",")):
            if not part:
                continue
            try:
                name = cls(part)
            except ValueError:
                known = ", ".join(v.value for v in cls)
                raise ValueError(f"unknown variant {part!r}; known: {known}") from None
            if name not in out:
                out.append(name)
        if not out:
            raise ValueError("no variant named")
        return out


#: Name of the original model in reports, unless its family names it more precisely
#: (``torch-fp32`` for PyTorch models).
BASELINE = "original"


@dataclass(frozen=True, slots=True)
class VariantManifest:
    target: str
    options: dict[str, Any]
    version: str

    def write(self, directory: Path) -> Path:
        path = directory / MANIFEST
        body = {"target": self.target, "options": self.options, "version": self.version}
        path.write_text(json.dumps(body, indent=2) + "\n", encoding="utf-8")
        return path

    @classmethod
    def read(cls, directory: Path) -> VariantManifest:
        path = Path(directory) / MANIFEST
        try:
            body = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise VariantError(f"{path} not found: is {directory} a variant directory?") from None
        except json.JSONDecodeError as exc:
            raise VariantError(f"{path} is not valid JSON: {exc}") from exc
        if not isinstance(body, dict):
            raise VariantError(f"{path} must hold a JSON object")
        target, options, version = body.get("target"), body.get("options"), body.get("version")
        if not isinstance(target, str) or ":" not in target:
            raise VariantError(f"{path}: 'target' must be 'module:Class', got {target!r}")
        if not isinstance(options, dict):
            raise VariantError(f"{path}: 'options' must be an object")
        if not isinstance(version, str) or not version:
            raise VariantError(f"{path}: 'version' must be a non-empty string")
        return cls(target=target, options=options, version=version)


Predict = Callable[[list[Any]], list[Any]]


@dataclass(slots=True)
class Built:
    """A variant built on disk and loaded, ready to measure."""

    predict: Predict
    size_bytes: int
    manifest: VariantManifest | None = None
    #: Resources to release when measuring is over (sessions, modules).
    close: Callable[[], None] = field(default=lambda: None)


@dataclass(frozen=True, slots=True)
class Skipped:
    reason: str


def tree_size_bytes(path: Path) -> int:
    """Bytes on disk of a file or of every file under a directory."""
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
