"""Calibration inputs: a JSONL file, or the default set a bundled example ships.

A JSONL line is one input exactly as the API accepts it (``"a sentence"``), or
``{"input": <input>, "label": <true label>}`` when true labels are known (for
classifiers, so accuracy can be measured, not only agreement).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tenfold.optimize.errors import CalibrationError


@dataclass(frozen=True, slots=True)
class Calibration:
    inputs: list[Any]
    #: One true label per input, or ``None``.
    labels: list[Any] | None = None

    def __post_init__(self) -> None:
        if not self.inputs:
            raise CalibrationError("the calibration set is empty")
        if self.labels is not None and len(self.labels) != len(self.inputs):
            raise CalibrationError("labels must be given for every calibration input or none")


def _is_wrapped(value: Any) -> bool:
    return isinstance(value, dict) and "input" in value and set(value) <= {"input", "label"}


def read_jsonl(path: Path, input_model: Any = None) -> Calibration:
    """Parse and validate (against the model's ``input_model``) every line of ``path``."""
    from pydantic import TypeAdapter, ValidationError

    adapter = TypeAdapter(input_model) if input_model is not None else None
    inputs: list[Any] = []
    labels: list[Any] = []
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise CalibrationError(f"cannot read calibration file {path}: {exc}") from exc
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise CalibrationError(f"{path}:{lineno}: not JSON: {exc}") from exc
        if _is_wrapped(value):
            if "label" in value:
                labels.append(value["label"])
            value = value["input"]
        if adapter is not None:
            try:
                value = adapter.validate_python(value)
            except ValidationError as exc:
                raise CalibrationError(f"{path}:{lineno}: invalid input: {exc}") from exc
        inputs.append(value)
    if labels and len(labels) != len(inputs):
        raise CalibrationError(f"{path}: some lines have a label and others do not")
    return Calibration(inputs=inputs, labels=labels or None)
