"""Latency of one MCP `tools/call` through the launcher, against the plain SDK way.

One run, everything on 127.0.0.1, each server in its own process, the same
upstream (the sandbox) for all: the launcher (`prime-billing serve --only mcp`);
a plain `MCPServer` from the official SDK with one tool forwarding through
`httpx.AsyncClient` (stateless streamable HTTP, JSON responses); and the same
SDK server answering a constant (the floor: what the SDK itself costs). The
official MCP client calls `prime-intellect-getwallet` on each, sequentially,
rounds interleaved so drift hits all alike. Goal: the launcher's p50 at most
0.8x the plain server's.

    python benchmarks/bench_mcp.py [--calls 600] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_rest import KEY, load, pct, servers

TOOL = "prime-intellect-getwallet"


def run_plain(upstream: str | None) -> None:
    """The plain way: the SDK's MCPServer, one tool; forwarding when given an upstream, else a constant."""
    import socket

    import httpx
    import uvicorn
    from mcp.server.mcpserver import MCPServer

    server = MCPServer("plain")
    client = httpx.AsyncClient(base_url=upstream or "http://unused", headers={"Authorization": f"Bearer {KEY}"})

    @server.tool(name=TOOL)
    async def wallet(limit: int = 20, offset: int = 0) -> dict:
        """Wallet balance and recent billing rows."""
        if upstream is None:
            return {"wallet_id": "wal_constant", "balance_usd": 1.0, "currency": "USD"}
        r = await client.get("/api/v1/billing/wallet", params={"limit": limit, "offset": offset})
        return r.json()

    app = server.streamable_http_app(stateless_http=True, json_response=True)
    sock = socket.create_server(("127.0.0.1", 0), backlog=2048)
    print(f"plain on http://127.0.0.1:{sock.getsockname()[1]}/mcp", flush=True)
    uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False)).run(sockets=[sock])


async def bench(targets: dict[str, str], calls: int, rounds: int) -> dict[str, list[float]]:
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    lat: dict[str, list[float]] = {name: [] for name in targets}
    async with contextlib.AsyncExitStack() as stack:
        clients = {}
        for name, url in targets.items():
            client = Client(streamable_http_client(url + "/mcp", http_client=httpx2.AsyncClient(timeout=30)))
            clients[name] = await stack.enter_async_context(client)
            for _ in range(50):  # warm up
                result = await client.call_tool(TOOL, {})
                assert not result.is_error, (name, result.content)
        for _ in range(rounds):
            for name, client in clients.items():
                for _ in range(calls // rounds):
                    t = time.perf_counter()
                    await client.call_tool(TOOL, {})
                    lat[name].append((time.perf_counter() - t) * 1000)
    return lat


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=600, help="tool calls per server")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--plain", metavar="UPSTREAM", help=argparse.SUPPRESS)
    parser.add_argument("--constant", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.plain or args.constant:
        run_plain(None if args.constant else args.plain)
        return
    with servers("--only", "mcp", "--mcp-port", "0", "--no-access-log") as s:
        targets = {
            "launcher": s.url,
            "plain SDK": s.start([__file__, "--plain", s.upstream]),
            "SDK constant": s.start([__file__, "--constant"]),
        }
        print(f"upstream: sandbox on {s.upstream}; tools/call {TOOL} {{}}; {args.rounds} interleaved rounds; {load()}")
        lat = asyncio.run(bench(targets, args.calls, args.rounds))
    print(f"{'server':<14} {'p50 ms':>8} {'p99 ms':>8}")
    for name, values in lat.items():
        print(f"{name:<14} {pct(values, 0.5):>8.3f} {pct(values, 0.99):>8.3f}")
    ratio = pct(lat["launcher"], 0.5) / pct(lat["plain SDK"], 0.5)
    print(f"launcher p50 is {ratio:.2f}x the plain SDK server's (goal <= 0.8)")


if __name__ == "__main__":
    main()
