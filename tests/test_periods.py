"""Spend per UTC day, ISO week and month (`spend --by`): against figures worked out by hand.

The sandbox's personal wallet (46 rows, 2026-11-14 19:00Z to 2026-11-20 10:00Z,
as `GET /api/v1/billing/wallet?limit=100` lists them) was totalled by hand, day
by day, below; the period boundaries (a Sunday 23:30Z, a date-time with an
offset, the ISO year) are checked on hand-picked moments and on a small wallet
of our own.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
from langchain_core.messages import ToolCall

from conftest import SCRIPTS, LiveSandbox, all_rows, cents, run, script_env
from prime_billing.client import Client, Result
from prime_billing.config import SANDBOX_API_KEY, Settings
from prime_billing.dates import period_of
from prime_billing.errors import InvalidInputError
from prime_billing.langchain import PrimeBillingToolkit
from prime_billing.operations import get
from prime_billing.render import render
from prime_billing.spend import MAX_PERIODS, SpendReport
from serve_harness import running, sandbox_settings

SPEND = str(SCRIPTS / "spend.py")

# --------------------------------------------------------------------------- the sandbox, by hand
# The personal wallet's rows per UTC day (amounts in cents; rft = rft_run, inf = inference, sbx = sandboxes):
#   11-20 Fri: pods 96, disks 85, rft 1030, rft 1030                           = 2241, 4 rows
#              rft 1030+1030 = 2060
#   11-19 Thu: rft 510, inf 392, rft 510, rft 1030, inf 17, pods 864, sbx 33, sbx 12 = 3368, 8 rows
#              rft 510+510+1030 = 2050 · pods 864 · inf 392+17 = 409 · sbx 33+12 = 45
#   11-18 Wed: pods 1204, rft 510, rft 350, pods 1288, rft 113, rft 510, pods 731 = 4706, 7 rows
#              pods 1204+1288+731 = 3223 · rft 510+350+113+510 = 1483
#   11-17 Tue: disks 240, inf 88, pods 57, disks 85, rft 100, rft 350, pods 318, rft 245, pods 640 = 2123, 9 rows
#              pods 57+318+640 = 1015 · rft 100+350+245 = 695 · disks 240+85 = 325 · inf 88
#   11-16 Mon: rft 510, disks 120, sbx 71, pods 1999, rft 510, rft 350, rft 1030, disks 120 = 4710, 8 rows
#              rft 510+510+350+1030 = 2400 · pods 1999 · disks 120+120 = 240 · sbx 71
#   11-15 Sun: inf 205, pods 2350, rft 510, disks 120, rft 350, rft 350, sbx 48, pods 149 = 4082, 8 rows
#              pods 2350+149 = 2499 · rft 510+350+350 = 1210 · inf 205 · disks 120 · sbx 48
#   11-14 Sat: rft 510, pods 412                                                = 922, 2 rows
# All: 2241+3368+4706+2123+4710+4082+922 = 22152 cents in 46 rows ($221.52, as the spend report says).
BY_DAY = [
    ("2026-11-20", 2241, 4, {"rft_run": 2060, "pods": 96, "disks": 85}),
    ("2026-11-19", 3368, 8, {"rft_run": 2050, "pods": 864, "inference": 409, "sandboxes": 45}),
    ("2026-11-18", 4706, 7, {"pods": 3223, "rft_run": 1483}),
    ("2026-11-17", 2123, 9, {"pods": 1015, "rft_run": 695, "disks": 325, "inference": 88}),
    ("2026-11-16", 4710, 8, {"rft_run": 2400, "pods": 1999, "disks": 240, "sandboxes": 71}),
    ("2026-11-15", 4082, 8, {"pods": 2499, "rft_run": 1210, "inference": 205, "disks": 120, "sandboxes": 48}),
    ("2026-11-14", 922, 2, {"rft_run": 510, "pods": 412}),
]
# ISO weeks: 2026-11-16 is a Monday, so W47 = Mon 16 .. Fri 20 and W46 = Sat 14 + Sun 15.
#   W47: 4710+2123+4706+3368+2241 = 17148 in 8+9+7+8+4 = 36 rows
#        rft 2400+695+1483+2050+2060 = 8688 · pods 1999+1015+3223+864+96 = 7197
#        disks 240+325+85 = 650 · inf 88+409 = 497 · sbx 71+45 = 116       (8688+7197+650+497+116 = 17148)
#   W46: 4082+922 = 5004 in 10 rows: pods 2499+412 = 2911 · rft 1210+510 = 1720 · inf 205 · disks 120 · sbx 48
BY_WEEK = [
    ("2026-W47", 17148, 36, {"rft_run": 8688, "pods": 7197, "disks": 650, "inference": 497, "sandboxes": 116}),
    ("2026-W46", 5004, 10, {"pods": 2911, "rft_run": 1720, "inference": 205, "disks": 120, "sandboxes": 48}),
]
# One month: 17148 + 5004 = 22152 in 46 rows; rft 8688+1720 = 10408 · pods 7197+2911 = 10108
# disks 650+120 = 770 · inf 497+205 = 702 · sbx 116+48 = 164
BY_MONTH = [
    ("2026-11", 22152, 46, {"rft_run": 10408, "pods": 10108, "disks": 770, "inference": 702, "sandboxes": 164}),
]
EXPECTED = {"day": BY_DAY, "week": BY_WEEK, "month": BY_MONTH}
#: where each period starts and ends (UTC): the newest and the oldest of each
BOUNDS = {
    "day": [("2026-11-20T00:00:00Z", "2026-11-21T00:00:00Z"), ("2026-11-14T00:00:00Z", "2026-11-15T00:00:00Z")],
    "week": [("2026-11-16T00:00:00Z", "2026-11-23T00:00:00Z"), ("2026-11-09T00:00:00Z", "2026-11-16T00:00:00Z")],
    "month": [("2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z")] * 2,
}


def figures(report: dict[str, Any]) -> list[tuple[str, int, int, dict[str, int]]]:
    """Each period of a report document as (label, cents, rows, {type: cents}), types in the report's order."""
    return [
        (
            p["period"],
            cents(p["total_usd"]),
            p["rows"],
            {g["key"]: cents(g["total_usd"]) for g in p["by_resource_type"]},
        )
        for p in report["periods"]
    ]


