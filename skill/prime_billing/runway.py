"""When does the balance run out? The balance against the spend of the last days, as a straight line.

The spend in the window [as_of - days, as_of) divided by its days is the rate;
the balance above the minimum divided by the rate is the days left. Sums are
exact (Decimal). The wallet is read newest first and no further back than the
window's start, and `as_of` (default now) lets a past window be asked for
(the sandbox's rows sit on fixed dates).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, Decimal
from typing import Any

from .compose import Tally, scan_wallet
from .dates import parse_when, utc
from .money import money, usd_float
from .plan import Plan
from .report import WalletCheck, below_minimum

METHOD = "straight line: spend in the window / the window's days"


class Runway(WalletCheck):
    """How long the balance lasts at the window's rate, and the day it reaches the minimum (or zero)."""

    #: what the balance is counted down to (0: empty)
    min_balance_usd: float
    method: str = METHOD
    #: the window: `window_days` days before `window_end` (as_of), its start inclusive, its end not
    window_days: int
    window_start: datetime
    window_end: datetime
    #: spent in the window, in how many rows; wallet pages read to find them
    spend_usd: float
    rows: int
    pages: int
    #: spend_usd / window_days, to 1/100 of a cent
    usd_per_day: float
    #: (balance - minimum) / usd_per_day, rounded down to 1/100 of a day; 0 at or below the minimum;
    #: None when nothing was spent in the window, or when it is beyond any float
    days_left: float | None
    #: the day (UTC) window_end + days_left falls on; window_end's day at or below the minimum; None when
    #: nothing was spent, or past the calendar's end (9999-12-31)
    empty_on: date | None

    def failure(self) -> str | None:
        """The balance is already below the minimum."""
        if money(self.balance_usd) >= money(self.min_balance_usd):
            return None
        return below_minimum(self.wallet_id, self.balance_usd, self.min_balance_usd)


def window(args: Mapping[str, Any]) -> tuple[datetime, datetime]:
    """The window's start and end, UTC: the `days` before `as_of` (default now). A start before
    the calendar's first day is that day."""
    end = utc(parse_when(args["as_of"])) if args.get("as_of") else datetime.now(UTC)
    try:
        return end - timedelta(days=int(args["days"])), end
    except OverflowError:
        return datetime.min.replace(tzinfo=UTC), end


def runway(args: dict[str, Any]) -> Plan:
    """Plan: the wallet back to the window's start, then the straight line."""
    start, end = window(args)
    days = int(args["days"])
    window_rows = Tally(lambda r: utc(r.created_at) < end)  # newer than as_of: after the window
    scan = yield from scan_wallet(args.get("team_id"), window_rows, start)
    spent = window_rows.total
    above = money(scan.wallet.balance_usd) - money(args.get("min_balance") or 0)
    left: Decimal | None = None if spent <= 0 else above * days / spent
    return Runway.of(
        scan.wallet,
        scan.sandbox,
        min_balance_usd=args.get("min_balance") or 0,
        window_days=days,
        window_start=start,
        window_end=end,
        spend_usd=usd_float(spent),
        rows=window_rows.row_count,
        pages=scan.pages,
        usd_per_day=usd_float(_rounded(spent / days, ROUND_HALF_EVEN, 4)),
        days_left=0.0 if above <= 0 else None if left is None else _finite(_rounded(left, ROUND_DOWN, 2)),
        empty_on=end.date() if above <= 0 else None if left is None else _day_after(end, left),
    )


def _rounded(value: Decimal, rounding: str, places: int) -> Decimal:
    """To `places` decimals; a value too large for that keeps its own precision."""
    return value.quantize(Decimal(1).scaleb(-places), rounding) if value.adjusted() < 20 else value


def _finite(value: Decimal) -> float | None:
    """Days as a float; None beyond any float (a count of days, not an amount: no error)."""
    number = float(value)
    return number if math.isfinite(number) else None


def _day_after(moment: datetime, days: Decimal) -> date | None:
    try:
        return (moment + timedelta(days=float(days))).date()
    except OverflowError:
        return None
