"""Which Redis client holds the launcher's shared state: p50 of the calls it makes, side by side.

The launcher makes, per request, at most a rate-limit hit (`limits`' sliding window counter, one
Lua script), a cache read (GET of an upstream body, about 2 KB) and, on a miss, a write (SET with
an expiry). Each client below makes those against one `redis-server` on loopback (started here,
on a free port), each in a process of its own so one client's imports cannot speed or slow
another; `memory` is the launcher's own fallback (limits' memory storage, a cachetools cache),
the floor. Rounds are interleaved so drift hits all alike. A client whose package is missing is
skipped (`pip install coredis cashews` to see all of them).

    python benchmarks/bench_state_clients.py [--ops 3000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VALUE = b'{"wallet_id": "wal_sbx_personal", "rows": "' + b"x" * 2000 + b'"}'
#: each client, and what it is: the one the launcher uses first
VARIANTS = {
    "redis-py + hiredis": "redis.asyncio (hiredis parser); limits with implementation='redispy' on the same pool",
    "redis-py, Python parser": "the same without hiredis",
    "coredis": "coredis.Redis; limits' default async implementation",
    "cashews": "cashews' redis backend (redis-py underneath, its own serializer); no rate limiter",
    "memory": "limits' memory storage and a cachetools TTLCache: the fallback, no Redis",
}


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    """`redis-server` on a free loopback port, no persistence; its URL until the block ends."""
    if shutil.which("redis-server") is None:
        raise SystemExit("redis-server is not installed (Debian: apt-get install redis-server)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit("redis-server did not start") from None
                time.sleep(0.02)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(10)


Op = Callable[[int], Awaitable[object]]


async def ops_for(variant: str, url: str) -> dict[str, Op]:
    """The variant's three calls, each taking a running number (keys vary as callers do)."""
    from limits import RateLimitItemPerSecond

    item = RateLimitItemPerSecond(10**9, 1)
    if variant == "memory":
        from cachetools import TTLCache
        from limits.aio.storage import MemoryStorage
        from limits.aio.strategies import SlidingWindowCounterRateLimiter

        cache: TTLCache[str, bytes] = TTLCache(10_000, 60)
        limiter = SlidingWindowCounterRateLimiter(MemoryStorage())

        async def mem_get(i: int) -> object:
            return cache.get("k")

        async def mem_set(i: int) -> object:
            cache[f"k{i % 100}"] = VALUE
            return None

        cache["k"] = VALUE
        return {"hit": lambda i: limiter.hit(item, f"c{i % 10}"), "get": mem_get, "set": mem_set}
    if variant == "cashews":
        from cashews import Cache

        store = Cache()
        store.setup(url)
        await store.set("k", VALUE, expire=60)
        return {"get": lambda i: store.get("k"), "set": lambda i: store.set(f"k{i % 100}", VALUE, expire=60)}
    from limits.aio.storage import RedisStorage
    from limits.aio.strategies import SlidingWindowCounterRateLimiter

    if variant == "coredis":
        import coredis

        client = coredis.Redis.from_url(url)
        storage = RedisStorage("async+" + url)
        await client.set("k", VALUE)
        return {
            "hit": lambda i: SlidingWindowCounterRateLimiter(storage).hit(item, f"c{i % 10}"),
            "get": lambda i: client.get("k"),
            "set": lambda i: client.set(f"k{i % 100}", VALUE, px=60_000),
        }
    import redis.asyncio

    r = redis.asyncio.from_url(url)
    limiter = SlidingWindowCounterRateLimiter(
        RedisStorage("async+" + url, implementation="redispy", connection_pool=r.connection_pool)
    )
    await r.set("k", VALUE)
    return {
        "hit": lambda i: limiter.hit(item, f"c{i % 10}"),
        "get": lambda i: r.get("k"),
        "set": lambda i: r.set(f"k{i % 100}", VALUE, px=60_000),
    }


async def run_variant(variant: str, url: str, n: int) -> dict[str, list[float]]:
    ops = await ops_for(variant, url)
    lat: dict[str, list[float]] = {}
    for name, op in ops.items():
        for i in range(300):  # warm up: connections, scripts loaded
            await op(i)
        times = []
        for i in range(n):
            t = time.perf_counter()
            await op(i)
            times.append((time.perf_counter() - t) * 1000)
        lat[name] = times

        # 50 at once: what one replica's requests in flight make of the client
        async def worker(w: int, op: Op = op) -> None:
            for i in range(w, n, 50):
                await op(i)

        t = time.perf_counter()
        await asyncio.gather(*(worker(w) for w in range(50)))
        lat[name + "_per_s"] = [n / (time.perf_counter() - t)]
    return lat


def child(variant: str, url: str, out: str, n: int) -> None:
    if variant == "redis-py, Python parser":
        sys.modules["hiredis"] = None  # type: ignore[assignment]  # redis-py then parses in Python
    try:
        import uvloop

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:
        runner = asyncio.Runner()
    with runner:
        try:
            result = runner.run(run_variant(variant, url, n))
        except ImportError as exc:
            result = {"skipped": [str(exc)]}  # type: ignore[dict-item]
    Path(out).write_text(json.dumps(result), encoding="utf-8")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=3000, help="calls of each kind per client and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", nargs=3, metavar=("VARIANT", "URL", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child, args.ops)
        return
    results: dict[str, dict[str, list[float]]] = {v: {} for v in VARIANTS}
    with redis_server() as url, tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "out.json")
        for _ in range(args.rounds):
            for variant in VARIANTS:
                command = [sys.executable, __file__, "--ops", str(args.ops), "--child", variant, url, out]
                subprocess.run(command, check=True, cwd=ROOT)
                for name, values in json.loads(Path(out).read_text(encoding="utf-8")).items():
                    results[variant].setdefault(name, []).extend(values)
    with open("/proc/loadavg") as f:
        load = f.read().split()[:3]
    print(f"redis-server on loopback; {args.ops} calls of each kind x {args.rounds} rounds; load average {load}")
    heads = ("hit p50 ms", "get p50 ms", "set p50 ms", "get/s at 50", "get vs redis-py")
    print(f"{'client':<26} " + " ".join(f"{h:>{max(10, len(h))}}" for h in heads))
    base = pct(results["redis-py + hiredis"]["get"], 0.5)
    for variant, r in results.items():
        if "skipped" in r:
            print(f"{variant:<26} skipped: {r['skipped'][0]}")
            continue
        cells = [f"{pct(r[k], 0.5):>10.3f}" if k in r else f"{'-':>10}" for k in ("hit", "get", "set")]
        rate = f"{sorted(r['get_per_s'])[len(r['get_per_s']) // 2]:>11.0f}"
        print(f"{variant:<26} {' '.join(cells)} {rate} {pct(r['get'], 0.5) / base:>14.2f}x")
    for variant, what in VARIANTS.items():
        print(f"  {variant}: {what}")


if __name__ == "__main__":
    main()
