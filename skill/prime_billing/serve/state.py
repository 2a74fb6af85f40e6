"""What replicas share: the per-caller rate, cached answers, accepted passthrough keys, wallet readings.

Without `--state-url` it all lives in this process: limits' memory storage, cachetools caches.
With it, in Redis: redis-py's asyncio client with the hiredis parser (the fastest measured,
benchmarks/bench_state_clients.py) and limits' Redis storage on the same connection pool, so a
caller's rate is counted atomically across replicas (a Lua script per hit). Every call to Redis
has a short timeout; when one fails or is slow the replica carries on with its own memory, says so
in one log line per outage, shows `prime_billing_state_up 0`, and checks every second for Redis
to be back, then shares again. Redis holds counts, hashes and upstream answers: never a key or token.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")
logger = logging.getLogger("prime_billing.state")
#: every Redis key starts so: `prime-billing:<shelf>:<hash>`, `prime-billing:lock:...`, limits' own under `LIMITS`
PREFIX = "prime-billing:"
#: seconds one call to Redis may take before this replica stops waiting for it
TIMEOUT = 0.25
#: seconds between checks while Redis is unreachable
PROBE = 1.0
#: seconds between looks for an answer another replica is fetching
POLL = 0.01
#: entries each in-memory shelf keeps at most (the least recently used go first)
MAX_ITEMS = 10_000
#: seconds a passthrough key the upstream accepted counts as proven
ACCEPTED_TTL = 600.0
MISSING: Any = object()


def window(rate: float, burst: int) -> tuple[int, int]:
    """limits' item for a rate and a burst: `amount` requests per `seconds` (whole, at least 1), so a
    caller may send its burst at once and then the rate; a burst below one second of rate is that rate."""
    amount = max(burst, math.ceil(rate))
    return amount, max(1, math.ceil(amount / rate))


class State:
    def __init__(
        self,
        url: str | None = None,
        *,
        rate: float = 0.0,
        burst: int = 1,
        cache_ttl: float = 0.0,
        metrics_ttl: float = 60.0,
        lock_ttl: float = 30.0,
    ) -> None:
        """`rate`, `burst`: the per-caller limit (rate 0: none); the TTLs: of cached answers and wallet
        readings; `lock_ttl`: how long one replica may hold a call for the others before they try too."""
        from cachetools import TTLCache
        from limits import RateLimitItemPerSecond
        from limits.aio.storage import MemoryStorage
        from limits.aio.strategies import SlidingWindowCounterRateLimiter

        self.item = RateLimitItemPerSecond(*window(rate, burst)) if rate > 0 else None
        self.local = SlidingWindowCounterRateLimiter(MemoryStorage())
        self.ttls = {"answers": cache_ttl, "accepted": ACCEPTED_TTL, "readings": metrics_ttl}
        self.memory = {name: TTLCache(MAX_ITEMS, ttl) for name, ttl in self.ttls.items() if ttl > 0}
        self.lock_ms = max(1, int(lock_ttl * 1000))
        #: False while Redis is unreachable (and without one: there is nothing to lose)
        self.up = True
        self.redis: Any = None
        self._probe: asyncio.Task[None] | None = None
        if url is not None:
            import redis.asyncio as redis
            from limits.storage import storage_from_string
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff

            # one retry at once, on a fresh connection: a connection left from before an outage is dropped
            retry = Retry(NoBackoff(), 1)
            options = {"socket_timeout": TIMEOUT, "socket_connect_timeout": TIMEOUT, "retry": retry}
            if url.startswith("redis+cluster://"):  # limits makes its own cluster client
                self.redis = redis.RedisCluster.from_url(url.replace("+cluster", "", 1), **options)
                storage = storage_from_string("async+" + url, implementation="redispy", **options)
            else:
                self.redis = redis.from_url(url, **options)
                pool = self.redis.connection_pool
                storage = storage_from_string(
                    "async+" + url, implementation="redispy", connection_pool=pool, retry=retry
                )
            self.shared_limiter = SlidingWindowCounterRateLimiter(storage)

    @property
    def sharing(self) -> bool:
        return self.redis is not None and self.up

    async def _redis(self, call: Callable[[], Awaitable[T]]) -> T:
        """`call()`'s answer from Redis, or MISSING when there is none to share through or it failed."""
        if not self.sharing:
            return MISSING  # type: ignore[no-any-return]
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
            return MISSING  # type: ignore[no-any-return]

    async def _until_back(self) -> None:
        while not self.up:
            await asyncio.sleep(PROBE)
            try:
                async with asyncio.timeout(TIMEOUT):
                    await self.redis.ping()
            except Exception:
                continue
            if hasattr(self.redis, "connection_pool"):  # connections from before the outage: none kept
                await self.redis.connection_pool.disconnect()
            self.up = True
            logger.warning("prime-billing: the state store is back; sharing with the other replicas again")

    async def hit(self, caller: str) -> float:
        """0 when `caller` may go on (one request counted), else the seconds until it may."""
        if self.item is None:
            return 0.0
        allowed = await self._either("hit", caller)
        if allowed:
            return 0.0
        stats = await self._either("get_window_stats", caller)
        return max(0.001, stats.reset_time - time.time())

    async def _either(self, method: str, caller: str) -> Any:
        """A limiter call on the shared limiter, or on this replica's when there is none to share."""
        got = await self._redis(lambda: getattr(self.shared_limiter, method)(self.item, "prime-billing", caller))
        return await getattr(self.local, method)(self.item, "prime-billing", caller) if got is MISSING else got

    async def get(self, shelf: str, key: str) -> bytes | None:
        got = await self._redis(lambda: self.redis.get(f"{PREFIX}{shelf}:{key}"))
        return self.memory[shelf].get(key) if got is MISSING else got

    async def put(self, shelf: str, key: str, value: bytes) -> None:
        ms = int(self.ttls[shelf] * 1000)
        if await self._redis(lambda: self.redis.set(f"{PREFIX}{shelf}:{key}", value, px=ms)) is MISSING:
            self.memory[shelf][key] = value

    async def shared(self, shelf: str, key: str, produce: Callable[[], Awaitable[bytes]]) -> tuple[bytes, str]:
        """The shelf's value for `key` and how it came ("hit", "waited" or "made"): made by `produce` once
        for every replica. One takes a short lock and produces; the others wait for its value, or for
        its lock to go (it failed, or its replica died) and then try themselves."""
        lock, waited = f"{PREFIX}lock:{shelf}:{key}", False
        while True:
            value = await self.get(shelf, key)
            if value is not None:
                return value, "waited" if waited else "hit"
            mine = await self._redis(lambda: self.redis.set(lock, b"1", nx=True, px=self.lock_ms))
            if mine is MISSING or mine:  # nobody to share with, or the lock is this replica's
                try:
                    value = await produce()
                    await self.put(shelf, key, value)
                    return value, "made"
                finally:
                    if mine is True:
                        await self._redis(lambda: self.redis.delete(lock))
            waited = True
            await asyncio.sleep(POLL)

    async def accept(self, key_hash: str) -> None:
        await self.put("accepted", key_hash, b"1")

    async def accepted(self, key_hash: str) -> bool:
        return await self.get("accepted", key_hash) is not None

    async def aclose(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
        if self.redis is not None:
            await self.redis.aclose()
