"""Single-flight with an optional short cache: one upstream call per key at a time.

Fifty agents asking for the same wallet in the same instant cost one request.
The call runs in its own task and every caller awaits it shielded, so a caller
that hangs up does not cancel the answer the others are waiting for.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T")


class Coalescer(Generic[T]):
    def __init__(self, ttl: float = 0.0) -> None:
        #: seconds a success is served again without a call; 0 = no cache
        self.ttl = ttl
        self._inflight: dict[Hashable, asyncio.Future[T]] = {}
        self._cache: dict[Hashable, tuple[float, T]] = {}

    async def run(self, key: Hashable, call: Callable[[], Awaitable[T]]) -> T:
        if self.ttl > 0:
            hit = self._cache.get(key)
            if hit is not None:
                if hit[0] > time.monotonic():
                    return hit[1]
                del self._cache[key]
        pending = self._inflight.get(key)
        if pending is None:
            pending = asyncio.ensure_future(call())
            self._inflight[key] = pending
            pending.add_done_callback(lambda fut: self._settle(key, fut))
        return await asyncio.shield(pending)

    def _settle(self, key: Hashable, fut: asyncio.Future[T]) -> None:
        if self._inflight.get(key) is fut:
            del self._inflight[key]
        failed = fut.cancelled() or fut.exception() is not None  # also marks the exception as seen
        if self.ttl > 0 and not failed:
            if len(self._cache) > 10_000:  # bounded: drop what has expired, else start over
                now = time.monotonic()
                self._cache = {k: v for k, v in self._cache.items() if v[0] > now}
                if len(self._cache) > 10_000:
                    self._cache.clear()
            self._cache[key] = (time.monotonic() + self.ttl, fut.result())

    @property
    def inflight(self) -> int:
        return len(self._inflight)
