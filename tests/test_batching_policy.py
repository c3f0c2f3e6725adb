"""The batching policy, table-driven with a fake clock (plain ``now`` values)."""

from __future__ import annotations

import pytest

from tenfold.batching import BatchConfig, LatencyModel, Pending, decide
from tenfold.batching.latency import LatencyFit
from tenfold.batching.length import group_by_size, padding_waste
from tenfold.batching.policy import Verdict, admit

T0 = 100.0


def q(*ages_s: float, deadline_in: float | None = None, now: float = T0) -> list[Pending]:
    """Items that arrived ``age`` seconds before ``now``, oldest first."""
    return [
        Pending(
            key=i,
            enqueued_at=now - age,
            deadline=None if deadline_in is None else now - age + deadline_in,
        )
        for i, age in enumerate(ages_s)
    ]


FIXED = BatchConfig(max_batch_size=4, batch_timeout_ms=10, length_aware=False)


@pytest.mark.parametrize(
    ("ages", "expect_batch", "expect_wake", "reason"),
    [
        ((), (), None, "idle"),
        ((0.0,), (), T0 + 0.010, "waiting"),
        ((0.009, 0.0), (), T0 + 0.001, "waiting"),
        ((0.010, 0.0), (0, 1), None, "timeout"),
        ((0.0, 0.0, 0.0), (), T0 + 0.010, "waiting"),
        ((0.0, 0.0, 0.0, 0.0), (0, 1, 2, 3), None, "full"),
        ((0.0,) * 6, (0, 1, 2, 3), None, "full"),
    ],
)
def test_fixed_flush_on_full_or_timeout(ages, expect_batch, expect_wake, reason):
    d = decide(q(*ages), T0, FIXED)
    assert d.reason == reason
    assert (d.batches[0] if d.batches else ()) == expect_batch
    assert d.wake_at == pytest.approx(expect_wake) if expect_wake else d.wake_at is None


def test_no_flush_without_an_idle_worker_but_wake_for_deadlines():
    items = q(0.5, 0.0, deadline_in=1.0)
    d = decide(items, T0, FIXED, idle_workers=0)
    assert not d.flush
    assert d.wake_at == pytest.approx(T0 + 0.5)


def test_expired_items_are_dropped_never_batched():
    items = [Pending(0, T0 - 2, deadline=T0 - 0.1), Pending(1, T0 - 1, deadline=T0 + 5)]
    d = decide(items, T0, FIXED)
    assert d.expired == (0,)
    assert d.batches == ((1,),)  # item 1 waited past the timeout


def test_deadline_exactly_now_is_expired():
    d = decide([Pending(0, T0 - 1, deadline=T0)], T0, FIXED)
    assert d.expired == (0,)
    assert not d.flush


def test_items_are_counted_not_requests():
    # A request with inputs [a, b, c] enters the queue as three items: with
    # max_batch_size=4 it and one more single fill a batch.
    items = [Pending(k, T0) for k in range(3)] + [Pending(3, T0)]
    assert decide(items, T0, FIXED).batches == ((0, 1, 2, 3),)


# --- adaptive mode -----------------------------------------------------------
ADAPTIVE = BatchConfig(
    max_batch_size=8, batch_timeout_ms=50, latency_budget_ms=100, length_aware=False
)
# latency(n) = 5 ms * n + 10 ms
CURVE = LatencyFit(slope_s=0.005, intercept_s=0.010, samples=50)


def test_adaptive_without_fit_behaves_like_fixed_and_never_sheds():
    items = q(0.2, 0.0, deadline_in=0.1)  # oldest already expired
    d = decide(items, T0, ADAPTIVE, None)
    assert d.expired == (0,)
    assert d.shed == ()


@pytest.mark.parametrize(
    ("n_items", "slack_s", "expect_n", "reason"),
    [
        # plenty of slack, queue shorter than cap: wait for more
        (3, 0.100, 0, "waiting"),
        # a full batch fits the budget: 8 items -> 50 ms
        (8, 0.100, 8, "full"),
        # 8 queued but only 60 ms left: largest n with 5n+10 <= 60 ms is 10 -> cap 8;
        # with 40 ms left: n <= 6
        (8, 0.040, 6, "deadline"),
        # waiting for one more would break the deadline: 3 items, 25 ms left
        (3, 0.028, 3, "deadline"),
    ],
)
def test_adaptive_picks_largest_batch_inside_deadline(n_items, slack_s, expect_n, reason):
    items = [Pending(k, T0, deadline=T0 + slack_s) for k in range(n_items)]
    d = decide(items, T0, ADAPTIVE, CURVE)
    assert d.reason == reason
    assert sum(len(b) for b in d.batches) == expect_n


