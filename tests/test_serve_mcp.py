"""The MCP server end to end with the official MCP client: streamable HTTP and stdio."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import anyio
import httpx2
from mcp import Client, ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client

from conftest import ROOT, LiveSandbox, script_env, upstream_body
from prime_billing.config import SANDBOX_API_KEY
from prime_billing.operations import OPERATIONS
from serve_harness import running, sandbox_settings

USAGE_TOOL, WALLET_TOOL = "prime-intellect-getrunusage", "prime-intellect-getwallet"


def http_client(url: str, bearer: str | None = None) -> Client:
    headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
    return Client(streamable_http_client(url, http_client=httpx2.AsyncClient(headers=headers, timeout=30)))


async def exercise(client: Client, sandbox: LiveSandbox) -> dict[str, Any]:
    """List the tools, call both, fail one: what every transport must do alike."""
    tools = {t.name: t for t in (await client.list_tools()).tools}
    usage = await client.call_tool(USAGE_TOOL, {"run_id": "rft_sbx_cached"})
    wallet = await client.call_tool(WALLET_TOOL, {})  # the contract calls it with nothing
    paged = await client.call_tool(WALLET_TOOL, {"limit": 3, "offset": 2, "team_id": "team_sbx_demo"})
    missing = await client.call_tool(USAGE_TOOL, {"run_id": "rft_nope"})
    before = sandbox.requests()
    refused = await client.call_tool(USAGE_TOOL, {"run_id": "../etc"})
    assert sandbox.requests() == before  # refused before anything left

    assert not usage.is_error and not wallet.is_error and not paged.is_error
    body = upstream_body(sandbox, "/api/v1/billing/runs/rft_sbx_cached/usage")
    assert usage.structured_content == body
    assert usage.structured_content["billing_version"] == 2 and usage.structured_content["gpu_hours"] == 41.5
    assert "rft_sbx_cached" in usage.content[0].text
    assert wallet.structured_content == upstream_body(sandbox, "/api/v1/billing/wallet")
    assert paged.structured_content == upstream_body(
        sandbox, "/api/v1/billing/wallet", limit=3, offset=2, teamId="team_sbx_demo"
    )
    for failed, words in ((missing, "not found"), (refused, "not a valid id")):
        assert failed.is_error
        text = failed.content[0].text
        assert words in text and "\n" not in text and SANDBOX_API_KEY not in text
    return tools


def test_tools_over_streamable_http(sandbox: LiveSandbox) -> None:
    async def go() -> None:
        with running(sandbox_settings(sandbox.url)) as launcher:
            async with http_client(launcher.urls["mcp"]) as client:
                tools = await exercise(client, sandbox)
        usage, wallet = tools[USAGE_TOOL], tools[WALLET_TOOL]
        for tool in (usage, wallet):
            a = tool.annotations
            assert (a.read_only_hint, a.destructive_hint, a.idempotent_hint, a.open_world_hint) == (
                True,
                False,
                True,
                True,
            )
            assert tool.output_schema["type"] == "object" and tool.description
        assert usage.input_schema["required"] == ["run_id"]
        assert wallet.input_schema["required"] == []
        assert set(wallet.input_schema["properties"]) == {"limit", "offset", "team_id"}

    anyio.run(go)


def test_tools_over_stdio(sandbox: LiveSandbox, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    env = script_env(home, sandbox.url)
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "prime_billing", "mcp", "--stdio"], env=env, cwd=ROOT
    )

    async def go() -> None:
        async with Client(params) as client:
            tools = await exercise(client, sandbox)
        assert {USAGE_TOOL, WALLET_TOOL} <= set(tools)

    anyio.run(go)


#: a valid value for every input a tool requires: each call must get as far as needing the key
REQUIRED_ARGUMENTS = {"run_id": "rft_sbx_completed", "min_balance": 50, "budget": 300}


def test_the_stdio_server_starts_without_a_key_and_each_call_says_what_to_set(home: Path) -> None:
    """As Claude Desktop launches it on a machine with no key yet: an empty HOME, no PRIME_* variable.
    The server connects and lists every tool; each call is an error of one line naming what to set,
    and the server stays up for the next one."""
    env = script_env(home)
    assert not [k for k in env if k.startswith("PRIME_") and not k.startswith("PRIME_BILLING_")]
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "prime_billing", "mcp", "--stdio"], env=env, cwd=ROOT
    )

    async def go() -> tuple[list[str], dict[str, Any], list[str]]:
        async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            listed = [t.name for t in (await session.list_tools()).tools]
            answers = {}
            for op in OPERATIONS:
                args = {name: REQUIRED_ARGUMENTS[name] for name in op.input_schema().get("required", [])}
                answers[op.mcp_tool] = await session.call_tool(op.mcp_tool, args)
            again = [t.name for t in (await session.list_tools()).tools]
        return listed, answers, again

    listed, answers, again = anyio.run(go)
    assert listed == again == [op.mcp_tool for op in OPERATIONS]
    for tool, answer in answers.items():
        assert answer.is_error, tool
        (text,) = [c.text for c in answer.content]
        assert "\n" not in text, tool
        assert text.startswith("no Prime API key: set PRIME_API_KEY or run `prime login`"), (tool, text)
        # the caller cannot pass sandbox=True to a tool: the demo data is the server's own flag
        assert "(try the server's --sandbox for demo data)" in text and "sandbox=True" not in text, (tool, text)


def test_the_readme_gives_one_complete_claude_desktop_snippet() -> None:
    """Pasted into claude_desktop_config.json as it is, it is a whole file: the `mcpServers` wrapper,
    the stdio command the README shows, and the key in `env`. No second form elsewhere."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```json\n(.*?)```", readme, flags=re.S)
    snippets = [json.loads(b) for b in blocks if "mcpServers" in b]
    assert len(snippets) == 1 and readme.count("mcpServers") == 2  # the block, and the sentence pointing to it
    assert readme.count('"command"') == 1 and readme.count("claude_desktop_config.json") == 1
    (server,) = snippets[0]["mcpServers"].values()
    assert set(server) == {"command", "args", "env"} and list(server["env"]) == ["PRIME_API_KEY"]
    # the snippet names the clone by its absolute path, which the README's commands run from
    command = " ".join([server["command"], *server["args"]]).replace("/path/to/prime-billing/", "")
    shown = {
        line.replace("'", "")
        for block in re.findall(r"```\n(.*?)```", readme, flags=re.S)
        for line in block.splitlines()
    }
    assert command in shown  # the stdio command the README gives, as a client launches it


def test_passthrough_over_mcp_uses_the_callers_key(sandbox: LiveSandbox) -> None:
    async def go() -> None:
        with running(sandbox_settings(sandbox.url, api_key=None), auth="passthrough") as launcher:
            async with http_client(launcher.urls["mcp"], SANDBOX_API_KEY) as client:
                ok = await client.call_tool(WALLET_TOOL, {})
            async with http_client(launcher.urls["mcp"], "not-my-key") as client:
                refused = await client.call_tool(WALLET_TOOL, {})
        assert not ok.is_error and ok.structured_content["wallet_id"] == "wal_sbx_personal"
        assert refused.is_error and "401" in refused.content[0].text
        assert "not-my-key" not in refused.content[0].text

    anyio.run(go)
