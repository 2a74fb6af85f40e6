"""The REST server end to end: httpx against the launcher on loopback, upstream the loopback sandbox."""

from __future__ import annotations

import concurrent.futures
import json
from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import httpx2
import pytest
from mcp import Client as MCPClient
from mcp.client.streamable_http import streamable_http_client

from conftest import LiveSandbox, until, upstream_body
from prime_billing.config import SANDBOX_API_KEY
from prime_billing.errors import ConfigError
from prime_billing.operations import OPERATIONS
from prime_billing.serve.options import Options
from prime_billing.serve.runner import Launcher
from serve_harness import assert_problem, running, sandbox_settings

USAGE = "/v1/api/v1/billing/runs/{}/usage"
WALLET = "/v1/api/v1/billing/wallet"


@pytest.fixture
def rest(sandbox: LiveSandbox) -> Iterator[str]:
    with running(sandbox_settings(sandbox.url)) as launcher:
        yield launcher.urls["rest"]


def callers_waiting(launcher: Launcher) -> int:
    """Callers the launcher holds on calls in flight upstream: the coalescer's public `waiting`
    count, reached through the gateway's private attribute since the gateway offers no other way."""
    assert launcher.gateway is not None
    return launcher.gateway.waiting


def test_success_is_the_upstream_body_unknown_fields_kept(rest: str, sandbox: LiveSandbox) -> None:
    r = httpx.get(rest + USAGE.format("rft_sbx_cached"))
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    body = r.json()
    assert body == upstream_body(sandbox, "/api/v1/billing/runs/rft_sbx_cached/usage")
    assert body["billing_version"] == 2 and body["gpu_hours"] == 41.5

    r = httpx.get(rest + WALLET, params={"limit": 7, "offset": 40, "teamId": None})
    assert r.json() == upstream_body(sandbox, "/api/v1/billing/wallet", limit=7, offset=40)
    team = httpx.get(rest + WALLET, params={"teamId": "team_sbx_demo", "limit": 3}).json()
    assert team == upstream_body(sandbox, "/api/v1/billing/wallet", teamId="team_sbx_demo", limit=3)


@pytest.mark.parametrize(
    ("path", "params", "words"),
    [
        (USAGE.format("bad%20id!"), {}, "not a valid id"),
        (WALLET, {"limit": 0}, "limit must be 1..100"),
        (WALLET, {"offset": "soon"}, "offset must be a whole number"),
        (WALLET, {"page": 2}, "unknown query parameter 'page'"),
    ],
)
def test_bad_input_is_422_before_upstream(rest: str, sandbox: LiveSandbox, path: str, params: dict, words: str) -> None:
    body = assert_problem(httpx.get(rest + path, params=params), 422)
    assert words in body["detail"] and body["code"] == "invalid_input"
    assert sandbox.requests() == 0


@pytest.mark.parametrize(
    ("fault", "status", "code"),
    [
        ({"status": 401}, 401, "unauthorized"),
        ({"status": 402}, 402, "payment_required"),
        ({"status": 422, "body": '{"detail": [{"loc": ["query", "x"], "msg": "bad"}]}'}, 422, "upstream_validation"),
        ({"status": 503}, 502, "upstream_unavailable"),
        ({"status": 500}, 502, "upstream_unavailable"),
    ],
)
def test_upstream_errors_keep_their_status(
    rest: str, sandbox: LiveSandbox, fault: dict, status: int, code: str
) -> None:
    sandbox.faults(next=[fault])
    body = assert_problem(httpx.get(rest + WALLET), status)
    assert body["code"] == code
    assert sandbox.requests() == 1


def test_403_404_and_429_with_retry_after(rest: str, sandbox: LiveSandbox) -> None:
    assert assert_problem(httpx.get(rest + USAGE.format("rft_sbx_other_team")), 403)["code"] == "forbidden"
    assert "not found" in assert_problem(httpx.get(rest + USAGE.format("rft_nope")), 404)["detail"]
    sandbox.faults(next=[{"status": 429, "retry_after": "7"}])
    r = httpx.get(rest + WALLET)
    assert assert_problem(r, 429)["code"] == "rate_limited"
    assert r.headers["retry-after"] == "7"


