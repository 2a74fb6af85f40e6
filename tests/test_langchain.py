"""LangChain tools invoked for real (by args and by ToolCall, sync and async) against the loopback sandbox."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from langchain_core.messages import ToolCall, ToolMessage
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import ValidationError

from conftest import ROOT, SCRIPTS, LiveSandbox, run, script_env
from prime_billing import errors
from prime_billing.client import AsyncClient, Client
from prime_billing.config import SANDBOX_API_KEY, Settings
from prime_billing.langchain import TOOL_NAME, PrimeBillingTool, PrimeBillingToolkit
from prime_billing.models import RunUsage, Wallet
from prime_billing.operations import OPERATIONS, Operation
from prime_billing.sandbox import NOW_ENV

#: values for required parameters the sandbox answers; a new operation's required
#: parameter with no entry here and no numeric minimum gets its example skipped
EXAMPLE_VALUES: dict[str, Any] = {"run_id": "rft_sbx_running", "min_balance": 100.0}
#: optional parameters given anyway: a default of "now" would make two calls' answers differ
FIXED_VALUES: dict[str, Any] = {"as_of": "2026-11-21"}


def example_args(op: Operation) -> dict[str, Any] | None:
    """Arguments the sandbox answers successfully, derived from the table."""
    schema = op.input_schema()
    args: dict[str, Any] = {k: v for k, v in FIXED_VALUES.items() if k in schema["properties"]}
    for name in schema["required"]:
        minimum = schema["properties"][name].get("minimum")
        if name in EXAMPLE_VALUES:
            args[name] = EXAMPLE_VALUES[name]
        elif schema["properties"][name].get("type") in ("integer", "number") and minimum is not None:
            args[name] = minimum
        else:
            return None
    return args


def examples() -> list[Any]:
    out = []
    for op in OPERATIONS:
        args = example_args(op)
        mark = (
            pytest.mark.skip(reason=f"no example value for a required parameter of {op.name}") if args is None else ()
        )
        out.append(pytest.param(op, args, id=op.name, marks=mark))
    return out


def call(name: str, args: dict[str, Any], call_id: str = "call_1") -> ToolCall:
    return ToolCall(name=name, args=args, id=call_id, type="tool_call")


def by_name(tools: list[BaseTool]) -> dict[str, BaseTool]:
    return {t.name: t for t in tools}


def unwrap(schema: dict[str, Any]) -> dict[str, Any]:
    """An optional field's JSON schema without its `null` alternative, if it shows one."""
    alts = schema.get("anyOf", [])
    if {"type": "null"} not in alts:
        return schema
    for alt in alts:
        if alt.get("type") != "null":
            return {**alt, **{k: v for k, v in schema.items() if k != "anyOf"}}
    return schema


