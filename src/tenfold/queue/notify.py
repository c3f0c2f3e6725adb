"""A broadcast "something changed" signal for asyncio waiters.

A waiter takes a marker *before* it checks the store, then waits on that
marker: a change that lands between the check and the wait still wakes it.
"""

from __future__ import annotations

import asyncio
import contextlib


class ChangeSignal:
    def __init__(self) -> None:
        self._event = asyncio.Event()

    def marker(self) -> asyncio.Event:
        return self._event

    def notify(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    @staticmethod
    async def wait(marker: asyncio.Event, timeout_s: float) -> bool:
        """``True`` if a change happened since ``marker`` was taken, else ``False`` on timeout."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(marker.wait(), max(0.0, timeout_s))
        return marker.is_set()
