"""UUIDv7 job ids (RFC 9562): 48-bit Unix milliseconds, then random bits.

Python 3.11's :mod:`uuid` has no ``uuid7``. Time-ordered ids keep the SQLite
primary-key index append-mostly and sort jobs by submission time. The
millisecond comes from the caller's clock so ids follow the injected clock.
"""

from __future__ import annotations

import os
import uuid


def uuid7(unix_s: float, rand: bytes | None = None) -> uuid.UUID:
    """A version-7 UUID for the time ``unix_s`` (seconds since the epoch)."""
    ms = int(unix_s * 1000) & ((1 << 48) - 1)
    tail = int.from_bytes(rand if rand is not None else os.urandom(10), "big") & ((1 << 74) - 1)
    rand_a = tail >> 62  # 12 bits
    rand_b = tail & ((1 << 62) - 1)
    value = (ms << 80) | (0x7 << 76) | (rand_a << 64) | (0b10 << 62) | rand_b
    return uuid.UUID(int=value)


def new_job_id(unix_s: float) -> str:
    return str(uuid7(unix_s))


def new_token() -> str:
    """A lease (fencing) token: unguessable, unique per claim."""
    return os.urandom(12).hex()
