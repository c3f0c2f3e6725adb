"""Which variants apply to a model, chosen by its class.

A family knows how to load the original (``baseline``) and build each variant
(``build``), or say why a variant does not apply. ``embed`` (any ``Embed``
subclass) gets every variant; scikit-learn's ``classify`` and other models get
the measured baseline and a stated reason for each variant.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any, Protocol

from tenfold.model import Model
from tenfold.optimize.hardware import Hardware
from tenfold.optimize.variants import BASELINE, Built, Skipped, VariantName


class Family(Protocol):
    target: str
    #: Report name of the original model.
    baseline_name: str

    def baseline(self) -> Built: ...

    def build(
        self, variant: VariantName, out_dir: Path, hw: Hardware, force: bool
    ) -> Built | Skipped: ...


class ClassifyFamily:
    """``classify`` (scikit-learn): nothing to quantize or cast; ONNX needs skl2onnx."""

    target = "tenfold.examples.classify:Classify"
    baseline_name = "sklearn"

    def baseline(self) -> Built:
        from tenfold.examples.classify import Classify

        model = Classify()
        model.load()
        return Built(predict=model.predict, size_bytes=len(pickle.dumps(model.clf)))

    def build(
        self, variant: VariantName, out_dir: Path, hw: Hardware, force: bool
    ) -> Built | Skipped:
        if variant in (VariantName.ONNX_FP32, VariantName.ONNX_INT8):
            return Skipped(
                "ONNX export of scikit-learn models needs skl2onnx, which tenfold does not use yet"
            )
        return Skipped(f"{variant.value} applies to PyTorch models; this is a scikit-learn model")


class OpaqueFamily:
    """Any other model: measured as is; tenfold cannot rewrite its internals."""

    baseline_name = BASELINE

    def __init__(self, target: str, cls: type[Model[Any, Any]]) -> None:
        self.target = target
        self.cls = cls

    def baseline(self) -> Built:
        model = self.cls()
        model.load()
        return Built(predict=model.predict, size_bytes=0)

    def build(
        self, variant: VariantName, out_dir: Path, hw: Hardware, force: bool
    ) -> Built | Skipped:
        return Skipped(
            f"tenfold has no {variant.value} builder for {self.target} "
            "(builders exist for sentence-transformers embedders such as the embed example)"
        )


def family_for(target: str, cls: type[Model[Any, Any]], threads: int) -> Family:
    from tenfold.examples.classify import Classify
    from tenfold.examples.embed import Embed

    if issubclass(cls, Embed):
        from tenfold.optimize.embed_family import EmbedFamily

        family = EmbedFamily(base_version=cls.version, threads=threads)
        return family
    if issubclass(cls, Classify):
        return ClassifyFamily()
    return OpaqueFamily(target, cls)
