"""Spend report: every wallet row exactly once, totals to the cent, CSV and JSON export;
scripts as subprocesses against the sandbox on loopback (long wallets and the progress bar:
test_paging.py)."""

from __future__ import annotations

import csv
import json
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest

from conftest import SCRIPTS, LiveSandbox, all_rows, assert_one_line_error, cents, run, script_env

SPEND = str(SCRIPTS / "spend.py")


def spend_json(live: LiveSandbox, home: Path, *args: str) -> dict:
    out = run([SPEND, "--json", *args], script_env(home, live.url))
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""  # piped: no progress
    return json.loads(out.stdout)


def test_every_row_once_and_totals_to_the_cent(sandbox: LiveSandbox, home: Path) -> None:
    report = spend_json(sandbox, home)
    assert report["pages"] == sandbox.requests("/wallet") == 1
    rows = all_rows(sandbox)
    ids = [r["id"] for r in report["rows"]]
    assert len(ids) == len(set(ids)) == report["row_count"] == report["total_billings"] == 46
    assert set(ids) == {r["id"] for r in rows}
    assert report["rows"] == rows  # the rows as the upstream sent them, newest first
    assert cents(report["total_usd"]) == sum(cents(r["amount_usd"]) for r in rows) == 22152

    by_type = Counter[str]()
    for r in rows:
        by_type[r["resource_type"]] += cents(r["amount_usd"])
    assert {g["key"]: cents(g["total_usd"]) for g in report["by_resource_type"]} == dict(by_type)
    assert [g["total_usd"] for g in report["by_resource_type"]] == sorted(
        (g["total_usd"] for g in report["by_resource_type"]), reverse=True
    )
    # every row lands in exactly one resource-id group
    assert sum(g["rows"] for g in report["by_resource_id"]) == 46
    assert sum(cents(g["total_usd"]) for g in report["by_resource_id"]) == 22152
    top = [(g["key"], g["total_usd"], g["rows"]) for g in report["top_runs"]]
    assert top == [
        ("rft_sbx_cached", 41.2, 4),
        ("rft_sbx_completed", 40.8, 8),
        ("rft_sbx_running", 17.5, 5),
        ("rft_sbx_failed", 2.45, 1),
        ("rft_sbx_mismatch", 2.13, 2),
    ]
    assert report["newest_at"] == "2026-11-20T10:00:00Z"


def test_short_pages_and_rows_arriving_mid_paging_still_give_each_row_once(sandbox: LiveSandbox, home: Path) -> None:
    # 7 rows per page, and 3 new rows arrive after the first page: every later offset shifts by 3
    sandbox.faults(page_cap=7, new_rows=3)
    report = spend_json(sandbox, home)
    ids = [r["id"] for r in report["rows"]]
    assert len(ids) == len(set(ids)) == 46
    assert report["pages"] == sandbox.requests("/wallet") == 7
    sandbox.box.clear_faults()
    assert set(ids) == {r["id"] for r in all_rows(sandbox)}  # the wallet as it was when paging began
    assert cents(report["total_usd"]) == 22152


@pytest.mark.parametrize("since", ["2026-11-19", "2026-11-18T09:43:00Z", "2026-11-18T10:43:00+01:00"])
def test_since_keeps_rows_at_or_after_the_moment_and_stops_paging_early(
    sandbox: LiveSandbox, home: Path, since: str
) -> None:
    rows = all_rows(sandbox)
    sandbox.box.stats.clear()
    sandbox.faults(page_cap=7)
    report = spend_json(sandbox, home, "--since", since)
    moment = datetime.fromisoformat(since if "T" in since else since + "T00:00:00+00:00")
    expected = [r for r in rows if datetime.fromisoformat(r["created_at"]) >= moment]
    assert 0 < len(expected) < 46
    assert [r["id"] for r in report["rows"]] == [r["id"] for r in expected]
    assert cents(report["total_usd"]) == sum(cents(r["amount_usd"]) for r in expected)
    assert datetime.fromisoformat(report["since"]) == moment.astimezone(UTC)
    assert report["pages"] == sandbox.requests("/wallet") < 7  # older pages never fetched


def test_csv_export_matches_the_json_rows(sandbox: LiveSandbox, home: Path, tmp_path: Path) -> None:
    target = tmp_path / "spend.csv"
    env = script_env(home, sandbox.url)
    out = run([SPEND, "--csv", str(target)], env)
    assert out.returncode == 0, out.stderr
    assert "$221.52" in out.stdout and "in 46 rows" in out.stdout  # the summary still goes to stdout
    got = list(csv.DictReader(target.open()))
    rows = all_rows(sandbox)
    assert [r["id"] for r in got] == [r["id"] for r in rows]
    assert sum(cents(float(r["amount_usd"])) for r in got) == 22152
    assert got[0]["created_at"] == rows[0]["created_at"]
    inference = [r for r in got if r["resource_type"] == "inference"]
    assert inference and all(r["resource_id"] == "" and r["last_billed_at"] == "" for r in inference)

    to_stdout = run([SPEND, "--csv", "-"], env)
    assert to_stdout.returncode == 0
    assert to_stdout.stdout.splitlines()[0].startswith("id,created_at,")
    assert len(to_stdout.stdout.splitlines()) == 47
    both = run([SPEND, "--csv", "-", "--json"], env)
    assert both.returncode == 2 and "give --csv a file name" in both.stderr


def test_summary_carries_the_totals(sandbox: LiveSandbox, home: Path) -> None:
    out = run([SPEND, "--top", "2"], script_env(home, sandbox.url))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("SANDBOX DATA")
    assert "all time · $221.52 USD in 46 rows · balance $123.45" in lines[1]
    by_type = {ln.split()[0]: ln for ln in lines if ln.startswith("    ") and "[" not in ln}
    assert "$104.08" in by_type["rft_run"] and "20 rows" in by_type["rft_run"]
    assert "top runs (2 of 5; all in --json or --csv)" in out.stdout and "$41.20" in by_type["rft_sbx_cached"]
    assert "rft_sbx_running" not in out.stdout  # only the top two


def test_team_wallet(sandbox: LiveSandbox, home: Path) -> None:
    report = spend_json(sandbox, home, "--team", "team_sbx_demo")
    rows = all_rows(sandbox, teamId="team_sbx_demo")
    assert report["wallet_id"] == "wal_sbx_team" and report["row_count"] == 8
    assert (
        cents(report["total_usd"]) == sum(cents(r["amount_usd"]) for r in rows) == sum(1500 + 25 * i for i in range(8))
    )
    assert report["top_runs"] == []


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--since", "last week"], "since must be a date like 2026-11-01"),
        (["--since", "2026-13-01"], "since must be a date like"),
        (["--top", "0"], "top must be 1..100, got 0"),
        (["--team", "../x"], "team_id '../x' is not a valid id"),
    ],
)
def test_bad_arguments_are_refused_before_sending(
    sandbox: LiveSandbox, home: Path, args: list[str], needle: str
) -> None:
    assert_one_line_error(run([SPEND, *args], script_env(home, sandbox.url)), 2, needle)
    assert sandbox.requests() == 0


def test_a_failing_page_fails_the_report_without_partial_output(sandbox: LiveSandbox, home: Path) -> None:
    sandbox.faults(next=[{"status": 402, "path": "/wallet"}])
    out = run([SPEND, "--json"], script_env(home, sandbox.url))
    assert out.returncode == 1 and out.stdout == ""
    assert "payment required (402" in out.stderr and out.stderr.count("\n") == 1
