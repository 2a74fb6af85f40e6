"""The sandbox alive today: its rows dated back from its own "now", and its RUNNING run advancing.

The rest of the suite pins the sandbox's now (conftest.SANDBOX_NOW); the tests here
unpin it and bracket the current time (a moment taken before and after the call),
or pin one of their own, so none of them races the clock.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from langchain_core.messages import ToolCall

from conftest import ROOT, SANDBOX_NOW, assert_one_line_error, run, script_env
from prime_billing.client import Client
from prime_billing.config import SANDBOX_API_KEY, load_settings
from prime_billing.langchain import PrimeBillingToolkit
from prime_billing.sandbox import NOW_ENV, Sandbox
from prime_billing.sandbox.faults import FaultySandbox
from serve_harness import running
from test_serve_metrics import scrape, value

AUTH = {"Authorization": f"Bearer {SANDBOX_API_KEY}"}
#: the personal wallet: 46 rows, $221.52 in all, balance $123.45 (reference/reports.md); the oldest row is
#: 3 h x 45 = 135 h (5.6 days) before the newest, so a 7-day window ending within the day holds every one
ROWS, TOTAL, BALANCE = 46, 221.52, 123.45


def hour(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def wallet_rows(box: Sandbox, **params: Any) -> list[dict[str, Any]]:
    with httpx.Client(transport=httpx.MockTransport(box.handle), base_url="http://sbx") as api:
        body = api.get("/api/v1/billing/wallet", params={"limit": 100, **params}, headers=AUTH).json()
    return list(body["recent_billings"])


def at(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp)


# --------------------------------------------------------------------------- the sandbox's now


def test_a_sandbox_is_dated_from_the_current_hour(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(NOW_ENV)
    before = datetime.now(UTC)
    box = Sandbox()
    after = datetime.now(UTC)
    assert box.now in {hour(before), hour(after)}
    rows = wallet_rows(box)
    assert len(rows) == ROWS and rows[0]["created_at"] == box.now.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert box.now - timedelta(days=6) < at(rows[-1]["created_at"]) < box.now
    # every wallet of one sandbox agrees on it
    assert wallet_rows(box, teamId="team_sbx_demo")[0]["created_at"] == rows[0]["created_at"]


def test_the_now_is_pinned_by_argument_or_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    given = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    rows = wallet_rows(Sandbox(now=given))
    # a given now is kept to the second, not floored: newest at it, the next 3 h 17 min before it
    assert [r["created_at"] for r in rows[:2]] == ["2026-01-02T03:04:05Z", "2026-01-01T23:47:05Z"]
    monkeypatch.setenv(NOW_ENV, "2026-01-02T03:04:05")  # naive: UTC
    assert Sandbox().now == given and wallet_rows(Sandbox()) == rows
    # the suite's own pin: the dates the hand-worked figures are for
    monkeypatch.setenv(NOW_ENV, SANDBOX_NOW)
    assert wallet_rows(Sandbox())[0]["created_at"] == "2026-11-20T10:00:00Z"


def test_a_bad_pin_is_one_line_naming_the_variable(home: Path) -> None:
    out = run(["-m", "prime_billing", "wallet", "--sandbox"], script_env(home, sandbox_now="soon"))
    assert_one_line_error(out, 2, f"{NOW_ENV}='soon' is not a date-time like 2026-11-20T10:00:00Z: fix or unset it")


def test_the_sandbox_command_says_its_now(home: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "prime_billing", "sandbox", "--port", "0"],
        env=script_env(home, sandbox_now="2026-02-03T04:00:00Z"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        assert "its now: 2026-02-03T04:00:00Z" in line, line
        body = httpx.get(line.split()[3] + "/api/v1/billing/wallet", headers=AUTH).json()
        assert body["recent_billings"][0]["created_at"] == "2026-02-03T04:00:00Z"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# --------------------------------------------------------------------------- alive today, on every surface


def test_runway_without_as_of_gives_a_date(home: Path) -> None:
    before = datetime.now(UTC)
    out = run(["-m", "prime_billing", "runway", "--sandbox", "--json"], script_env(home, sandbox_now=None))
    after = datetime.now(UTC)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    end = at(got["window_end"])
    assert before <= end <= after and at(got["window_start"]) == end - timedelta(days=7)
    # every row in the window: $221.52 / 7 days = $31.645714/day; 123.45 / 31.645714 = 3.9010 days
    assert (got["rows"], got["spend_usd"], got["usd_per_day"], got["days_left"]) == (ROWS, TOTAL, 31.6457, 3.90)
    assert date.fromisoformat(got["empty_on"]) == (end + timedelta(days=123.45 * 7 / 221.52)).date()


def test_metrics_under_serve_sandbox_show_a_burn(monkeypatch: pytest.MonkeyPatch) -> None:
    """The burn is the rows of the 24 hours before the scrape, over 24: worked out from the rows the
    launcher passes on from its sandbox (the upstream body), between a moment before and after."""
    monkeypatch.delenv(NOW_ENV)
    with running(load_settings(sandbox=True), only="rest") as launcher, httpx.Client(timeout=30) as client:
        rest = launcher.urls["rest"]
        rows = client.get(rest + "/v1/api/v1/billing/wallet", params={"limit": 100}).json()["recent_billings"]
        before = datetime.now(UTC)
        got = scrape(client, rest)
        after = datetime.now(UTC)
    surely = [r for r in rows if at(r["created_at"]) >= after - timedelta(hours=24)]
    maybe = [r for r in rows if at(r["created_at"]) >= before - timedelta(hours=24)]
    assert surely == maybe and 0 < len(surely) < len(rows)  # rows sit 3 hours or more apart
    burn = sum(round(r["amount_usd"] * 100) for r in surely) / 100 / 24
    assert value(got, "prime_wallet_burn_usd_per_hour", wallet_id="wal_sbx_personal") == pytest.approx(burn)
    assert burn > 0


# --------------------------------------------------------------------------- the RUNNING run advances


def test_a_watch_of_the_running_run_ends_by_itself(home: Path) -> None:
    args = ["-m", "prime_billing", "usage", "rft_sbx_running", "--sandbox"]
    once = run(args, script_env(home))
    assert once.returncode == 0 and "RUNNING" in once.stdout and "$17.50" in once.stdout  # its documented figures
    out = run([*args, "--watch", "--interval", "0.05", "--json"], script_env(home))
    assert out.returncode == 0, out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    # one step of $1.25 and 500,000 training tokens per poll after the first; COMPLETED after 3 steps
    assert [(ln["status"], ln["total_cost_usd"]) for ln in lines] == [
        ("RUNNING", 17.5),
        ("RUNNING", 18.75),
        ("RUNNING", 20.0),
        ("COMPLETED", 21.25),
    ]
    assert lines[-1]["total_tokens"] == 9_000_000 + 3 * 500_000


def test_the_running_run_reconciles_at_every_step() -> None:
    """One toolkit is one sandbox: its run advances as it is read, and its wallet is charged each step."""
    kit = PrimeBillingToolkit(sandbox=True)
    tools = {t.name: t for t in kit.get_tools()}

    def call(name: str, **args: Any) -> Any:
        message = tools[name].invoke(ToolCall(name=name, args=args, id="c", type="tool_call"))
        assert message.status == "success", message.content
        return message.artifact

    try:
        assert call("get_run_usage", run_id="rft_sbx_running").total_cost_usd == 17.5
        assert call("get_run_usage", run_id="rft_sbx_running").total_cost_usd == 18.75
        rec = call("reconcile_run", run_id="rft_sbx_running", include_rows=True)  # the third read: $17.50 + 2 x $1.25
        assert (rec.run_billed_usd, rec.wallet_charged_usd, rec.reconciled) == (20.0, 20.0, True)
        assert [r.amount_usd for r in rec.rows[:2]] == [1.25, 1.25] and len(rec.rows) == 5 + 2
        # the rest of the wallet as it was: $221.52 and the two steps
        assert call("spend_report").total_usd == pytest.approx(TOTAL + 2.5)
    finally:
        kit.close()


def test_the_test_sandbox_does_not_advance_unless_asked() -> None:
    with Client(load_settings(sandbox=True), transport=httpx.MockTransport(FaultySandbox().handle)) as client:
        runs = [client.call("get_run_usage", {"run_id": "rft_sbx_running"}).data for _ in range(5)]
    assert {(r.status, r.total_cost_usd) for r in runs} == {("RUNNING", 17.5)}
