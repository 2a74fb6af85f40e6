"""The launcher's shared calls and its cache (`--cache-ttl`) are per team: a personal wallet read and a
team wallet read never answer each other, one after the other (the cache) or both at once (a call
in progress shared), on REST and on MCP. The expected wallets are the upstream's own bodies."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable
from typing import Any

import anyio
import httpx
import httpx2
from mcp import Client as MCPClient
from mcp.client.streamable_http import streamable_http_client

from conftest import LiveSandbox, until, upstream_body
from prime_billing.serve.runner import Launcher
from serve_harness import running, sandbox_settings

TEAM = "team_sbx_demo"
REST_WALLET = "/v1/api/v1/billing/wallet"
WALLET_TOOL = "prime-intellect-getwallet"


def wallets(sandbox: LiveSandbox) -> tuple[dict[str, Any], dict[str, Any]]:
    """The personal and the team wallet as the upstream answers them (after the test's own calls were counted)."""
    personal = upstream_body(sandbox, "/api/v1/billing/wallet")
    team = upstream_body(sandbox, "/api/v1/billing/wallet", teamId=TEAM)
    assert personal["wallet_id"] != team["wallet_id"] and team["team_id"] == TEAM
    return personal, team


def both_held(launcher: Launcher, sandbox: LiveSandbox) -> Callable[[], bool]:
    """Both callers wait on the launcher and both their upstream calls are held at the gate: two calls, not one."""
    assert launcher.gateway is not None
    gateway = launcher.gateway
    return lambda: gateway.waiting == 2 and sandbox.box.inflight == 2


def test_rest_cache_keeps_the_personal_and_the_team_wallet_apart(sandbox: LiveSandbox) -> None:
    with running(sandbox_settings(sandbox.url), cache_ttl=60) as launcher:
        rest = launcher.urls["rest"] + REST_WALLET
        personal = httpx.get(rest).json()
        team = httpx.get(rest, params={"teamId": TEAM}).json()
        again = httpx.get(rest, params={"teamId": TEAM}).json()  # the cache does answer: same team
    assert sandbox.requests() == 2
    assert (personal, team) == wallets(sandbox) and again == team


def test_rest_calls_in_progress_are_not_shared_across_teams(sandbox: LiveSandbox) -> None:
    with (
        running(sandbox_settings(sandbox.url), cache_ttl=60) as launcher,
        concurrent.futures.ThreadPoolExecutor(2) as pool,
    ):
        rest = launcher.urls["rest"] + REST_WALLET
        sandbox.faults(hold=True)
        try:
            asks = [pool.submit(httpx.get, rest, timeout=30), pool.submit(httpx.get, rest, params={"teamId": TEAM})]
            until(both_held(launcher, sandbox), "the personal and the team read both held upstream")
        finally:
            sandbox.box.release()
        personal, team = (ask.result().json() for ask in asks)
    assert sandbox.requests() == 2
    assert (personal, team) == wallets(sandbox)


def mcp_wallets(sandbox: LiveSandbox, asks: list[dict[str, Any]], *, at_once: bool) -> list[dict[str, Any]]:
    """The wallets `asks` name, read through the official MCP client one after the other, or all at
    once, held at the gate until both calls are in."""

    async def go() -> list[dict[str, Any]]:
        with running(sandbox_settings(sandbox.url), cache_ttl=60) as launcher:
            http = httpx2.AsyncClient(timeout=30)
            async with MCPClient(streamable_http_client(launcher.urls["mcp"], http_client=http)) as client:
                answers: list[dict[str, Any]] = [{}] * len(asks)

                async def read(i: int) -> None:
                    result = await client.call_tool(WALLET_TOOL, asks[i])
                    assert not result.is_error, result.content
                    answers[i] = result.structured_content or {}

                if not at_once:
                    for i in range(len(asks)):
                        await read(i)
                    return answers
                held = both_held(launcher, sandbox)
                sandbox.faults(hold=True)
                try:
                    async with anyio.create_task_group() as group:
                        for i in range(len(asks)):
                            group.start_soon(read, i)
                        with anyio.fail_after(10):  # only stops a broken test from hanging
                            while not held():
                                await anyio.sleep(0.005)
                        sandbox.box.release()
                finally:
                    sandbox.box.release()
                return answers

    return anyio.run(go)


def test_mcp_cache_keeps_the_personal_and_the_team_wallet_apart(sandbox: LiveSandbox) -> None:
    answers = mcp_wallets(sandbox, [{}, {"team_id": TEAM}, {"team_id": TEAM}], at_once=False)
    assert sandbox.requests() == 2  # the third read, the team's again, came from the cache
    personal, team = wallets(sandbox)
    assert answers == [personal, team, team]


def test_mcp_calls_in_progress_are_not_shared_across_teams(sandbox: LiveSandbox) -> None:
    answers = mcp_wallets(sandbox, [{}, {"team_id": TEAM}], at_once=True)
    assert sandbox.requests() == 2
    assert answers == list(wallets(sandbox))
