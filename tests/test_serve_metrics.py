"""`/metrics` on the launcher's REST port, end to end: real launchers on loopback against the live
sandbox, real HTTP, the exposition parsed by prometheus_client's own parser. Expected figures come
from the upstream's own bodies and counters (`GET /_sandbox/stats`), never from the project's client."""

from __future__ import annotations

import ast
import json
import math
import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

import prime_billing
from conftest import (
    SCRIPTS,
    LiveSandbox,
    all_rows,
    assert_one_line_error,
    cents,
    run,
    script_env,
    start_sandbox,
    until,
    upstream_body,
)
from prime_billing.config import SANDBOX_API_KEY
from prime_billing.sandbox.faults import FaultySandbox
from proxy_harness import ServeProcess
from serve_harness import running, sandbox_settings, tool_call

WALLET = "/v1/api/v1/billing/wallet"
USAGE_ROUTE = "/v1/api/v1/billing/runs/{run_id}/usage"
Families = dict[str, Any]


# --------------------------------------------------------------------------- helpers


def parse(text: str) -> Families:
    """Metric families by name (counters without `_total`, as the parser names them)."""
    return {family.name: family for family in text_string_to_metric_families(text)}


def value(families: Families, name: str, sample: str | None = None, **labels: str) -> float:
    """The one sample called `sample` (default: the family's name) with exactly these labels."""
    found = [s.value for s in families[name].samples if s.name == (sample or name) and s.labels == labels]
    assert len(found) == 1, (name, labels, families[name].samples)
    return float(found[0])


