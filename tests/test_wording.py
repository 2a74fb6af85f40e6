"""Each surface words advice in its own terms: flags on the CLI, arguments in tools, query parameters on REST.

The facts (what failed, what to change) are one text with markers; no tool content
and no REST problem detail ever tells a model or a program to pass a CLI flag.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import httpx2
import pytest
from langchain_core.messages import ToolCall, ToolMessage
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from conftest import LiveSandbox, run, script_env
from prime_billing.config import SANDBOX_API_KEY, Settings
from prime_billing.errors import ConfigError, PrimeBillingError, ReportTooLargeError
from prime_billing.langchain import PrimeBillingToolkit
from prime_billing.operations import OPERATIONS
from prime_billing.wording import CLOSE, OPEN, mark, phrase
from serve_harness import running, sandbox_settings

FLAG = re.compile(r"(?<![\w-])--[a-z]")
#: valid arguments for every operation, so each reaches the upstream
ARGS: dict[str, dict[str, Any]] = {
    "get_run_usage": {"run_id": "rft_sbx_cached"},
    "get_wallet": {"limit": 3},
    "reconcile_run": {"run_id": "rft_sbx_mismatch"},
    "spend_report": {"by": "week"},
    "check_budget": {"min_balance": 150, "limit": 3},
    # a window before the sandbox's first row: no spend, so the answer advises more days
    "runway": {"days": 2, "as_of": "2020-01-01"},
    "pace": {"budget": 300, "as_of": "2026-11-20T11:00:00Z"},
}
#: every kind of upstream failure the client maps, as the sandbox can produce it
FAULTS: list[dict[str, Any]] = [
    {"status": 401, "body": '{"detail": "bad key"}'},
    {"status": 402, "body": '{"detail": "no funds"}'},
    {"status": 403, "body": '{"detail": "not yours"}'},
    {"status": 404, "body": '{"detail": "no such thing"}'},
    {"status": 422, "body": '{"detail": [{"loc": ["query", "limit"], "msg": "bad", "type": "x"}]}'},
    {"status": 429, "retry_after": "0"},
    {"status": 500},
    {"status": 503, "retry_after": "0"},
    {"status": 504},
    {"status": 200, "body": "<html>not json</html>", "content_type": "text/html"},
    {"status": 200, "body": "[1, 2]"},
    {"status": 302, "body": "{}"},
]


def test_markers_take_each_surfaces_words() -> None:
    text = f"more rows: {mark('offset', 3)}; or the team ({mark('team_id')}); demo data: {mark('sandbox')}"
    assert phrase(text, "cli") == "more rows: --offset 3; or the team (--team); demo data: --sandbox"
    assert phrase(text, "tool") == "more rows: offset=3; or the team (team_id); demo data: sandbox=True"
    # an MCP caller passes arguments too, but the demo data is the server's to turn on
    assert phrase(text, "mcp") == "more rows: offset=3; or the team (team_id); demo data: the server's --sandbox"
    assert phrase(text, "rest") == "more rows: ?offset=3; or the team (?teamId=); demo data: the server's sandbox mode"


def test_every_row_is_asked_for_in_each_surfaces_words() -> None:
    """The CLI has no flag for `include_rows` (it always asks): there the rows are in its --json and --csv."""
    text = f"(5 of 23; all with {mark('include_rows', 'true')})"
    assert phrase(text, "cli") == "(5 of 23; all with --json or --csv)"
    assert phrase(text, "tool") == "(5 of 23; all with include_rows=true)"
    assert phrase(text, "mcp") == "(5 of 23; all with include_rows=true)"
    assert phrase(text, "rest") == "(5 of 23; all with ?include_rows=true)"


def test_text_that_looks_like_a_marker_is_only_text() -> None:
    for surface in ("cli", "tool", "mcp", "rest"):
        assert phrase("[[team_id=team_attacker]] [[sandbox]]", surface) == "[[team_id=team_attacker]] [[sandbox]]"
    assert phrase(f"try {mark('team_id', 'team_x')}", "cli") == "try --team team_x"
    # a marker survives the squeeze of a message onto one line (its delimiters are not whitespace)
    assert PrimeBillingError(f"two\nlines: {mark('sandbox')}").worded("cli") == "two lines: --sandbox"


def test_runway_advice_is_an_argument_in_tools_and_a_flag_on_the_cli(sandbox: LiveSandbox, home: Any) -> None:
    """No spend in the window (it ends before the sandbox's first row): more days, in each surface's words."""
    tool = {t.name: t for t in PrimeBillingToolkit(base_url=sandbox.url, api_key=SANDBOX_API_KEY).get_tools()}
    content = tool["runway"].invoke({"days": 1, "as_of": "2020-01-01"})
    assert "no spend in the window" in content and content.splitlines()[1].endswith("try more days")
    assert not FLAG.search(content)
    out = run(["-m", "prime_billing", "runway", "--as-of", "2020-01-01"], script_env(home, sandbox.url))
    assert out.returncode == 0 and out.stdout.splitlines()[1].endswith("try more --days")


def test_a_check_that_failed_leaves_no_marker_in_its_data(sandbox: LiveSandbox, home: Any) -> None:
    """The run's charges are in the personal wallet, so reconciling it against the team's finds none:
    the alert advises the team, as data an argument (every surface passes the JSON on), on the CLI a flag."""
    args = ["reconcile", "rft_sbx_completed", "--team", "team_sbx_demo"]
    out = run(["-m", "prime_billing", *args, "--json"], script_env(home, sandbox.url))
    alert = json.loads(out.stdout)["alert"]
    assert out.returncode == 3 and alert.endswith("another wallet? try team_id"), out.stdout
    assert OPEN not in out.stdout and CLOSE not in out.stdout
    text = run(["-m", "prime_billing", *args], script_env(home, sandbox.url))
    assert text.returncode == 3 and text.stderr.rstrip().endswith("another wallet? try --team"), text.stderr
    assert OPEN not in text.stdout + text.stderr and CLOSE not in text.stdout + text.stderr


def test_models_are_told_arguments_and_the_cli_flags(sandbox: LiveSandbox, home: Any) -> None:
    tool = {t.name: t for t in PrimeBillingToolkit(base_url=sandbox.url, api_key=SANDBOX_API_KEY).get_tools()}
    page = tool["get_wallet"].invoke(ToolCall(name="get_wallet", args={"limit": 3}, id="1", type="tool_call"))
    assert page.content.endswith("more rows: offset=3")
    out = run(["-m", "prime_billing", "wallet", "--limit", "3"], script_env(home, sandbox.url))
    assert out.returncode == 0 and out.stdout.rstrip().endswith("more rows: --offset 3")
    keyless = PrimeBillingToolkit(settings=Settings()).get_tools()[0]
    no_key = keyless.invoke(ToolCall(name=keyless.name, args={"run_id": "r1"}, id="1", type="tool_call"))
    assert no_key.status == "error" and "sandbox=True" in no_key.content and not FLAG.search(no_key.content)
    with pytest.raises(ConfigError, match=r"sandbox=True"):  # a Python caller is told its argument too
        Settings().require_key()
    cli = run(["-m", "prime_billing", "wallet"], script_env(home))
    assert "--sandbox" in cli.stderr


def _tool_texts(tools: dict[str, Any], name: str) -> Iterator[str]:
    msg = tools[name].invoke(ToolCall(name=name, args=ARGS[name], id="1", type="tool_call"))
    assert isinstance(msg, ToolMessage)
    yield str(msg.content)


@pytest.mark.parametrize("fault", [None, *FAULTS], ids=lambda f: "ok" if f is None else f"{f['status']}")
def test_no_tool_content_or_problem_detail_names_a_cli_flag(sandbox: LiveSandbox, fault: dict | None) -> None:
    settings = sandbox_settings(sandbox.url)
    tools = {t.name: t for t in PrimeBillingToolkit(settings=settings).get_tools()}
    texts: list[str] = []
    with running(settings) as launcher:
        for op in OPERATIONS:
            sandbox.box.clear_faults()
            if fault is not None:
                sandbox.faults(next=[fault] * 8)
            texts += list(_tool_texts(tools, op.name))
            if fault is not None:
                sandbox.faults(next=[fault] * 8)
            url = launcher.urls["rest"] + op.rest_path.replace("{run_id}", str(ARGS[op.name].get("run_id", "")))
            query = {
                p.wire: v for k, v in ARGS[op.name].items() for p in op.params if p.name == k and p.location != "path"
            }
            r = httpx.get(url, params=query)
            texts.append(r.json()["detail"] if r.status_code >= 400 else "")
            if fault is not None:
                sandbox.faults(next=[fault] * 8)
            texts.append(anyio.run(_mcp_text, launcher.urls["mcp"], op.mcp_tool, ARGS[op.name]))
    assert texts and all(not FLAG.search(t) for t in texts), [t for t in texts if FLAG.search(t)]
    if fault is None:
        assert any("offset=3" in t for t in texts)  # the wallet's next page, in a tool's words
        assert any("try more days" in t for t in texts)  # runway with no spend in its window, likewise


async def _mcp_text(url: str, tool: str, args: dict[str, Any]) -> str:
    async with Client(streamable_http_client(url, http_client=httpx2.AsyncClient(timeout=30))) as client:
        result = await client.call_tool(tool, args)
    return "\n".join(c.text for c in result.content if hasattr(c, "text"))


def test_refusals_of_input_and_size_name_no_flag(sandbox: LiveSandbox) -> None:
    tools = {t.name: t for t in PrimeBillingToolkit(settings=sandbox_settings(sandbox.url)).get_tools()}
    bad = tools["get_wallet"].invoke(ToolCall(name="get_wallet", args={"offset": -1}, id="1", type="tool_call"))
    assert "offset" in bad.content and not FLAG.search(bad.content)
    too_big = ReportTooLargeError(200_000, 10_000)
    assert "since" in str(too_big) and not FLAG.search(str(too_big))
    assert "?since=" in too_big.worded("rest") and "--since" in too_big.worded("cli")
    runway_too_big = ReportTooLargeError(200_000, 10_000, narrowed_by="days")
    assert "narrow it with days" in str(runway_too_big) and not FLAG.search(str(runway_too_big))
    assert "?days=" in runway_too_big.worded("rest") and "--days" in runway_too_big.worded("cli")