def test_the_hand_figures_are_the_sandboxs_own_rows(sandbox: LiveSandbox) -> None:
    """The rows the figures above were worked from: 46 of them, $221.52, from 2026-11-14 to 11-20."""
    rows = all_rows(sandbox)
    assert len(rows) == 46 and sum(cents(r["amount_usd"]) for r in rows) == 22152
    assert (rows[-1]["created_at"], rows[0]["created_at"]) == ("2026-11-14T19:00:00Z", "2026-11-20T10:00:00Z")
    assert sum(n for _, _, n, _ in BY_DAY) == 46 and sum(c for _, c, _, _ in BY_DAY) == 22152


@pytest.mark.parametrize("by", ["day", "week", "month"])
def test_the_cli_totals_each_period_as_worked_out_by_hand(sandbox: LiveSandbox, home: Path, by: str) -> None:
    out = run([SPEND, "--by", by, "--json"], script_env(home, sandbox.url))
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["by"] == by and report["empty_periods_listed"] is True
    assert figures(report) == EXPECTED[by]  # newest first, each type most spent first
    newest, oldest = report["periods"][0], report["periods"][-1]
    assert [(newest["start"], newest["end"]), (oldest["start"], oldest["end"])] == BOUNDS[by]
    # the report's other figures are as without `by`
    assert cents(report["total_usd"]) == 22152 and report["row_count"] == 46


def test_without_by_there_are_no_periods(sandbox: LiveSandbox, home: Path) -> None:
    out = run([SPEND, "--json"], script_env(home, sandbox.url))
    report = json.loads(out.stdout)
    assert report["by"] is None and "periods" not in report and "empty_periods_listed" not in report


