"""Reconcile, spend and the budget check through every surface derived from the table:
LangChain tools (sync, async, by ToolCall), the REST routes (httpx) and the MCP tools
(the official client over streamable HTTP), all against the sandbox on loopback.

The figures each answer must show are computed here, in cents, from what the
upstream itself serves (every wallet row, each run's billed total), never taken
from the project's own client: agreement with it would prove consistency, not
correctness. The rows (and the budget's wallet page) are in an answer exactly
when the call asks for them (`include_rows`)."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from langchain_core.messages import ToolMessage

from conftest import SCRIPTS, LiveSandbox, all_rows, cents, run, script_env, upstream_body
from prime_billing.config import SANDBOX_API_KEY
from prime_billing.langchain import PrimeBillingToolkit
from prime_billing.operations import BY_NAME, OPERATIONS
from prime_billing.reconcile import Reconciliation
from prime_billing.spend import SpendReport
from serve_harness import running, sandbox_settings

CALLS: list[tuple[str, dict[str, Any]]] = [
    ("reconcile_run", {"run_id": "rft_sbx_mismatch"}),
    ("reconcile_run", {"run_id": "rft_sbx_cached", "include_rows": True}),
    ("spend_report", {"since": "2026-11-19", "include_rows": True}),
    ("spend_report", {"top": 3}),
    ("spend_report", {"team_id": "team_sbx_demo", "top": 2}),
    ("check_budget", {"min_balance": 150}),
    ("check_budget", {"min_balance": 100, "limit": 2, "include_rows": True}),
]
WALLET = "/api/v1/billing/wallet"
#: the checks of CALLS, one per verdict: mismatched, reconciled, below the minimum, above it
VERDICT_CALLS = [CALLS[0], CALLS[1], CALLS[5], CALLS[6]]


def _team(args: dict[str, Any]) -> dict[str, Any]:
    return {"teamId": args["team_id"]} if args.get("team_id") else {}


def expected(live: LiveSandbox, name: str, args: dict[str, Any]) -> dict[str, Any]:
    """The figures a report must show, worked out from the upstream's own bodies (money in cents)."""
    if name == "reconcile_run":
        run_id = args["run_id"]
        billed = cents(upstream_body(live, f"/api/v1/billing/runs/{run_id}/usage")["total_cost_usd"])
        wallet_rows = all_rows(live, **_team(args))
        mine = [r for r in wallet_rows if r["resource_id"] == run_id]
        charged = sum(cents(r["amount_usd"]) for r in mine)
        want = {
            "billed": billed,
            "charged": charged,
            "difference": billed - charged,
            "reconciled": abs(billed - charged) <= 1,
            "row_count": len(mine),
            "rows_scanned": len(wallet_rows),
        }
        return {**want, "row_ids": [r["id"] for r in mine]} if args.get("include_rows") else want
    if name == "spend_report":
        rows = all_rows(live, **_team(args))
        if args.get("since"):
            start = datetime.fromisoformat(args["since"]).replace(tzinfo=UTC)
            rows = [r for r in rows if datetime.fromisoformat(r["created_at"]) >= start]
        by_type: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        by_run: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        by_other: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
        for r in rows:
            groups = [by_type[r["resource_type"]]]
            if r["resource_type"] == "rft_run":
                groups.append(by_run[r["resource_id"]])
            else:
                groups.append(by_other[(r["resource_type"], r["resource_id"] or "")])
            for group in groups:
                group[0] += cents(r["amount_usd"])
                group[1] += 1
        n = args.get("top", 5)
        top = sorted(by_run.items(), key=lambda kv: (-kv[1][0], kv[0]))[:n]
        others = sorted(by_other.items(), key=lambda kv: (-kv[1][0], kv[0]))[:n]
        want = {
            "balance": cents(upstream_body(live, WALLET, **_team(args))["balance_usd"]),
            "total": sum(cents(r["amount_usd"]) for r in rows),
            "row_count": len(rows),
            "by_type": {k: tuple(v) for k, v in by_type.items()},
            "top_runs": [(k, *v) for k, v in top],
            "run_count": len(by_run),
            "top_others": [(k[1] or None, *v) for k, v in others],
            "other_count": len(by_other),
        }
        if args.get("include_rows"):
            ids = sorted([*(("rft_run", k) for k in by_run), *by_other])  # a row naming no resource: ""
            return {**want, "row_ids": [r["id"] for r in rows], "resource_ids": ids}
        return want
    assert name == "check_budget"
    page = {k: args[k] for k in ("limit", "offset") if k in args}
    wallet = upstream_body(live, WALLET, **page, **_team(args))
    gap = cents(wallet["balance_usd"]) - cents(args["min_balance"])
    want = {"balance": cents(wallet["balance_usd"]), "ok": gap >= 0, "shortfall": max(0, -gap), "headroom": max(0, gap)}
    return {**want, "wallet": wallet} if args.get("include_rows") else want


