"""Spikes and bars in `spend --by day`, against figures worked out by hand on every surface.

A day is a spike when it spent more than 3x the median of the days with any
spend among the 14 days before it (days in the report only); the mark gives
that ratio rounded down to one decimal. The wallet below (`Spiky`) is built so
that each rule shows: a ratio just over 3, one exactly 3, a day 15 days back
left out of the window, days with no spend left out of the median, a ratio
that rounds down, and days with nothing before them.

Daily totals (cents), October 2026, each day's window and its median:
  10-01 1000 · 10-02 1000 · 10-03 1000           nothing before 10-01; 10-02: [1000], 10-03: [1000, 1000]: no spike
  10-04 3100   window [1000, 1000, 1000], median 1000: 3100 > 3000, ratio 3.1        -> ▲ 3.1x
  10-05 3000   window [1000, 1000, 1000, 3100], median (1000 + 1000) / 2 = 1000: 3000 is 3x, not more
  10-06 none, 10-08 .. 10-18 none
  10-07  200   window 09-23 .. 10-06: [1000, 1000, 1000, 3000, 3100], median 1000: no
  10-19 1200   window 10-05 .. 10-18: [200, 3000], median 1600: no
  10-20 4500   window 10-06 .. 10-19: [200, 1200] (10-05 is 15 days back, 10-06 spent nothing), median 700:
               4500 / 700 = 6.428...                                                  -> ▲ 6.4x
               (with 10-05 it would be [200, 1200, 3000], median 1200: 3.75; with 10-06 as 0, median 200: 22.5)
  10-21 5028   window 10-07 .. 10-20: [200, 1200, 4500], median 1200: 5028 / 1200 = 4.19 -> ▲ 4.1x (down)
All: 1000 x 3 + 3100 + 3000 + 200 + 1200 + 4500 + 5028 = 20028 cents in 11 rows.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections.abc import Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from langchain_core.messages import ToolCall

from conftest import SANDBOX_NOW, SCRIPTS, LiveSandbox, all_rows, cents, run, run_tty, script_env, start_sandbox
from prime_billing.config import SANDBOX_API_KEY
from prime_billing.langchain import PrimeBillingToolkit
from prime_billing.sandbox.faults import FaultySandbox
from prime_billing.spend import SpendReport
from serve_harness import running, sandbox_settings

SPEND = str(SCRIPTS / "spend.py")
MARK = "the 14-day median"


def _row(n: int, at: str, usd: float, resource_type: str) -> dict[str, Any]:
    return {
        "id": f"bill_spk_{n:02d}", "created_at": at, "updated_at": at, "last_billed_at": at, "amount_usd": usd,
        "currency": "USD", "resource_type": resource_type, "resource_id": f"{resource_type}_{n:02d}",
    }  # fmt: skip


#: newest first
ROWS = [
    _row(11, "2026-10-21T23:59:59Z", 25.28, "pods"),
    _row(10, "2026-10-21T06:00:00Z", 25.00, "rft_run"),
    _row(9, "2026-10-20T16:00:00Z", 25.00, "pods"),
    _row(8, "2026-10-20T08:00:00Z", 20.00, "rft_run"),
    _row(7, "2026-10-19T12:00:00Z", 12.00, "pods"),
    _row(6, "2026-10-07T12:00:00Z", 2.00, "disks"),
    _row(5, "2026-10-05T12:00:00Z", 30.00, "pods"),
    _row(4, "2026-10-04T09:00:00Z", 31.00, "rft_run"),
    _row(3, "2026-10-03T12:00:00Z", 10.00, "pods"),
    _row(2, "2026-10-02T12:00:00Z", 10.00, "pods"),
    _row(1, "2026-10-01T00:00:00Z", 10.00, "pods"),
]

#: (day, cents, rows, spike), newest first: every day from 10-21 back to 10-01, the empty ones at 0
BY_DAY = [
    ("2026-10-21", 5028, 2, 4.1),
    ("2026-10-20", 4500, 2, 6.4),
    ("2026-10-19", 1200, 1, None),
    *((f"2026-10-{d:02d}", 0, 0, None) for d in range(18, 7, -1)),
    ("2026-10-07", 200, 1, None),
    ("2026-10-06", 0, 0, None),
    ("2026-10-05", 3000, 1, None),
    ("2026-10-04", 3100, 1, 3.1),
    ("2026-10-03", 1000, 1, None),
    ("2026-10-02", 1000, 1, None),
    ("2026-10-01", 1000, 1, None),
]


class Spiky(FaultySandbox):
    """The personal wallet's rows are `ROWS`."""

    def wallet_page(self, wallet: Mapping[str, Any], offset: int, limit: int) -> tuple[int, list[dict[str, Any]]]:
        if wallet["team_id"] is not None:
            return super().wallet_page(wallet, offset, limit)
        return len(ROWS), ROWS[offset : offset + limit]


