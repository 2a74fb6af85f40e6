"""Latency and throughput of the REST adapter, against a plain forwarding baseline.

One run, everything on 127.0.0.1, each server in its own process: the sandbox
(the upstream), the adapter (`prime-billing serve --only rest`), and a baseline
written here: a Starlette route that forwards with `httpx.AsyncClient`, under
the same uvicorn. The load generator calls each of them, sequentially and with
50 concurrent callers, rounds interleaved so drift hits all alike.

"Added" is a target's p50 minus the direct p50: what the hop costs. Goal: the
adapter (Starlette's router, the guard and the observer in front of every route) adds at most half
of what the baseline adds. At concurrency 50 each
caller asks for its own page (distinct queries), so the adapter's coalescing
does not flatter it; one more row shows identical queries, where it does.

    python benchmarks/bench_rest.py [--seq 300] [--conc-requests 1500] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KEY = "sbx-demo-key"
UPSTREAM_PATH = "/api/v1/billing/wallet"
ADAPTER_PATH = "/v1/api/v1/billing/wallet"


# --------------------------------------------------------------------------- baseline server


def baseline_app(upstream: str):  # type: ignore[no-untyped-def]
    """The plain way: a Starlette route forwarding with httpx.AsyncClient."""
    import httpx
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    client = httpx.AsyncClient(base_url=upstream, headers={"Authorization": f"Bearer {KEY}"})

    async def wallet(request: Request) -> Response:
        r = await client.get(UPSTREAM_PATH, params=request.query_params)
        return Response(r.content, status_code=r.status_code, media_type="application/json")

    return Starlette(routes=[Route(ADAPTER_PATH, wallet)])


def run_baseline(upstream: str) -> None:
    import socket

    import uvicorn

    sock = socket.create_server(("127.0.0.1", 0), backlog=2048)
    print(f"baseline on http://127.0.0.1:{sock.getsockname()[1]}", flush=True)
    config = uvicorn.Config(baseline_app(upstream), log_level="warning", access_log=False, server_header=False)
    uvicorn.Server(config).run(sockets=[sock])


# --------------------------------------------------------------------------- processes


def start(args: list[str], env: dict[str, str] | None = None) -> tuple[subprocess.Popen[str], str]:
    """Start a server process; its first stdout line names its URL."""
    proc = subprocess.Popen(
        [sys.executable, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
        cwd=ROOT,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    url = next((w.rstrip(",;") for w in line.split() if w.startswith("http://")), None)
    if url is None:
        proc.kill()
        raise SystemExit(f"could not start {args}: {line!r}")
    return proc, url.removesuffix("/mcp")


@dataclass
class Servers:
    """The sandbox and the launcher, each in a process of its own; `start` adds more."""

    env: dict[str, str]
    upstream: str
    launcher: subprocess.Popen[str]
    url: str
    procs: list[subprocess.Popen[str]] = field(default_factory=list)

    def start(self, args: list[str]) -> str:
        proc, url = start(args, self.env)
        self.procs.append(proc)
        return url


@contextlib.contextmanager
def servers(*serve_args: str) -> Iterator[Servers]:
    """`prime-billing sandbox` and `prime-billing serve SERVE_ARGS` against it; every process
    started is stopped on the way out."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRIME_")}
    env["PYTHONPATH"] = str(ROOT / "skill")
    procs: list[subprocess.Popen[str]] = []
    try:
        sandbox, upstream = start(["-m", "prime_billing", "sandbox", "--port", "0"], env)
        procs.append(sandbox)
        launcher_env = {**env, "PRIME_API_BASE_URL": upstream, "PRIME_API_KEY": KEY, "HOME": str(ROOT / ".bench-home")}
        launcher, url = start(["-m", "prime_billing", "serve", *serve_args], launcher_env)
        procs.append(launcher)
        yield Servers(env, upstream, launcher, url, procs)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=10)


# --------------------------------------------------------------------------- load


