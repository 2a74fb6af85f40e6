"""What replicas share: the per-caller rate, cached answers, accepted passthrough keys, wallet readings.

In memory (limits' memory storage, cachetools), or with `--state-url` in Redis through redis-py with hiredis (the
fastest measured: benchmarks/bench_state_clients.py) and limits' Redis storage on its pool. A Redis call that fails
or is slow leaves the replica on its own memory, said once per outage, until a check each second finds Redis back.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

from .options import Options

logger = logging.getLogger("prime_billing.state")
#: every key of the launcher's own: `prime-billing:<shelf>:<hash>` and `prime-billing:lock:<shelf>:<hash>`
PREFIX = "prime-billing:"
#: seconds one Redis call may take; between checks while it is down; between looks for another's answer
TIMEOUT, PROBE, POLL = 0.25, 1.0, 0.01
#: entries each in-memory shelf keeps at most (the least recently used go first)
MAX_ITEMS = 10_000
#: seconds a passthrough key the upstream accepted counts as proven
ACCEPTED_TTL = 600.0
#: what `_redis` answers when there is no Redis to share through, or it failed
MISSING: Any = object()


class State:
    """`lock_ttl`: how long one replica may hold a call for the others before they try it too."""

    def __init__(self, options: Options, lock_ttl: float = 30.0) -> None:
        from cachetools import TTLCache
        from limits import RateLimitItemPerSecond
        from limits.aio.storage import MemoryStorage
        from limits.aio.strategies import SlidingWindowCounterRateLimiter as Limiter

        o, rate = options, options.rate
        # limits' window (amount, whole seconds): a caller may send its burst (default twice the rate), then the rate
        amount = max(o.rate_burst or math.ceil(2 * rate), math.ceil(rate))
        self.item = RateLimitItemPerSecond(amount, max(1, math.ceil(amount / rate))) if rate > 0 else None
        self.local = Limiter(MemoryStorage())
        self.ttls = {"answers": o.cache_ttl, "accepted": ACCEPTED_TTL, "readings": o.metrics_ttl}
        self.memory = {shelf: TTLCache(MAX_ITEMS, ttl) for shelf, ttl in self.ttls.items() if ttl > 0}
        self.lock_ms = max(1, int(lock_ttl * 1000))
        #: False while Redis does not answer (and without one: there is nothing to lose)
        self.up, self.redis, self._probe = True, None, None
        if o.state_url is not None:
            import redis.asyncio as redis
            from limits.storage import storage_from_string
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff

            # one retry at once, on a fresh connection: one left from before an outage is dropped
            retry = Retry(NoBackoff(), 1)
            kw: dict[str, Any] = dict(socket_timeout=TIMEOUT, socket_connect_timeout=TIMEOUT, retry=retry)
            if o.state_url.startswith("redis+cluster://"):  # limits makes its own cluster client
                self.redis = redis.RedisCluster.from_url(o.state_url.replace("+cluster", "", 1), **kw)
            else:
                self.redis = redis.from_url(o.state_url, **kw)
                kw = {"connection_pool": self.redis.connection_pool, "retry": retry}
            self.remote = Limiter(storage_from_string("async+" + o.state_url, implementation="redispy", **kw))

    async def _redis(self, call: Callable[[], Awaitable[Any]]) -> Any:
        """`call()`'s answer from Redis, or MISSING when there is none to share through or it failed."""
        if self.redis is None or not self.up:
            return MISSING
        try:
            async with asyncio.timeout(TIMEOUT):
                return await call()
        except Exception as exc:  # any failure of the store: this replica goes on with its own memory
            if self.up:
                self.up = False
                logger.warning(
                    "prime-billing: the state store failed (%s); this replica uses its own memory until it is back",
                    type(exc).__name__,
                )
                self._probe = asyncio.ensure_future(self._until_back())
            return MISSING

    async def _until_back(self) -> None:
        while not self.up:
            await asyncio.sleep(PROBE)
            try:
                async with asyncio.timeout(TIMEOUT):
                    await self.redis.ping()
                if hasattr(self.redis, "connection_pool"):  # no connection from before the outage is kept
                    await self.redis.connection_pool.disconnect()
            except Exception:
                continue
            self.up = True
            logger.warning("prime-billing: the state store is back; sharing with the other replicas again")

    async def _limit(self, method: str, caller: str) -> Any:
        """A limiter call on the shared limiter, or on this replica's when there is none to share."""
        args = (self.item, "prime-billing", caller)
        got = await self._redis(lambda: getattr(self.remote, method)(*args))
        return await getattr(self.local, method)(*args) if got is MISSING else got

    async def hit(self, caller: str) -> float:
        """0 when `caller` may go on (one request counted), else the seconds until it may."""
        if self.item is None or await self._limit("hit", caller):
            return 0.0
        return max(0.001, (await self._limit("get_window_stats", caller)).reset_time - time.time())

    async def get(self, shelf: str, key: str) -> bytes | None:
        got = await self._redis(lambda: self.redis.get(f"{PREFIX}{shelf}:{key}"))
        return self.memory[shelf].get(key) if got is MISSING else got

    async def put(self, shelf: str, key: str, value: bytes) -> None:
        ms = int(self.ttls[shelf] * 1000)
        if await self._redis(lambda: self.redis.set(f"{PREFIX}{shelf}:{key}", value, px=ms)) is MISSING:
            self.memory[shelf][key] = value

    async def shared(self, shelf: str, key: str, produce: Callable[[], Awaitable[bytes]]) -> tuple[bytes, str]:
        """The shelf's value for `key` and how it came ("hit", "waited" or "made"), made by `produce` once for every
        replica: one takes a short lock and produces; the others wait for its value, or for its lock to go (it
        failed, or its replica died), then try themselves."""
        lock, waited = f"{PREFIX}lock:{shelf}:{key}", False
        while (value := await self.get(shelf, key)) is None:
            mine = await self._redis(lambda: self.redis.set(lock, b"1", nx=True, px=self.lock_ms))
            if mine is MISSING or mine:  # nobody to share with, or the lock is this replica's
                try:
                    # the replica that held the lock may have stored its value since it was looked for
                    if mine is True and (value := await self.get(shelf, key)) is not None:
                        return value, "waited"
                    value = await produce()
                    await self.put(shelf, key, value)
                    return value, "made"
                finally:
                    if mine is True:
                        await self._redis(lambda: self.redis.delete(lock))
            waited = True
            await asyncio.sleep(POLL)
        return value, "waited" if waited else "hit"

    async def aclose(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
        if self.redis is not None:
            await self.redis.aclose()
