"""Errors of ``tenfold optimize`` (a command-line tool: none reaches an HTTP client)::

OptimizeError               bad arguments or a model tenfold cannot optimize
├── CalibrationError        unreadable calibration file or an input the model rejects
└── VariantError            a variant.json that is missing or malformed
"""

from __future__ import annotations


class OptimizeError(Exception):
    """Base of the errors ``tenfold optimize`` reports to its user."""


class CalibrationError(OptimizeError):
    pass


class VariantError(OptimizeError):
    pass