def scrape(client: httpx.Client, rest: str, **headers: str) -> Families:
    r = client.get(rest + "/metrics", headers=headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain; version=")
    return parse(r.text)


def stats(sandbox: LiveSandbox) -> dict[str, int]:
    """The upstream's own request counters, over its control endpoint."""
    return dict(httpx.get(sandbox.url + "/_sandbox/stats").json())


def wallet_reads(sandbox: LiveSandbox) -> int:
    return stats(sandbox).get("GET /api/v1/billing/wallet", 0)


def clear_stats(sandbox: LiveSandbox) -> None:
    """Forget the reads made to work out the expected figures."""
    httpx.delete(sandbox.url + "/_sandbox/stats").raise_for_status()


def control(sandbox: LiveSandbox, path: str, spec: dict[str, Any] | None = None) -> None:
    httpx.post(sandbox.url + path, json=spec or {}).raise_for_status()


def in_threads(*calls: Callable[[], Any]) -> tuple[list[threading.Thread], list[Any]]:
    results: list[Any] = [None] * len(calls)

    def run(i: int, call: Callable[[], Any]) -> None:
        results[i] = call()

    threads = [threading.Thread(target=run, args=(i, c), daemon=True) for i, c in enumerate(calls)]
    for t in threads:
        t.start()
    return threads, results


def dead_port() -> int:
    """A loopback port nothing listens on: connecting is refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --------------------------------------------------------------------------- the wallet


def test_balance_and_burn_are_the_upstreams_own_figures() -> None:
    """prime_wallet_balance_usd is the wallet body's balance_usd; the burn per hour is the rows of the
    24 hours before now, summed by hand from the upstream's rows, over 24."""
    # the newest row two hours old: the window's edge falls 22 hours before it, an hour from the nearest rows
    live, _ = start_sandbox(FaultySandbox(now=datetime.now(UTC) - timedelta(hours=2)))
    try:
        body = upstream_body(live, "/api/v1/billing/wallet")
        since = datetime.now(UTC) - timedelta(hours=24)
        window = [r for r in all_rows(live) if datetime.fromisoformat(r["created_at"]) >= since]
        assert 1 < len(window) < body["total_billings"]  # the window decides what counts
        burn = sum(cents(r["amount_usd"]) for r in window) / 100 / 24
        clear_stats(live)
        with running(sandbox_settings(live.url), only="rest") as launcher, httpx.Client(timeout=30) as client:
            got = scrape(client, launcher.urls["rest"])
        wallet = {"wallet_id": body["wallet_id"]}
        assert value(got, "prime_wallet_up") == 1
        assert value(got, "prime_wallet_balance_usd", **wallet) == body["balance_usd"]
        assert abs(value(got, "prime_wallet_burn_usd_per_hour", **wallet) - burn) < 1e-9
        assert 0 <= value(got, "prime_wallet_reading_age_seconds") < 30
        assert wallet_reads(live) == 1  # fewer than 100 rows in the window: one page
    finally:
        live.server.shutdown()  # type: ignore[attr-defined]
        live.server.server_close()  # type: ignore[attr-defined]


def test_scrapes_within_the_ttl_cost_one_upstream_read(sandbox: LiveSandbox) -> None:
    """Twenty scrapes, eight of them at once while the first read is held upstream: one wallet read."""
    balance = upstream_body(sandbox, "/api/v1/billing/wallet")["balance_usd"]
    clear_stats(sandbox)
    with running(sandbox_settings(sandbox.url), only="rest") as launcher, httpx.Client(timeout=30) as client:
        rest, gateway = launcher.urls["rest"], launcher.gateway
        assert gateway is not None
        control(sandbox, "/_sandbox/faults", {"hold": True})
        threads, answers = in_threads(*[lambda: httpx.get(rest + "/metrics", timeout=30)] * 8)
        until(lambda: wallet_reads(sandbox) == 1, "the first read reached the upstream")
        # all eight on the one reading, and its one report call upstream
        until(lambda: gateway.waiting == 8 + 1, "all eight joined it")
        control(sandbox, "/_sandbox/release")
        for t in threads:
            t.join(30)
        later = [scrape(client, rest) for _ in range(12)]
    assert [a.status_code for a in answers] == [200] * 8
    balances = {value(parse(a.text), "prime_wallet_balance_usd", wallet_id="wal_sbx_personal") for a in answers}
    balances |= {value(f, "prime_wallet_balance_usd", wallet_id="wal_sbx_personal") for f in later}
    assert balances == {balance}
    assert wallet_reads(sandbox) == 1


def test_a_reading_older_than_the_ttl_is_read_again(sandbox: LiveSandbox) -> None:
    with running(sandbox_settings(sandbox.url), only="rest", metrics_ttl=0.05) as launcher:
        rest = launcher.urls["rest"]
        with httpx.Client(timeout=30) as client:
            scrape(client, rest)
            time.sleep(0.1)  # past the TTL for sure: the cache cannot answer
            scrape(client, rest)
    assert wallet_reads(sandbox) == 2


def test_upstream_down_at_scrape_is_200_with_wallet_up_0(sandbox: LiveSandbox) -> None:
    """No upstream at all: the scrape still answers, with the traffic and prime_wallet_up 0, no balance;
    the failure is kept for the TTL too, so a dead upstream is not called on every scrape."""
    settings = sandbox_settings(f"http://127.0.0.1:{dead_port()}")
    with running(settings, only="rest") as launcher, httpx.Client(timeout=30) as client:
        rest = launcher.urls["rest"]
        assert client.get(rest + WALLET).status_code == 502
        first = scrape(client, rest)
        second = scrape(client, rest)
    for got in (first, second):
        assert value(got, "prime_wallet_up") == 0
        assert "prime_wallet_balance_usd" not in got and "prime_wallet_burn_usd_per_hour" not in got
    # the REST call and the one scrape read: two refused connections, not three
    assert value(second, "prime_billing_upstream_requests", "prime_billing_upstream_requests_total",
                 outcome="connect_error", status="none") == 2  # fmt: skip
    requests = "prime_billing_http_requests"
    assert value(first, requests, f"{requests}_total", surface="rest", route=WALLET, method="GET", status="502") == 1


# --------------------------------------------------------------------------- the budgets watched


def test_watched_budgets_are_each_periods_pace_worked_by_hand() -> None:
    """--watch-budget 300/month and 80/week: each budget; the rows created in [the period's start, now) summed by
    hand from the upstream's rows; that spend x the period's length / the time elapsed, rounded up to the cent. The
    reading is one spend report and one pace per budget, each one wallet page, and serves every scrape in the TTL."""
    now = datetime.now(UTC)
    live, _ = start_sandbox(FaultySandbox(now=now - timedelta(hours=2)))  # the newest row two hours old
    try:
        rows = all_rows(live)
        month = datetime(now.year, now.month, 1, tzinfo=UTC)
        week = datetime(now.year, now.month, now.day, tzinfo=UTC) - timedelta(days=now.weekday())  # Monday 00:00
        periods = {
            "month": (month, (month + timedelta(days=32)).replace(day=1), 300),
            "week": (week, week + timedelta(days=7), 80),
        }
        clear_stats(live)
        budgets = ("300/month", "80/week")
        with (
            running(sandbox_settings(live.url), only="rest", watch_budgets=budgets) as launcher,
            httpx.Client(timeout=30) as client,
        ):
            before = datetime.now(UTC)
            got = scrape(client, launcher.urls["rest"])
            after = datetime.now(UTC)
            again = [scrape(client, launcher.urls["rest"]) for _ in range(3)]
        for period, (start, end, usd) in periods.items():
            labels = {"wallet_id": "wal_sbx_personal", "period": period}
            spent = sum(cents(r["amount_usd"]) for r in rows if datetime.fromisoformat(r["created_at"]) >= start)
            # measured at a moment between `before` and `after`: the later it is, the lower the line ends
            low, high = (math.ceil(spent * ((end - start) / (at - start))) for at in (after, before))
            for families in (got, *again):
                assert value(families, "prime_budget_usd", **labels) == usd
                assert cents(value(families, "prime_budget_spent_usd", **labels)) == spent
                assert low <= cents(value(families, "prime_budget_projected_usd", **labels)) <= high
        assert {s.labels["period"] for s in got["prime_budget_usd"].samples} == {"month", "week"}
        assert wallet_reads(live) == 3  # the last 24 hours, the month, the week: fewer than 100 rows, one page each
    finally:
        live.server.shutdown()  # type: ignore[attr-defined]
        live.server.server_close()  # type: ignore[attr-defined]


def test_a_budget_read_that_fails_fails_the_reading_for_the_ttl(sandbox: LiveSandbox) -> None:
    """The 24-hour report's page comes (the upstream's own first page), the month's pace gets a 503: the scrape is
    200 with prime_wallet_up 0 and neither wallet nor budget figures, and the failure is kept for the TTL."""
    page = upstream_body(sandbox, "/api/v1/billing/wallet", limit=100)
    clear_stats(sandbox)
    sandbox.faults(next=[{"status": 200, "body": json.dumps(page)}, {"status": 503}])
    with (
        running(sandbox_settings(sandbox.url), only="rest", watch_budgets=("300/month",)) as launcher,
        httpx.Client(timeout=30) as client,
    ):
        got = [scrape(client, launcher.urls["rest"]) for _ in range(2)]
    for families in got:
        assert value(families, "prime_wallet_up") == 0
        assert not {"prime_wallet_balance_usd", "prime_budget_usd", "prime_budget_spent_usd"} & set(families)
    assert wallet_reads(sandbox) == 2  # the report's page and the pace's refused one, once


@pytest.mark.parametrize("given", ["300/year", "0/month", "-5/week", "300", "3e2/month", "300/month 80/month"])
def test_a_budget_to_watch_is_usd_per_period_once_each(home: Path, given: str) -> None:
    flags = [f"--watch-budget={budget}" for budget in given.split()]
    out = run(["-m", "prime_billing", "serve", "--sandbox", *flags], script_env(home))
    assert_one_line_error(out, 2, f"--watch-budget '{given.split()[-1]}': give USD/month, USD/week or USD/day")


# --------------------------------------------------------------------------- the traffic


def test_counters_show_exactly_the_traffic_sent(sandbox: LiveSandbox) -> None:
    """Three usage calls (one unknown run), two wallet calls sharing one held upstream call, one wallet
    call refused by the rate limit, three MCP tool calls: each counted, under its route template."""
    total = "prime_billing_http_requests_total"
    limits = {"rate_limit": 0.001, "rate_burst": 5}  # five requests per caller and port, none refilled meanwhile
    with running(sandbox_settings(sandbox.url), **limits) as launcher, httpx.Client(timeout=30) as client:
        rest, mcp, gateway = launcher.urls["rest"], launcher.urls["mcp"], launcher.gateway
        assert gateway is not None
        codes = [client.get(rest + f"/v1/api/v1/billing/runs/{run}/usage").status_code for run in
                 ("rft_sbx_running", "rft_sbx_completed", "rft_sbx_nope")]  # fmt: skip
        control(sandbox, "/_sandbox/faults", {"hold": True})
        threads, shared = in_threads(*[lambda: httpx.get(rest + WALLET, timeout=30)] * 2)
        until(lambda: wallet_reads(sandbox) == 1, "the first wallet call reached the upstream")
        until(lambda: gateway.waiting == 2, "the second caller joined it")
        control(sandbox, "/_sandbox/release")
        for t in threads:
            t.join(30)
        refused = client.get(rest + WALLET)
        tools = [
            tool_call(client, mcp, "prime-intellect-getrunusage", {"run_id": "rft_sbx_running"}),
            tool_call(client, mcp, "prime-intellect-getrunusage", {"run_id": "rft_sbx_nope"}),
            tool_call(client, mcp, "no-such-tool", {}),
        ]
        # the limiter counts callers by address: the scrapes come from another one
        with httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.2"), timeout=30) as other:
            got = scrape(other, rest)
            again = scrape(other, rest)
    upstream = stats(sandbox)
    assert codes == [200, 200, 404] and [r.status_code for r in shared] == [200, 200]
    assert refused.status_code == 429 and [bool(t.get("isError")) for t in tools] == [False, True, True]

    def requests(route: str, status: int, surface: str = "rest", method: str = "GET") -> float:
        labels = {"surface": surface, "route": route, "method": method, "status": str(status)}
        return value(got, "prime_billing_http_requests", total, **labels)

    assert (requests(USAGE_ROUTE, 200), requests(USAGE_ROUTE, 404)) == (2, 1)
    assert (requests(WALLET, 200), requests(WALLET, 429)) == (2, 1)
    assert requests("/mcp", 200, "mcp", "POST") == 3
    rest_routes = {s.labels["route"] for s in got["prime_billing_http_requests"].samples if s.name == total}
    assert rest_routes == {USAGE_ROUTE, WALLET, "/mcp"}  # templates only: no run id, and this scrape not yet
    assert value(again, "prime_billing_http_requests", total, surface="rest", route="/metrics", method="GET",
                 status="200") == 1  # fmt: skip
    latency = "prime_billing_http_request_duration_seconds"
    for route in (USAGE_ROUTE, WALLET):
        assert value(got, latency, f"{latency}_count", surface="rest", route=route) == 3

    assert value(got, "prime_billing_rate_limited", "prime_billing_rate_limited_total", surface="rest") == 1
    assert value(got, "prime_billing_rate_limited", "prime_billing_rate_limited_total", surface="mcp") == 0
    assert value(got, "prime_billing_coalesced", "prime_billing_coalesced_total") == 1
    tool = "prime_billing_mcp_tool_calls"
    assert value(got, tool, f"{tool}_total", tool="prime-intellect-getrunusage", outcome="ok") == 1
    assert value(got, tool, f"{tool}_total", tool="prime-intellect-getrunusage", outcome="not_found") == 1
    assert value(got, tool, f"{tool}_total", tool="unknown", outcome="unknown_tool") == 1
    # upstream: 3 REST calls (the shared one once), 2 MCP calls, and the first scrape's wallet read
    calls = "prime_billing_upstream_requests"
    ok = value(got, calls, f"{calls}_total", outcome="ok", status="200")
    missing = value(got, calls, f"{calls}_total", outcome="http_error", status="404")
    assert (ok, missing) == (5, 2)
    assert upstream["requests"] == ok + missing  # what the upstream itself counted


# --------------------------------------------------------------------------- who may scrape


def test_metrics_sit_behind_the_token_and_the_host_check(sandbox: LiveSandbox) -> None:
    """401 without the right token, 421 for a foreign Host, HEAD at once: none of them reads the wallet."""
    with running(sandbox_settings(sandbox.url), only="rest", token="tok") as launcher, httpx.Client() as client:
        url = launcher.urls["rest"] + "/metrics"
        bare, wrong = client.get(url), client.get(url, headers={"Authorization": "Bearer tok-not"})
        foreign = client.get(url, headers={"Authorization": "Bearer tok", "Host": "evil.example"})
        head = client.head(url, headers={"Authorization": "Bearer tok"})
        before = wallet_reads(sandbox)
        good = client.get(url, headers={"Authorization": "Bearer tok"})
        doc = client.get(launcher.urls["rest"] + "/openapi.json", headers={"Authorization": "Bearer tok"}).json()
    for refused in (bare, wrong):
        assert refused.status_code == 401 and refused.headers["content-type"] == "application/problem+json"
    assert foreign.status_code == 421
    assert (head.status_code, head.content) == (200, b"") and head.headers["content-type"].startswith("text/plain")
    assert before == 0 and wallet_reads(sandbox) == 1
    assert value(parse(good.text), "prime_wallet_up") == 1
    # in the document beside /healthz, but under the document's security, unlike it
    metrics = doc["paths"]["/metrics"]["get"]
    assert metrics["operationId"] == "metrics" and "security" not in metrics
    assert doc["security"] == [{"bearer": []}] and doc["paths"]["/healthz"]["get"]["security"] == []


def test_passthrough_reads_the_scrapers_own_wallet_and_refuses_a_bad_key(sandbox: LiveSandbox) -> None:
    """Each bearer is its own Prime key: its reading is cached per key; a key the upstream refuses is
    401; the server's traffic is shown only to a key the upstream has accepted."""
    settings = sandbox_settings(sandbox.url, api_key=None)
    good, bad = {"Authorization": f"Bearer {SANDBOX_API_KEY}"}, {"Authorization": "Bearer made-up-key"}
    with running(settings, only="rest", auth="passthrough") as launcher, httpx.Client(timeout=30) as client:
        rest = launcher.urls["rest"]
        sandbox.faults(next=[{"status": 503, "path": "/wallet"}])  # the good key's first read fails
        unproven = scrape(client, rest, **good)
        assert client.get(rest + WALLET, headers=good).status_code == 200  # now the upstream accepted it
        proven = scrape(client, rest, **good)  # the failed reading, still within its TTL
        refused = [client.get(rest + "/metrics", headers=bad) for _ in range(2)]
    assert value(unproven, "prime_wallet_up") == 0 and "prime_billing_http_requests" not in unproven
    assert value(proven, "prime_wallet_up") == 0 and "prime_billing_http_requests" in proven
    for r in refused:
        assert r.status_code == 401 and r.json()["code"] == "unauthorized" and "made-up-key" not in r.text
    # the good key's read, the REST call, the bad key's one read (its refusal is kept for the TTL too)
    assert wallet_reads(sandbox) == 3


def test_passthrough_shows_the_scrapers_balance_read_once_per_ttl(sandbox: LiveSandbox) -> None:
    balance = upstream_body(sandbox, "/api/v1/billing/wallet")["balance_usd"]
    clear_stats(sandbox)
    settings = sandbox_settings(sandbox.url, api_key=None)
    good = {"Authorization": f"Bearer {SANDBOX_API_KEY}"}
    with running(settings, only="rest", auth="passthrough") as launcher, httpx.Client(timeout=30) as client:
        got = [scrape(client, launcher.urls["rest"], **good) for _ in range(3)]
    assert {value(g, "prime_wallet_balance_usd", wallet_id="wal_sbx_personal") for g in got} == {balance}
    assert all("prime_billing_http_requests" in g for g in got)  # the upstream accepted the key
    assert wallet_reads(sandbox) == 1


# --------------------------------------------------------------------------- as a process


def test_the_launcher_process_serves_metrics_and_exits_0_on_sigterm(home: Path, sandbox: LiveSandbox) -> None:
    """`prime-billing serve --metrics-ttl S` as a process: the scrape parses, SIGTERM exits 0, and
    neither the key nor the token reaches its output."""
    env = script_env(home, sandbox.url, PRIME_BILLING_TOKEN="proc-token-9")
    args = ("--rest-port", "0", "--only", "rest", "--metrics-ttl", "120")
    with ServeProcess(env, *args) as proc, httpx.Client(timeout=30) as client:
        auth = {"Authorization": "Bearer proc-token-9"}
        got = [scrape(client, proc.urls["rest"], **auth) for _ in range(3)]
        assert client.get(proc.urls["rest"] + "/metrics").status_code == 401
    assert proc.returncode == 0, proc.stderr
    assert value(got[-1], "prime_wallet_up") == 1 and wallet_reads(sandbox) == 1
    lines = [json.loads(line) for line in proc.stderr.splitlines() if line.startswith("{")]  # the access log
    assert [line["path"] for line in lines] == ["/metrics"] * 4 and [line["status"] for line in lines][-1] == 401
    assert SANDBOX_API_KEY not in proc.stderr and "proc-token-9" not in proc.stderr


# --------------------------------------------------------------------------- who loads the library


def imported(path: Path) -> set[str]:
    """The modules a file imports anywhere in it, lazy imports too (`from .x import y` as `x`)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            names |= {node.module} if node.module else {alias.name for alias in node.names}
    return names


def test_only_the_launcher_loads_prometheus_client() -> None:
    """The library is the `serve` extra's: one module of the package imports it, only the launcher
    imports that module, and no core module or script does either."""
    package = Path(prime_billing.__file__).parent
    files = [*package.rglob("*.py"), *SCRIPTS.glob("*.py")]
    users = {p.name for p in files if any(m.split(".")[0] == "prometheus_client" for m in imported(p))}
    assert users == {"observe.py"} and (package / "serve" / "observe.py").exists()
    assert {p.name for p in files if "observe" in imported(p)} == {"runner.py"}