def test_the_summary_lists_each_period_newest_first_with_its_types(sandbox: LiveSandbox, home: Path) -> None:
    out = run([SPEND, "--by", "day"], script_env(home, sandbox.url))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    start = lines.index("  by day (UTC), newest first")
    # each line: the day, its total, its rows, then its types, most spent first (the table above), and
    # a spike's mark: 11-15 spent 4082 against the one day with spend before it, 11-14's 922: 4082 / 922 =
    # 4.427 -> 4.4x. No other day is over 3x its median: 11-16 4710 against (922 + 4082) / 2 = 2502, 11-17
    # 2123 against 4082, 11-18 4706 against (2123 + 4082) / 2 = 3102.5, 11-19 3368 against 4082, 11-20 2241
    # against (3368 + 4082) / 2 = 3725
    spike = {"2026-11-15": ["▲", "4.4x", "the", "14-day", "median"]}
    assert [line.split() for line in lines[start + 1 : start + 8]] == [
        [day, f"${c / 100:,.2f}", str(n), "rows", *_types(types), *spike.get(day, [])] for day, c, n, types in BY_DAY
    ]
    first = "    2026-11-20                 $22.41     4 rows  rft_run $20.60 · pods $0.96 · disks $0.85"
    assert lines[start + 1] == first
    assert lines[start + 8] == "  by resource type"
    week = run([SPEND, "--by", "week"], script_env(home, sandbox.url)).stdout
    assert "  by week (UTC, weeks from Monday), newest first\n    2026-W47                  $171.48    36 rows" in week


def _types(types: dict[str, int]) -> list[str]:
    """`rft_run $20.60 · pods $0.96` as split() cuts it."""
    return " · ".join(f"{t} ${c / 100:,.2f}" for t, c in types.items()).split()


def test_since_and_by_together(sandbox: LiveSandbox, home: Path) -> None:
    """Since 2026-11-15: W46 keeps only Sunday's 8 rows (4082 cents); W47 is whole."""
    out = run([SPEND, "--by", "week", "--since", "2026-11-15", "--json"], script_env(home, sandbox.url))
    assert [(p, c, n) for p, c, n, _ in figures(json.loads(out.stdout))] == [
        ("2026-W47", 17148, 36),
        ("2026-W46", 4082, 8),
    ]


def test_csv_by_period_is_a_line_per_period_and_resource_type(sandbox: LiveSandbox, home: Path) -> None:
    out = run([SPEND, "--by", "week", "--csv", "-"], script_env(home, sandbox.url))
    assert out.returncode == 0, out.stderr
    got = list(csv.reader(io.StringIO(out.stdout)))
    assert got[0] == ["period", "start", "resource_type", "rows", "total_usd", "spike"]
    # rows per type, counted by hand from the day table's comments: W47 rft 4+3+4+3+2 = 16,
    # pods 1+3+3+1+1 = 9, disks 2+2+1 = 5, inference 1+2 = 3, sandboxes 1+2 = 3 (36 in all);
    # W46 pods 2+1 = 3, rft 3+1 = 4, inference, disks and sandboxes 1 each (10 in all)
    w47, w46 = "2026-11-16T00:00:00Z", "2026-11-09T00:00:00Z"
    assert {spike for *_, spike in got[1:]} == {""}  # a spike is a day's: weeks are never marked
    assert [(p, s, t, int(n), cents(float(usd))) for p, s, t, n, usd, _ in got[1:]] == [
        ("2026-W47", w47, "rft_run", 16, 8688),
        ("2026-W47", w47, "pods", 9, 7197),
        ("2026-W47", w47, "disks", 5, 650),
        ("2026-W47", w47, "inference", 3, 497),
        ("2026-W47", w47, "sandboxes", 3, 116),
        ("2026-W46", w46, "pods", 3, 2911),
        ("2026-W46", w46, "rft_run", 4, 1720),
        ("2026-W46", w46, "inference", 1, 205),
        ("2026-W46", w46, "disks", 1, 120),
        ("2026-W46", w46, "sandboxes", 1, 48),
    ]


# --------------------------------------------------------------------------- every surface, the same figures


@pytest.fixture
def launcher(sandbox: LiveSandbox) -> Iterator[Any]:
    with running(sandbox_settings(sandbox.url)) as launched:
        yield launched


def test_every_surface_gives_the_same_periods(launcher: Any, sandbox: LiveSandbox) -> None:
    from mcp import Client as MCPClient

    rest = httpx.get(launcher.urls["rest"] + "/v1/prime-billing/spend", params={"by": "day"})
    assert rest.status_code == 200, rest.text
    assert figures(rest.json()) == BY_DAY

    async def mcp() -> Any:
        async with MCPClient(launcher.urls["mcp"]) as client:
            return await client.call_tool("prime-intellect-spend", {"by": "day"})

    answer = asyncio.run(mcp())
    assert answer.is_error is not True and figures(answer.structured_content) == BY_DAY
    assert "  by day (UTC), newest first" in answer.content[0].text

    toolkit = PrimeBillingToolkit(base_url=sandbox.url, api_key=SANDBOX_API_KEY)
    try:
        tool = {t.name: t for t in toolkit.get_tools()}["spend_report"]
        message = tool.invoke(ToolCall(name="spend_report", args={"by": "day"}, id="1", type="tool_call"))
    finally:
        toolkit.close()
    assert isinstance(message.artifact, SpendReport)
    assert figures(message.artifact.model_dump(mode="json")) == BY_DAY
    assert "2026-11-18                 $47.06     7 rows" in message.content


