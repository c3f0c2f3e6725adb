"""The default queue clock: wall-clock epoch seconds.

Job timestamps, leases, retry due times and result expiry are compared across
processes and machines, so they use wall time, not ``time.monotonic``. Any
object with ``now() -> float`` (e.g. :class:`tenfold.clock.FakeClock`) can be
injected instead.
"""

from __future__ import annotations

import time
from typing import Protocol


class WallClock:
    def now(self) -> float:
        return time.time()


class NowClock(Protocol):
    def now(self) -> float: ...
