"""Reconcile, spend and the budget check through every surface derived from the table:
LangChain tools (sync, async, by ToolCall), the REST routes (httpx) and the MCP tools
(the official client over streamable HTTP), all against the sandbox on loopback; each
answer equals what the client itself returns."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from langchain_core.messages import ToolMessage

from conftest import LiveSandbox
from prime_billing.client import Client
from prime_billing.config import SANDBOX_API_KEY
from prime_billing.langchain import PrimeBillingToolkit
from prime_billing.operations import BY_NAME, OPERATIONS
from prime_billing.reconcile import Reconciliation
from prime_billing.spend import SpendReport
from serve_harness import running, sandbox_settings

CALLS: list[tuple[str, dict[str, Any]]] = [
    ("reconcile_run", {"run_id": "rft_sbx_mismatch"}),
    ("reconcile_run", {"run_id": "rft_sbx_cached"}),
    ("spend_report", {"since": "2026-11-19"}),
    ("spend_report", {"team_id": "team_sbx_demo", "top": 2}),
    ("check_budget", {"min_balance": 150}),
    ("check_budget", {"min_balance": 100, "limit": 2}),
]


def direct(live: LiveSandbox, name: str, args: dict[str, Any]) -> dict[str, Any]:
    with Client(base_url=live.url, api_key=SANDBOX_API_KEY) as client:
        return client.call(name, args).raw


def rest_url(base: str, name: str, args: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    op = BY_NAME[name]
    path, query = op.rest_path, {}
    for p in op.params:
        if p.name in args:
            if p.location == "path":
                path = path.replace("{" + p.name + "}", str(args[p.name]))
            else:
                query[p.wire] = args[p.name]
    return base + path, query


@pytest.fixture
def launcher(sandbox: LiveSandbox) -> Iterator[Any]:
    with running(sandbox_settings(sandbox.url)) as launched:
        yield launched


def test_the_new_operations_sit_beside_the_contract_ones() -> None:
    contract = [op for op in OPERATIONS if op.in_contract]
    assert [(op.rest_path, op.mcp_tool) for op in contract] == [
        ("/v1/api/v1/billing/runs/{run_id}/usage", "prime-intellect-getrunusage"),
        ("/v1/api/v1/billing/wallet", "prime-intellect-getwallet"),
    ]
    extra = {op.name: (op.rest_path, op.mcp_tool) for op in OPERATIONS if op.composite}
    assert extra == {
        "reconcile_run": ("/v1/prime-billing/runs/{run_id}/reconcile", "prime-intellect-reconcile"),
        "spend_report": ("/v1/prime-billing/spend", "prime-intellect-spend"),
        "check_budget": ("/v1/prime-billing/budget", "prime-intellect-budget"),
    }
    assert not any(op.composite for op in contract)


def test_langchain_tools_answer_with_summary_and_report(sandbox: LiveSandbox) -> None:
    toolkit = PrimeBillingToolkit(base_url=sandbox.url, api_key=SANDBOX_API_KEY)
    tools = {t.name: t for t in toolkit.get_tools()}
    try:
        # by args: the content a model reads
        text = tools["reconcile_run"].invoke({"run_id": "rft_sbx_mismatch"})
        assert "MISMATCH by $0.37" in text and "$2.13" in text
        # by ToolCall: the report itself rides as the artifact
        message = tools["reconcile_run"].invoke(
            {"name": "reconcile_run", "args": {"run_id": "rft_sbx_mismatch"}, "id": "c1", "type": "tool_call"}
        )
        assert isinstance(message, ToolMessage) and message.status == "success"
        assert isinstance(message.artifact, Reconciliation)
        assert message.artifact.model_dump(mode="json") == direct(
            sandbox, "reconcile_run", {"run_id": "rft_sbx_mismatch"}
        )

        async def go() -> ToolMessage:
            return await tools["spend_report"].ainvoke(
                {"name": "spend_report", "args": {"since": "2026-11-19"}, "id": "c2", "type": "tool_call"}
            )

        spent = asyncio.run(go())
        assert isinstance(spent.artifact, SpendReport) and spent.artifact.total_usd == 56.09
        assert "$56.09 USD in 12 rows" in spent.content

        budget = tools["check_budget"].invoke(
            {"name": "check_budget", "args": {"min_balance": 150}, "id": "c3", "type": "tool_call"}
        )
        assert budget.status == "success"  # a failed check is an answer, not an error
        assert budget.artifact.ok is False and budget.artifact.shortfall_usd == 26.55
        assert "BELOW MINIMUM" in budget.content

        for args, needle in [({"run_id": "rft_missing"}, "run not found (404"), ({"run_id": "../x"}, "run_id")]:
            failed = tools["reconcile_run"].invoke(
                {"name": "reconcile_run", "args": args, "id": "c4", "type": "tool_call"}
            )
            assert failed.status == "error" and needle in failed.content
    finally:
        toolkit.close()


@pytest.mark.parametrize(("name", "args"), CALLS)
def test_rest_routes_answer_the_report(launcher: Any, sandbox: LiveSandbox, name: str, args: dict[str, Any]) -> None:
    url, query = rest_url(launcher.urls["rest"], name, args)
    r = httpx.get(url, params=query)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    assert r.json() == direct(sandbox, name, args)


def test_rest_refuses_bad_input_and_documents_the_routes(launcher: Any, sandbox: LiveSandbox) -> None:
    rest = launcher.urls["rest"]
    for path, params, words in [
        ("/v1/prime-billing/spend", {"since": "yesterday"}, "since must be a date"),
        ("/v1/prime-billing/budget", {}, "min_balance is required"),
        ("/v1/prime-billing/budget", {"min_balance": "-3"}, "min_balance must be >= 0"),
    ]:
        r = httpx.get(rest + path, params=params)
        assert r.status_code == 422 and words in r.json()["detail"]
    assert sandbox.requests() == 0
    missing = httpx.get(rest + "/v1/prime-billing/runs/rft_missing/reconcile")
    assert missing.status_code == 404 and "run not found" in missing.json()["detail"]
    paths = httpx.get(rest + "/openapi.json").json()["paths"]
    for op in OPERATIONS:
        assert op.rest_path in paths


def test_mcp_tools_return_the_report_as_structured_content(launcher: Any, sandbox: LiveSandbox) -> None:
    from mcp import Client as MCPClient

    expected = {name: direct(sandbox, name, args) for name, args in CALLS[:1] + CALLS[2:3] + CALLS[4:5]}

    async def go() -> dict[str, Any]:
        out: dict[str, Any] = {}
        async with MCPClient(launcher.urls["mcp"]) as client:
            listed = {t.name: t for t in (await client.list_tools()).tools}
            out["listed"] = listed
            for name, args in (CALLS[0], CALLS[2], CALLS[4]):
                out[name] = await client.call_tool(BY_NAME[name].mcp_tool, args)
            out["error"] = await client.call_tool("prime-intellect-reconcile", {"run_id": "rft_missing"})
        return out

    got = asyncio.run(go())
    listed = got["listed"]
    for tool in ("prime-intellect-reconcile", "prime-intellect-spend", "prime-intellect-budget"):
        assert tool in listed and listed[tool].annotations.read_only_hint is True
    assert listed["prime-intellect-budget"].input_schema["required"] == ["min_balance"]
    for name, want in expected.items():
        result = got[name]
        assert result.is_error is not True
        assert result.structured_content == want
    assert "MISMATCH by $0.37" in got["reconcile_run"].content[0].text
    assert got["check_budget"].structured_content["alert"].startswith("balance $123.45")
    assert got["error"].is_error is True and "run not found (404" in got["error"].content[0].text
