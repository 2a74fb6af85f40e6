"""Each operation's inputs are one pydantic model: every surface shows it and words its refusals alike.

The MCP tool's `inputSchema`, the LangChain tool's JSON schema and the OpenAPI
parameters are compared field by field against each other (only presentation
is normalised: titles, a `null` alternative, wire names such as `teamId`);
changing the model changes all of them; and a bad value reads the same on the
CLI, in a LangChain tool error, in the REST 422 detail and in the MCP error.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import anyio
import httpx
import httpx2
import pytest
from langchain_core.messages import ToolCall
from langchain_core.utils.function_calling import convert_to_openai_tool
from mcp import Client as MCPClient
from mcp.client.streamable_http import streamable_http_client
from pydantic import Field

from conftest import LiveSandbox, run, script_env
from prime_billing import operations as ops
from prime_billing.cli import build_parser
from prime_billing.client import Client
from prime_billing.config import Settings
from prime_billing.errors import InvalidInputError
from prime_billing.langchain import PrimeBillingTool
from prime_billing.serve.mcp_app import tool_for
from prime_billing.serve.openapi import document
from serve_harness import running, sandbox_settings

#: what a field's schema says that must agree on every surface
RULES = (
    "type",
    "minimum",
    "maximum",
    "pattern",
    "maxLength",
    "not",
    "anyOf",
    "enum",
    "default",
    "description",
    "items",
    "maxItems",
)


def _plain(schema: dict[str, Any]) -> dict[str, Any]:
    """A field's schema without presentation: no title, no `null` alternative for an optional one."""
    alts = schema.get("anyOf", [])
    if {"type": "null"} in alts:
        (alt,) = [a for a in alts if a != {"type": "null"}]
        schema = {**alt, **{k: v for k, v in schema.items() if k != "anyOf"}}
    return {k: v for k, v in schema.items() if k in RULES}


def mcp_inputs(op: ops.Operation) -> dict[str, tuple[dict[str, Any], bool]]:
    schema = tool_for(op).input_schema
    return {name: (_plain(s), name in schema["required"]) for name, s in schema["properties"].items()}


def langchain_inputs(op: ops.Operation) -> dict[str, tuple[dict[str, Any], bool]]:
    tool = PrimeBillingTool(op, settings=Settings(api_key="k"))
    schema = convert_to_openai_tool(tool)["function"]["parameters"]
    own = tool.tool_call_schema.model_json_schema()  # what LangChain hands a model, before conversion
    assert {k: _plain(v) for k, v in own["properties"].items()} == {
        k: _plain(v) for k, v in schema["properties"].items()
    }
    required = schema.get("required", [])
    return {name: (_plain(s), name in required) for name, s in schema["properties"].items()}


def openapi_inputs(op: ops.Operation) -> dict[str, tuple[dict[str, Any], bool]]:
    spec = document([op], secured=False)["paths"][op.rest_path][op.method.lower()]
    by_wire = {p.wire: p.name for p in op.params}
    out = {}
    for param in spec["parameters"]:
        assert param["in"] == ("path" if "{" + by_wire[param["name"]] + "}" in op.rest_path else "query")
        # a list is one query value, its items joined by commas, as the model reads the text
        assert (param.get("style"), param.get("explode")) == (
            ("form", False) if param["schema"].get("type") == "array" else (None, None)
        )
        schema = {**param["schema"], "description": param["description"]}
        out[by_wire[param["name"]]] = (_plain(schema), param["required"])
    return out


def surfaces(op: ops.Operation) -> dict[str, dict[str, tuple[dict[str, Any], bool]]]:
    return {"mcp": mcp_inputs(op), "langchain": langchain_inputs(op), "openapi": openapi_inputs(op)}


