"""Single-flight with an optional short cache: one upstream call per key at a time.

Fifty agents asking for the same wallet in the same instant cost one request.
The first caller makes the call itself (a task of its own per request would
cost every request a task and an extra turn of the event loop); those who join
await its outcome shielded, so one of them hanging up cancels nothing. If the
first caller hangs up while others wait, the call is made again in a task of
its own for them, so they still get their answer.
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
        #: callers awaiting a flight they did not start
        self._joined: dict[Hashable, int] = {}

    async def run(self, key: Hashable, call: Callable[[], Awaitable[T]]) -> T:
        if self.ttl > 0:
            hit = self._cache.get(key)
            if hit is not None:
                if hit[0] > time.monotonic():
                    return hit[1]
                del self._cache[key]
        pending = self._inflight.get(key)
        if pending is not None:
            self._joined[key] = self._joined.get(key, 0) + 1
            return await asyncio.shield(pending)
        pending = asyncio.get_running_loop().create_future()
        self._inflight[key] = pending
        try:
            value = await call()
        except asyncio.CancelledError:
            if self._joined.get(key):  # others wait: finish for them
                task = asyncio.ensure_future(call())
                task.add_done_callback(lambda done: _copy(done, pending))
                pending.add_done_callback(lambda fut: self._settle(key, fut))
            else:
                self._forget(key, pending)
                pending.cancel()
            raise
        except Exception as exc:
            pending.set_exception(exc)
            self._settle(key, pending)
            raise
        except BaseException:
            self._forget(key, pending)
            pending.cancel()
            raise
        pending.set_result(value)
        self._settle(key, pending)
        return value

    def _forget(self, key: Hashable, fut: asyncio.Future[T]) -> None:
        if self._inflight.get(key) is fut:
            del self._inflight[key]
            self._joined.pop(key, None)

    def _settle(self, key: Hashable, fut: asyncio.Future[T]) -> None:
        self._forget(key, fut)
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


def _copy(done: asyncio.Future[T], into: asyncio.Future[T]) -> None:
    exc = None if done.cancelled() else done.exception()  # also marks the exception as seen
    if into.done():
        return
    if done.cancelled():
        into.cancel()
    elif exc is not None:
        into.set_exception(exc)
    else:
        into.set_result(done.result())
