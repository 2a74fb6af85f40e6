"""Every upstream fault against every surface, in one table.

Each row is a fault the loopback sandbox injects over a real socket (or a port
nobody listens on) and what every surface must make of it: the exit code of the
scripts, the HTTP status of the REST adapter, `isError` of the MCP tools, the
status of the LangChain tool message; the words the one-line explanation holds;
and how many upstream requests it cost (retries included, one retry allowed).
Every surface asks for one run's usage, or the wallet where a row says so.
Rows are independent (each has its own sandbox), so they run side by side.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
import httpx2
import pytest
from langchain_core.messages import ToolCall
from mcp import Client as MCPClient
from mcp.client.streamable_http import streamable_http_client

from conftest import SCRIPTS, LiveSandbox, run, script_env, start_sandbox
from prime_billing.client import Client
from prime_billing.config import SANDBOX_API_KEY, Settings
from prime_billing.langchain import PrimeBillingTool
from prime_billing.sandbox import RUNS, Sandbox
from prime_billing.sandbox.faults import HUGE_BODY_BYTES
from serve_harness import running

#: one retry, so "persistent" faults are queued twice and "once" faults once
RETRIES = 1
#: seconds a surface waits for an answer; the timeout rows answer after twice that
TIMEOUT = 1.5
RUN_ID = "rft_sbx_running"
HTML = "<html><head><title>502 Bad Gateway</title></head><body><h1>Bad Gateway</h1></body></html>"
#: a JSON value nested deeper than any parser's recursion allows, 100,000 objects down
DEEP = '{"x": ' * 100_000 + "1" + "}" * 100_000


def _upstream_wallet() -> dict[str, Any]:
    """The personal wallet's first page as the sandbox itself serves it."""
    reply = Sandbox().dispatch("GET", "/api/v1/billing/wallet", {"authorization": f"Bearer {SANDBOX_API_KEY}"})
    assert isinstance(reply.body, bytes)
    return json.loads(reply.body)


@dataclass(frozen=True)
class Target:
    """One contract operation as each surface asks for it, and the bodies a success passes on."""

    #: the script and its arguments
    script: list[str]
    #: LangChain tool (the operation's name) and its arguments, the MCP tool's too
    tool: str
    args: dict[str, Any]
    rest_path: str
    mcp_tool: str
    #: a field every success carries, and its value
    key: str
    value: str
    #: the upstream bodies the REST adapter may answer a success with
    bodies: tuple[dict[str, Any], ...]


USAGE = Target(
    ["run_usage.py", RUN_ID, "--json"],
    "get_run_usage",
    {"run_id": RUN_ID},
    f"/v1/api/v1/billing/runs/{RUN_ID}/usage",
    "prime-intellect-getrunusage",
    "run_id",
    RUN_ID,
    ({**RUNS[RUN_ID], "sandbox": True}, RUNS[RUN_ID]),
)
WALLET_BODY = _upstream_wallet()
WALLET = Target(
    ["wallet.py", "--json"],
    "get_wallet",
    {},
    "/v1/api/v1/billing/wallet",
    "prime-intellect-getwallet",
    "wallet_id",
    WALLET_BODY["wallet_id"],
    (WALLET_BODY,),
)


def spliced(body: dict[str, Any], name: str, value: str) -> str:
    """`body` as JSON with one more field, `name`, whose value is the JSON text `value`."""
    text = json.dumps(body)
    return f'{text[:-1]}, "{name}": {value}}}'


@dataclass(frozen=True)
class Row:
    name: str
    #: faults queued in the sandbox, in order
    faults: list[dict[str, Any]]
    #: the REST adapter's status; 200 means every surface succeeds
    http: int
    #: words the one-line error must hold (empty for successes)
    says: str = ""
    #: upstream requests one call costs; None: nothing listens upstream
    calls: int | None = 1
    #: a body this large was offered: it must not have been read whole
    huge: bool = False
    #: the Retry-After the REST adapter passes on
    retry_after: str | None = None
    #: the REST problem's `code`, where the row names one
    problem: str | None = None
    #: what every surface asks for
    target: Target = USAGE

    @property
    def exit_code(self) -> int:
        return 0 if self.http == 200 else 1


def twice(fault: dict[str, Any]) -> list[dict[str, Any]]:
    return [fault] * (RETRIES + 1)


