"""Which variants apply to a model, chosen by its class.

A family knows how to load the original (``baseline``) and build each variant
(``build``), or say why a variant does not apply. The bundled ``embed`` example gets
every variant; scikit-learn's ``classify`` and every other model (subclasses of the
examples included) get the measured baseline and a stated reason for each variant.

A family is chosen by the exact class, never by ``issubclass``: the builders rebuild
the bundled model (all-MiniLM-L6-v2, the iris classifier), so for a subclass that
changes ``load`` or ``predict`` they would measure and gate the bundled model, not
the user's, and label it with the user's version.
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
            "(builders exist only for the bundled embed example itself, not for other "
            "models or subclasses of it, whose load/predict tenfold cannot rebuild)"
        )


def family_for(target: str, cls: type[Model[Any, Any]], threads: int) -> Family:
    from tenfold.examples.classify import Classify
    from tenfold.examples.embed import Embed

    # ``is``, not ``issubclass``: see the module docstring.
    if cls is Embed:
        from tenfold.optimize.embed_family import EmbedFamily

        return EmbedFamily(base_version=cls.version, threads=threads)
    if cls is Classify:
        return ClassifyFamily()
    return OpaqueFamily(target, cls)