def figures(report: dict[str, Any]) -> list[tuple[str, int, int, float | None]]:
    return [(p["period"], cents(p["total_usd"]), p["rows"], p["spike"]) for p in report["periods"]]


@pytest.fixture(scope="module")
def spiky() -> Iterator[LiveSandbox]:
    live, _ = start_sandbox(Spiky(now=datetime.fromisoformat(SANDBOX_NOW)))
    yield live
    live.server.shutdown()  # type: ignore[attr-defined]
    live.server.server_close()  # type: ignore[attr-defined]


def test_the_hand_figures_are_the_wallets_own_rows(spiky: LiveSandbox) -> None:
    rows = all_rows(spiky)
    assert len(rows) == 11 and sum(cents(r["amount_usd"]) for r in rows) == 20028
    assert sum(c for _, c, _, _ in BY_DAY) == 20028 and sum(n for _, _, n, _ in BY_DAY) == 11 and len(BY_DAY) == 21


def test_the_cli_marks_each_spike_in_json_text_and_csv(spiky: LiveSandbox, home: Path) -> None:
    env = script_env(home, spiky.url)
    out = run([SPEND, "--by", "day", "--json"], env)
    assert out.returncode == 0, out.stderr
    assert figures(json.loads(out.stdout)) == BY_DAY

    text = run([SPEND, "--by", "day"], env)
    lines = text.stdout.splitlines()
    start = lines.index("  by day (UTC), newest first")
    marked = {line.split()[0]: line for line in lines[start + 1 : start + 22] if MARK in line}
    assert sorted(marked) == ["2026-10-04", "2026-10-20", "2026-10-21"]
    assert lines[start + 1] == (
        "    2026-10-21                 $50.28     2 rows  pods $25.28 · rft_run $25.00  ▲ 4.1x the 14-day median"
    )
    assert marked["2026-10-20"].endswith("  ▲ 6.4x the 14-day median")
    assert marked["2026-10-04"].endswith("rft_run $31.00  ▲ 3.1x the 14-day median")
    assert "█" not in text.stdout  # piped: no bars

    table = list(csv.reader(io.StringIO(run([SPEND, "--by", "day", "--csv", "-"], env).stdout)))
    assert table[0] == ["period", "start", "resource_type", "rows", "total_usd", "spike"]
    spike = {(r[0], r[2]): r[5] for r in table[1:]}
    assert spike[("2026-10-21", "pods")] == spike[("2026-10-21", "rft_run")] == "4.1"  # each line of the day
    assert spike[("2026-10-20", "rft_run")] == "6.4" and spike[("2026-10-04", "rft_run")] == "3.1"
    assert spike[("2026-10-05", "pods")] == spike[("2026-10-06", "")] == ""  # exactly 3x; a day with no rows
    # marked: 10-21 and 10-20 (two types each, a line each), 10-04; the other 18 days a line each
    assert sum(1 for v in spike.values() if v) == 5 and len(table) == 1 + 2 + 2 + 1 + 18

    cli = run(["-m", "prime_billing", "spend", "--by", "day"], env)
    assert cli.stdout == text.stdout


def test_weeks_and_months_are_never_marked(spiky: LiveSandbox, home: Path) -> None:
    """The rule is a day's: W43 (10-19 .. 10-25) spent 1200 + 4500 + 5028 = 10728, over 3x the others, unmarked."""
    env = script_env(home, spiky.url)
    for by in ("week", "month"):
        report = json.loads(run([SPEND, "--by", by, "--json"], env).stdout)
        assert all(p["spike"] is None for p in report["periods"]), by
    weeks = json.loads(run([SPEND, "--by", "week", "--json"], env).stdout)["periods"]
    assert (weeks[0]["period"], cents(weeks[0]["total_usd"])) == ("2026-W43", 10728)
    assert MARK not in run([SPEND, "--by", "week"], env).stdout


