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
from prime_billing.serve.options import Options
from prime_billing.serve.runner import Launcher


def sandbox_settings(url: str, **changes: Any) -> Settings:
    """Upstream = the loopback sandbox; no retries unless a test asks for them."""
    base = Settings(api_key=SANDBOX_API_KEY, base_url=url, max_retries=0, retry_budget=5.0, timeout=5.0)
    return replace(base, **changes)


@contextmanager
def running(settings: Settings, **options: Any) -> Iterator[Launcher]:
    opts = Options(rest_port=0, mcp_port=0, access_log=False, drain=5, **options)
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


PROBLEM = "application/problem+json"


def assert_problem(r: httpx.Response, status: int) -> dict[str, Any]:
    """The problem+json document of an answer that must have `status`: one line of detail, the
    project's problem type, and never the key."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == PROBLEM
    body: dict[str, Any] = r.json()
    assert body["status"] == status and body["type"].startswith("urn:prime-billing:problem:")
    assert body["detail"] and "\n" not in body["detail"]
    assert SANDBOX_API_KEY not in r.text
    return body
