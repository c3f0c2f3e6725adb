"""JSON encoding of payloads, results and errors (never pickle: a queue writer
must not be able to run code on the workers)."""

from __future__ import annotations

import json
from typing import Any

from tenfold.queue.job import JobError


def dumps(value: Any) -> str:
    """Compact JSON; raises ``TypeError``/``ValueError`` for values JSON cannot hold."""
    return json.dumps(value, separators=(",", ":"), allow_nan=False)


def loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def dumps_error(error: JobError | None) -> str | None:
    return None if error is None else dumps(error.to_dict())


def loads_error(text: str | None) -> JobError | None:
    if not text:
        return None
    raw = json.loads(text)
    return JobError(str(raw["type"]), str(raw["message"]))