ROWS = [
    Row("401", [{"status": 401}], 401, "rejected the API key (401"),
    Row("402", [{"status": 402}], 402, "payment required (402"),
    Row("403", [{"status": 403}], 403, "access denied (403"),
    Row("404", [{"status": 404}], 404, "not found (404"),
    Row("422", [{"status": 422}], 422, "refused the parameters (422"),
    Row("429 + Retry-After", twice({"status": 429, "retry_after": "1"}), 429, "wait 1s", calls=2, retry_after="1"),
    Row("429, no Retry-After", twice({"status": 429}), 429, "wait a little", calls=2),
    Row("429 once", [{"status": 429}], 200, calls=2),
    Row("500", [{"status": 500}], 502, "unavailable (500)"),
    Row("502", twice({"status": 502}), 502, "unavailable (502) after 2 attempts", calls=2),
    Row("503", twice({"status": 503}), 502, "unavailable (503) after 2 attempts", calls=2),
    Row("503 once", [{"status": 503}], 200, calls=2),
    Row("504", twice({"status": 504}), 504, "timed out (504) after 2 attempts", calls=2),
    Row("connect refused", [], 502, "cannot reach", calls=None),
    Row("reset mid-body", twice({"action": "reset"}), 502, "connection to Prime API failed", calls=2),
    Row("reset once", [{"action": "reset"}], 200, calls=2),
    Row("read timeout", twice({"delay": 2 * TIMEOUT}), 504, "did not answer within", calls=2),
    Row("read timeout once", [{"delay": 2 * TIMEOUT}], 200, calls=2),
    Row("truncated JSON", [{"action": "truncate"}], 502, "not JSON"),
    Row("HTML error page", twice({"status": 502, "content_type": "text/html", "body": HTML}), 502, "(502)", calls=2),
    Row("HTML page as 200", [{"status": 200, "content_type": "text/html", "body": HTML}], 502, "not JSON (text/html)"),
    # the label is wrong but the body is the documented one: it is checked by its schema, not its label
    Row("wrong content type", [{"status": 200, "content_type": "text/plain", "body": json.dumps(RUNS[RUN_ID])}], 200),
    Row("schema drift", [{"action": "drift"}], 502, "does not match the RunUsage schema"),
    Row("50 MB body", [{"action": "huge"}], 502, "larger than 8 MiB", huge=True),
    Row("50 MB, no length", [{"action": "huge_unsized"}], 502, "larger than 8 MiB", huge=True),
    # unparseable bodies: refused as bad answers in one line, never a crash of the parser
    *[
        Row(
            f"valid {target.tool} body, extra field 100,000 deep",
            [{"status": 200, "body": spliced(target.bodies[0], "x_deep", DEEP)}],
            502,
            "nested too deeply",
            problem="bad_upstream_response",
            target=target,
        )
        for target in (WALLET, USAGE)
    ],
    *[
        Row(
            f"JSON array for {target.tool}",
            [{"status": 200, "body": json.dumps([target.bodies[0]])}],
            502,
            "not an object",
            problem="bad_upstream_response",
            target=target,
        )
        for target in (WALLET, USAGE)
    ],
]


@dataclass
class Seen:
    """What one surface showed for one row."""

    ok: bool
    #: exit code, HTTP status, or 0/1 for tool results
    code: int
    text: str
    #: problems beyond the code and words (traceback, more than one line, ...)
    flaws: list[str] = field(default_factory=list)
    #: the Retry-After header, where the surface is HTTP
    retry_after: str | None = None
    #: the problem's `code`, where the surface is REST
    problem: str | None = None


