"""In-process cache backend: LRU bounded by entries and by bytes, TTL on an injected clock.

All work happens synchronously inside each ``async`` call, so concurrent
coroutines never see a half-applied update and no lock is needed. Expired
entries are dropped lazily when read, and first when room is needed.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

from tenfold.clock import Clock, SystemClock

__all__ = ["MemoryBackend", "MemoryConfig"]

# Per-entry bookkeeping (dict slot, tuple, key str) counted against max_bytes,
# so that a flood of tiny values cannot grow memory without bound.
ENTRY_OVERHEAD_BYTES = 64


@dataclass(frozen=True, slots=True)
class MemoryConfig:
    max_entries: int = 100_000
    max_bytes: int = 256 * 1024 * 1024

    def __post_init__(self) -> None:
        if self.max_entries <= 0:
            raise ValueError(f"max_entries must be > 0, got {self.max_entries}")
        if self.max_bytes <= 0:
            raise ValueError(f"max_bytes must be > 0, got {self.max_bytes}")


def entry_size(key: str, value: bytes) -> int:
    """Bytes an entry is charged against ``max_bytes``."""
    return len(key.encode()) + len(value) + ENTRY_OVERHEAD_BYTES


class MemoryBackend:
    """``MemoryBackend(MemoryConfig(max_entries=1000), clock=FakeClock())``."""

    # Never suspends: ResilientBackend skips its per-call timeout for it.
    in_process: ClassVar[bool] = True

    def __init__(self, config: MemoryConfig | None = None, *, clock: Clock | None = None) -> None:
        self.config = config or MemoryConfig()
        self._clock: Clock = clock or SystemClock()
        # key -> (value, expires_at, charged size); order = least recently used first.
        self._data: OrderedDict[str, tuple[bytes, float, int]] = OrderedDict()
        self._bytes = 0
        self.evictions = 0
        self.expirations = 0
        self.rejected = 0

    @property
    def entries(self) -> int:
        return len(self._data)

    @property
    def bytes_used(self) -> int:
        return self._bytes

    def _drop(self, key: str) -> None:
        _, _, size = self._data.pop(key)
        self._bytes -= size

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        now = self._clock.now()
        out: list[bytes | None] = []
        data = self._data
        for key in keys:
            entry = data.get(key)
            if entry is None:
                out.append(None)
            elif entry[1] <= now:
                self._drop(key)
                self.expirations += 1
                out.append(None)
            else:
                data.move_to_end(key)
                out.append(entry[0])
        return out

    async def set_many(self, items: Mapping[str, bytes], ttl_s: float) -> None:
        if ttl_s <= 0:
            raise ValueError(f"ttl_s must be > 0, got {ttl_s}")
        now = self._clock.now()
        expires_at = now + ttl_s
        for key, value in items.items():
            size = entry_size(key, value)
            if key in self._data:
                self._drop(key)
            if size > self.config.max_bytes:
                # Storing it would evict everything else and still not fit.
                self.rejected += 1
                continue
            self._data[key] = (bytes(value), expires_at, size)
            self._bytes += size
        self._shrink()

    def _shrink(self) -> None:
        # Plain LRU: scanning for expired entries would make every set at capacity
        # O(entries); expired ones are dropped when read, or age out of the LRU end.
        cfg = self.config
        while len(self._data) > cfg.max_entries or self._bytes > cfg.max_bytes:
            _, (_, _, size) = self._data.popitem(last=False)
            self._bytes -= size
            self.evictions += 1

    async def delete_prefix(self, prefix: str) -> int:
        doomed = [k for k in self._data if k.startswith(prefix)]
        for key in doomed:
            self._drop(key)
        return len(doomed)

    async def close(self) -> None:
        self._data.clear()
        self._bytes = 0