def test_unavailable_after_retries_is_502_and_a_timeout_504(sandbox: LiveSandbox) -> None:
    settings = sandbox_settings(sandbox.url, max_retries=1, timeout=0.3)
    with running(settings) as launcher:
        rest = launcher.urls["rest"]
        sandbox.faults(next=[{"status": 503, "retry_after": "0"}, {"status": 503, "retry_after": "0"}])
        body = assert_problem(httpx.get(rest + WALLET), 502)
        assert "after 2 attempts" in body["detail"] and sandbox.requests() == 2
        sandbox.faults(next=[{"status": 200, "delay": 1.0}, {"status": 200, "delay": 1.0}])
        assert assert_problem(httpx.get(rest + WALLET, timeout=10), 504)["code"] == "upstream_timeout"


def test_healthz_and_openapi_touch_no_upstream(rest: str, sandbox: LiveSandbox) -> None:
    assert httpx.get(rest + "/healthz").json() == {"status": "ok"}
    doc = httpx.get(rest + "/openapi.json").json()
    assert sandbox.requests() == 0
    for op in OPERATIONS:  # every operation in the table, none written by hand
        spec = doc["paths"][op.rest_path][op.method.lower()]
        assert {p["name"] for p in spec["parameters"]} == {p.wire for p in op.params}
        assert {"200", "401", "422", "429", "502", "504"} <= set(spec["responses"])
    wallet = doc["paths"][WALLET]["get"]
    assert {p["name"]: p["in"] for p in wallet["parameters"]} == dict.fromkeys(("limit", "offset", "teamId"), "query")
    assert assert_problem(httpx.get(rest + "/v1/nowhere"), 404)["code"] == "no_route"


def test_fifty_identical_requests_cost_one_upstream_call(sandbox: LiveSandbox) -> None:
    """The upstream holds its answer until all fifty callers wait on the one call: overlap by
    construction, not by timing."""
    sandbox.faults(hold=True)
    limits = httpx.Limits(max_connections=60)
    with (
        running(sandbox_settings(sandbox.url)) as launcher,
        httpx.Client(limits=limits, timeout=30) as client,
        concurrent.futures.ThreadPoolExecutor(50) as pool,
    ):
        try:
            futures = [pool.submit(client.get, launcher.urls["rest"] + WALLET, params={"limit": 5}) for _ in range(50)]
            until(lambda: callers_waiting(launcher) == 50, "50 callers waiting on the launcher")
            until(lambda: sandbox.box.inflight == 1, "the one upstream call held")
        finally:
            sandbox.box.release()
        answers = [f.result() for f in futures]
    assert sandbox.requests() == 1
    assert [r.status_code for r in answers] == [200] * 50
    want = upstream_body(sandbox, "/api/v1/billing/wallet", limit=5)
    assert all(r.json() == want for r in answers)


def test_cache_ttl_reuses_a_success(sandbox: LiveSandbox) -> None:
    with running(sandbox_settings(sandbox.url), cache_ttl=60) as launcher:
        for _ in range(3):
            assert httpx.get(launcher.urls["rest"] + USAGE.format("rft_sbx_running")).status_code == 200
        assert httpx.get(launcher.urls["rest"] + USAGE.format("rft_nope")).status_code == 404
        assert httpx.get(launcher.urls["rest"] + USAGE.format("rft_nope")).status_code == 404
    assert sandbox.requests("/usage") == 3  # one success cached; failures never are


def test_bad_host_and_origin_are_refused_on_both_ports(rest: str, sandbox: LiveSandbox) -> None:
    assert assert_problem(httpx.get(rest + WALLET, headers={"Host": "evil.example"}), 421)["code"] == "bad_host"
    r = httpx.get(rest + WALLET, headers={"Origin": "http://evil.example"})
    assert assert_problem(r, 403)["code"] == "bad_origin"
    assert httpx.get(rest + WALLET, headers={"Origin": "http://localhost:3000"}).status_code == 200
    assert sandbox.requests() == 1
    with running(sandbox_settings(sandbox.url)) as launcher:
        mcp = launcher.urls["mcp"]
        r = httpx.post(mcp, json={}, headers={"Host": "evil.example:9090"})
        assert_problem(r, 421)


