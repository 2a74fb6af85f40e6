"""Pace: a period's spend against its budget, against figures worked out by hand on every surface.

The wallet below (`Calendar`) holds rows on chosen moments: at a period's first
moment, a second before it, at as_of itself, after it. Each case's period is the
calendar month, ISO week or UTC day holding as_of; the spend is the rows in
[period start, as_of). At the same pace the period ends at spend x length /
elapsed (rounded up to the cent), and reaches an amount at start + elapsed x
amount / spend (rounded down to the minute), inside the period only. Every
expected figure is a literal with its arithmetic beside it, never the code
under test's output. Percents are rounded down to 1/100 (the verdict shows them
whole, rounded down).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from langchain_core.messages import ToolCall, ToolMessage

from conftest import (
    SANDBOX_NOW,
    SCRIPTS,
    LiveSandbox,
    all_rows,
    assert_one_line_error,
    cents,
    run,
    script_env,
    start_sandbox,
)
from prime_billing.config import SANDBOX_API_KEY
from prime_billing.langchain import PrimeBillingToolkit
from prime_billing.operations import get
from prime_billing.pace import METHOD, Pace
from prime_billing.sandbox.faults import FaultySandbox
from serve_harness import running, sandbox_settings, tool_call

PACE = str(SCRIPTS / "pace.py")
REST_PATH = "/v1/prime-billing/pace"
TOOL = "prime-intellect-pace"
WALLET_ID = "wal_sbx_personal"


def _row(n: int, at: str, usd: float, resource_type: str) -> dict[str, Any]:
    return {
        "id": f"bill_cal_{n:02d}", "created_at": at, "updated_at": at, "last_billed_at": at, "amount_usd": usd,
        "currency": "USD", "resource_type": resource_type, "resource_id": f"{resource_type}_{n:02d}",
    }  # fmt: skip


#: the personal wallet, newest first
ROWS = [
    _row(15, "2027-01-01T11:59:59Z", 9.00, "pods"),  # W53, a second before the W53 case's as_of
    _row(14, "2026-12-31T23:00:00Z", 25.00, "rft_run"),  # W53; December's last hour
    _row(13, "2026-12-28T00:00:00Z", 20.00, "pods"),  # W53's first moment (Monday)
    _row(12, "2026-12-27T23:59:59Z", 30.00, "disks"),  # the Sunday before W53: the week before
    _row(11, "2026-12-10T23:59:59Z", 40.00, "pods"),
    _row(10, "2026-12-01T00:00:00Z", 60.00, "rft_run"),  # December's first moment
    _row(9, "2026-11-25T08:00:00Z", 50.00, "pods"),  # after the November cases' as_of
    _row(8, "2026-11-20T11:00:00Z", 7.00, "inference"),  # at their as_of: not before it, left out
    _row(7, "2026-11-20T10:59:00Z", 4.50, "inference"),
    _row(6, "2026-11-15T12:00:00Z", 100.00, "rft_run"),
    _row(5, "2026-11-01T00:00:00Z", 100.00, "pods"),  # November's first moment
    _row(4, "2026-10-31T23:59:59Z", 9.99, "disks"),  # a second before November
    _row(3, "2026-03-01T00:00:00Z", 12.00, "pods"),  # March's first moment
    _row(2, "2026-02-14T09:30:00Z", 55.00, "rft_run"),
    _row(1, "2026-01-31T23:00:00Z", 8.00, "pods"),  # January
]


class Calendar(FaultySandbox):
    """The personal wallet's rows are `ROWS` (its balance stays $123.45); the team's wallet stays the demo one."""

    def wallet_page(self, wallet: Mapping[str, Any], offset: int, limit: int) -> tuple[int, list[dict[str, Any]]]:
        if wallet["team_id"] is not None:
            return super().wallet_page(wallet, offset, limit)
        if self.page_cap is not None:
            limit = min(limit, self.page_cap)
        return len(ROWS), ROWS[offset : offset + limit]


def T(percent: float, usd: float, crossed: bool, at: str | None = None) -> tuple[float, float, bool, str | None]:
    """A threshold as `figures` gives it."""
    return (percent, usd, crossed, at)


#: name -> (arguments, figures, verdict, exit code)
CASES: dict[str, tuple[dict[str, Any], dict[str, Any], str, int]] = {
    # November, 30 days = 720 h. as_of 11-20 11:00Z: elapsed 19 d 11 h = 467 h = 19.4583 days, in day 20.
    # Spent: 11-01 00:00 100.00 + 11-15 12:00 100.00 + 11-20 10:59 4.50 = 204.50 in 3 rows (the 11:00 row is
    # as_of itself, the 11-25 one after it, the 10-31 one before the month).
    # Projected 204.50 x 720 / 467 = 147240 / 467 = 315.28907... -> $315.29 (up); / 300 = 105.0963 % -> 105.09.
    # Spent 204.50 / 300 = 68.1666 % -> 68.16. Crossing: 467 h x 300 / 204.50 = 685.0855 h = 28 d 13 h 5.1 min
    # -> 2026-11-29 13:05. 80 % = $240: 467 x 240 / 204.50 = 548.0684 h = 22 d 20 h 4.1 min -> 11-23 20:04.
    # 50 % = $150 <= 204.50: crossed.
    "the example": (
        {"budget": 300, "as_of": "2026-11-20T11:00:00Z"},
        {
            "period": ("month", "2026-11", "2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z", 30),
            "elapsed_days": 19.4583,
            "spend": 20450,
            "rows": 3,
            "spent_percent": 68.16,
            "projected": 31529,
            "projected_percent": 105.09,
            "crossing_at": "2026-11-29T13:05:00Z",
            "thresholds": [
                T(50, 150, True),
                T(80, 240, False, "2026-11-23T20:04:00Z"),
                T(100, 300, False, "2026-11-29T13:05:00Z"),
            ],
            "status": "over_pace",
        },
        "OVER PACE: $204.50 of $300.00 (68%) on day 20 of 30; on pace for $315.29 (105%), "
        "crossing $300.00 on 2026-11-29",
        3,
    ),
    # The same spend against $200: 204.50 - 200 = $4.50 over already; 204.50 / 200 = 102.25 %;
    # 315.28907 / 200 = 157.6445 % -> 157.64. Every threshold ($100, $160, $200) crossed; no crossing ahead.
    "over budget": (
        {"budget": 200, "as_of": "2026-11-20T11:00:00Z"},
        {
            "period": ("month", "2026-11", "2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z", 30),
            "elapsed_days": 19.4583,
            "spend": 20450,
            "rows": 3,
            "spent_percent": 102.25,
            "projected": 31529,
            "projected_percent": 157.64,
            "crossing_at": None,
            "thresholds": [T(50, 100, True), T(80, 160, True), T(100, 200, True)],
            "status": "over_budget",
        },
        "OVER BUDGET: $204.50 of $200.00 (102%) on day 20 of 30, $4.50 over; on pace for $315.29 (157%)",
        3,
    ),
    # Against $400: 204.50 / 400 = 51.125 % -> 51.12; 315.28907 / 400 = 78.8222 % -> 78.82; 400 - 315.29 = $84.71
    # under. 50 % = $200: crossed; 80 % = $320 and 100 % are beyond 315.29: not this month.
    "on pace": (
        {"budget": 400, "as_of": "2026-11-20T11:00:00Z"},
        {
            "period": ("month", "2026-11", "2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z", 30),
            "elapsed_days": 19.4583,
            "spend": 20450,
            "rows": 3,
            "spent_percent": 51.12,
            "projected": 31529,
            "projected_percent": 78.82,
            "crossing_at": None,
            "thresholds": [T(50, 200, True), T(80, 320, False), T(100, 400, False)],
            "status": "on_pace",
        },
        "ON PACE: $204.50 of $400.00 (51%) on day 20 of 30; on pace for $315.29 (78%), $84.71 under",
        0,
    ),
    # November's first second: [11-01 00:00, 11-01 00:00) holds nothing (the 00:00 row is as_of itself):
    # no time elapsed, no projection, no crossing, thresholds not reached nor dated.
    "a month's first second": (
        {"budget": 300, "as_of": "2026-11-01T00:00:00Z"},
        {
            "period": ("month", "2026-11", "2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z", 30),
            "elapsed_days": 0.0,
            "spend": 0,
            "rows": 0,
            "spent_percent": 0.0,
            "projected": None,
            "projected_percent": None,
            "crossing_at": None,
            "thresholds": [T(50, 150, False), T(80, 240, False), T(100, 300, False)],
            "status": "no_pace_yet",
        },
        "NO PACE YET: $0.00 of $300.00 (0%) at the month's first moment (2026-11-01 00:00 UTC); "
        "no time has passed, so no projection",
        0,
    ),
    # One second in: the 00:00 row ($100.00) is spent. 30 days = 2,592,000 s: 100 x 2,592,000 / 1 =
    # $259,200,000.00, / 300 = 86,400,000 %. Spent 100 / 300 = 33.333 % -> 33.33. The budget is reached at
    # 1 s x 300 / 100 = 3 s, 50 % at 1.5 s, 80 % at 2.4 s: each 00:00:0x -> 00:00 (down to the minute).
    "one second into a month": (
        {"budget": 300, "as_of": "2026-11-01T00:00:01Z"},
        {
            "period": ("month", "2026-11", "2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z", 30),
            "elapsed_days": 0.0,  # 1 / 86,400 = 0.0000115 -> 0.0000
            "spend": 10000,
            "rows": 1,
            "spent_percent": 33.33,
            "projected": 25920000000,
            "projected_percent": 86400000.0,
            "crossing_at": "2026-11-01T00:00:00Z",
            "thresholds": [
                T(50, 150, False, "2026-11-01T00:00:00Z"),
                T(80, 240, False, "2026-11-01T00:00:00Z"),
                T(100, 300, False, "2026-11-01T00:00:00Z"),
            ],
            "status": "over_pace",
        },
        "OVER PACE: $100.00 of $300.00 (33%) on day 1 of 30; on pace for $259,200,000.00 (86,400,000%), "
        "crossing $300.00 on 2026-11-01",
        3,
    ),
    # December, 31 days = 744 h. as_of 12-11 00:00Z: elapsed 10 d = 240 h, day 11. Spent 12-01 00:00 60.00 +
    # 12-10 23:59:59 40.00 = 100.00 in 2 rows. Projected 100 x 744 / 240 = $310.00 exactly: against $310 it
    # reaches the budget at the period's end, not inside it (100 x 744 = 74,400 = 310 x 240): on pace, $0.00
    # under, no crossing. 100 / 310 = 32.258 % -> 32.25. 50 % = $155: 240 x 155 / 100 = 372 h = 15 d 12 h ->
    # 12-16 12:00; 80 % = $248: 240 x 2.48 = 595.2 h = 24 d 19 h 12 min -> 12-25 19:12.
    "a 31-day month, on pace for the budget exactly": (
        {"budget": 310, "as_of": "2026-12-11"},
        {
            "period": ("month", "2026-12", "2026-12-01T00:00:00Z", "2027-01-01T00:00:00Z", 31),
            "elapsed_days": 10.0,
            "spend": 10000,
            "rows": 2,
            "spent_percent": 32.25,
            "projected": 31000,
            "projected_percent": 100.0,
            "crossing_at": None,
            "thresholds": [
                T(50, 155, False, "2026-12-16T12:00:00Z"),
                T(80, 248, False, "2026-12-25T19:12:00Z"),
                T(100, 310, False),
            ],
            "status": "on_pace",
        },
        "ON PACE: $100.00 of $310.00 (32%) on day 11 of 31; on pace for $310.00 (100%), $0.00 under",
        0,
    ),
    # A cent less: $310.00 > $309.99, over pace. 100 / 309.99 = 32.259 % -> 32.25; 310 / 309.99 = 100.0032 %
    # -> 100.00. Crossing 240 h x 309.99 / 100 = 743.976 h = 30 d 23 h 58.56 min -> 12-31 23:58: the 31st day.
    "a 31-day month, crossing on its last day": (
        {"budget": 309.99, "as_of": "2026-12-11"},
        {
            "period": ("month", "2026-12", "2026-12-01T00:00:00Z", "2027-01-01T00:00:00Z", 31),
            "elapsed_days": 10.0,
            "spend": 10000,
            "rows": 2,
            "spent_percent": 32.25,
            "projected": 31000,
            "projected_percent": 100.0,
            "crossing_at": "2026-12-31T23:58:00Z",
            "thresholds": [
                T(50, 154.995, False, "2026-12-16T11:59:00Z"),  # 240 x 154.995 / 100 = 371.988 h -> 15 d 11:59.28
                T(80, 247.992, False, "2026-12-25T19:10:00Z"),  # 240 x 2.47992 = 595.1808 h -> 24 d 19:10.85
                T(100, 309.99, False, "2026-12-31T23:58:00Z"),
            ],
            "status": "over_pace",
        },
        "OVER PACE: $100.00 of $309.99 (32%) on day 11 of 31; on pace for $310.00 (100%), "
        "crossing $309.99 on 2026-12-31",
        3,
    ),
    # December's last second: as_of 12-31 23:59:59, elapsed 31 d - 1 s = 2,678,399 s of 2,678,400, day 31.
    # Spent 60 + 40 + 30 + 20 + 25 = 175.00 in 5 rows (every December row). Projected 175 x 2,678,400 /
    # 2,678,399 = 175.0000653... -> $175.01 (up); / 200 = 87.50003 % -> 87.50; 175 / 200 = 87.5 %.
    # Elapsed 2,678,399 / 86,400 = 30.99998 days -> 30.9999. $200 - $175.01 = $24.99 under; 50 % and 80 %
    # ($100, $160) crossed; 100 %: not this month.
    "a 31-day month's last second": (
        {"budget": 200, "as_of": "2026-12-31T23:59:59Z"},
        {
            "period": ("month", "2026-12", "2026-12-01T00:00:00Z", "2027-01-01T00:00:00Z", 31),
            "elapsed_days": 30.9999,
            "spend": 17500,
            "rows": 5,
            "spent_percent": 87.5,
            "projected": 17501,
            "projected_percent": 87.5,
            "crossing_at": None,
            "thresholds": [T(50, 100, True), T(80, 160, True), T(100, 200, False)],
            "status": "on_pace",
        },
        "ON PACE: $175.00 of $200.00 (87%) on day 31 of 31; on pace for $175.01 (87%), $24.99 under",
        0,
    ),
    # February 2026, 28 days = 672 h. as_of 02-28 12:00: elapsed 27 d 12 h = 660 h = 27.5 days, day 28.
    # Spent 02-14 55.00 (the 01-31 row is January's, the 03-01 one March's). Projected 55 x 672 / 660 = $56.00;
    # against $55.50 over pace: 55 / 55.5 = 99.099 % -> 99.09, 56 / 55.5 = 100.9009 % -> 100.90. Crossing
    # 660 h x 55.5 / 55 = 666 h = 27 d 18 h -> 02-28 18:00. 50 % ($27.75) and 80 % ($44.40) crossed.
    "February": (
        {"budget": 55.5, "as_of": "2026-02-28T12:00:00Z"},
        {
            "period": ("month", "2026-02", "2026-02-01T00:00:00Z", "2026-03-01T00:00:00Z", 28),
            "elapsed_days": 27.5,
            "spend": 5500,
            "rows": 1,
            "spent_percent": 99.09,
            "projected": 5600,
            "projected_percent": 100.9,
            "crossing_at": "2026-02-28T18:00:00Z",
            "thresholds": [T(50, 27.75, True), T(80, 44.4, True), T(100, 55.5, False, "2026-02-28T18:00:00Z")],
            "status": "over_pace",
        },
        "OVER PACE: $55.00 of $55.50 (99%) on day 28 of 28; on pace for $56.00 (100%), crossing $55.50 on 2026-02-28",
        3,
    ),
    # Thresholds of one's own, given out of order: 90 % = $49.95, crossed; 99.5 % = $55.2225: 660 h x 55.2225 / 55
    # = 662.67 h = 27 d 14 h 40.2 min -> 02-28 14:40. The rest as above.
    "February, thresholds of its own": (
        {"budget": 55.5, "as_of": "2026-02-28T12:00:00Z", "warn": [99.5, 90]},
        {
            "period": ("month", "2026-02", "2026-02-01T00:00:00Z", "2026-03-01T00:00:00Z", 28),
            "elapsed_days": 27.5,
            "spend": 5500,
            "rows": 1,
            "spent_percent": 99.09,
            "projected": 5600,
            "projected_percent": 100.9,
            "crossing_at": "2026-02-28T18:00:00Z",
            "thresholds": [T(90, 49.95, True), T(99.5, 55.2225, False, "2026-02-28T14:40:00Z")],
            "status": "over_pace",
        },
        "OVER PACE: $55.00 of $55.50 (99%) on day 28 of 28; on pace for $56.00 (100%), crossing $55.50 on 2026-02-28",
        3,
    ),
    # A leap February (2028: 29 days), nothing spent: elapsed 28 d 12 h = 28.5 days, day 29 of 29; on pace for
    # $0.00, $10.00 under; nothing is reached this month.
    "a leap February, nothing spent": (
        {"budget": 10, "as_of": "2028-02-29T12:00:00Z"},
        {
            "period": ("month", "2028-02", "2028-02-01T00:00:00Z", "2028-03-01T00:00:00Z", 29),
            "elapsed_days": 28.5,
            "spend": 0,
            "rows": 0,
            "spent_percent": 0.0,
            "projected": 0,
            "projected_percent": 0.0,
            "crossing_at": None,
            "thresholds": [T(50, 5, False), T(80, 8, False), T(100, 10, False)],
            "status": "on_pace",
        },
        "ON PACE: $0.00 of $10.00 (0%) on day 29 of 29; on pace for $0.00 (0%), $10.00 under",
        0,
    ),
    # ISO week 53 of 2026: Monday 12-28 00:00 to Monday 2027-01-04 00:00 = 168 h. as_of Friday 2027-01-01 12:00:
    # elapsed 4 d 12 h = 108 h = 4.5 days, day 5 of 7. Spent 12-28 00:00 20.00 + 12-31 23:00 25.00 + 01-01
    # 11:59:59 9.00 = 54.00 in 3 rows (the Sunday 12-27 row is the week before). Projected 54 x 168 / 108 =
    # $84.00; 54 / 80 = 67.5 %, 84 / 80 = 105 %. Crossing 108 h x 80 / 54 = 160 h = 6 d 16 h -> Sunday
    # 2027-01-03 16:00; 80 % = $64: 108 x 64 / 54 = 128 h = 5 d 8 h -> 2027-01-02 08:00; 50 % = $40: crossed.
    "ISO week 53": (
        {"budget": 80, "period": "week", "as_of": "2027-01-01T12:00:00Z"},
        {
            "period": ("week", "2026-W53", "2026-12-28T00:00:00Z", "2027-01-04T00:00:00Z", 7),
            "elapsed_days": 4.5,
            "spend": 5400,
            "rows": 3,
            "spent_percent": 67.5,
            "projected": 8400,
            "projected_percent": 105.0,
            "crossing_at": "2027-01-03T16:00:00Z",
            "thresholds": [
                T(50, 40, True),
                T(80, 64, False, "2027-01-02T08:00:00Z"),
                T(100, 80, False, "2027-01-03T16:00:00Z"),
            ],
            "status": "over_pace",
        },
        "OVER PACE: $54.00 of $80.00 (67%) on day 5 of 7; on pace for $84.00 (105%), crossing $80.00 on 2027-01-03",
        3,
    ),
    # W53's first second: the Monday 00:00 row is as_of itself, left out: no pace yet.
    "a week's first second": (
        {"budget": 80, "period": "week", "as_of": "2026-12-28T00:00:00Z"},
        {
            "period": ("week", "2026-W53", "2026-12-28T00:00:00Z", "2027-01-04T00:00:00Z", 7),
            "elapsed_days": 0.0,
            "spend": 0,
            "rows": 0,
            "spent_percent": 0.0,
            "projected": None,
            "projected_percent": None,
            "crossing_at": None,
            "thresholds": [T(50, 40, False), T(80, 64, False), T(100, 80, False)],
            "status": "no_pace_yet",
        },
        "NO PACE YET: $0.00 of $80.00 (0%) at the week's first moment (2026-12-28 00:00 UTC); "
        "no time has passed, so no projection",
        0,
    ),
    # The UTC day 11-15, as_of 18:00: elapsed 18 h of 24, hour 19. Spent the 12:00 row, 100.00. Projected
    # 100 x 24 / 18 = 133.333... -> $133.34 (up); 100 / 120 = 83.333 % -> 83.33; 133.333 / 120 = 111.111 %
    # -> 111.11. Crossing 18 h x 120 / 100 = 21.6 h -> 21:36 (a time: the period is one day). 50 % ($60) and
    # 80 % ($96) crossed. Elapsed 18 / 24 = 0.75 days.
    "a day": (
        {"budget": 120, "period": "day", "as_of": "2026-11-15T18:00:00Z"},
        {
            "period": ("day", "2026-11-15", "2026-11-15T00:00:00Z", "2026-11-16T00:00:00Z", 1),
            "elapsed_days": 0.75,
            "spend": 10000,
            "rows": 1,
            "spent_percent": 83.33,
            "projected": 13334,
            "projected_percent": 111.11,
            "crossing_at": "2026-11-15T21:36:00Z",
            "thresholds": [T(50, 60, True), T(80, 96, True), T(100, 120, False, "2026-11-15T21:36:00Z")],
            "status": "over_pace",
        },
        "OVER PACE: $100.00 of $120.00 (83%) on hour 19 of 24; on pace for $133.34 (111%), crossing $120.00 at "
        "21:36 UTC",
        3,
    ),
    # The day's first second (its 12:00 row is later): no pace yet.
    "a day's first second": (
        {"budget": 120, "period": "day", "as_of": "2026-11-15"},
        {
            "period": ("day", "2026-11-15", "2026-11-15T00:00:00Z", "2026-11-16T00:00:00Z", 1),
            "elapsed_days": 0.0,
            "spend": 0,
            "rows": 0,
            "spent_percent": 0.0,
            "projected": None,
            "projected_percent": None,
            "crossing_at": None,
            "thresholds": [T(50, 60, False), T(80, 96, False), T(100, 120, False)],
            "status": "no_pace_yet",
        },
        "NO PACE YET: $0.00 of $120.00 (0%) at the day's first moment (2026-11-15 00:00 UTC); "
        "no time has passed, so no projection",
        0,
    ),
    # The team's (demo) wallet, dated from the sandbox's now 11-20 10:00: on 11-20, 15.00 + 16.25 + 16.75 + 15.50
    # = 63.50 in 4 rows (tests/test_runway.py). As of 23:00 that day: 23 h of 24, hour 24. Projected
    # 63.50 x 24 / 23 = 66.2608... -> $66.27; 63.5 / 100 = 63.5 %; 66.2608 / 100 -> 66.26 %; $100 - $66.27 =
    # $33.73 under; 50 % crossed, 80 % and 100 % not this day. Elapsed 23 / 24 = 0.958333 -> 0.9583 days.
    "the team's wallet": (
        {"budget": 100, "period": "day", "as_of": "2026-11-20T23:00:00Z", "team_id": "team_sbx_demo"},
        {
            "period": ("day", "2026-11-20", "2026-11-20T00:00:00Z", "2026-11-21T00:00:00Z", 1),
            "elapsed_days": 0.9583,
            "spend": 6350,
            "rows": 4,
            "spent_percent": 63.5,
            "projected": 6627,
            "projected_percent": 66.26,
            "crossing_at": None,
            "thresholds": [T(50, 50, True), T(80, 80, False), T(100, 100, False)],
            "status": "on_pace",
        },
        "ON PACE: $63.50 of $100.00 (63%) on hour 24 of 24; on pace for $66.27 (66%), $33.73 under",
        0,
    ),
}


def figures(doc: dict[str, Any]) -> dict[str, Any]:
    """The figures of a pace document as the cases state them, money in cents."""
    projected = doc["projected_usd"]
    return {
        "period": (doc["period"], doc["period_label"], doc["period_start"], doc["period_end"], doc["period_days"]),
        "elapsed_days": doc["elapsed_days"],
        "spend": cents(doc["spend_usd"]),
        "rows": doc["rows"],
        "spent_percent": doc["spent_percent"],
        "projected": None if projected is None else cents(projected),
        "projected_percent": doc["projected_percent"],
        "crossing_at": doc["crossing_at"],
        "thresholds": [(t["percent"], t["usd"], t["crossed"], t["at"]) for t in doc["thresholds"]],
        "status": doc["status"],
    }


def argv(args: dict[str, Any]) -> list[str]:
    flags = {"team_id": "--team"}
    out = []
    for k, v in args.items():
        out += [
            flags.get(k, "--" + k.replace("_", "-")),
            ",".join(f"{x:g}" for x in v) if isinstance(v, list) else str(v),
        ]
    return out


@pytest.fixture(scope="module")
def calendar() -> Iterator[LiveSandbox]:
    live, _ = start_sandbox(Calendar(now=datetime.fromisoformat(SANDBOX_NOW)))
    yield live
    live.server.shutdown()  # type: ignore[attr-defined]
    live.server.server_close()  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def launcher(calendar: LiveSandbox) -> Iterator[Any]:
    with running(sandbox_settings(calendar.url)) as launched:
        yield launched


def test_the_hand_figures_are_the_wallets_own_rows(calendar: LiveSandbox) -> None:
    rows = all_rows(calendar)
    assert [(r["created_at"], cents(r["amount_usd"])) for r in rows] == [
        (r["created_at"], cents(r["amount_usd"])) for r in ROWS
    ]
    team = all_rows(calendar, teamId="team_sbx_demo")
    assert sum(cents(r["amount_usd"]) for r in team if r["created_at"].startswith("2026-11-20")) == 6350
    assert sum(1 for r in team if r["created_at"].startswith("2026-11-20")) == 4


# --------------------------------------------------------------------------- the CLI and the script


@pytest.mark.parametrize(("args", "want", "verdict", "code"), list(CASES.values()), ids=list(CASES))
def test_the_script_answers_the_hand_figures(
    calendar: LiveSandbox, home: Path, args: dict, want: dict, verdict: str, code: int
) -> None:
    env = script_env(home, calendar.url)
    out = run([PACE, "--json", *argv(args)], env)
    assert out.returncode == code, out.stderr
    doc = json.loads(out.stdout)
    assert figures(doc) == want
    assert doc["method"] == METHOD and cents(doc["budget_usd"]) == round(args["budget"] * 100)
    team = args.get("team_id")
    assert (doc["wallet_id"], doc["team_id"]) == (("wal_sbx_team", team) if team else (WALLET_ID, None))
    assert (doc["alert"] is None) is (code == 0)
    text = run([PACE, *argv(args)], env)
    assert text.returncode == code
    assert text.stdout.splitlines()[1] == verdict  # after the sandbox banner: the verdict first
    if code == 3:
        assert text.stderr == f"pace.py: alert: {doc['alert']}\n"
    else:
        assert text.stderr == ""


def test_the_summary_in_full(calendar: LiveSandbox, home: Path) -> None:
    out = run([PACE, *argv(CASES["the example"][0])], script_env(home, calendar.url))
    assert out.stdout.splitlines() == [
        "SANDBOX DATA (demo account, not real billing)",
        CASES["the example"][2],
        f"  wallet {WALLET_ID} (personal) · balance $123.45 USD · budget $300.00 for the month 2026-11",
        # 19 d 11 h = 19.4583 days -> 19.45 (down)
        "  $204.50 spent in 3 rows from 2026-11-01 00:00 to 2026-11-20 11:00 UTC: 19.45 of the month's 30 days",
        "  thresholds: 50% ($150.00) crossed · 80% ($240.00) on 2026-11-23 · 100% ($300.00) on 2026-11-29",
        f"  method: {METHOD}",
    ]
    day = run([PACE, *argv(CASES["a day"][0])], script_env(home, calendar.url)).stdout.splitlines()
    assert (
        day[3] == "  $100.00 spent in 1 row from 2026-11-15 00:00 to 2026-11-15 18:00 UTC: 18.00 of the day's 24 hours"
    )
    assert day[4] == "  thresholds: 50% ($60.00) crossed · 80% ($96.00) crossed · 100% ($120.00) at 21:36 UTC"
    first = run([PACE, *argv(CASES["a month's first second"][0])], script_env(home, calendar.url)).stdout
    assert "  thresholds: 50% ($150.00) no pace yet · 80% ($240.00) no pace yet · 100% ($300.00) no pace yet" in first
    on = run([PACE, *argv(CASES["on pace"][0])], script_env(home, calendar.url)).stdout
    assert "  thresholds: 50% ($200.00) crossed · 80% ($320.00) not this month · 100% ($400.00) not this month" in on


def test_the_alerts_say_by_how_much(calendar: LiveSandbox, home: Path) -> None:
    """Over pace: $315.29 - $300 = $15.29, reached on 11-29; over budget: $204.50 - $200 = $4.50."""
    env = script_env(home, calendar.url)
    over_pace = run([PACE, *argv(CASES["the example"][0])], env)
    assert over_pace.stderr == (
        f"pace.py: alert: wallet {WALLET_ID} is on pace to spend $315.29 in the month 2026-11, $15.29 over its "
        "budget $300.00 (reached on 2026-11-29)\n"
    )
    over = run(["-m", "prime_billing", "pace", *argv(CASES["over budget"][0])], env)
    assert over.returncode == 3 and over.stderr == (
        f"prime-billing: alert: wallet {WALLET_ID} spent $204.50 in the month 2026-11, $4.50 over its budget $200.00\n"
    )
    day = run([PACE, "--json", *argv(CASES["a day"][0])], env)
    assert json.loads(day.stdout)["alert"] == (
        f"wallet {WALLET_ID} is on pace to spend $133.34 in the day 2026-11-15, $13.34 over its budget $120.00 "
        "(reached at 21:36 UTC)"
    )


def test_the_cli_and_the_script_agree(calendar: LiveSandbox, home: Path) -> None:
    env = script_env(home, calendar.url)
    args = argv(CASES["ISO week 53"][0])
    cli = run(["-m", "prime_billing", "pace", *args], env)
    script = run([PACE, *args], env)
    assert (cli.returncode, cli.stdout) == (script.returncode, script.stdout) == (3, script.stdout)


def test_the_wallet_is_read_back_to_the_periods_start_only(calendar: LiveSandbox, home: Path) -> None:
    """3 rows a page: the whole wallet (15 rows) is 5 pages. The day 2026-11-15 needs the rows down to the first
    one older than its start (the 11-01 row, the 11th): pages 1-4 (rows 1-12), read 1, then 1, then 2 at once."""
    calendar.faults(page_cap=3)
    calendar.box.stats.clear()
    try:
        out = run([PACE, "--json", *argv(CASES["a day"][0])], script_env(home, calendar.url))
    finally:
        calendar.box.clear_faults()
    doc = json.loads(out.stdout)
    assert (cents(doc["spend_usd"]), doc["rows"]) == (10000, 1)
    assert doc["pages"] == calendar.requests("/wallet") == 4


WARN_WORDS = "warn must be up to 10 percents of the budget, each from 1 to 1000, like 50,80,100, got "


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--budget", "0"], "budget must be >= 0.01, got 0"),
        (["--budget", "lots"], "budget must be a number, got 'lots'"),
        ([], "budget is required"),
        (["--budget", "300", "--period", "year"], "period must be 'day', 'week' or 'month', got 'year'"),
        (["--budget", "300", "--warn", "50,eighty"], WARN_WORDS + "'eighty'"),
        (["--budget", "300", "--warn", "0,50"], WARN_WORDS + "0"),
        (["--budget", "300", "--warn", "50,,80"], WARN_WORDS + "''"),
        (["--budget", "300", "--warn", "1,2,3,4,5,6,7,8,9,10,11"], WARN_WORDS + "'1,2,3,4,5,6,7,8,9,10,11'"),
        (["--budget", "300", "--as-of", "next month"], "as_of must be a date like 2026-11-01"),
    ],
)
def test_bad_arguments_are_refused_before_sending(calendar: LiveSandbox, home: Path, args: list, words: str) -> None:
    calendar.box.stats.clear()
    out = run([PACE, *args], script_env(home, calendar.url))
    assert_one_line_error(out, 2, f"pace.py: error: {words}")
    assert calendar.requests() == 0


# --------------------------------------------------------------------------- every surface


def test_langchain_tool_answers_the_hand_figures(calendar: LiveSandbox) -> None:
    toolkit = PrimeBillingToolkit(base_url=calendar.url, api_key=SANDBOX_API_KEY)
    tool = {t.name: t for t in toolkit.get_tools()}["pace"]
    try:
        for i, (name, (args, want, verdict, code)) in enumerate(CASES.items()):
            message = tool.invoke(ToolCall(name="pace", args=args, id=f"c{i}", type="tool_call"))
            assert isinstance(message, ToolMessage) and message.status == "success", (name, message.content)
            assert isinstance(message.artifact, Pace)
            assert figures(message.artifact.model_dump(mode="json")) == want, name
            assert message.content.splitlines()[1] == verdict, name  # a failed check is an answer, not an error
            assert (message.artifact.alert is None) is (code == 0), name

        async def go() -> ToolMessage:
            return await tool.ainvoke({"name": "pace", "args": CASES["ISO week 53"][0], "id": "a", "type": "tool_call"})

        assert figures(asyncio.run(go()).artifact.model_dump(mode="json")) == CASES["ISO week 53"][1]
        # thresholds as text, as on the CLI, are the same thresholds
        text = tool.invoke(
            ToolCall(name="pace", args={**CASES["February"][0], "warn": "99.5, 90"}, id="t", type="tool_call")
        )
        assert figures(text.artifact.model_dump(mode="json")) == CASES["February, thresholds of its own"][1]
    finally:
        toolkit.close()


def test_rest_and_mcp_answer_the_hand_figures_as_one_document(launcher: Any) -> None:
    from mcp import Client as MCPClient

    rest = launcher.urls["rest"] + REST_PATH

    async def go() -> tuple[Any, list[Any]]:
        async with MCPClient(launcher.urls["mcp"]) as client:
            listed = {t.name: t for t in (await client.list_tools()).tools}
            return listed[TOOL], [await client.call_tool(TOOL, args) for args, _, _, _ in CASES.values()]

    listed, answers = asyncio.run(go())
    assert listed.annotations.read_only_hint is True and listed.input_schema["required"] == ["budget"]
    for (name, (args, want, verdict, code)), answer in zip(CASES.items(), answers, strict=True):
        query = {p.wire: args[p.name] for p in get("pace").params if p.name in args}
        if "warn" in query:
            query["warn"] = ",".join(f"{x:g}" for x in query["warn"])
        r = httpx.get(rest, params=query)
        assert r.status_code == 200 and r.headers["x-prime-sandbox"] == "1", r.text
        assert figures(r.json()) == want, name
        assert (r.json()["alert"] is None) is (code == 0), name
        assert answer.is_error is not True and answer.structured_content == r.json(), name
        assert answer.content[0].text.splitlines()[1] == verdict, name
    with httpx.Client(timeout=30) as http:  # and over the plain JSON-RPC of streamable HTTP
        result = tool_call(http, launcher.urls["mcp"], TOOL, CASES["February"][0])
    assert figures(result["structuredContent"]) == CASES["February"][1]


def test_the_openapi_document_says_how_warn_is_written(launcher: Any) -> None:
    doc = httpx.get(launcher.urls["rest"] + "/openapi.json").json()
    params = {p["name"]: p for p in doc["paths"][REST_PATH]["get"]["parameters"]}
    assert set(params) == {"budget", "period", "warn", "as_of", "teamId"}
    warn = params["warn"]
    assert (warn["in"], warn["style"], warn["explode"], warn["required"]) == ("query", "form", False, False)
    assert warn["schema"]["type"] == "array" and warn["schema"]["items"]["type"] == "number"
    assert warn["schema"]["default"] == [50, 80, 100]
    assert params["budget"]["required"] is True and "style" not in params["budget"]


@pytest.mark.parametrize(
    ("query", "args", "words"),
    [
        # the same bad value, as text on REST and as JSON in MCP: one message
        ({"budget": "300", "warn": "50,2000"}, {"budget": 300, "warn": [50, 2000]}, "got 2000"),
        ({"budget": "300", "warn": "50,x"}, {"budget": 300, "warn": [50, "x"]}, "got 'x'"),
        ({"budget": "0"}, {"budget": 0}, "budget must be >= 0.01, got 0"),
    ],
)
def test_a_bad_argument_reads_the_same_on_rest_mcp_and_langchain(
    launcher: Any, calendar: LiveSandbox, query: dict, args: dict, words: str
) -> None:
    calendar.box.stats.clear()
    rest = httpx.get(launcher.urls["rest"] + REST_PATH, params=query)
    assert rest.status_code == 422
    detail = rest.json()["detail"]
    assert detail.endswith(words)
    with httpx.Client(timeout=30) as http:
        refused = tool_call(http, launcher.urls["mcp"], TOOL, args)
    assert refused["isError"] and refused["content"][0]["text"] == detail
    tool = next(
        t for t in PrimeBillingToolkit(base_url=calendar.url, api_key=SANDBOX_API_KEY).get_tools() if t.name == "pace"
    )
    assert tool.invoke(args) == detail
    assert calendar.requests() == 0


def test_the_servers_row_cap_counts_only_the_period(sandbox: LiveSandbox) -> None:
    """20,000 rows: the 46 demo ones (11-14 19:00 to 11-20 10:00), then a $0.01 row a minute older each, back
    to 11-01 00:25. A cap of 50 rows a report: the week W47 to 11-20 12:00 keeps its 36 demo rows ($171.48,
    tests/test_periods.py) and is served; the month keeps all 20,000 and is refused, advising `?period=`."""
    sandbox.faults(rows=20_000)
    with running(sandbox_settings(sandbox.url), only="rest", max_report_rows=50) as served:
        rest = served.urls["rest"] + REST_PATH
        week = httpx.get(rest, params={"budget": 500, "period": "week", "as_of": "2026-11-20T12:00:00Z"})
        month = httpx.get(rest, params={"budget": 500, "as_of": "2026-11-20T12:00:00Z"})
    assert week.status_code == 200, week.text
    assert (cents(week.json()["spend_usd"]), week.json()["rows"]) == (17148, 36)
    assert month.status_code == 422 and month.json()["code"] == "report_too_large"
    assert "narrow it with ?period=" in month.json()["detail"]


def test_the_demo_wallet_as_the_reference_shows_it(home: Path) -> None:
    """`--sandbox`, its now pinned to 2026-11-20 10:00Z: November holds every demo row, $221.52 in 46, by 11:00.
    221.52 x 720 / 467 = 341.5297... -> $341.53; 221.52 / 300 = 73.84 %, 341.5297 / 300 = 113.84 %; crossing
    467 h x 300 / 221.52 = 632.448 h = 26 d 8 h 26.9 min -> 11-27 08:26; 80 % ($240): 467 x 240 / 221.52 =
    505.959 h = 21 d 1 h 57.6 min -> 11-22 01:57."""
    out = run([PACE, "--sandbox", "--budget", "300", "--as-of", "2026-11-20T11:00:00Z"], script_env(home))
    assert out.returncode == 3
    assert out.stderr == (  # $341.53 - $300 = $41.53
        "pace.py: alert: wallet wal_sbx_personal is on pace to spend $341.53 in the month 2026-11, $41.53 over its "
        "budget $300.00 (reached on 2026-11-27)\n"
    )
    assert out.stdout.splitlines()[1:5] == [
        "OVER PACE: $221.52 of $300.00 (73%) on day 20 of 30; on pace for $341.53 (113%), "
        "crossing $300.00 on 2026-11-27",
        "  wallet wal_sbx_personal (personal) · balance $123.45 USD · budget $300.00 for the month 2026-11",
        "  $221.52 spent in 46 rows from 2026-11-01 00:00 to 2026-11-20 11:00 UTC: 19.45 of the month's 30 days",
        "  thresholds: 50% ($150.00) crossed · 80% ($240.00) on 2026-11-22 · 100% ($300.00) on 2026-11-27",
    ]
    doc = json.loads(
        run(
            [PACE, "--sandbox", "--json", "--budget", "300", "--as-of", "2026-11-20T11:00:00Z"], script_env(home)
        ).stdout
    )
    assert (doc["crossing_at"], doc["thresholds"][1]["at"]) == ("2026-11-27T08:26:00Z", "2026-11-22T01:57:00Z")
    assert (doc["spent_percent"], doc["projected_percent"]) == (73.84, 113.84)


def test_now_is_the_default_as_of(home: Path) -> None:
    """Without --as-of the period is the one holding now, and the spend runs to now: bracketed by the clock."""
    before = datetime.now(UTC).replace(microsecond=0)
    doc = json.loads(run([PACE, "--sandbox", "--json", "--budget", "1", "--period", "day"], script_env(home)).stdout)
    after = datetime.now(UTC)
    as_of = datetime.fromisoformat(doc["as_of"])
    assert before <= as_of <= after
    assert doc["period_label"] == f"{as_of:%Y-%m-%d}"


def test_a_time_ago_is_counted_from_the_calls_one_now(home: Path, calendar: LiveSandbox) -> None:
    """`today` is this UTC day's midnight: the day period's first moment, so no pace yet, on the CLI and in a
    tool alike (the day asked for is bracketed by the clock, in case midnight passes meanwhile)."""
    before = datetime.now(UTC)
    out = run([PACE, "--json", "--budget", "5", "--period", "day", "--as-of", "today"], script_env(home, calendar.url))
    toolkit = PrimeBillingToolkit(base_url=calendar.url, api_key=SANDBOX_API_KEY)
    try:
        tool = {t.name: t for t in toolkit.get_tools()}["pace"]
        message = tool.invoke(
            ToolCall(name="pace", args={"budget": 5, "period": "day", "as_of": "today"}, id="1", type="tool_call")
        )
    finally:
        toolkit.close()
    after = datetime.now(UTC)
    midnights = {f"{before:%Y-%m-%d}T00:00:00Z", f"{after:%Y-%m-%d}T00:00:00Z"}
    for doc in (json.loads(out.stdout), message.artifact.model_dump(mode="json")):
        assert doc["status"] == "no_pace_yet" and doc["projected_usd"] is None
        assert doc["as_of"] == doc["period_start"] and doc["as_of"] in midnights
