"""What shared state costs a request, and what a second replica buys.

Everything on 127.0.0.1, each part its own process: the sandbox (the upstream), a `redis-server`
started here, and launchers (`serve --only rest`) with a per-caller rate limit high enough never to
refuse, so every request makes a limiter call:
- per request, sequential p50, state in memory against state in Redis (`--state-url`): with the
  limiter only (then the upstream call), and with `--cache-ttl` (the limiter and a cache read: no
  upstream call at all, the most Redis can weigh in a request);
- throughput at concurrency 50, distinct queries (no coalescing, no cache), state in Redis: one
  replica against two, the requests spread evenly. The machine has two cores for the load, the
  sandbox, Redis and the replicas together, so this shows what a second process adds here, not
  on two machines.
Rounds are interleaved so drift hits all alike.

    python benchmarks/bench_replicas.py [--seq 600] [--conc-requests 3000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_rest import ADAPTER_PATH, KEY, ROOT, load, measure, pct, start
from bench_state_clients import redis_server

SERVE = ["-m", "prime_billing", "serve", "--only", "rest", "--rest-port", "0", "--no-access-log"]
LIMITED = ["--rate-limit", "100000", "--rate-burst", "1000000"]


@contextlib.contextmanager
def launchers(redis: str) -> Iterator[dict[str, str]]:
    """The sandbox and every launcher measured, by name; all stopped on the way out."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRIME_")}
    env["PYTHONPATH"] = str(ROOT / "skill")
    procs = []
    try:
        sandbox, upstream = start(["-m", "prime_billing", "sandbox", "--port", "0"], env)
        procs.append(sandbox)
        env |= {"PRIME_API_BASE_URL": upstream, "PRIME_API_KEY": KEY, "HOME": str(ROOT / ".bench-home")}
        shared = ["--state-url", redis]
        variants = {
            "limit, memory": LIMITED,
            "limit, redis": [*LIMITED, *shared],
            "cache, memory": [*LIMITED, "--cache-ttl", "600"],
            "cache, redis": [*LIMITED, "--cache-ttl", "600", *shared],
            "second replica": [*LIMITED, *shared],
        }
        urls = {}
        for name, args in variants.items():
            proc, urls[name] = start([*SERVE, *args], env)
            procs.append(proc)
        yield urls
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=10)


async def bench(urls: dict[str, str], seq: int, conc: int, rounds: int) -> dict[str, list[float]]:
    import aiohttp

    results: dict[str, list[float]] = {}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100)) as session:

        async def get(url: str) -> None:
            async with session.get(url) as r:
                await r.read()
                if r.status != 200:
                    raise SystemExit(f"{url} answered {r.status}")

        for url in urls.values():  # warm up: connections, caches, Redis' scripts loaded
            await measure(get, [f"{url}{ADAPTER_PATH}?offset={i % 50}" for i in range(300)], 50)
        for r in range(rounds):
            for name in ("limit, memory", "limit, redis", "cache, memory", "cache, redis"):
                lat, _ = await measure(get, [f"{urls[name]}{ADAPTER_PATH}?offset=1"] * (seq // rounds), 1)
                results.setdefault(name, []).extend(lat)
            n = conc // rounds
            one = [urls["limit, redis"]] * 2
            two = [urls["limit, redis"], urls["second replica"]]
            for name, bases in (("1 replica", one), ("2 replicas", two)):
                # a fresh page per request in each round: nothing coalesces, nothing is cached
                batch = [f"{bases[i % 2]}{ADAPTER_PATH}?offset={1000 * (r + 1) + i}" for i in range(n)]
                _, rps = await measure(get, batch, 50)
                results.setdefault(name, []).append(rps)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seq", type=int, default=600, help="sequential requests per launcher")
    parser.add_argument("--conc-requests", type=int, default=3000, help="requests per throughput measurement")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with redis_server() as redis, launchers(redis) as urls:
        print(f"GET wallet (20 rows) through the launcher; {args.rounds} interleaved rounds; {load()}")
        r = asyncio.run(bench(urls, args.seq, args.conc_requests, args.rounds))
    heads = f"{'memory p50 ms':>13} {'redis p50 ms':>12} {'redis adds ms':>13} {'ratio':>6}"
    print(f"\n{'per request (sequential)':<26} {heads}")
    for what in ("limit", "cache"):
        mem, red = pct(r[f"{what}, memory"], 0.5), pct(r[f"{what}, redis"], 0.5)
        label = "limiter, then upstream" if what == "limit" else "limiter and cache hit"
        print(f"{label:<26} {mem:>13.3f} {red:>12.3f} {red - mem:>13.3f} {red / mem:>5.2f}x")
    one, two = statistics.median(r["1 replica"]), statistics.median(r["2 replicas"])
    print(f"\n{'throughput (concurrency 50)':<28} {'req/s':>8}")
    print(f"{'1 replica':<28} {one:>8.0f}\n{'2 replicas':<28} {two:>8.0f}\n2 replicas give {two / one:.2f}x one's")


if __name__ == "__main__":
    main()