def dead_url() -> str:
    """A loopback port nothing listens on: connections are refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def via_script(url: str, home: Path, target: Target) -> Seen:
    env = script_env(home, url, PRIME_BILLING_MAX_RETRIES=str(RETRIES), PRIME_BILLING_TIMEOUT=str(TIMEOUT))
    script, *args = target.script
    out = run([str(SCRIPTS / script), *args], env)
    flaws = []
    if "Traceback" in out.stderr:
        flaws.append("traceback")
    if out.returncode == 0:
        if out.stderr or json.loads(out.stdout)[target.key] != target.value:
            flaws.append("success without the body")
    elif out.stderr.count("\n") != 1 or out.stdout:
        flaws.append(f"not one stderr line: {out.stderr!r} / stdout {out.stdout[:80]!r}")
    return Seen(out.returncode == 0, out.returncode, out.stderr.strip(), flaws)


def via_langchain(url: str, home: Path, target: Target) -> Seen:
    settings = Settings(api_key=SANDBOX_API_KEY, base_url=url, max_retries=RETRIES, timeout=TIMEOUT)
    with Client(settings) as client:
        tool = PrimeBillingTool(target.tool, client=client)
        msg = tool.invoke(ToolCall(name=tool.name, args=target.args, id="call_1", type="tool_call"))
    ok = msg.status == "success"
    flaws = []
    if ok and getattr(msg.artifact, target.key, None) != target.value:
        flaws.append("success without the typed body")
    if not ok and "\n" in str(msg.content):
        flaws.append("multi-line error")
    return Seen(ok, 0 if ok else 1, str(msg.content), flaws)


def _launcher_settings(url: str) -> Settings:
    return Settings(api_key=SANDBOX_API_KEY, base_url=url, max_retries=RETRIES, timeout=TIMEOUT)


def via_rest(url: str, home: Path, target: Target) -> Seen:
    with running(_launcher_settings(url), only="rest") as launcher:
        r = httpx.get(launcher.urls["rest"] + target.rest_path, timeout=30)
    flaws = []
    if r.status_code == 200:
        if r.json() not in target.bodies:
            flaws.append("200 without the upstream body")
        return Seen(True, 200, r.text, flaws)
    if r.headers.get("content-type") != "application/problem+json":
        flaws.append(f"content type {r.headers.get('content-type')!r}, not problem+json")
    body = r.json()
    if body.get("status") != r.status_code or "\n" in body.get("detail", "\n"):
        flaws.append(f"not a one-line problem: {body}")
    return Seen(False, r.status_code, body.get("detail", ""), flaws, r.headers.get("retry-after"), body.get("code"))


def via_mcp(url: str, home: Path, target: Target) -> Seen:
    async def go() -> Any:
        with running(_launcher_settings(url), only="mcp") as launcher:
            http = httpx2.AsyncClient(timeout=30)
            async with MCPClient(streamable_http_client(launcher.urls["mcp"], http_client=http)) as client:
                return await client.call_tool(target.mcp_tool, target.args)

    result = anyio.run(go)
    text = "".join(getattr(c, "text", "") for c in result.content)
    flaws = []
    if not result.is_error and (result.structured_content or {}).get(target.key) != target.value:
        flaws.append("success without the structured body")
    if result.is_error and "\n" in text:
        flaws.append("multi-line error")
    return Seen(not result.is_error, int(bool(result.is_error)), text, flaws)


#: surface name -> (call it against an upstream URL, the code a row expects from it)
SURFACES: dict[str, tuple[Callable[[str, Path, Target], Seen], Callable[[Row], int]]] = {
    "script": (via_script, lambda row: row.exit_code),
    "langchain": (via_langchain, lambda row: row.exit_code),
    "rest": (via_rest, lambda row: row.http),
    "mcp": (via_mcp, lambda row: row.exit_code),
}


def check_row(row: Row, surface: str, home: Path) -> list[str]:
    """Run one row on one surface against a sandbox of its own; return what did not match."""
    call, expected = SURFACES[surface]
    live: LiveSandbox | None = None
    if row.calls is None:
        url = dead_url()
    else:
        live, _ = start_sandbox()
        live.faults(next=row.faults)
        url = live.url
    try:
        seen = call(url, home, row.target)
        problems = list(seen.flaws)
        if seen.code != expected(row):
            problems.append(f"code {seen.code}, expected {expected(row)} ({seen.text[:160]})")
        if row.says and row.says not in seen.text:
            problems.append(f"says {seen.text[:160]!r}, expected it to hold {row.says!r}")
        if surface == "rest" and seen.retry_after != row.retry_after:
            problems.append(f"Retry-After {seen.retry_after!r}, expected {row.retry_after!r}")
        if surface == "rest" and row.problem is not None and seen.problem != row.problem:
            problems.append(f"problem code {seen.problem!r}, expected {row.problem!r}")
        if "Bearer" in seen.text or SANDBOX_API_KEY in seen.text:
            problems.append("the key or its header leaked into the error")
        if live is not None:
            if live.requests() != row.calls:
                problems.append(f"{live.requests()} upstream requests, expected {row.calls}")
            if row.huge:
                problems += _read_whole(live)
        return [f"{row.name} / {surface}: {p}" for p in problems]
    finally:
        if live is not None:
            live.server.shutdown()  # type: ignore[attr-defined]
            live.server.server_close()  # type: ignore[attr-defined]


def _read_whole(live: LiveSandbox) -> list[str]:
    """The sandbox counts what it managed to write once the body is abandoned or done."""
    for _ in range(200):
        if live.box.stats["streams"]:
            break
        time.sleep(0.05)
    sent = live.box.stats["streamed_bytes"]
    if not live.box.stats["streams"]:
        return ["the huge body was never abandoned"]
    # what was written is what the client read plus what the kernel buffered: far below the whole
    return [] if sent < HUGE_BODY_BYTES // 2 else [f"{sent} of {HUGE_BODY_BYTES} bytes were read"]


@pytest.mark.parametrize("surface", list(SURFACES))
def test_fault_matrix(surface: str, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    with ThreadPoolExecutor(max_workers=8) as pool:
        found = list(pool.map(lambda row: check_row(row, surface, home), ROWS))
    problems = [p for row_problems in found for p in row_problems]
    assert not problems, "\n".join(problems)