async def measure(get: Callable[[str], object], urls: list[str], concurrency: int) -> tuple[list[float], float]:
    """Latencies (ms) of every request, and requests per second overall."""
    latencies: list[float] = []
    per_worker = len(urls) // concurrency

    async def worker(w: int) -> None:
        for i in range(per_worker):
            url = urls[w * per_worker + i]
            t = time.perf_counter()
            await get(url)  # type: ignore[misc]
            latencies.append((time.perf_counter() - t) * 1000)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    return latencies, len(latencies) / (time.perf_counter() - t0)


def load() -> str:
    """The machine's load average: the benchmarks share it with whatever else runs."""
    with open("/proc/loadavg", encoding="ascii") as f:
        return "load average " + " ".join(f.read().split()[:3])


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def bench(targets: dict[str, tuple[str, str]], seq: int, conc: int, rounds: int) -> dict[str, dict[str, list]]:
    import aiohttp

    headers = {"Authorization": f"Bearer {KEY}"}
    results: dict[str, dict[str, list]] = {
        name: {"seq": [], "seq_rps": [], "c50": [], "c50_rps": [], "c50same": [], "c50same_rps": []} for name in targets
    }
    connector = aiohttp.TCPConnector(limit=100)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:

        async def get(url: str) -> None:
            async with session.get(url) as r:
                await r.read()
                if r.status != 200:
                    raise SystemExit(f"{url} answered {r.status}")

        for base, path in targets.values():  # warm up: connections, caches
            await measure(get, [f"{base}{path}?offset={i % 50}" for i in range(200)], 50)
        for _ in range(rounds):
            for name, (base, path) in targets.items():
                r = results[name]
                lat, rps = await measure(get, [f"{base}{path}?offset=1"] * (seq // rounds), 1)
                r["seq"] += lat
                r["seq_rps"].append(rps)
                n = conc // rounds
                distinct = [f"{base}{path}?offset={(i // (n // 50))}" for i in range(n)]  # one page per caller
                lat, rps = await measure(get, distinct, 50)
                r["c50"] += lat
                r["c50_rps"].append(rps)
                lat, rps = await measure(get, [f"{base}{path}?offset=1"] * n, 50)
                r["c50same"] += lat
                r["c50same_rps"].append(rps)
    return results


def report(results: dict[str, dict[str, list]]) -> None:
    def row(label: str, key: str) -> None:
        direct = pct(results["direct"][key], 0.5)
        added = {n: pct(r[key], 0.5) - direct for n, r in results.items()}
        print(f"\n{label}")
        print(f"{'target':<10} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>8} {'added p50 ms':>13}")
        for name, r in results.items():
            extra = "" if name == "direct" else f"{added[name]:>13.3f}"
            print(
                f"{name:<10} {pct(r[key], 0.5):>8.3f} {pct(r[key], 0.99):>8.3f} "
                f"{statistics.median(r[key + '_rps']):>8.0f} {extra}"
            )
        if added["baseline"] > 0:
            print(f"adapter adds {added['adapter'] / added['baseline']:.2f}x what the baseline adds (goal <= 0.5)")

    row("sequential (1 caller)", "seq")
    row("concurrency 50, distinct queries (no coalescing)", "c50")
    row("concurrency 50, identical queries (adapter coalesces)", "c50same")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seq", type=int, default=600, help="sequential requests per target")
    parser.add_argument("--conc-requests", type=int, default=3000, help="requests per target at concurrency 50")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--baseline", metavar="UPSTREAM", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.baseline:
        run_baseline(args.baseline)
        return

    with servers("--only", "rest", "--rest-port", "0") as s:
        targets = {
            "direct": (s.upstream, UPSTREAM_PATH),
            "adapter": (s.url, ADAPTER_PATH),
            "baseline": (s.start([__file__, "--baseline", s.upstream]), ADAPTER_PATH),
        }
        print(f"upstream: sandbox on {s.upstream}; GET wallet (20 rows); {args.rounds} interleaved rounds; {load()}")
        results = asyncio.run(bench(targets, args.seq, args.conc_requests, args.rounds))
    report(results)


if __name__ == "__main__":
    main()
