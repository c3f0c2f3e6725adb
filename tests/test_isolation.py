from __future__ import annotations

import pytest

from tenfold.errors import ItemError
from tenfold.runtime.isolation import ItemFailure, run_isolated


class Counting:
    def __init__(self) -> None:
        self.calls: list[int] = []

    def __call__(self, batch: list[str]) -> list[str]:
        self.calls.append(len(batch))
        if "boom" in batch:
            raise ValueError("cannot embed 'boom'")
        return [s.upper() for s in batch]


def test_one_poison_item_fails_alone_in_a_batch_of_32():
    items = [f"s{i}" for i in range(32)]
    items[13] = "boom"
    predict = Counting()
    out = run_isolated(predict, items)
    assert out[13] == ItemFailure("ValueError", "cannot embed 'boom'")
    assert [o for i, o in enumerate(out) if i != 13] == [
        s.upper() for i, s in enumerate(items) if i != 13
    ]
    # bisection: the full batch, then 2 calls per level down to one item
    assert len(predict.calls) <= 1 + 2 * 5


def test_item_error_returned_in_place_fails_only_that_item():
    def predict(batch: list[int]) -> list[object]:
        return [ItemError("negative") if x < 0 else x * 2 for x in batch]

    assert run_isolated(predict, [1, -1, 3]) == [2, ItemFailure("ItemError", "negative"), 6]


def test_wrong_output_count_is_a_model_error():
    # one output for two inputs: bisected, and each single call answers correctly
    assert run_isolated(lambda b: [1], ["a", "b"]) == [1, 1]
    out = run_isolated(lambda b: [], ["a"])
    assert out == [ItemFailure("RuntimeError", "predict returned 0 outputs for 1 inputs")]


@pytest.mark.parametrize("n", [0, 1, 2, 7])
def test_all_good_is_one_call(n):
    predict = Counting()
    assert run_isolated(predict, ["x"] * n) == ["X"] * n
    assert len(predict.calls) == (1 if n else 0)