def test_only_the_reports_own_days_count(spiky: LiveSandbox, home: Path) -> None:
    """Since 10-20: 10-20 has no day before it in the report, and 10-21's window holds 10-20 only
    (median 4500: 5028 is not 3x): no mark. Since 10-06: 10-20 and 10-21 as before (their windows start
    at 10-06 and 10-07), but 10-19's window keeps only 10-07 (10-05 is not read): 1200 / 200 = 6.0, marked;
    10-07 has no day before it in the report."""
    env = script_env(home, spiky.url)
    late = json.loads(run([SPEND, "--by", "day", "--since", "2026-10-20", "--json"], env).stdout)
    assert figures(late) == [("2026-10-21", 5028, 2, None), ("2026-10-20", 4500, 2, None)]
    mid = json.loads(run([SPEND, "--by", "day", "--since", "2026-10-06", "--json"], env).stdout)
    want = [(d, c, n, 6.0 if d == "2026-10-19" else spike) for d, c, n, spike in BY_DAY if d >= "2026-10-07"]
    assert figures(mid) == want


def test_every_surface_marks_the_same_days(spiky: LiveSandbox) -> None:
    from mcp import Client as MCPClient

    with running(sandbox_settings(spiky.url)) as launcher:
        rest = httpx.get(launcher.urls["rest"] + "/v1/prime-billing/spend", params={"by": "day"})

        async def mcp() -> Any:
            async with MCPClient(launcher.urls["mcp"]) as client:
                return await client.call_tool("prime-intellect-spend", {"by": "day"})

        answer = asyncio.run(mcp())
    assert rest.status_code == 200, rest.text
    assert figures(rest.json()) == BY_DAY
    assert answer.is_error is not True and answer.structured_content == rest.json()
    text = answer.content[0].text
    assert "$50.28     2 rows  pods $25.28 · rft_run $25.00  ▲ 4.1x the 14-day median" in text
    assert text.count(MARK) == 3 and "█" not in text  # a model reads no bars

    toolkit = PrimeBillingToolkit(base_url=spiky.url, api_key=SANDBOX_API_KEY)
    try:
        tool = {t.name: t for t in toolkit.get_tools()}["spend_report"]
        message = tool.invoke(ToolCall(name="spend_report", args={"by": "day"}, id="1", type="tool_call"))
    finally:
        toolkit.close()
    assert isinstance(message.artifact, SpendReport)
    assert figures(message.artifact.model_dump(mode="json")) == BY_DAY
    assert message.content == text and "█" not in message.content


def test_a_terminal_shows_a_bar_per_day_and_a_pipe_none(spiky: LiveSandbox, home: Path) -> None:
    """Bars of 20 cells at the largest day shown (10-21, $50.28), to the nearest eighth of a cell:
    10-20: 45.00 / 50.28 x 160 = 143.2 -> 143 eighths = 17 cells + 7/8; 10-19: 12 / 50.28 x 160 = 38.2 -> 38 =
    4 + 6/8; 10-07: 2 / 50.28 x 160 = 6.4 -> 6/8; 10-04: 31 / 50.28 x 160 = 98.6 -> 99 = 12 + 3/8; 10-01:
    10 / 50.28 x 160 = 31.8 -> 32 = 4 cells. A day with nothing spent: no bar."""
    env = script_env(home, spiky.url)
    code, shown, _ = run_tty([SPEND, "--by", "day"], env, stream="stdout")
    assert code == 0
    lines = {line.split()[0]: line for line in shown.splitlines() if line.startswith("    2026-10-")}

    def bar_of(day: str) -> str:
        cell = lines[day].split("  ")  # the bar sits between the total and the row count
        return next((c.strip() for c in cell if c.strip() and set(c.strip()) <= set("█▏▎▍▌▋▊▉")), "")

    assert bar_of("2026-10-21") == "█" * 20
    assert bar_of("2026-10-20") == "█" * 17 + "▉"
    assert bar_of("2026-10-19") == "████▊"
    assert bar_of("2026-10-07") == "▊"
    assert bar_of("2026-10-04") == "█" * 12 + "▍"
    assert bar_of("2026-10-01") == "████"
    assert bar_of("2026-10-06") == ""
    # each bar in a column of 20 cells, so the row counts line up
    assert lines["2026-10-21"] == (
        "    2026-10-21                 $50.28  " + "█" * 20 + "     2 rows  pods $25.28 · rft_run $25.00  "
        "▲ 4.1x the 14-day median"
    )
    assert lines["2026-10-06"] == "    2026-10-06                  $0.00  " + " " * 20 + "     0 rows"
    piped = run([SPEND, "--by", "day"], env)
    assert piped.returncode == 0 and not set(piped.stdout) & set("█▏▎▍▌▋▊▉")