@pytest.mark.parametrize("op", ops.OPERATIONS, ids=[op.name for op in ops.OPERATIONS])
def test_mcp_langchain_and_openapi_show_the_same_inputs(op: ops.Operation) -> None:
    shown = surfaces(op)
    mcp = shown["mcp"]
    assert list(mcp) == list(op.inputs.model_fields)
    for name in mcp:
        for surface, fields in shown.items():
            assert set(fields) == set(mcp), surface
            assert fields[name] == mcp[name], (surface, name)


def test_every_rule_reaches_every_surface() -> None:
    """The rules that were once kept in step by hand: the id exclusion, the date formats, the bounds."""
    checked = 0
    for op in ops.OPERATIONS:
        for surface, fields in surfaces(op).items():
            for name, (schema, required) in fields.items():
                if name in ("run_id", "team_id"):
                    assert schema["pattern"] == ops.ID_PATTERN and schema["maxLength"] == 128, surface
                    assert schema["not"] == {"enum": [".", ".."]}, surface
                    assert required is (name == "run_id"), surface
                if name in ("since", "until", "as_of"):
                    assert schema["anyOf"] == [
                        {"format": "date"},
                        {"format": "date-time"},
                        {"pattern": "^([0-9]{1,5}[hdw]|today|yesterday)$"},
                    ], surface
                if name == "by":
                    assert schema["enum"] == ["day", "week", "month"] and not required, surface
                if name == "days":
                    assert (schema["minimum"], schema["maximum"], schema["default"]) == (1, 365, 7), surface
                if name == "offset":
                    assert (schema["minimum"], schema["maximum"]) == (0, ops.MAX_OFFSET), surface
                if name == "min_balance":  # the budget check's is its point; runway's counts down to 0 unless given
                    assert schema["type"] == "number" and schema["minimum"] == 0, surface
                    assert required is (op.name == "check_budget"), surface
                if name == "include_rows":
                    assert (schema["type"], schema["default"], required) == ("boolean", False, False), surface
                if name == "period":  # pace's: the calendar period holding as_of
                    assert (schema["enum"], schema["default"], required) == (["day", "week", "month"], "month", False)
                if name == "budget":
                    assert (schema["type"], schema["minimum"], required) == ("number", 0.01, True), surface
                if name == "warn":  # a JSON array in tools; on REST one value, its items joined by commas
                    assert (schema["type"], schema["maxItems"], schema["default"]) == ("array", 10, [50, 80, 100])
                    assert schema["items"] == {"type": "number", "minimum": 1, "maximum": 1000}, surface
                checked += 1
    assert checked == 3 * sum(len(op.params) for op in ops.OPERATIONS)
    # every report whose answer can grow with the wallet takes it: those with rows to export
    rows = {op.name for op in ops.OPERATIONS if "include_rows" in op.inputs.model_fields}
    assert rows == {op.name for op in ops.OPERATIONS if hasattr(op.model, "write_csv")} | {"check_budget"}


class NarrowWallet(ops.Inputs):
    """The wallet's inputs with another bound, another default and a field more."""

    limit: Annotated[int, Field(ge=1, le=7, description="Rows per page, 1-7."), ops.PLAIN_DIGITS] = 3
    offset: ops.Offset = 0
    team_id: ops.TeamId = None
    colour: Annotated[str, Field(pattern=r"^(red|blue)$", description="A colour."), ops.Cli(metavar="C")] = "red"


