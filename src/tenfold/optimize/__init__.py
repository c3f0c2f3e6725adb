"""Model optimization: build faster variants, measure speed and quality, recommend one.

::

    from tenfold.optimize import OptimizeConfig, optimize

    report = optimize("embed", OptimizeConfig(out_dir=Path("opt")))
    report.recommended          # e.g. "onnx-int8"

Each built variant lives in ``out_dir/<variant>/`` with a ``variant.json``
(:class:`VariantManifest`) that ``tenfold serve --variant`` loads. Nothing here
imports torch or onnxruntime at import time.
"""

from __future__ import annotations

from tenfold.optimize.errors import CalibrationError, OptimizeError, VariantError
from tenfold.optimize.optimizer import OptimizeConfig, optimize
from tenfold.optimize.report import Report, VariantResult
from tenfold.optimize.variants import VariantManifest, VariantName

__all__ = [
    "CalibrationError",
    "OptimizeConfig",
    "OptimizeError",
    "Report",
    "VariantError",
    "VariantManifest",
    "VariantName",
    "VariantResult",
    "optimize",
]
