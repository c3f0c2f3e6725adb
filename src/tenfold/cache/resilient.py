"""A backend wrapper that never lets a cache failure reach the caller.

Errors and timeouts become misses (``get_many``) and no-ops (``set_many``,
``delete_prefix`` returns 0). The first failure of an *incident* logs one
warning; later failures of the same incident are only counted. While an
incident is open, calls within ``retry_after_s`` of the last failure skip the
backend entirely (a hung Redis would otherwise cost every request its timeout);
the next call after that probes it, and the first success closes the incident
with one info line. Time comes from the injected clock, so tests drive it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from tenfold.cache.backend import CacheBackend
from tenfold.cache.stats import LayerStats
from tenfold.clock import Clock, SystemClock

__all__ = ["ResilientBackend", "ResilientConfig"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ResilientConfig:
    # Whole-call bound for get/set on top of the backend's own socket timeouts.
    op_timeout_s: float = 0.25
    # How long to skip a failed backend before probing it again.
    retry_after_s: float = 1.0

    def __post_init__(self) -> None:
        if self.op_timeout_s <= 0:
            raise ValueError(f"op_timeout_s must be > 0, got {self.op_timeout_s}")
        if self.retry_after_s < 0:
            raise ValueError(f"retry_after_s must be >= 0, got {self.retry_after_s}")


class ResilientBackend:
    """``ResilientBackend(from_url(url), stats=LayerStats("result"), clock=clock)``."""

    def __init__(
        self,
        inner: CacheBackend,
        *,
        stats: LayerStats | None = None,
        config: ResilientConfig | None = None,
        clock: Clock | None = None,
        name: str | None = None,
    ) -> None:
        self.inner = inner
        self.stats = stats if stats is not None else LayerStats(name or "cache")
        self.config = config or ResilientConfig()
        self._clock: Clock = clock or SystemClock()
        self.name = name or self.stats.layer
        self._failed_at: float | None = None  # None: no open incident
        self.incidents = 0
        # An in-process store never waits, so a timer per call (~30 us) would buy nothing.
        self._in_process = bool(getattr(inner, "in_process", False))
        self.skipped = 0

    @property
    def healthy(self) -> bool:
        return self._failed_at is None

    def _skip(self) -> bool:
        if self._failed_at is None:
            return False
        if self._clock.now() - self._failed_at < self.config.retry_after_s:
            self.skipped += 1
            return True
        return False

    def _failed(self, op: str, exc: BaseException) -> None:
        self.stats.errors += 1
        if self._failed_at is None:
            self.incidents += 1
            log.warning(
                "cache %s unavailable (%s: %s: %s); serving without it until it returns",
                self.name,
                op,
                type(exc).__name__,
                exc,
            )
        self._failed_at = self._clock.now()

    def _succeeded(self) -> None:
        if self._failed_at is not None:
            self._failed_at = None
            log.info("cache %s is back", self.name)

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        if not keys or self._skip():
            return [None] * len(keys)
        try:
            if self._in_process:
                values = await self.inner.get_many(keys)
            else:
                async with asyncio.timeout(self.config.op_timeout_s):
                    values = await self.inner.get_many(keys)
        except Exception as exc:
            # Broad on purpose: whatever the backend does, the request goes on.
            self._failed("get_many", exc)
            return [None] * len(keys)
        self._succeeded()
        return values

    async def set_many(self, items: Mapping[str, bytes], ttl_s: float) -> None:
        if not items or self._skip():
            return
        try:
            if self._in_process:
                await self.inner.set_many(items, ttl_s)
            else:
                async with asyncio.timeout(self.config.op_timeout_s):
                    await self.inner.set_many(items, ttl_s)
        except Exception as exc:
            self._failed("set_many", exc)
            return
        self._succeeded()

    async def delete_prefix(self, prefix: str) -> int:
        """Protocol form: 0 when the backend failed (see :meth:`try_delete_prefix`)."""
        removed = await self.try_delete_prefix(prefix)
        return 0 if removed is None else removed

    async def try_delete_prefix(self, prefix: str) -> int | None:
        """Entries deleted, or ``None`` when the backend failed (the caller should retry)."""
        # No whole-call timeout: purging a large prefix is slow but each step is
        # bounded by the backend's socket timeout. An open incident is probed anyway:
        # a purge is rare and the caller wants it done if at all possible.
        try:
            removed = await self.inner.delete_prefix(prefix)
        except Exception as exc:
            self._failed("delete_prefix", exc)
            return None
        self._succeeded()
        return removed

    async def close(self) -> None:
        try:
            await self.inner.close()
        except Exception as exc:
            log.warning("closing cache %s failed: %s: %s", self.name, type(exc).__name__, exc)
