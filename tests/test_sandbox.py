"""The sandbox honours the upstream contract (UPSTREAM.md), in-process and as a server."""

from __future__ import annotations

import subprocess
import sys
from collections import defaultdict
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from conftest import script_env, start_sandbox_command
from prime_billing.config import SANDBOX_API_KEY
from prime_billing.models import RunUsage, Wallet
from prime_billing.sandbox import RUNS, Sandbox
from prime_billing.sandbox.faults import FaultySandbox

AUTH = {"Authorization": f"Bearer {SANDBOX_API_KEY}"}


@pytest.fixture
def api() -> httpx.Client:
    """The sandbox through its in-process transport, spoken to as plain HTTP."""
    return httpx.Client(transport=httpx.MockTransport(Sandbox().handle), base_url="http://sbx")


def test_wallet_pages_cover_every_row_once_newest_first(api: httpx.Client) -> None:
    seen: list[dict] = []
    offset = 0
    while True:
        body = api.get("/api/v1/billing/wallet", params={"limit": 7, "offset": offset}, headers=AUTH).json()
        Wallet.model_validate(body)
        assert body["total_billings"] == 46
        if not body["recent_billings"]:
            break
        seen += body["recent_billings"]
        offset += 7
    assert len(seen) == 46 == len({r["id"] for r in seen})
    stamps = [r["created_at"] for r in seen]
    assert stamps == sorted(stamps, reverse=True)


def test_run_rows_add_up_to_what_each_run_billed(api: httpx.Client) -> None:
    body = api.get("/api/v1/billing/wallet", params={"limit": 100}, headers=AUTH).json()
    charged: dict[str, Decimal] = defaultdict(Decimal)
    for row in body["recent_billings"]:
        if row["resource_type"] == "rft_run":
            charged[row["resource_id"]] += Decimal(str(row["amount_usd"]))
    for run_id, run in RUNS.items():
        billed = Decimal(str(run["total_cost_usd"]))
        if run_id == "rft_sbx_mismatch":
            assert billed - charged[run_id] == Decimal("0.37")
        else:
            assert charged[run_id] == billed, run_id
        usage = RunUsage.model_validate(run)
        assert usage.total_tokens == usage.training.tokens + usage.inference.tokens
        assert round(usage.training.cost_usd + usage.inference.cost_usd, 2) == usage.total_cost_usd


def test_statuses_the_upstream_gives(api: httpx.Client) -> None:
    assert api.get("/api/v1/billing/wallet").status_code == 401
    assert api.get("/api/v1/billing/wallet", headers={"Authorization": "Bearer nope"}).json() == {
        "detail": "Invalid API key"
    }
    assert api.get("/api/v1/billing/runs/rft_none/usage", headers=AUTH).status_code == 404
    assert api.get("/api/v1/billing/runs/rft_sbx_other_team/usage", headers=AUTH).status_code == 403
    bad = api.get("/api/v1/billing/wallet", params={"limit": 0, "offset": "x"}, headers=AUTH)
    assert bad.status_code == 422
    assert [e["loc"] for e in bad.json()["detail"]] == [["query", "limit"], ["query", "offset"]]
    assert api.get("/api/v1/billing/wallet", params={"teamId": "team_other"}, headers=AUTH).status_code == 403
    team = api.get("/api/v1/billing/wallet", params={"teamId": "team_sbx_demo"}, headers=AUTH)
    assert team.json()["team_id"] == "team_sbx_demo" and team.headers["x-prime-sandbox"] == "1"
    # an encoded slash stays inside one segment: it is a (missing) run, not another route
    assert api.get("/api/v1/billing/runs/a%2Fb/usage", headers=AUTH).json()["detail"] == "Run a/b not found"


def test_fault_queue_and_rate() -> None:
    box = FaultySandbox()
    client = httpx.Client(transport=httpx.MockTransport(box.handle), base_url="http://sbx")
    box.set_faults({"next": [{"status": 429, "retry_after": "2", "path": "/wallet"}]})
    assert client.get("/api/v1/billing/runs/rft_sbx_running/usage", headers=AUTH).status_code == 200
    limited = client.get("/api/v1/billing/wallet", headers=AUTH)
    assert (limited.status_code, limited.headers["retry-after"]) == (429, "2")
    box.set_faults({"rate": 0.5, "rate_fault": {"status": 503}})
    codes = [client.get("/api/v1/billing/wallet", headers=AUTH).status_code for _ in range(200)]
    assert 60 < codes.count(503) < 140 and set(codes) == {200, 503}
    assert box.stats["requests"] == 202


def test_sandbox_command_serves_on_loopback(home: Path) -> None:
    proc, url = start_sandbox_command(home)
    try:
        r = httpx.get(url + "/api/v1/billing/runs/rft_sbx_running/usage", headers=AUTH)
        assert r.json()["total_cost_usd"] == 17.5 and r.json()["sandbox"] is True
        assert httpx.post(url + "/_sandbox/faults", json={"next": [{"status": 503}]}).status_code == 200
        assert httpx.get(url + "/api/v1/billing/wallet", headers=AUTH).status_code == 503
        assert httpx.get(url + "/_sandbox/stats").json()["requests"] == 2
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_sandbox_command_refuses_a_taken_port(home: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        out = subprocess.run(
            [sys.executable, "-m", "prime_billing", "sandbox", "--port", str(port)],
            env=script_env(home),
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert out.returncode == 2 and "pick another --port" in out.stderr and "Traceback" not in out.stderr
