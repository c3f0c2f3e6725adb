"""The retry policy and job-id helpers are pure: tables, no store, no clock."""

from __future__ import annotations

import random
import uuid

import pytest

from tenfold.queue import JobStatus, RetryPolicy, from_url
from tenfold.queue.ids import uuid7
from tenfold.queue.policy import decide_failure, lease_expired_outcome

POLICY = RetryPolicy(max_attempts=5, base_delay_s=1.0, max_delay_s=10.0, jitter=0.5)


@pytest.mark.parametrize(
    ("attempts", "low", "high"),
    [(1, 0.5, 1.0), (2, 1.0, 2.0), (3, 2.0, 4.0), (4, 4.0, 8.0), (5, 5.0, 10.0), (60, 5.0, 10.0)],
)
def test_backoff_is_exponential_capped_and_jittered(attempts: int, low: float, high: float) -> None:
    rng = random.Random(1)
    delays = [POLICY.backoff_s(attempts, rng) for _ in range(200)]
    assert all(low <= d <= high for d in delays)
    assert max(delays) - min(delays) > 0.3 * (high - low)  # jitter really spreads them


def test_backoff_without_jitter_is_exact() -> None:
    policy = RetryPolicy(base_delay_s=0.5, max_delay_s=100.0, jitter=0.0)
    assert [policy.backoff_s(n, random.Random()) for n in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 4.0]


@pytest.mark.parametrize(
    ("attempts", "retryable", "status", "due"),
    [
        (1, True, JobStatus.QUEUED, True),
        (4, True, JobStatus.QUEUED, True),
        (5, True, JobStatus.DEAD, False),
        (1, False, JobStatus.FAILED, False),
        (5, False, JobStatus.FAILED, False),
    ],
)
def test_decide_failure(attempts: int, retryable: bool, status: JobStatus, due: bool) -> None:
    rng = random.Random(0)
    d = decide_failure(attempts, retryable=retryable, policy=POLICY, now=100.0, rng=rng)
    assert d.status is status
    assert (d.due_at is not None) is due
    if d.due_at is not None:
        assert 100.0 < d.due_at <= 100.0 + 10.0


def test_lease_expiry_outcome() -> None:
    assert lease_expired_outcome(4, POLICY) is JobStatus.RUNNING
    assert lease_expired_outcome(5, POLICY) is JobStatus.DEAD


@pytest.mark.parametrize(
    "kwargs",
    [{"max_attempts": 0}, {"base_delay_s": 5.0, "max_delay_s": 1.0}, {"jitter": 1.5}],
)
def test_policy_validates_eagerly(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_uuid7_layout_and_order() -> None:
    a = uuid7(1_700_000_000.000, bytes(10))
    b = uuid7(1_700_000_000.001, bytes(10))
    assert a.version == 7 and a.variant == uuid.RFC_4122
    assert int(a) >> 80 == 1_700_000_000_000
    assert str(a) < str(b)


def test_terminal_statuses() -> None:
    assert {s for s in JobStatus if s.terminal} == {
        JobStatus.SUCCEEDED,
        JobStatus.FAILED,
        JobStatus.DEAD,
        JobStatus.CANCELLED,
    }


@pytest.mark.parametrize(
    "url",
    [
        "postgres://x/y",
        "sqlite://host/path.db",
        "sqlite:///q.db?bogus=1",
        "redis://127.0.0.1:6379/0?synchronous=full",
        "sqlite:///q.db?max_attempts=0",
    ],
)
def test_from_url_rejects_bad_urls(url: str) -> None:
    with pytest.raises(ValueError):
        from_url(url)


def test_from_url_reads_the_config() -> None:
    q = from_url("sqlite:///tmp/x.db?max_attempts=3&retry_base_ms=50&result_ttl_s=10")
    assert q.config.retry.max_attempts == 3
    assert q.config.retry.base_delay_s == 0.05
    assert q.config.result_ttl_s == 10.0
