"""Reconcile: a run's billed total against its wallet rows, to the cent, through the
script, the CLI and both clients, against the sandbox on loopback."""

from __future__ import annotations

import asyncio
import csv
import json
from pathlib import Path

import httpx
import pytest

from conftest import SCRIPTS, LiveSandbox, all_rows, cents, run, script_env, upstream_body
from prime_billing.client import AsyncClient, Client
from prime_billing.config import SANDBOX_API_KEY, Settings
from prime_billing.sandbox import RUNS

RECONCILE = str(SCRIPTS / "reconcile.py")


@pytest.mark.parametrize("run_id", ["rft_sbx_running", "rft_sbx_completed", "rft_sbx_cached", "rft_sbx_failed"])
def test_runs_whose_rows_add_up_reconcile_exactly(sandbox: LiveSandbox, home: Path, run_id: str) -> None:
    out = run([RECONCILE, run_id, "--json"], script_env(home, sandbox.url))
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""
    report = json.loads(out.stdout)
    usage = upstream_body(sandbox, f"/api/v1/billing/runs/{run_id}/usage")
    mine = [r for r in all_rows(sandbox) if r["resource_id"] == run_id]
    assert cents(report["run_billed_usd"]) == cents(usage["total_cost_usd"])
    assert cents(report["wallet_charged_usd"]) == sum(cents(r["amount_usd"]) for r in mine)
    assert report["difference_usd"] == 0 and report["reconciled"] is True and report["alert"] is None
    assert [r["id"] for r in report["rows"]] == [r["id"] for r in mine]
    assert report["rows_scanned"] == 46 and report["sandbox"] is True


def test_the_mismatched_run_is_flagged_with_the_figures_and_exit_3(sandbox: LiveSandbox, home: Path) -> None:
    env = script_env(home, sandbox.url)
    out = run([RECONCILE, "rft_sbx_mismatch", "--json"], env)
    assert out.returncode == 3
    report = json.loads(out.stdout)
    assert (report["run_billed_usd"], report["wallet_charged_usd"], report["difference_usd"]) == (2.5, 2.13, 0.37)
    assert report["reconciled"] is False and len(report["rows"]) == 2
    assert {r["resource_id"] for r in report["rows"]} == {"rft_sbx_mismatch"}
    # one line on stderr, saying by how much
    assert out.stderr.count("\n") == 1 and out.stderr.startswith("reconcile.py: alert: ")
    assert "$2.50 billed" in out.stderr and "$2.13" in out.stderr and "$0.37 less" in out.stderr

    text = run([RECONCILE, "rft_sbx_mismatch"], env)
    assert text.returncode == 3
    head = text.stdout.splitlines()
    # the verdict first (after the sandbox marker), then what and how much
    assert head[0].startswith("SANDBOX DATA") and head[1] == "MISMATCH by $0.37"
    assert head[2].startswith("reconcile run rft_sbx_mismatch")
    lines = {ln.split("  ")[1].strip(): ln for ln in head[3:6]}
    assert "$2.50" in lines["run billed"] and "$2.13" in lines["wallet charged"] and "$0.37" in lines["difference"]


def test_paging_reads_every_page_once_when_the_upstream_serves_short_pages(sandbox: LiveSandbox, home: Path) -> None:
    # the upstream holds at most 7 rows per page whatever the limit: 46 rows are 7 pages
    sandbox.faults(page_cap=7)
    out = run([RECONCILE, "rft_sbx_completed", "--json"], script_env(home, sandbox.url))
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["pages"] == 7 and report["rows_scanned"] == 46
    assert report["wallet_charged_usd"] == 40.8 and len(report["rows"]) == 8
    assert sandbox.requests("/wallet") == 7 and sandbox.requests("/usage") == 1


def test_a_run_billed_to_another_wallet_says_where_to_look(sandbox: LiveSandbox, home: Path) -> None:
    out = run([RECONCILE, "rft_sbx_running", "--team", "team_sbx_demo"], script_env(home, sandbox.url))
    assert out.returncode == 3
    assert "no rows for it among 8" in out.stderr and "--team" in out.stderr
    assert "team team_sbx_demo" in out.stdout


def test_failures_keep_their_exit_codes(sandbox: LiveSandbox, home: Path) -> None:
    env = script_env(home, sandbox.url)
    missing = run([RECONCILE, "rft_missing"], env)
    assert (missing.returncode, missing.stdout) == (1, "")
    assert "run not found (404" in missing.stderr and missing.stderr.count("\n") == 1
    assert sandbox.requests("/wallet") == 0  # the run is read first: no paging for nothing
    bad = run([RECONCILE, "../wallet"], env)
    assert bad.returncode == 2 and "is not a valid id" in bad.stderr
    two = run([RECONCILE, "rft_sbx_running", "rft_sbx_failed"], env)
    assert two.returncode == 2 and "unrecognized arguments" in two.stderr
    sandbox.faults(next=[{"status": 500, "path": "/wallet"}])
    down = run([RECONCILE, "rft_sbx_running"], env)
    assert down.returncode == 1 and "unavailable (500)" in down.stderr and down.stdout == ""