# --------------------------------------------------------------------------- the boundaries, by hand

SUNDAY_LATE = datetime(2026, 11, 15, 23, 30, tzinfo=UTC)
#: 22:30 at -02:00 on October 31st
HALLOWEEN_LATE = datetime(2026, 10, 31, 22, 30, tzinfo=timezone(timedelta(hours=-2)))


@pytest.mark.parametrize(
    ("when", "by", "label", "start", "end"),
    [
        # a Sunday at 23:30Z belongs to the ISO week that began the Monday before (2026-11-09)
        (SUNDAY_LATE, "week", "2026-W46", (2026, 11, 9), (2026, 11, 16)),
        (SUNDAY_LATE, "day", "2026-11-15", (2026, 11, 15), (2026, 11, 16)),
        # Monday 00:30 at +01:00 is still Sunday 23:30 in UTC
        (datetime(2026, 11, 16, 0, 30, tzinfo=timezone(timedelta(hours=1))), "week", "2026-W46", (2026, 11, 9), None),
        (datetime(2026, 11, 16, 0, 30, tzinfo=timezone(timedelta(hours=1))), "day", "2026-11-15", None, None),
        # and Monday 00:00Z opens the next week
        (datetime(2026, 11, 16, tzinfo=UTC), "week", "2026-W47", (2026, 11, 16), (2026, 11, 23)),
        # 22:30 at -02:00 on October 31st is November 1st, 00:30Z: a Sunday, in W44 (Monday 2026-10-26)
        (HALLOWEEN_LATE, "month", "2026-11", (2026, 11, 1), None),
        (HALLOWEEN_LATE, "day", "2026-11-01", None, None),
        (HALLOWEEN_LATE, "week", "2026-W44", (2026, 10, 26), None),
        # a month ends at the next one's first moment, across the year too
        (datetime(2026, 12, 31, 23, 59, 59), "month", "2026-12", (2026, 12, 1), (2027, 1, 1)),  # naive: UTC
        (datetime(2026, 2, 28, 12, tzinfo=UTC), "month", "2026-02", (2026, 2, 1), (2026, 3, 1)),
        # ISO years: 2024-12-30 (a Monday) opens 2025-W01; 2026 began on a Thursday, so it has a week 53,
        # which holds 2027-01-01 (a Friday) and runs Monday 2026-12-28 to Sunday 2027-01-03
        (datetime(2024, 12, 30, tzinfo=UTC), "week", "2025-W01", (2024, 12, 30), (2025, 1, 6)),
        (datetime(2027, 1, 1, 8, tzinfo=UTC), "week", "2026-W53", (2026, 12, 28), (2027, 1, 4)),
        (datetime(2027, 1, 3, 23, 30, tzinfo=UTC), "week", "2026-W53", (2026, 12, 28), None),
        (datetime(2027, 1, 4, tzinfo=UTC), "week", "2027-W01", (2027, 1, 4), None),
        # 2021-01-03 (a Sunday) is in the last week of 2020 (W53, from Monday 2020-12-28)
        (datetime(2021, 1, 3, 12, tzinfo=UTC), "week", "2020-W53", (2020, 12, 28), None),
        # 2026-01-01 (a Thursday) is in 2026-W01, which began Monday 2025-12-29
        (datetime(2026, 1, 1, tzinfo=UTC), "week", "2026-W01", (2025, 12, 29), (2026, 1, 5)),
    ],
)
def test_period_of_a_moment(
    when: datetime, by: Any, label: str, start: tuple[int, ...] | None, end: tuple[int, ...] | None
) -> None:
    got_label, got_start, got_end = period_of(when, by)
    assert got_label == label
    assert got_start.tzinfo == UTC and got_end.tzinfo == UTC
    if start is not None:
        assert got_start == datetime(*start, tzinfo=UTC)
    if end is not None:
        assert got_end == datetime(*end, tzinfo=UTC)