def figures(name: str, report: dict[str, Any]) -> dict[str, Any]:
    """The same figures read off a report document, whichever surface answered it (the rows, and
    every resource id, only where the document holds them)."""
    held = {}
    if "rows" in report:
        held["row_ids"] = [r["id"] for r in report["rows"]]
    if name == "reconcile_run":
        return {
            "billed": cents(report["run_billed_usd"]),
            "charged": cents(report["wallet_charged_usd"]),
            "difference": cents(report["difference_usd"]),
            "reconciled": report["reconciled"],
            "row_count": report["row_count"],
            "rows_scanned": report["rows_scanned"],
            **held,
        }
    if name == "spend_report":
        if "by_resource_id" in report:
            held["resource_ids"] = sorted((g["resource_type"], g["key"] or "") for g in report["by_resource_id"])
        return {
            "balance": cents(report["balance_usd"]),
            "total": cents(report["total_usd"]),
            "row_count": report["row_count"],
            "by_type": {g["key"]: (cents(g["total_usd"]), g["rows"]) for g in report["by_resource_type"]},
            "top_runs": [(g["key"], cents(g["total_usd"]), g["rows"]) for g in report["top_runs"]],
            "run_count": report["run_count"],
            "top_others": [(g["key"], cents(g["total_usd"]), g["rows"]) for g in report["top_other_resources"]],
            "other_count": report["other_resource_count"],
            **held,
        }
    if "wallet" in report:
        held["wallet"] = report["wallet"]
    return {
        "balance": cents(report["balance_usd"]),
        "ok": report["ok"],
        "shortfall": cents(report["shortfall_usd"]),
        "headroom": cents(report["headroom_usd"]),
        **held,
    }


def dollars(amount_cents: int) -> str:
    """Cents as the summaries print them: `$1,234.56`."""
    return f"${amount_cents / 100:,.2f}"


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
        "runway": ("/v1/prime-billing/runway", "prime-intellect-runway"),
        "pace": ("/v1/prime-billing/pace", "prime-intellect-pace"),
    }
    assert not any(op.composite for op in contract)


def test_the_calls_reach_every_verdict(sandbox: LiveSandbox) -> None:
    """The table is worth running: both reconcile verdicts, both budget verdicts, a top-runs list."""
    want = [expected(sandbox, name, args) for name, args in CALLS]
    assert {w["reconciled"] for w in want if "reconciled" in w} == {True, False}
    assert {w["ok"] for w in want if "ok" in w} == {True, False}
    assert any(len(w.get("top_runs", [])) == 3 for w in want)
    assert any(0 < len(w.get("top_others", [])) < w.get("other_count", 0) for w in want)  # a cut list, and its count
    asked = [w for (_, args), w in zip(CALLS, want, strict=True) if args.get("include_rows")]
    assert {n for n, args in CALLS if args.get("include_rows")} == {n for n, _ in CALLS}  # each report, with rows
    assert {n for n, args in CALLS if not args.get("include_rows")} == {n for n, _ in CALLS}  # and without
    assert all(w.get("row_ids", w.get("wallet", {}).get("recent_billings")) for w in asked)  # never on zero rows


