"""The running servers against the contract's `exposes` block: ports, paths, methods, tools, hints, params."""

from __future__ import annotations

from typing import Any

import anyio
import httpx
import pytest
import yaml
from mcp import Client

from conftest import ROOT, LiveSandbox
from prime_billing.cli import build_parser
from prime_billing.operations import OPERATIONS
from prime_billing.serve.options import Options
from serve_harness import running, sandbox_settings

CONTRACT = yaml.safe_load((ROOT / "capability" / "training-billing.yaml").read_text(encoding="utf-8"))
EXPOSES = {e["type"]: e for e in CONTRACT["capability"]["exposes"]}
CONSUMED = {
    op["name"]: {**op, "path": res["path"]}
    for res in CONTRACT["capability"]["consumes"][0]["resources"]
    for op in res["operations"]
}
HINTS = {"readOnly": "read_only_hint", "destructive": "destructive_hint", "idempotent": "idempotent_hint"}


def test_default_ports_are_the_contracts() -> None:
    ns = build_parser().parse_args(["serve"])
    assert (ns.rest_port, ns.mcp_port) == (EXPOSES["rest"]["port"], EXPOSES["mcp"]["port"]) == (8080, 9090)
    assert (Options().rest_port, Options().mcp_port) == (8080, 9090)
    assert EXPOSES["mcp"]["transport"] == "http"


@pytest.fixture(scope="module")
def served(_live_sandbox: LiveSandbox) -> Any:
    with running(sandbox_settings(_live_sandbox.url)) as launcher:
        doc = httpx.get(launcher.urls["rest"] + "/openapi.json").json()

        async def tools() -> dict[str, Any]:
            async with Client(launcher.urls["mcp"]) as client:
                return {t.name: t for t in (await client.list_tools()).tools}

        yield launcher, doc, anyio.run(tools)


def test_rest_paths_methods_and_params_match(served: Any) -> None:
    launcher, doc, _ = served
    contract_ops = [op for op in OPERATIONS if op.contract_name]
    declared = {
        (res["path"], o["method"].lower(), o["name"]) for res in EXPOSES["rest"]["resources"] for o in res["operations"]
    }
    assert {(op.rest_path, op.method.lower(), op.contract_name) for op in contract_ops} == declared
    for res in EXPOSES["rest"]["resources"]:
        for o in res["operations"]:
            spec = doc["paths"][res["path"]][o["method"].lower()]
            assert spec["operationId"] == o["name"]
            consumed = CONSUMED[o["call"].split(".", 1)[1]]
            assert consumed["method"] == o["method"] and consumed["path"] == res["path"].removeprefix("/v1")
            in_path = {p["name"] for p in spec["parameters"] if p["in"] == "path"}
            # `with: {run_id: rest.path.run_id}`: every path binding is a path parameter, and nothing else is
            assert in_path == {k for k, v in o["with"].items() if v.startswith("rest.path.")}
            assert in_path == {p["name"] for p in consumed.get("inputParameters", []) if p["in"] == "path"}
            # `mapping: $.`: the whole upstream body is the answer
            assert [p["mapping"] for p in o["outputParameters"]] == ["$."]
    # every route beyond the contract has its own operationId too (OpenAPI wants them unique)
    ids = [spec["operationId"] for item in doc["paths"].values() for spec in item.values() if "operationId" in spec]
    assert len(ids) == len(set(ids)) == len(doc["paths"]) and "" not in ids
    wallet = doc["paths"]["/v1/api/v1/billing/wallet"]["get"]
    assert {p["name"] for p in wallet["parameters"]} == {"limit", "offset", "teamId"}
    # and they answer, with the methods the contract gives
    for path in ("/v1/api/v1/billing/runs/rft_sbx_running/usage", "/v1/api/v1/billing/wallet"):
        assert httpx.get(launcher.urls["rest"] + path).status_code == 200
        assert httpx.post(launcher.urls["rest"] + path).status_code == 405


def test_mcp_tools_names_hints_and_params_match(served: Any) -> None:
    launcher, _, tools = served
    assert launcher.urls["mcp"].endswith("/mcp")
    for declared in EXPOSES["mcp"]["tools"]:
        tool = tools[declared["name"]]
        for hint, attr in HINTS.items():
            assert getattr(tool.annotations, attr) is declared["hints"][hint]
        assert tool.annotations.open_world_hint is True  # it reaches an outside API
        called = declared["call"].split(".", 1)[1]
        assert called in CONSUMED
        assert next(op for op in OPERATIONS if op.mcp_tool == declared["name"]).contract_name == called
        bound = {k for k, v in declared["with"].items() if v.startswith("tools.")}
        assert bound <= set(tool.input_schema["properties"])
        assert set(tool.input_schema["required"]) == bound  # `with: {}` means callable with {}