def _row(n: int, when: str, cents_: int, resource_type: str) -> dict[str, Any]:
    return {
        "id": f"bill_{n}",
        "created_at": when,
        "amount_usd": cents_ / 100,
        "currency": "USD",
        "resource_type": resource_type,
        "resource_id": None,
    }


def _report(rows: list[dict[str, Any]], **args: Any) -> SpendReport:
    """`spend_report` over a wallet of our own rows (newest first), served page by page; made with
    every row and period unless `include_rows=False`."""
    args = {"include_rows": True, **args}

    def answer(request: httpx.Request) -> httpx.Response:
        limit, offset = int(request.url.params["limit"]), int(request.url.params["offset"])
        body = {
            "wallet_id": "wal_test",
            "team_id": None,
            "balance_usd": 10.0,
            "currency": "USD",
            "total_billings": len(rows),
            "recent_billings": rows[offset : offset + limit],
        }
        return httpx.Response(200, json=body)

    with Client(Settings(api_key="k", max_retries=0), transport=httpx.MockTransport(answer)) as client:
        return client.call("spend_report", args).data


#: newest first. Sunday 2026-11-15 23:30Z twice (once written at +01:00, as Monday 00:30), Monday 00:00Z,
#: then nothing on Tuesday or Wednesday, then two disk rows on Thursday whose floats do not add up exactly
BOUNDARY_ROWS = [
    _row(5, "2026-11-19T13:00:00Z", 20, "disks"),
    _row(4, "2026-11-19T12:00:00Z", 10, "disks"),
    _row(3, "2026-11-16T00:00:00Z", 400, "pods"),
    _row(2, "2026-11-16T00:30:00+01:00", 200, "rft_run"),
    _row(1, "2026-11-15T23:30:00Z", 100, "pods"),
]


def test_empty_periods_between_are_listed_at_zero_and_sums_are_exact() -> None:
    """By day: 11-19 = 0.10 + 0.20 = 0.30 exactly (as floats 0.1 + 0.2 is 0.30000000000000004);
    11-18 and 11-17 empty; 11-16 = 4.00; 11-15 = 2.00 (the +01:00 row) + 1.00."""
    report = _report(BOUNDARY_ROWS, by="day")
    days = [(p.period, p.total_usd, p.rows, [(g.key, g.total_usd) for g in p.by_resource_type]) for p in report.periods]
    assert days == [
        ("2026-11-19", 0.3, 2, [("disks", 0.3)]),
        ("2026-11-18", 0.0, 0, []),
        ("2026-11-17", 0.0, 0, []),
        ("2026-11-16", 4.0, 1, [("pods", 4.0)]),
        ("2026-11-15", 3.0, 2, [("rft_run", 2.0), ("pods", 1.0)]),
    ]
    assert report.empty_periods_listed is True


def test_the_boundary_rows_by_week_and_month() -> None:
    """W47 (from Monday 11-16 00:00Z): 4.00 + 0.10 + 0.20 = 4.30; W46: the two Sunday 23:30Z rows, 3.00.
    The month: 4.30 + 3.00 = 7.30."""
    weeks = _report(BOUNDARY_ROWS, by="week").periods
    assert [(p.period, p.total_usd, p.rows) for p in weeks] == [("2026-W47", 4.3, 3), ("2026-W46", 3.0, 2)]
    (month,) = _report(BOUNDARY_ROWS, by="month").periods
    assert (month.period, month.total_usd, month.rows) == ("2026-11", 7.3, 5)
    assert [(g.key, g.total_usd) for g in month.by_resource_type] == [("pods", 5.0), ("rft_run", 2.0), ("disks", 0.3)]


def test_csv_lists_an_empty_period_as_one_line_at_zero() -> None:
    out = io.StringIO()
    assert _report(BOUNDARY_ROWS, by="day").write_csv(out) == 6
    assert out.getvalue().splitlines() == [
        "period,start,resource_type,rows,total_usd,spike",
        "2026-11-19,2026-11-19T00:00:00Z,disks,2,0.3,",  # 0.30 against the median of 4.00 and 3.00: none
        "2026-11-18,2026-11-18T00:00:00Z,,0,0.0,",
        "2026-11-17,2026-11-17T00:00:00Z,,0,0.0,",
        "2026-11-16,2026-11-16T00:00:00Z,pods,1,4.0,",  # 4.00 against 3.00: 1.3x, none
        "2026-11-15,2026-11-15T00:00:00Z,rft_run,1,2.0,",
        "2026-11-15,2026-11-15T00:00:00Z,pods,1,1.0,",
    ]