def test_langchain_tools_answer_with_summary_and_report(sandbox: LiveSandbox) -> None:
    toolkit = PrimeBillingToolkit(base_url=sandbox.url, api_key=SANDBOX_API_KEY)
    tools = {t.name: t for t in toolkit.get_tools()}
    try:
        # by args: the content a model reads
        mismatch = expected(sandbox, "reconcile_run", {"run_id": "rft_sbx_mismatch"})
        text = tools["reconcile_run"].invoke({"run_id": "rft_sbx_mismatch"})
        assert f"MISMATCH by {dollars(mismatch['difference'])}" in text and dollars(mismatch["charged"]) in text

        # by ToolCall: the report itself rides as the artifact
        for i, (name, args) in enumerate(CALLS):
            message = tools[name].invoke({"name": name, "args": args, "id": f"c{i}", "type": "tool_call"})
            assert isinstance(message, ToolMessage) and message.status == "success", message.content
            assert figures(name, message.artifact.model_dump(mode="json")) == expected(sandbox, name, args)
            assert isinstance(message.artifact, Reconciliation) == (name == "reconcile_run")

        async def go() -> ToolMessage:
            return await tools["spend_report"].ainvoke(
                {"name": "spend_report", "args": {"since": "2026-11-19"}, "id": "a1", "type": "tool_call"}
            )

        spent = asyncio.run(go())
        want = expected(sandbox, "spend_report", {"since": "2026-11-19"})
        assert isinstance(spent.artifact, SpendReport)
        assert figures("spend_report", spent.artifact.model_dump(mode="json")) == want
        assert f"{dollars(want['total'])} USD in {want['row_count']} rows" in spent.content

        budget = tools["check_budget"].invoke(
            {"name": "check_budget", "args": {"min_balance": 150}, "id": "b1", "type": "tool_call"}
        )
        short = expected(sandbox, "check_budget", {"min_balance": 150})
        assert budget.status == "success" and short["ok"] is False  # a failed check is an answer, not an error
        assert f"BELOW MINIMUM: balance {dollars(short['balance'])}" in budget.content
        assert dollars(short["shortfall"]) in budget.content

        for args, needle in [({"run_id": "rft_missing"}, "run not found (404"), ({"run_id": "../x"}, "run_id")]:
            failed = tools["reconcile_run"].invoke(
                {"name": "reconcile_run", "args": args, "id": "e1", "type": "tool_call"}
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
    assert figures(name, r.json()) == expected(sandbox, name, args)


def test_rest_refuses_bad_input_and_documents_the_routes(launcher: Any, sandbox: LiveSandbox) -> None:
    rest = launcher.urls["rest"]
    for path, params, words in [
        ("/v1/prime-billing/spend", {"since": "last week"}, "since must be a date"),
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

    async def go() -> dict[str, Any]:
        out: dict[str, Any] = {}
        async with MCPClient(launcher.urls["mcp"]) as client:
            out["listed"] = {t.name: t for t in (await client.list_tools()).tools}
            out["calls"] = [await client.call_tool(BY_NAME[name].mcp_tool, args) for name, args in CALLS]
            out["error"] = await client.call_tool("prime-intellect-reconcile", {"run_id": "rft_missing"})
        return out

    got = asyncio.run(go())
    listed = got["listed"]
    for tool in ("prime-intellect-reconcile", "prime-intellect-spend", "prime-intellect-budget"):
        assert tool in listed and listed[tool].annotations.read_only_hint is True
    assert listed["prime-intellect-budget"].input_schema["required"] == ["min_balance"]
    for (name, args), result in zip(CALLS, got["calls"], strict=True):
        assert result.is_error is not True, result.content
        assert figures(name, result.structured_content) == expected(sandbox, name, args)
        # the two servers of one launcher hand out one document, not two renderings of it
        url, query = rest_url(launcher.urls["rest"], name, args)
        assert result.structured_content == httpx.get(url, params=query).json()
    mismatch = expected(sandbox, *CALLS[0])
    assert f"MISMATCH by {dollars(mismatch['difference'])}" in got["calls"][0].content[0].text
    short = expected(sandbox, *CALLS[5])
    assert got["calls"][5].structured_content["alert"].startswith(f"balance {dollars(short['balance'])}")
    assert got["error"].is_error is True and "run not found (404" in got["error"].content[0].text


def verdict(live: LiveSandbox, name: str, args: dict[str, Any]) -> str:
    """How a check's verdict line starts, from the upstream's own figures."""
    want = expected(live, name, args)
    if name == "reconcile_run":
        return "RECONCILED (within $0.01)" if want["reconciled"] else f"MISMATCH by {dollars(abs(want['difference']))}"
    if want["ok"]:
        return f"budget OK: balance {dollars(want['balance'])} is {dollars(want['headroom'])} above"
    return f"BELOW MINIMUM: balance {dollars(want['balance'])}"


def first_line(text: str) -> str:
    """The first line of a summary after the sandbox marker, where there is one."""
    lines = text.splitlines()
    return lines[1] if lines[0].startswith("SANDBOX DATA") else lines[0]


def cli_args(name: str, args: dict[str, Any]) -> list[str]:
    """The script's arguments: the CLI has no flag for `include_rows` (it always asks for the rows)."""
    if name == "reconcile_run":
        return [str(SCRIPTS / "reconcile.py"), args["run_id"]]
    given = {k: v for k, v in args.items() if k != "include_rows"}
    return [str(SCRIPTS / "wallet.py"), *(x for k, v in given.items() for x in (f"--{k.replace('_', '-')}", str(v)))]


def test_the_verdict_comes_first_on_the_cli(sandbox: LiveSandbox, home: Path) -> None:
    starts = [verdict(sandbox, *call) for call in VERDICT_CALLS]
    assert {s.split()[0] for s in starts} == {"RECONCILED", "MISMATCH", "budget", "BELOW"}
    for call, start in zip(VERDICT_CALLS, starts, strict=True):
        out = run(cli_args(*call), script_env(home, sandbox.url))
        assert out.returncode in (0, 3) and first_line(out.stdout).startswith(start), out.stdout


def test_the_verdict_comes_first_in_the_langchain_tool_content(sandbox: LiveSandbox) -> None:
    toolkit = PrimeBillingToolkit(base_url=sandbox.url, api_key=SANDBOX_API_KEY)
    tools = {t.name: t for t in toolkit.get_tools()}
    try:
        for name, args in VERDICT_CALLS:
            content = tools[name].invoke(args)
            assert first_line(content).startswith(verdict(sandbox, name, args)), content
    finally:
        toolkit.close()


def test_the_verdict_comes_first_in_the_mcp_text_content(launcher: Any, sandbox: LiveSandbox) -> None:
    from mcp import Client as MCPClient

    async def go() -> list[Any]:
        async with MCPClient(launcher.urls["mcp"]) as client:
            return [await client.call_tool(BY_NAME[name].mcp_tool, args) for name, args in VERDICT_CALLS]

    for (name, args), result in zip(VERDICT_CALLS, asyncio.run(go()), strict=True):
        text = result.content[0].text
        assert first_line(text).startswith(verdict(sandbox, name, args)), text