def test_token_is_required_on_both_ports_when_set(sandbox: LiveSandbox) -> None:
    with running(sandbox_settings(sandbox.url), token="s3cret-token") as launcher:
        rest, mcp = launcher.urls["rest"], launcher.urls["mcp"]
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic s3cret-token"}):
            r = httpx.get(rest + WALLET, headers=headers)
            assert assert_problem(r, 401)["code"] == "unauthorized"
            assert r.headers["www-authenticate"] == "Bearer" and "s3cret-token" not in r.text
            assert_problem(httpx.post(mcp, json={}, headers=headers), 401)
        assert sandbox.requests() == 0
        ok = httpx.get(rest + WALLET, headers={"Authorization": "Bearer s3cret-token"})
        assert ok.status_code == 200
        assert httpx.get(rest + "/healthz").status_code == 200  # probes need no token


def test_passthrough_forwards_each_callers_key_and_never_mixes_them(sandbox: LiveSandbox) -> None:
    with running(sandbox_settings(sandbox.url, api_key=None), auth="passthrough") as launcher:
        rest = launcher.urls["rest"]
        assert_problem(httpx.get(rest + WALLET), 401)
        assert sandbox.requests() == 0
        # the upstream holds its answers until all eight callers wait: each overlaps every other
        sandbox.faults(hold=True)
        good = {"Authorization": f"Bearer {SANDBOX_API_KEY}"}
        bad = {"Authorization": "Bearer someone-elses-key"}
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            try:
                futures = [pool.submit(httpx.get, rest + WALLET, headers=h, timeout=30) for h in [good, bad] * 4]
                until(lambda: callers_waiting(launcher) == 8, "8 callers waiting on the launcher")
                until(lambda: sandbox.box.inflight == 2, "one upstream call per key held")
            finally:
                sandbox.box.release()
            answers = [f.result() for f in futures]
        # coalesced per key: one upstream call for each of the two keys, never one for both
        assert sandbox.requests() == 2
        assert [r.status_code for r in answers] == [200, 401] * 4
        assert "someone-elses-key" not in answers[1].text
        assert all(r.json() == upstream_body(sandbox, "/api/v1/billing/wallet") for r in answers[::2])


def test_passthrough_never_shows_the_callers_bare_key_from_an_upstream_403(sandbox: LiveSandbox) -> None:
    """An upstream that echoes the caller's key without any `Bearer` before it: only the
    caller's own credential tells the text is secret, and neither server may show it."""
    key = "pk-callers-own-key-7f3a9c2e51"
    echo = {"status": 403, "body": json.dumps({"detail": f"key {key} may not read this wallet"})}
    sandbox.faults(next=[echo, echo])
    with running(sandbox_settings(sandbox.url, api_key=None), auth="passthrough") as launcher:
        r = httpx.get(launcher.urls["rest"] + WALLET, headers={"Authorization": f"Bearer {key}"})
        body = assert_problem(r, 403)
        assert key not in r.text and "***" in body["detail"] and "may not read this wallet" in body["detail"]

        async def over_mcp() -> Any:
            http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=30)
            async with MCPClient(streamable_http_client(launcher.urls["mcp"], http_client=http)) as client:
                return await client.call_tool("prime-intellect-getwallet", {})

        result = anyio.run(over_mcp)
    text = "".join(getattr(c, "text", "") for c in result.content)
    assert result.is_error is True and "\n" not in text
    assert key not in text and "***" in text and "may not read this wallet" in text
    assert sandbox.requests() == 2  # both servers really asked the upstream


def test_refuses_a_public_address_without_a_token(sandbox: LiveSandbox) -> None:
    settings = sandbox_settings(sandbox.url)
    with pytest.raises(ConfigError, match="without a token"):
        Options(host="0.0.0.0")
    Launcher(Options(host="0.0.0.0", token="t"), settings)
    Launcher(Options(host="0.0.0.0", auth="passthrough"), settings.with_(api_key=None))
    with pytest.raises(ConfigError, match="exclude each other"):
        Options(token="t", auth="passthrough")
    with pytest.raises(ConfigError, match="no Prime API key"):
        Launcher(Options(), settings.with_(api_key=None))