def test_a_span_too_long_to_list_keeps_only_the_periods_with_rows() -> None:
    """2020-01-01 to 2026-11-20 is over MAX_PERIODS days, so by day only the two days with rows are listed;
    by month it is 2020-01 .. 2026-11: 6 x 12 + 11 = 83 months, all listed."""
    rows = [_row(2, "2026-11-20T10:00:00Z", 100, "pods"), _row(1, "2020-01-01T00:00:00Z", 50, "pods")]
    assert (datetime(2026, 11, 20) - datetime(2020, 1, 1)).days > MAX_PERIODS
    days = _report(rows, by="day")
    assert [(p.period, p.total_usd) for p in days.periods] == [("2026-11-20", 1.0), ("2020-01-01", 0.5)]
    assert days.empty_periods_listed is False
    assert "periods with no rows left out" in render(days).text()
    months = _report(rows, by="month")
    assert months.empty_periods_listed is True and len(months.periods) == 83
    assert (months.periods[0].period, months.periods[-1].period) == ("2026-11", "2020-01")
    assert sum(p.rows for p in months.periods) == 2


def test_the_summary_shows_the_newest_periods_and_says_where_the_rest_are() -> None:
    """A row a day for 40 days: the summary lists the newest 31 and says all 40 are in the structured result."""
    start = datetime(2026, 11, 20, 12, tzinfo=UTC)
    rows = [_row(i, f"{start - timedelta(days=i):%Y-%m-%dT%H:%M:%SZ}", 1, "pods") for i in range(40)]
    report = _report(rows, by="day")
    assert len(report.periods) == 40
    text = Result(get("spend_report"), report).summary()
    assert "by day (UTC), newest first (31 of 40; all in the structured result)" in text
    assert "2026-11-20" in text and "2026-10-21" in text and "2026-10-20" not in text


def test_without_include_rows_the_answer_holds_the_newest_periods_and_how_many_there_are() -> None:
    """The same 40 days, asked without the rows: the newest 31 periods (2026-11-20 back to 2026-10-21),
    `period_count` 40, and the summary says how to ask for the rest."""
    start = datetime(2026, 11, 20, 12, tzinfo=UTC)
    rows = [_row(i, f"{start - timedelta(days=i):%Y-%m-%dT%H:%M:%SZ}", 1, "pods") for i in range(40)]
    report = _report(rows, by="day", include_rows=False)
    assert [p.period for p in report.periods] == [f"{start - timedelta(days=i):%Y-%m-%d}" for i in range(31)]
    assert report.period_count == 40 and report.rows is None and report.by_resource_id is None
    assert "rows" not in report.model_dump(mode="json") and report.model_dump(mode="json")["period_count"] == 40
    text = Result(get("spend_report"), report).summary()
    assert "by day (UTC), newest first (31 of 40; all with include_rows=true)" in text
    with pytest.raises(InvalidInputError, match=r"without its rows: ask for them with include_rows=true$"):
        report.write_csv(io.StringIO())


def test_a_spike_is_marked_from_days_the_answer_does_not_list() -> None:
    """40 days of $0.01, newest 2026-11-20, but the 31st newest (2026-10-21) spent $0.04: its window
    (10-07 .. 10-20) holds 14 days of $0.01, 7 of them past the 31 listed: 4 / 1 = 4.0x, marked in the lean
    answer too. The newer days' windows hold that day: their median is still $0.01, and they spent 1x."""
    start = datetime(2026, 11, 20, 12, tzinfo=UTC)
    rows = [_row(i, f"{start - timedelta(days=i):%Y-%m-%dT%H:%M:%SZ}", 4 if i == 30 else 1, "pods") for i in range(40)]
    lean = _report(rows, by="day", include_rows=False)
    assert len(lean.periods) == 31 and lean.period_count == 40
    assert [(p.period, p.spike) for p in lean.periods if p.spike is not None] == [("2026-10-21", 4.0)]
    assert "2026-10-21                  $0.04     1 row  pods $0.04  ▲ 4.0x the 14-day median" in render(lean).text()
