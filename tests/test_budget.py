"""Budget guard: `wallet --min-balance USD` exits 3 below the minimum, with one line saying
by how much; the check_budget operation returns the same verdict as data, and the
contract's own wallet operation is untouched."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from conftest import SCRIPTS, LiveSandbox, assert_one_line_error, run, script_env, upstream_body
from prime_billing.client import AsyncClient, Client
from prime_billing.config import SANDBOX_API_KEY
from prime_billing.operations import BY_NAME

WALLET = str(SCRIPTS / "wallet.py")


def test_below_the_minimum_exits_3_with_one_line_saying_by_how_much(sandbox: LiveSandbox, home: Path) -> None:
    out = run([WALLET, "--min-balance", "150", "--limit", "3"], script_env(home, sandbox.url))
    assert out.returncode == 3
    assert out.stderr == (
        "wallet.py: alert: balance $123.45 of wallet wal_sbx_personal is $26.55 below the minimum $150.00: add funds\n"
    )
    # the wallet summary is still printed, after the verdict
    lines = out.stdout.splitlines()
    assert lines[0].startswith("SANDBOX DATA")
    assert lines[1] == "BELOW MINIMUM: " + out.stderr.removeprefix("wallet.py: alert: ").rstrip("\n")
    assert lines[2].endswith("balance $123.45 USD · 46 billing rows, showing 1-3")


@pytest.mark.parametrize(("minimum", "ok"), [("100", True), ("123.45", True), ("123.46", False), ("0", True)])
def test_the_verdict_is_exact_at_the_boundary(sandbox: LiveSandbox, home: Path, minimum: str, ok: bool) -> None:
    out = run([WALLET, "--min-balance", minimum, "--json"], script_env(home, sandbox.url))
    assert out.returncode == (0 if ok else 3), out.stderr
    verdict = json.loads(out.stdout)
    assert verdict["ok"] is ok and verdict["min_balance_usd"] == float(minimum)
    if ok:
        assert verdict["alert"] is None and verdict["shortfall_usd"] == 0 and out.stderr == ""
        assert round(verdict["headroom_usd"] * 100) == 12345 - round(float(minimum) * 100)
    else:
        assert verdict["shortfall_usd"] == 0.01 and "$0.01 below" in out.stderr


def test_json_carries_the_wallet_body_unchanged(sandbox: LiveSandbox, home: Path) -> None:
    out = run([WALLET, "--min-balance", "1000", "--team", "team_sbx_demo", "--json"], script_env(home, sandbox.url))
    assert out.returncode == 3 and sandbox.requests("/wallet") == 1
    verdict = json.loads(out.stdout)
    assert verdict["wallet"] == upstream_body(sandbox, "/api/v1/billing/wallet", limit=20, teamId="team_sbx_demo")
    assert (verdict["balance_usd"], verdict["shortfall_usd"], verdict["team_id"]) == (980.0, 20.0, "team_sbx_demo")
    assert "$20.00 below the minimum $1,000.00" in out.stderr


def test_without_the_flag_the_wallet_command_is_the_contract_operation(sandbox: LiveSandbox, home: Path) -> None:
    out = run([WALLET, "--json"], script_env(home, sandbox.url))
    assert out.returncode == 0
    assert json.loads(out.stdout) == upstream_body(sandbox, "/api/v1/billing/wallet")
    # the contract's wallet operation has no budget parameter on any surface
    wallet = BY_NAME["get_wallet"]
    assert [p.name for p in wallet.params] == ["limit", "offset", "team_id"]
    assert "min_balance" not in wallet.input_schema()["properties"]
    budget = BY_NAME["check_budget"]
    assert budget.composite and not budget.in_contract and budget.cli_extends == "wallet"
    assert budget.input_schema()["properties"]["min_balance"]["type"] == "number"
    assert budget.input_schema()["required"] == ["min_balance"]


@pytest.mark.parametrize(
    ("value", "needle"),
    [("-1", "min_balance must be >= 0, got -1"), ("lots", "must be a number, got 'lots'"), ("nan", "finite number")],
)
def test_bad_minimums_are_refused_before_sending(sandbox: LiveSandbox, home: Path, value: str, needle: str) -> None:
    assert_one_line_error(run([WALLET, "--min-balance", value], script_env(home, sandbox.url)), 2, needle)
    assert sandbox.requests() == 0


def test_the_verdict_is_data_on_both_client_faces(sandbox: LiveSandbox) -> None:
    with Client(base_url=sandbox.url, api_key=SANDBOX_API_KEY) as client:
        low = client.call("check_budget", {"min_balance": 150})
        fine = client.call("check_budget", {"min_balance": "50.5", "limit": 1, "include_rows": True})

    async def go() -> object:
        async with AsyncClient(base_url=sandbox.url, api_key=SANDBOX_API_KEY) as client:
            return await client.call("check_budget", {"min_balance": 150})

    assert asyncio.run(go()).raw == low.raw  # type: ignore[attr-defined]
    assert low.raw["ok"] is False and low.raw["shortfall_usd"] == 26.55 and "$26.55 below" in low.raw["alert"]
    assert low.alert == low.raw["alert"] and "BELOW MINIMUM" in low.summary()
    assert fine.alert is None and fine.raw["headroom_usd"] == 72.95 and len(fine.raw["wallet"]["recent_billings"]) == 1
    assert "wallet" not in low.raw and low.data.wallet is None  # the verdict and the balance, no page unasked
