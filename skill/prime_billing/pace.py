"""Are we on track this period? The spend so far against a period's budget, as a straight line.

The period is the calendar month, ISO week (from Monday 00:00 UTC) or UTC day
holding `as_of` (default now). The rows created in [period start, as_of) are the
spend; at the same pace the period ends at spend x its length / the time elapsed,
and reaches an amount (the budget, or a threshold: a percent of it) at start +
elapsed x amount / spend. Sums are exact (Decimal), the line is worked in exact
fractions, and what it tells is never better than it is: a projection is rounded
up to the cent, a moment it gives down to the minute. A percent is rounded down
to 1/100, so the one shown reaches a threshold exactly when the spend does. The
wallet is read newest first and no further back than the period's start.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict

from .compose import Tally, scan_wallet
from .dates import Period, parse_when, period_of, utc
from .money import money, usd, usd_float
from .plan import Plan
from .report import WalletCheck
from .untrusted import shown

METHOD = "straight line from the period's start: spend so far x the period's length / the time elapsed"

#: over_budget: spent more than the budget; over_pace: not yet, but on pace to; on_pace: on pace
#: for at most the budget; no_pace_yet: as_of is the period's first moment, so nothing to project
Status = Literal["over_budget", "over_pace", "on_pace", "no_pace_yet"]

_MICROSECOND = timedelta(microseconds=1)


class Threshold(BaseModel):
    """One warning threshold: a percent of the budget, and whether or when the spend reaches it."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    percent: float
    #: percent x budget / 100
    usd: float
    #: the spend so far is at least `usd`
    crossed: bool
    #: when the line reaches it, to the minute (rounded down): None when crossed already, when
    #: nothing was spent, or when the period ends first
    at: datetime | None = None


class Pace(WalletCheck):
    """The spend of a period so far against its budget, and where the period ends at that pace."""

    budget_usd: float
    method: str = METHOD
    #: the period asked for (`month`, `week` or `day`), its label (2026-11, 2026-W47, 2026-11-20),
    #: its first moment and the next period's (UTC)
    period: Period
    period_label: str
    period_start: datetime
    period_end: datetime
    #: its length in days (28-31, 7 or 1)
    period_days: int
    #: the moment measured at; the rows before it count
    as_of: datetime
    #: as_of - period_start, in days, rounded down to 1/10,000
    elapsed_days: float
    #: spent in [period_start, as_of), in how many rows; wallet pages read to find them
    spend_usd: float
    rows: int
    pages: int
    #: spend / budget, in percent rounded down to 1/100
    spent_percent: float
    #: spend x period length / elapsed, rounded up to the cent; None at the period's first moment
    projected_usd: float | None
    projected_percent: float | None
    #: when the line reaches the budget (as `Threshold.at`)
    crossing_at: datetime | None
    #: the thresholds asked for, lowest first
    thresholds: list[Threshold]
    status: Status

    def failure(self) -> str | None:
        """Spent more than the budget, or on pace to."""
        budget = money(self.budget_usd)
        what = f"the {self.period} {self.period_label}"
        if self.status == "over_budget":
            over = usd_float(money(self.spend_usd) - budget)
            return (
                f"wallet {shown(self.wallet_id)} spent {usd(self.spend_usd)} in {what}, "
                f"{usd(over)} over its budget {usd(self.budget_usd)}"
            )
        if self.status == "over_pace" and self.projected_usd is not None:
            over = usd_float(money(self.projected_usd) - budget)
            reached = f" (reached {reached_when(self.crossing_at, self.period)})" if self.crossing_at else ""
            return (
                f"wallet {shown(self.wallet_id)} is on pace to spend {usd(self.projected_usd)} in {what}, "
                f"{usd(over)} over its budget {usd(self.budget_usd)}{reached}"
            )
        return None


def reached_when(moment: datetime, period: Period) -> str:
    """When a line reaches an amount, as its period needs it said: the day, or in a day's period the time."""
    moment = utc(moment)
    return f"at {moment:%H:%M} UTC" if period == "day" else f"on {moment:%Y-%m-%d}"


class Span(NamedTuple):
    """The period holding as_of, and as_of itself (UTC)."""

    label: str
    start: datetime
    end: datetime
    as_of: datetime


def span(args: Mapping[str, Any]) -> Span:
    """The period of the checked inputs: the one holding `as_of` (default now)."""
    as_of = utc(parse_when(args["as_of"])) if args.get("as_of") else datetime.now(UTC)
    return Span(*period_of(as_of, args.get("period") or "month"), as_of)


def pace(args: dict[str, Any]) -> Plan:
    """Plan: the wallet back to the period's start, then the straight line."""
    label, start, end, as_of = span(args)
    period: Period = args.get("period") or "month"
    so_far = Tally(lambda r: utc(r.created_at) < as_of)  # after as_of: not spent yet at as_of
    scan = yield from scan_wallet(args.get("team_id"), so_far, start)
    spent = so_far.total
    budget = money(args["budget"])
    elapsed, length = (as_of - start) // _MICROSECOND, (end - start) // _MICROSECOND
    line = _Line(Fraction(spent), elapsed, length, start)
    projected = line.projected()
    if spent > budget:
        status: Status = "over_budget"
    elif projected is None:
        status = "no_pace_yet"
    else:
        status = "over_pace" if projected > budget else "on_pace"
    thresholds = []
    for percent in args.get("warn", ()):
        amount = budget * money(percent) / 100
        thresholds.append(
            Threshold(percent=percent, usd=usd_float(amount), crossed=spent >= amount, at=line.reaches(amount))
        )
    return Pace.of(
        scan.wallet,
        scan.sandbox,
        budget_usd=args["budget"],
        period=period,
        period_label=label,
        period_start=start,
        period_end=end,
        period_days=(end - start).days,
        as_of=as_of,
        elapsed_days=_down(Fraction(elapsed, timedelta(days=1) // _MICROSECOND), 4),
        spend_usd=usd_float(spent),
        rows=so_far.row_count,
        pages=scan.pages,
        spent_percent=_down(Fraction(spent) * 100 / Fraction(budget), 2),
        projected_usd=None if projected is None else usd_float(_cents_up(projected)),
        projected_percent=None if projected is None else _down(projected * 100 / Fraction(budget), 2),
        crossing_at=line.reaches(budget),
        thresholds=thresholds,
        status=status,
    )


class _Line(NamedTuple):
    """The spend as a straight line from the period's start: `spent` after `elapsed` of `length`
    (microseconds), exact."""

    spent: Fraction
    elapsed: int
    length: int
    start: datetime

    def projected(self) -> Fraction | None:
        """What the period ends at; None when no time has passed."""
        return None if self.elapsed == 0 else self.spent * self.length / self.elapsed

    def reaches(self, amount: Decimal) -> datetime | None:
        """When the line reaches `amount`, to the minute rounded down: only after as_of (the spend is
        below it) and before the period's end; otherwise None."""
        target = Fraction(amount)
        if self.spent <= 0 or self.spent >= target or self.spent * self.length <= target * self.elapsed:
            return None
        moment = self.start + timedelta(microseconds=math.floor(self.elapsed * target / self.spent))
        return moment.replace(second=0, microsecond=0)


def _cents_up(value: Fraction) -> Decimal:
    return Decimal(math.ceil(value * 100)).scaleb(-2)


def _down(value: Fraction, places: int) -> float:
    return usd_float(Decimal(math.floor(value * 10**places)).scaleb(-places))
