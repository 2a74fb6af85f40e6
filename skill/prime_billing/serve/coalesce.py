"""One upstream call per key at a time, shared by every caller asking for it, with an optional short cache.

Fifty agents asking for the same wallet in the same instant cost one request.
The call runs in a task of its own that every caller awaits shielded, so one
caller hanging up cancels nothing for the others; once the last one has gone,
the call is cancelled, since nobody is left to read its answer.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T")
#: successes remembered at most; beyond it, the expired ones go, else all
MAX_CACHED = 10_000


class Coalescer(Generic[T]):
    def __init__(self, ttl: float = 0.0) -> None:
        #: seconds a success is served again without a call; 0 = no cache
        self.ttl = ttl
        self._in_progress: dict[Hashable, tuple[asyncio.Task[T], list[int]]] = {}
        self._cache: dict[Hashable, tuple[float, T]] = {}
        #: since start: callers who joined a call already in progress, and callers answered from the cache
        self.joined = 0
        self.hits = 0

    async def run(self, key: Hashable, call: Callable[[], Awaitable[T]]) -> T:
        if self.ttl > 0 and (hit := self._cache.get(key)) is not None:
            if hit[0] > time.monotonic():
                self.hits += 1
                return hit[1]
            del self._cache[key]
        shared = self._in_progress.get(key)
        if shared is None:
            task = asyncio.ensure_future(call())
            shared = self._in_progress[key] = (task, [0])
            task.add_done_callback(lambda done: self._settle(key, done))
        else:
            self.joined += 1
        task, waiting = shared
        waiting[0] += 1
        try:
            return await asyncio.shield(task)
        finally:
            waiting[0] -= 1
            if not waiting[0] and not task.done():
                task.cancel()

    def _settle(self, key: Hashable, task: asyncio.Task[T]) -> None:
        if self._in_progress.get(key, (None,))[0] is task:
            del self._in_progress[key]
        if task.cancelled() or task.exception() is not None:  # also marks the exception as seen
            return
        if self.ttl > 0:
            if len(self._cache) >= MAX_CACHED:
                now = time.monotonic()
                self._cache = {k: v for k, v in self._cache.items() if v[0] > now}
                if len(self._cache) >= MAX_CACHED:
                    self._cache.clear()
            self._cache[key] = (time.monotonic() + self.ttl, task.result())

    @property
    def waiting(self) -> int:
        """Callers awaiting a call in progress, over every key (a snapshot: readable from any thread)."""
        return sum(count[0] for _, count in list(self._in_progress.values()))