@pytest.fixture
def clean_env(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No PRIME_* variable and no ~/.prime/config.json from the machine running the tests."""
    for name in [n for n in os.environ if n.startswith("PRIME_") and n != NOW_ENV]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(home))


@pytest.fixture
def toolkit(sandbox: LiveSandbox, clean_env: None) -> Iterator[PrimeBillingToolkit]:
    kit = PrimeBillingToolkit(base_url=sandbox.url, api_key=SANDBOX_API_KEY)
    yield kit
    kit.close()


@pytest.fixture
def tools(toolkit: PrimeBillingToolkit) -> dict[str, BaseTool]:
    return by_name(toolkit.get_tools())


# --------------------------------------------------------------------------- derived from the table


def test_every_operation_is_a_tool_with_a_schema_from_its_params(toolkit: PrimeBillingToolkit) -> None:
    tools = toolkit.get_tools()
    assert [t.name for t in tools] == [op.name for op in OPERATIONS]
    for op, tool in zip(OPERATIONS, tools, strict=True):
        assert TOOL_NAME.fullmatch(tool.name)
        assert tool.response_format == "content_and_artifact"
        spec = convert_to_openai_tool(tool)
        fn = spec["function"]
        assert spec["type"] == "function" and fn["name"] == op.name
        assert fn["description"].startswith(op.description)
        params = fn["parameters"]
        assert list(params["properties"]) == [p.name for p in op.params]
        assert sorted(params.get("required", [])) == sorted(p.name for p in op.params if p.required)
        expected = op.input_schema()["properties"]
        for p in op.params:
            got = unwrap(params["properties"][p.name])
            for key in ("type", "description", "minimum", "maximum", "pattern", "not", "maxLength", "anyOf", "default"):
                assert got.get(key) == expected[p.name].get(key), (op.name, p.name, key)


def test_core_tools_schemas_exactly(tools: dict[str, BaseTool]) -> None:
    usage = convert_to_openai_tool(tools["get_run_usage"])["function"]
    assert usage["parameters"]["required"] == ["run_id"]
    run_id = usage["parameters"]["properties"]["run_id"]
    assert run_id["type"] == "string" and run_id["maxLength"] == 128 and "rft_" in run_id["description"]
    assert "cost" in usage["description"] and "RFT" in usage["description"]

    wallet = convert_to_openai_tool(tools["get_wallet"])["function"]
    assert "required" not in wallet["parameters"]
    props = {k: unwrap(v) for k, v in wallet["parameters"]["properties"].items()}
    assert props["limit"] == {
        "type": "integer",
        "minimum": 1,
        "maximum": 100,
        "default": 20,
        "description": "Rows per page, 1-100.",
    }
    assert props["offset"]["minimum"] == 0 and props["offset"]["type"] == "integer"
    assert props["team_id"]["type"] == "string" and props["team_id"]["default"] is None
    assert "balance" in wallet["description"]


def test_prefixed_names_and_names_apis_refuse(sandbox: LiveSandbox) -> None:
    kit = PrimeBillingToolkit(base_url=sandbox.url, api_key=SANDBOX_API_KEY, name_prefix="prime_")
    names = [t.name for t in kit.get_tools()]
    assert names[:2] == ["prime_get_run_usage", "prime_get_wallet"]
    assert all(TOOL_NAME.fullmatch(n) for n in names)
    for bad in ("prime billing ", "x" * 60):
        with pytest.raises(errors.InvalidInputError, match="function-calling APIs"):
            PrimeBillingTool("get_wallet", base_url=sandbox.url, name_prefix=bad)


# --------------------------------------------------------------------------- invoking, the two core operations


def test_run_usage_by_args_sync_and_async(tools: dict[str, BaseTool]) -> None:
    tool = tools["get_run_usage"]
    sync_out = tool.invoke({"run_id": "rft_sbx_running"})
    async_out = asyncio.run(tool.ainvoke({"run_id": "rft_sbx_running"}))
    # Without a ToolCall the tool returns only the content (LangChain drops the artifact).
    for content in (sync_out, async_out):
        assert isinstance(content, str)
        assert content.startswith("SANDBOX DATA")
        assert "rft_sbx_running" in content and "$17.50" in content and "9,000,000" in content
    assert sync_out == async_out


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_run_usage_by_tool_call(tools: dict[str, BaseTool], mode: str) -> None:
    tool = tools["get_run_usage"]
    tc = call("get_run_usage", {"run_id": "rft_sbx_running"}, "call_usage")
    msg = tool.invoke(tc) if mode == "sync" else asyncio.run(tool.ainvoke(tc))
    assert isinstance(msg, ToolMessage)
    assert msg.status == "success" and msg.tool_call_id == "call_usage" and msg.name == "get_run_usage"
    assert "total" in msg.content and "$17.50" in msg.content and "9,000,000 tok" in msg.content
    run = msg.artifact
    assert isinstance(run, RunUsage)
    assert run.run_id == "rft_sbx_running"
    assert run.total_cost_usd == 17.5 and run.total_tokens == 9_000_000
    assert run.costs.training_billed_usd == 12.5 and run.costs.inference_billed_usd == 5.0
    # the artifact keeps what the upstream sent, unknown fields included
    assert run.model_extra == {"sandbox": True}


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_wallet_by_tool_call(tools: dict[str, BaseTool], mode: str) -> None:
    tool = tools["get_wallet"]
    tc = call("get_wallet", {}, "call_wallet")
    msg = tool.invoke(tc) if mode == "sync" else asyncio.run(tool.ainvoke(tc))
    assert msg.status == "success" and msg.tool_call_id == "call_wallet"
    assert "balance $123.45 USD" in msg.content and "46 billing rows, showing 1-20" in msg.content
    wallet = msg.artifact
    assert isinstance(wallet, Wallet)
    assert wallet.balance_usd == 123.45 and wallet.total_billings == 46 and len(wallet.recent_billings) == 20
    assert wallet.team_id is None


def test_wallet_arguments_reach_the_upstream(tools: dict[str, BaseTool]) -> None:
    tool = tools["get_wallet"]
    page = tool.invoke(call("get_wallet", {"limit": 5, "offset": 44}))
    assert [len(page.artifact.recent_billings), page.artifact.total_billings] == [2, 46]
    assert "showing 45-46" in page.content
    team = asyncio.run(tool.ainvoke(call("get_wallet", {"team_id": "team_sbx_demo", "limit": None})))
    assert team.status == "success" and team.artifact.team_id == "team_sbx_demo"
    assert "team team_sbx_demo" in team.content


@pytest.mark.parametrize(("op", "args"), examples())
def test_each_tool_answers_what_the_client_answers(
    sandbox: LiveSandbox, tools: dict[str, BaseTool], op: Operation, args: dict[str, Any]
) -> None:
    settings = Settings(api_key=SANDBOX_API_KEY, base_url=sandbox.url)
    with Client(settings) as client:
        expected = client.call(op.name, args)
    tool = tools[op.name]
    sync_msg = tool.invoke(call(op.name, args))
    async_msg = asyncio.run(tool.ainvoke(call(op.name, args)))
    for msg in (sync_msg, async_msg):
        assert msg.status == "success"
        assert msg.content == expected.summary()
        assert isinstance(msg.artifact, op.model)
        assert msg.artifact == expected.data


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("args", "script_exit"),
    [({"run_id": "rft_does_not_exist"}, 1), ({"run_id": "../wallet"}, 2), ({"run_id": "rft_sbx_other_team"}, 1)],
)
def test_error_message_is_the_one_the_script_prints(
    sandbox: LiveSandbox, tools: dict[str, BaseTool], home: Path, args: dict[str, str], script_exit: int
) -> None:
    tool = tools["get_run_usage"]
    msg = tool.invoke(call("get_run_usage", args, "call_err"))
    assert isinstance(msg, ToolMessage)
    assert msg.status == "error" and msg.tool_call_id == "call_err" and msg.artifact is None
    done = run([str(SCRIPTS / "run_usage.py"), args["run_id"]], script_env(home, sandbox.url))
    assert done.returncode == script_exit
    assert done.stderr == f"run_usage.py: error: {msg.content}\n"
    assert "\n" not in msg.content


def test_bad_arguments_read_like_the_scripts_on_every_path(tools: dict[str, BaseTool]) -> None:
    wallet, usage = tools["get_wallet"], tools["get_run_usage"]
    cases = [
        (wallet, {"limit": 0}, "limit must be 1..100, got 0"),
        (wallet, {"limit": "many"}, "limit must be a whole number, got 'many'"),
        (wallet, {"offset": -1}, "offset must be 0..10000000, got -1"),
        (wallet, {"colour": "red"}, "get_wallet takes no parameter 'colour'; it takes limit, offset, team_id"),
        (wallet, {"team_id": "a/b"}, "team_id 'a/b' is not a valid id"),
        (usage, {}, "run_id is required"),
        (usage, {"run_id": ".."}, "run_id '..' is not a valid id"),
    ]
    for tool, args, words in cases:
        for msg in (tool.invoke(call(tool.name, args)), asyncio.run(tool.ainvoke(call(tool.name, args)))):
            assert msg.status == "error", args
            assert msg.content.startswith(words), (args, msg.content)
        # without a ToolCall the explanation comes back as the result; nothing raises
        assert tool.invoke(args).startswith(words)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_upstream_failures_become_error_messages_without_the_key(sandbox: LiveSandbox, mode: str) -> None:
    secret = "sk-live-do-not-show-0123456789"
    kit = PrimeBillingToolkit(settings=Settings(api_key=secret, base_url=sandbox.url, max_retries=0))
    usage = by_name(kit.get_tools())["get_run_usage"]
    tc = call("get_run_usage", {"run_id": "rft_sbx_running"})
    msg = usage.invoke(tc) if mode == "sync" else asyncio.run(usage.ainvoke(tc))
    assert msg.status == "error"
    assert msg.content.startswith("Prime API rejected the API key (401")
    assert "PRIME_API_KEY" in msg.content
    sandbox.faults(next=[{"status": 503}])
    ok_key = PrimeBillingToolkit(settings=Settings(api_key=SANDBOX_API_KEY, base_url=sandbox.url, max_retries=0))
    usage = by_name(ok_key.get_tools())["get_run_usage"]
    down = usage.invoke(tc) if mode == "sync" else asyncio.run(usage.ainvoke(tc))
    assert down.status == "error" and down.content == "Prime API unavailable (503): try again later"
    for text in (msg.content, repr(msg), repr(kit), repr(usage), str(kit.get_tools()), repr(kit.settings)):
        assert secret not in text


def test_missing_key_is_an_error_message_not_a_crash(sandbox: LiveSandbox, clean_env: None) -> None:
    usage = PrimeBillingTool("get_run_usage", base_url=sandbox.url)
    msg = usage.invoke(call("get_run_usage", {"run_id": "rft_sbx_running"}))
    assert msg.status == "error" and msg.content.startswith("no Prime API key: set PRIME_API_KEY")
    assert sandbox.requests() == 0


def test_callers_can_ask_for_exceptions(sandbox: LiveSandbox, clean_env: None) -> None:
    kit = PrimeBillingToolkit(base_url=sandbox.url, api_key=SANDBOX_API_KEY, handle_errors=False)
    tools = by_name(kit.get_tools())
    usage, wallet = tools["get_run_usage"], tools["get_wallet"]
    with pytest.raises(errors.NotFoundError, match=r"run not found \(404"):
        usage.invoke(call("get_run_usage", {"run_id": "rft_does_not_exist"}))
    with pytest.raises(errors.PermissionDeniedError):
        asyncio.run(usage.ainvoke({"run_id": "rft_sbx_other_team"}))
    # refused by the schema before any request: pydantic's error (a ValueError), `..` included
    with pytest.raises(ValidationError):
        wallet.invoke({"limit": 0})
    with pytest.raises(ValidationError):
        usage.invoke({"run_id": ".."})
    assert sandbox.requests() == 2
    # and the ordinary answers still come back
    assert wallet.invoke(call("get_wallet", {"limit": 1})).artifact.total_billings == 46


# --------------------------------------------------------------------------- configuration and connections


def test_no_arguments_configure_like_the_scripts(
    sandbox: LiveSandbox, clean_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PRIME_API_BASE_URL", sandbox.url + "/api/v1/")
    monkeypatch.setenv("PRIME_API_KEY", SANDBOX_API_KEY)
    monkeypatch.setenv("PRIME_TEAM_ID", "team_sbx_demo")
    kit = PrimeBillingToolkit()
    assert kit.settings.base_url == sandbox.url and kit.settings.team_id == "team_sbx_demo"
    wallet = by_name(kit.get_tools())["get_wallet"]
    msg = wallet.invoke(call("get_wallet", {}))
    assert msg.status == "success" and msg.artifact.team_id == "team_sbx_demo"
    # a standalone tool resolves the same way
    alone = PrimeBillingTool("get_run_usage")
    assert alone.invoke(call("get_run_usage", {"run_id": "rft_sbx_running"})).artifact.total_cost_usd == 17.5
    # explicit arguments win over the environment
    assert PrimeBillingToolkit(team_id="team_other").settings.team_id == "team_other"
    kit.close()


def test_in_process_sandbox_needs_no_network(clean_env: None) -> None:
    kit = PrimeBillingToolkit(sandbox=True)
    usage = by_name(kit.get_tools())["get_run_usage"]
    msg = usage.invoke(call("get_run_usage", {"run_id": "rft_sbx_running"}))
    assert msg.artifact.total_cost_usd == 17.5 and msg.content.startswith("SANDBOX DATA")


class CountingTransport(httpx.HTTPTransport):
    def __init__(self) -> None:
        super().__init__()
        self.seen = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.seen += 1
        return super().handle_request(request)


class CountingAsyncTransport(httpx.AsyncHTTPTransport):
    def __init__(self) -> None:
        super().__init__()
        self.seen = 0
        self.threads: set[int] = set()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.seen += 1
        self.threads.add(threading.get_ident())
        return await super().handle_async_request(request)


def test_shared_clients_are_used_sync_through_client_async_through_async_client(sandbox: LiveSandbox) -> None:
    settings = Settings(api_key=SANDBOX_API_KEY, base_url=sandbox.url)
    sync_t, async_t = CountingTransport(), CountingAsyncTransport()
    client = Client(settings, transport=sync_t)

    async def scenario() -> list[ToolMessage]:
        async with AsyncClient(settings, transport=async_t) as aclient:
            kit = PrimeBillingToolkit(client=client, async_client=aclient)
            tools = by_name(kit.get_tools())
            first = tools["get_run_usage"].invoke(call("get_run_usage", {"run_id": "rft_sbx_completed"}))
            second = await tools["get_wallet"].ainvoke(call("get_wallet", {"limit": 2}))
            third = await tools["get_run_usage"].ainvoke(call("get_run_usage", {"run_id": "rft_sbx_running"}))
            return [first, second, third]

    first, second, third = asyncio.run(scenario())
    client.close()
    assert first.artifact.total_cost_usd == 40.8
    assert second.artifact.balance_usd == 123.45 and third.artifact.total_tokens == 9_000_000
    # one request through the sync client; the async calls used the async client on the loop's own thread
    assert sync_t.seen == 1 and async_t.seen == 2
    assert async_t.threads == {threading.get_ident()}
    assert sandbox.requests() == 3


def test_toolkit_tools_share_one_pool_and_survive_several_event_loops(
    sandbox: LiveSandbox, toolkit: PrimeBillingToolkit
) -> None:
    usage, wallet = toolkit.get_tools()[:2]
    shared = usage._connections  # type: ignore[attr-defined]
    assert shared is wallet._connections  # type: ignore[attr-defined]

    async def ask() -> tuple[ToolMessage, Any]:
        msg = await wallet.ainvoke(call("get_wallet", {}))
        return msg, await shared.async_client()

    pools = []
    for _ in range(2):  # each asyncio.run is a new loop, with a pool of its own, closed when the loop ends
        msg, pool = asyncio.run(ask())
        assert msg.artifact.total_billings == 46
        pools.append(pool)
    assert pools[0] is not pools[1] and all(p._http.is_closed for p in pools)
    assert usage.invoke(call("get_run_usage", {"run_id": "rft_sbx_running"})).status == "success"

    async def closing() -> Any:
        await wallet.ainvoke({"limit": 1})
        pool = await shared.async_client()
        await toolkit.aclose()
        return pool

    assert asyncio.run(closing())._http.is_closed
    assert sandbox.requests() == 4


# --------------------------------------------------------------------------- the core import path stays light


def test_package_and_scripts_do_not_import_langchain(home: Path) -> None:
    probe = (
        "import runpy, sys\n"
        "import prime_billing\n"
        "from prime_billing import Client, OPERATIONS, load_settings\n"
        "from prime_billing.cli import build_parser\n"
        "build_parser()\n"
        "Client(sandbox=True).call('get_run_usage', {'run_id': 'rft_sbx_running'})\n"
        f"sys.argv = ['run_usage.py', 'rft_sbx_running', '--sandbox']\n"
        "try:\n"
        f"    runpy.run_path({str(SCRIPTS / 'run_usage.py')!r}, run_name='__main__')\n"
        "except SystemExit as done:\n"
        "    assert done.code == 0, done.code\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('langchain_core', 'langchain', 'langsmith'))\n"
        "print('HEAVY', heavy)\n"
        "import prime_billing.langchain\n"
        "print('AFTER', 'langchain_core' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], env=script_env(home), capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr
    assert "$17.50" in done.stdout
    assert "HEAVY []" in done.stdout
    assert "AFTER True" in done.stdout