def test_changing_the_model_changes_every_surface(monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    wallet = ops.get("get_wallet")
    narrow = dataclasses.replace(wallet, inputs=NarrowWallet)
    for surface, fields in surfaces(narrow).items():
        limit, _ = fields["limit"]
        assert (limit["maximum"], limit["default"], limit["description"]) == (7, 3, "Rows per page, 1-7."), surface
        assert fields["colour"] == (
            {"type": "string", "pattern": "^(red|blue)$", "default": "red", "description": "A colour."},
            False,
        )
    with pytest.raises(InvalidInputError, match=r"^limit must be 1\.\.7, got 8$"):
        narrow.check({"limit": "8"})
    assert narrow.check({"colour": "blue"}) == {"limit": 3, "offset": 0, "team_id": None, "colour": "blue"}
    assert PrimeBillingTool(narrow, settings=Settings(api_key="k")).invoke({"limit": 8}) == "limit must be 1..7, got 8"
    # and the CLI's arguments and help
    monkeypatch.setattr(ops, "OPERATIONS", (narrow,))
    with pytest.raises(SystemExit):
        build_parser().parse_args(["wallet", "--help"])
    shown = capsys.readouterr().out
    assert "--limit N" in shown and "Rows per page, 1-7. (default 3)" in shown and "--colour C" in shown
    assert build_parser().parse_args(["wallet", "--colour", "blue"]).colour == "blue"


def test_checked_is_the_plain_dict_of_values_to_send() -> None:
    """What the gateway keys coalesced calls by: the model's values, settings filling the team."""
    with Client(Settings(api_key="k", team_id="team_a")) as client:
        wallet, budget = ops.get("get_wallet"), ops.get("check_budget")
        assert client.checked(wallet, {"limit": "7", "offset": None}) == {"limit": 7, "offset": 0, "team_id": "team_a"}
        assert client.checked(wallet, {"team_id": "team_b"})["team_id"] == "team_b"
        assert client.checked(budget, {"min_balance": "1e3"}) == {
            "min_balance": 1000.0,
            "limit": 20,
            "offset": 0,
            "team_id": "team_a",
            "include_rows": False,
        }
        with pytest.raises(InvalidInputError, match=r"^get_run_usage takes no parameter 'team_id'; it takes run_id$"):
            client.checked(ops.get("get_run_usage"), {"run_id": "rft_1", "team_id": "t"})
    with (
        Client(Settings(api_key="k", team_id="../x")) as client,
        pytest.raises(InvalidInputError, match=r"^team_id '\.\./x' is not a valid id"),
    ):
        client.checked(wallet, {})


# --------------------------------------------------------------------------- one message everywhere


@dataclasses.dataclass(frozen=True)
class Bad:
    op: str
    #: as a tool or MCP caller sends them (JSON values)
    args: dict[str, Any]
    #: the same on the command line
    argv: list[str]
    #: the same as a REST path and query (path text sent escaped, so no client folds `..` away)
    path: str
    query: dict[str, str]


BAD = {
    "offset below its bounds": Bad(
        "get_wallet", {"offset": -1}, ["wallet", "--offset", "-1"], "/v1/api/v1/billing/wallet", {"offset": "-1"}
    ),
    "limit not plain digits": Bad(
        "get_wallet", {"limit": "1_0"}, ["wallet", "--limit", "1_0"], "/v1/api/v1/billing/wallet", {"limit": "1_0"}
    ),
    "run id '..'": Bad("get_run_usage", {"run_id": ".."}, ["usage", ".."], "/v1/api/v1/billing/runs/%2E%2E/usage", {}),
    "team id with a slash": Bad(
        "spend_report", {"team_id": "a/b"}, ["spend", "--team", "a/b"], "/v1/prime-billing/spend", {"teamId": "a/b"}
    ),
    "minimum not a number": Bad(
        "check_budget",
        {"min_balance": "lots"},
        ["wallet", "--min-balance", "lots"],
        "/v1/prime-billing/budget",
        {"min_balance": "lots"},
    ),
    "since not a date": Bad(
        "spend_report",
        {"since": "last week"},
        ["spend", "--since", "last week"],
        "/v1/prime-billing/spend",
        {"since": "last week"},
    ),
    "until not a time ago": Bad(
        "spend_report", {"until": "7D"}, ["spend", "--until", "7D"], "/v1/prime-billing/spend", {"until": "7D"}
    ),
    "by not a period": Bad(
        "spend_report", {"by": "year"}, ["spend", "--by", "year"], "/v1/prime-billing/spend", {"by": "year"}
    ),
    "runway days beyond a year": Bad(
        "runway", {"days": 366}, ["runway", "--days", "366"], "/v1/prime-billing/runway", {"days": "366"}
    ),
    "runway as_of not a date": Bad(
        "runway",
        {"as_of": "next week"},
        ["runway", "--as-of", "next week"],
        "/v1/prime-billing/runway",
        {"as_of": "next week"},
    ),
    "pace threshold not a number": Bad(
        "pace",
        {"warn": [50, "eighty"], "budget": 300},
        ["pace", "--warn", "50,eighty", "--budget", "300"],
        "/v1/prime-billing/pace",
        {"warn": "50,eighty", "budget": "300"},
    ),
    "pace threshold beyond its bounds": Bad(
        "pace",
        {"warn": [50, 1200], "budget": 300},
        ["pace", "--warn", "50,1200", "--budget", "300"],
        "/v1/prime-billing/pace",
        {"warn": "50,1200", "budget": "300"},
    ),
    "pace budget of nothing": Bad(
        "pace", {"budget": 0}, ["pace", "--budget", "0"], "/v1/prime-billing/pace", {"budget": "0"}
    ),
    "runway minimum below zero": Bad(
        "runway",
        {"min_balance": -5},
        ["runway", "--min-balance", "-5"],
        "/v1/prime-billing/runway",
        {"min_balance": "-5"},
    ),
}


@pytest.fixture(scope="module")
def launcher(_live_sandbox: LiveSandbox) -> Iterator[Any]:
    with running(sandbox_settings(_live_sandbox.url)) as served:
        yield served


def mcp_error(url: str, tool: str, args: dict[str, Any]) -> str:
    async def go() -> Any:
        async with MCPClient(streamable_http_client(url, http_client=httpx2.AsyncClient(timeout=30))) as client:
            return await client.call_tool(tool, args)

    result = anyio.run(go)
    assert result.is_error
    return "".join(getattr(c, "text", "") for c in result.content)


@pytest.mark.parametrize("bad", list(BAD.values()), ids=list(BAD))
def test_one_message_on_every_surface(launcher: Any, sandbox: LiveSandbox, home: Path, bad: Bad) -> None:
    op = ops.get(bad.op)
    with pytest.raises(InvalidInputError) as refused:
        op.check(bad.args)
    words = str(refused.value)
    assert "\n" not in words and words.startswith(next(iter(bad.args)))

    cli = run(["-m", "prime_billing", *bad.argv], script_env(home, sandbox.url))
    assert (cli.returncode, cli.stdout, cli.stderr) == (2, "", f"prime-billing: error: {words}\n")

    message = PrimeBillingTool(op, settings=Settings(api_key="k")).invoke(
        ToolCall(name=op.name, args=bad.args, id="call_1", type="tool_call")
    )
    assert (message.status, message.content) == ("error", words)

    rest = httpx.get(launcher.urls["rest"] + bad.path, params=bad.query)
    assert rest.status_code == 422 and rest.json()["detail"] == words

    assert mcp_error(launcher.urls["mcp"], op.mcp_tool, bad.args) == words
    assert sandbox.requests() == 0


def test_an_unknown_argument_is_refused_naming_what_the_operation_takes(launcher: Any) -> None:
    wallet = ops.get("get_wallet")
    words = "get_wallet takes no parameter 'colour'; it takes limit, offset, team_id"
    tool = PrimeBillingTool(wallet, settings=Settings(api_key="k"))
    assert tool.invoke({"colour": "red"}) == words
    assert mcp_error(launcher.urls["mcp"], wallet.mcp_tool, {"colour": "red"}) == words
    # REST names its own query parameters, as the route takes them
    rest = httpx.get(launcher.urls["rest"] + wallet.rest_path, params={"colour": "red"})
    assert rest.status_code == 422 and "unknown query parameter 'colour'" in rest.json()["detail"]
