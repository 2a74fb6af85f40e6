"""The launcher running for real on ephemeral loopback ports, in a background thread."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import httpx

from prime_billing.config import SANDBOX_API_KEY, Settings
from prime_billing.serve.runner import Launcher, ServeOptions


def sandbox_settings(url: str, **changes: Any) -> Settings:
    """Upstream = the loopback sandbox; no retries unless a test asks for them."""
    base = Settings(api_key=SANDBOX_API_KEY, base_url=url, max_retries=0, retry_budget=5.0, timeout=5.0)
    return replace(base, **changes)


@contextmanager
def running(settings: Settings, **options: Any) -> Iterator[Launcher]:
    opts = ServeOptions(rest_port=0, mcp_port=0, access_log=False, drain_seconds=5, **options)
    launcher = Launcher(opts, settings)
    loop = asyncio.new_event_loop()
    started = threading.Event()
    failure: list[BaseException] = []

    def main() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(launcher.start())
        except BaseException as exc:
            failure.append(exc)
            started.set()
            return
        started.set()
        loop.run_until_complete(launcher.wait())

    thread = threading.Thread(target=main, daemon=True)
    thread.start()
    started.wait(30)
    if failure:
        raise failure[0]
    try:
        yield launcher
    finally:
        loop.call_soon_threadsafe(launcher.stop)
        thread.join(30)
        loop.close()


#: what an MCP client over streamable HTTP accepts
MCP_ACCEPT = {"Accept": "application/json, text/event-stream"}


def tool_call(client: httpx.Client, url: str, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """One MCP `tools/call` over stateless streamable HTTP (JSON answers): the call's result."""
    message = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": tool, "arguments": arguments}}
    r = client.post(url, json=message, headers=MCP_ACCEPT)
    assert r.status_code == 200, r.text
    result: dict[str, Any] = r.json()["result"]
    return result