def test_rows_export_as_csv(sandbox: LiveSandbox, home: Path, tmp_path: Path) -> None:
    target = tmp_path / "rows.csv"
    out = run([RECONCILE, "rft_sbx_cached", "--csv", str(target)], script_env(home, sandbox.url))
    assert out.returncode == 0, out.stderr
    rows = list(csv.DictReader(target.open()))
    assert len(rows) == 4 and {r["resource_id"] for r in rows} == {"rft_sbx_cached"}
    assert sum(cents(float(r["amount_usd"])) for r in rows) == 4120


def test_cli_and_script_agree(sandbox: LiveSandbox, home: Path) -> None:
    env = script_env(home, sandbox.url)
    cli = run(["-m", "prime_billing", "reconcile", "rft_sbx_mismatch", "--json"], env)
    script = run([RECONCILE, "rft_sbx_mismatch", "--json"], env)
    assert cli.returncode == script.returncode == 3
    assert json.loads(cli.stdout) == json.loads(script.stdout)


def test_both_client_faces_give_the_same_report(sandbox: LiveSandbox) -> None:
    with Client(base_url=sandbox.url, api_key=SANDBOX_API_KEY) as client:
        steps: list[str] = []
        sync = client.call(
            "reconcile_run", {"run_id": "rft_sbx_mismatch"}, on_step=lambda r: steps.append(r.operation.name)
        )
    assert steps == ["get_run_usage", "get_wallet"]

    async def go() -> object:
        async with AsyncClient(base_url=sandbox.url, api_key=SANDBOX_API_KEY) as client:
            return await client.call("reconcile_run", {"run_id": "rft_sbx_mismatch"})

    result = asyncio.run(go())
    assert result.raw == sync.raw  # type: ignore[attr-defined]
    assert sync.data.difference_usd == 0.37 and sync.alert and "$0.37" in sync.alert
    assert sync.sandbox and sync.summary().startswith("SANDBOX DATA")
    # the JSON-able raw is the model dumped: it validates back to the same report
    assert type(sync.data).model_validate(sync.raw) == sync.data


# --------------------------------------------------------------------------- the one-cent edge, figures by hand


def _upstream(billed: float, run_rows: list[float], other_rows: list[float]) -> httpx.MockTransport:
    """A run billed `billed` whose wallet holds `run_rows` for it and `other_rows` for something else."""
    run = {**RUNS["rft_sbx_running"], "run_id": "rft_edge", "total_cost_usd": billed}
    rows = [
        {
            "id": f"bill_{i}",
            "created_at": f"2026-11-{20 - i:02d}T10:00:00Z",
            "amount_usd": amount,
            "resource_type": "rft_run" if rid == "rft_edge" else "pods",
            "resource_id": rid,
        }
        for i, (amount, rid) in enumerate([(a, "rft_edge") for a in run_rows] + [(a, "pod_1") for a in other_rows])
    ]

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/usage"):
            return httpx.Response(200, json=run)
        offset, limit = int(request.url.params["offset"]), int(request.url.params["limit"])
        page = rows[offset : offset + limit]
        wallet = {"wallet_id": "wal_edge", "balance_usd": 50.0, "currency": "USD", "total_billings": len(rows)}
        return httpx.Response(200, json={**wallet, "recent_billings": page})

    return httpx.MockTransport(answer)


@pytest.mark.parametrize(
    ("billed", "run_rows", "difference", "side"),
    [
        # 10.00 billed, 4.00 + 5.99 = 9.99 charged: the wallet paid exactly one cent less
        (10.00, [4.00, 5.99], 0.01, "less"),
        # 9.99 billed, 4.00 + 6.00 = 10.00 charged: exactly one cent more
        (9.99, [4.00, 6.00], -0.01, "more"),
    ],
)
def test_exactly_one_cent_apart_is_reconciled(
    billed: float, run_rows: list[float], difference: float, side: str
) -> None:
    with Client(Settings(api_key="k"), transport=_upstream(billed, run_rows, [7.25])) as c:
        result = c.call("reconcile_run", {"run_id": "rft_edge"})
    report = result.data
    assert (report.run_billed_usd, report.difference_usd) == (billed, difference)
    assert report.reconciled is True and result.alert is None
    assert report.row_count == 2 and report.rows is None and report.rows_scanned == 3  # rows only when asked
    assert "RECONCILED (within $0.01)" in result.summary() and f"(wallet charged {side})" in result.summary()


@pytest.mark.parametrize(
    ("billed", "run_rows", "difference", "shown", "side"),
    [
        # 10.011 billed, 4.00 + 6.00 = 10.00 charged: 1.1 cents less, shown to the cent as $0.01
        (10.011, [4.00, 6.00], 0.011, "$10.01", "less"),
        # 9.989 billed, 10.00 charged: 1.1 cents more
        (9.989, [4.00, 6.00], -0.011, "$9.99", "more"),
    ],
)
def test_a_tenth_of_a_cent_past_one_cent_is_a_mismatch(
    billed: float, run_rows: list[float], difference: float, shown: str, side: str
) -> None:
    with Client(Settings(api_key="k"), transport=_upstream(billed, run_rows, [7.25])) as c:
        result = c.call("reconcile_run", {"run_id": "rft_edge"})
    report = result.data
    assert (report.wallet_charged_usd, report.difference_usd) == (10.0, difference)
    assert report.reconciled is False and "MISMATCH by $0.01" in result.summary()
    assert result.alert == (
        f"run rft_edge does not reconcile: it reports {shown} billed, "
        f"its 2 wallet rows sum to $10.00, the wallet was charged $0.01 {side}"
    )