def test_adaptive_sheds_only_items_predicted_to_miss():
    # latency(1) = 15 ms: an item with 10 ms left cannot make it, one with 30 ms can.
    items = [Pending(0, T0 - 0.09, deadline=T0 + 0.010), Pending(1, T0, deadline=T0 + 0.030)]
    d = decide(items, T0, ADAPTIVE, CURVE)
    assert d.shed == (0,)
    # item 1 can still wait: a batch of 2 (20 ms) would finish by its deadline
    assert not d.flush
    assert d.wake_at == pytest.approx(T0 + 0.030 - CURVE.predict(2))


def test_adaptive_wait_is_capped_by_timeout_and_latest_start():
    items = [Pending(0, T0, deadline=T0 + 0.100)]
    d = decide(items, T0, ADAPTIVE, CURVE)
    # timeout is 50 ms; latest start keeping a batch of 2 inside 100 ms is 80 ms
    assert d.wake_at == pytest.approx(T0 + 0.050)
    d = decide([Pending(0, T0, deadline=T0 + 0.040)], T0, ADAPTIVE, CURVE)
    assert d.wake_at == pytest.approx(T0 + 0.040 - CURVE.predict(2))


# --- admission -----------------------------------------------------------------
def test_admit_queue_full_is_429_with_retry_after():
    cfg = BatchConfig(max_batch_size=4, max_queue_items=10)
    a = admit(queued_items=9, new_items=2, now=T0, deadline=None, config=cfg, fit=None, workers=1)
    assert a.verdict is Verdict.QUEUE_FULL
    assert a.retry_after_s >= 1


def test_admit_sheds_when_predicted_completion_misses_deadline():
    # 40 items queued, cap 8 -> 6 rounds of 50 ms on one worker = 300 ms > 100 ms budget
    a = admit(
        queued_items=40,
        new_items=1,
        now=T0,
        deadline=T0 + 0.1,
        config=ADAPTIVE,
        fit=CURVE,
        workers=1,
    )
    assert a.verdict is Verdict.SHED
    assert a.retry_after_s >= 1
    # two workers halve the rounds but still miss; eight workers make it
    ok = admit(
        queued_items=40,
        new_items=1,
        now=T0,
        deadline=T0 + 0.1,
        config=ADAPTIVE,
        fit=CURVE,
        workers=8,
    )
    assert ok.verdict is Verdict.ACCEPT


def test_admit_never_sheds_in_fixed_mode_or_unfitted():
    for cfg, fit in ((FIXED, CURVE), (ADAPTIVE, None)):
        a = admit(
            queued_items=1000,
            new_items=1,
            now=T0,
            deadline=T0 + 0.001,
            config=cfg,
            fit=fit,
            workers=1,
        )
        assert a.verdict is Verdict.ACCEPT


# --- latency model -------------------------------------------------------------
def test_latency_model_recovers_a_known_line():
    m = LatencyModel(window=50)
    assert not m.fitted
    for n in (1, 2, 4, 8, 16, 32) * 3:
        m.observe(n, 0.004 * n + 0.012)
    assert m.fit is not None
    assert m.fit.slope_s == pytest.approx(0.004)
    assert m.fit.intercept_s == pytest.approx(0.012)
    assert m.predict(10) == pytest.approx(0.052)


def test_latency_model_needs_two_sizes_and_forgets_old_batches():
    m = LatencyModel(window=10, min_samples=3)
    for _ in range(5):
        m.observe(8, 0.1)
    assert not m.fitted  # one size only: slope unknown
    for n in (1, 2, 4, 8, 16) * 2:
        m.observe(n, 0.001 * n)
    assert m.fit is not None and m.fit.slope_s == pytest.approx(0.001)


# --- length-aware grouping -----------------------------------------------------
def test_padding_waste():
    assert padding_waste([10, 10]) == 0.0
    assert padding_waste([5, 10]) == pytest.approx(0.25)


def test_group_by_size_keeps_uniform_window_whole_and_splits_mixed():
    uniform = [(k, 10) for k in range(8)]
    assert group_by_size(uniform, waste_threshold=0.2, min_group=2) == [list(range(8))]
    mixed = [(0, 30), (1, 6), (2, 28), (3, 7), (4, 29), (5, 6), (6, 8), (7, 30)]
    groups = group_by_size(mixed, waste_threshold=0.2, min_group=2)
    assert sorted(k for g in groups for k in g) == list(range(8))
    sizes = dict(mixed)
    for g in groups:
        assert padding_waste([sizes[k] for k in g]) <= 0.2
    assert len(groups) == 2


def test_decide_splits_flush_window_by_size():
    cfg = BatchConfig(
        max_batch_size=8, batch_timeout_ms=10, padding_waste_threshold=0.2, min_sub_batch_size=2
    )
    sizes = [30, 6, 28, 7, 29, 6, 8, 30]
    items = [Pending(k, T0, size=s) for k, s in enumerate(sizes)]
    d = decide(items, T0, cfg)
    assert d.reason == "full"
    assert len(d.batches) == 2
    assert {k for b in d.batches for k in b} == set(range(8))
