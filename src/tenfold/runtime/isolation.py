"""Run a batch so that one bad item fails alone.

If ``predict`` raises on a batch, the batch is bisected and each half re-run,
down to single items: the items that still raise get the error, their
batch-mates get their outputs. ``predict`` may also return an
:class:`~tenfold.errors.ItemError` in place of one output. A batch of n items
with one poison item costs about ``2 * log2(n)`` extra ``predict`` calls.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from tenfold.errors import ItemError


@dataclass(frozen=True, slots=True)
class ItemFailure:
    """The error one item got: exception type name and message (no traceback leaves)."""

    error_type: str
    message: str


Outcome = Any  # an output, or an ItemFailure


def _failure(exc: BaseException) -> ItemFailure:
    return ItemFailure(type(exc).__name__, str(exc) or type(exc).__name__)


def run_isolated(
    predict: Callable[[list[Any]], Sequence[Any]],
    items: list[Any],
) -> list[Outcome]:
    """``predict(items)``, with failures narrowed to the items that cause them."""
    if not items:
        return []
    try:
        outputs = predict(items)
        if len(outputs) != len(items):
            raise RuntimeError(f"predict returned {len(outputs)} outputs for {len(items)} inputs")
    except Exception as exc:
        if len(items) == 1:
            return [_failure(exc)]
        mid = len(items) // 2
        return run_isolated(predict, items[:mid]) + run_isolated(predict, items[mid:])
    return [_failure(o) if isinstance(o, ItemError) else o for o in outputs]
