"""Which HTTP client the launcher uses upstream: p50 of one kept-alive GET, side by side.

The launcher pays its upstream client's cost on every request it forwards, so
the client is chosen by this table. Each client asks a loopback upstream (a
uvicorn app answering a fixed 20-row wallet body, in its own process) for the
same path; rounds are interleaved so drift hits all alike. Clients whose
package is not installed are skipped (`pip install httpx-aiohttp pyreqwest`
to see all of them).

    python benchmarks/bench_upstream_clients.py [--requests 2000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PATH = "/api/v1/billing/wallet?limit=20&offset=0"


def run_upstream() -> None:
    """A fast upstream, so the table shows the clients rather than the server."""
    import socket

    import uvicorn

    sys.path.insert(0, str(ROOT / "skill"))
    from prime_billing.sandbox import Sandbox

    body = Sandbox().dispatch("GET", PATH, {"authorization": "Bearer sbx-demo-key"}).body
    assert isinstance(body, bytes)

    async def app(scope, receive, send):  # type: ignore[no-untyped-def]
        if scope["type"] != "http":
            return
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})

    sock = socket.create_server(("127.0.0.1", 0))
    print(f"upstream on http://127.0.0.1:{sock.getsockname()[1]}", flush=True)
    uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False)).run(sockets=[sock])


Get = Callable[[], Awaitable[bytes]]


async def clients(url: str) -> dict[str, tuple[Get, Callable[[], Awaitable[None]]]]:
    made: dict[str, tuple[Get, Callable[[], Awaitable[None]]]] = {}
    import httpx

    hx = httpx.AsyncClient()

    async def hx_get() -> bytes:
        return (await hx.get(url)).content

    made["httpx"] = (hx_get, hx.aclose)
    try:
        from httpx_aiohttp import AiohttpTransport

        hxa = httpx.AsyncClient(transport=AiohttpTransport())

        async def hxa_get() -> bytes:
            return (await hxa.get(url)).content

        made["httpx + aiohttp transport"] = (hxa_get, hxa.aclose)
    except ImportError:
        pass
    import aiohttp

    session = aiohttp.ClientSession(trust_env=True)

    async def aio_get() -> bytes:
        async with session.get(url, allow_redirects=False) as r:
            return await r.read()

    made["aiohttp (trust_env)"] = (aio_get, session.close)
    plain = aiohttp.ClientSession(auto_decompress=False, cookie_jar=aiohttp.DummyCookieJar())

    async def plain_get() -> bytes:
        async with plain.get(url, allow_redirects=False) as r:
            return await r.read()

    made["aiohttp"] = (plain_get, plain.close)
    try:
        from pyreqwest.client import ClientBuilder

        rq = ClientBuilder().build()

        async def rq_get() -> bytes:
            r = await rq.get(url).build().send()
            return bytes(await r.bytes())

        made["pyreqwest"] = (rq_get, rq.close)
    except ImportError:
        pass
    return made


async def bench(url: str, n: int, rounds: int) -> dict[str, list[float]]:
    made = await clients(url)
    lat: dict[str, list[float]] = {name: [] for name in made}
    expected = json.loads(await made["httpx"][0]())
    for name, (get, _) in made.items():  # warm up, and check every client reads the same body
        for _ in range(200):
            body = await get()
        assert json.loads(body) == expected, name
    for _ in range(rounds):
        for name, (get, _) in made.items():
            for _ in range(n // rounds):
                t = time.perf_counter()
                await get()
                lat[name].append((time.perf_counter() - t) * 1000)
    for _, close in made.values():
        await close()
    return lat


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="GETs per client")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--upstream", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.upstream:
        run_upstream()
        return
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    proc = subprocess.Popen([sys.executable, __file__, "--upstream"], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().split()[-1] + PATH
        lat = asyncio.run(bench(url, args.requests, args.rounds))
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    base = sorted(lat["httpx"])[len(lat["httpx"]) // 2]
    print(f"one kept-alive GET on loopback, {args.requests} per client, {args.rounds} interleaved rounds")
    print(f"{'client':<28} {'p50 ms':>8} {'p99 ms':>8} {'vs httpx':>9}")
    for name, values in lat.items():
        values.sort()
        p50, p99 = values[len(values) // 2], values[int(len(values) * 0.99)]
        print(f"{name:<28} {p50:>8.3f} {p99:>8.3f} {p50 / base:>8.2f}x")


if __name__ == "__main__":
    main()
