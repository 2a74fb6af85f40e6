"""What did we spend, and on what? Every wallet row (or every row of a window), totalled.

Totals by resource type, the runs and other resources that cost most, totals
per UTC day, ISO week or month when asked (`by`), a day that spent far more than
the days before it marked (a spike); and, with `include_rows`,
every resource id's total, every period and the rows themselves (for export).
Sums are exact to the cent (Decimal), and paging reads every row exactly once.
The report is folded as the rows arrive (`_Spend`): it holds its sums, never
the rows, unless its answer holds them.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime, timedelta
from decimal import ROUND_FLOOR, Decimal
from typing import IO, Any, ClassVar

from pydantic import BaseModel, ConfigDict

from .compose import scan_wallet
from .dates import Period, named_period, parse_when, period_start, utc
from .export import write_rows_csv, write_table
from .models import RUN_TYPE, BillingEntry
from .money import money, usd_float
from .plan import Plan
from .report import WalletReport, asked_for, held_when_asked
from .wording import mark

#: the most periods listed with the empty ones in between; a longer span lists only periods with rows
#: (a day per row over ~2.7 years; a row dated in year 1 would otherwise ask for 700,000 days)
MAX_PERIODS = 1000
#: periods an answer without `include_rows` lists (the newest), and a summary shows
PERIODS_LISTED = 31
#: the columns of the CSV by period (`by` given): one line per period and resource type
PERIOD_CSV_COLUMNS = ("period", "start", "resource_type", "rows", "total_usd", "spike")
#: a day is a spike when it spent more than SPIKE_FACTOR x the median of the days that spent anything
#: among the SPIKE_DAYS before it (in the report: rows older than `since` are not read)
SPIKE_DAYS = 14
SPIKE_FACTOR = 3


class SpendGroup(BaseModel):
    model_config = ConfigDict(frozen=True, defer_build=True)

    #: resource type or resource id; None for rows that name no resource
    key: str | None
    total_usd: float
    rows: int
    #: the group's resource type (for groups by resource id)
    resource_type: str | None = None


class SpendPeriod(BaseModel):
    """One day, week or month of spend (UTC), and what it went on."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    #: 2026-11-20 (day), 2026-W47 (ISO week) or 2026-11 (month)
    period: str
    #: the period's first moment, and the next one's (exclusive), UTC
    start: datetime
    end: datetime
    total_usd: float
    rows: int
    #: most spent first; empty for a period with no rows
    by_resource_type: list[SpendGroup]
    #: by day only: the day's spend over the median of the days with spend among the 14 before it, to 0.1
    #: rounded down, when it is more than 3; else None
    spike: float | None = None


class SpendReport(WalletReport):
    """Spend of one wallet over all its rows, or those created in [since, until)."""

    #: what `--csv` writes (CLI help; the marker is worded per surface)
    csv_what: ClassVar[str] = (
        f"the rows (with {mark('by')}: one line per period and resource type, " + ",".join(PERIOD_CSV_COLUMNS) + ")"
    )

    #: the lower bound asked for (inclusive), None for all rows
    since: datetime | None = None
    #: the upper bound asked for (exclusive), None for rows up to now
    until: datetime | None = None
    #: rows in the wallet when paging began (all time)
    total_billings: int
    #: rows in this report
    row_count: int
    pages: int
    total_usd: float
    #: newest and oldest row in the report
    newest_at: datetime | None = None
    oldest_at: datetime | None = None
    #: every resource type, most spent first
    by_resource_type: list[SpendGroup]
    #: the most expensive RFT runs, most first: at most `top` of the `run_count` runs
    top_runs: list[SpendGroup]
    run_count: int
    #: the most expensive other resources (pods, disks...; rows naming none are one group of their type),
    #: most first: at most `top` of `other_resource_count`
    top_other_resources: list[SpendGroup]
    other_resource_count: int
    #: with `include_rows` only: every resource id's total (runs and others), most spent first
    by_resource_id: list[SpendGroup] | None = held_when_asked()
    #: the period asked for, None when none was
    by: Period | None = None
    #: with `by` only: every period from the newest row's back to the oldest row's, newest first, the empty
    #: ones at 0 (see `empty_periods_listed`); without `include_rows`, the newest PERIODS_LISTED of `period_count`
    periods: list[SpendPeriod] | None = held_when_asked()
    period_count: int | None = held_when_asked()
    #: with `by` only: false when the span held more than MAX_PERIODS periods, so only those with rows are listed
    empty_periods_listed: bool | None = held_when_asked()
    #: with `include_rows` only: every row of the report, newest first
    rows: list[BillingEntry] | None = held_when_asked()

    def write_csv(self, out: IO[str]) -> int:
        """The rows; with `by`, one line per period and resource type instead (an empty period: one line).
        Either needs the report made with every row (`include_rows`)."""
        rows = asked_for(self.rows)
        if self.periods is None:
            return write_rows_csv(rows, out)
        lines = (
            [
                p.period,
                p.start.strftime("%Y-%m-%dT%H:%M:%SZ"),
                g.key or "",
                g.rows,
                g.total_usd,
                "" if p.spike is None else p.spike,
            ]
            for p in self.periods
            for g in p.by_resource_type or [SpendGroup(key=None, total_usd=0.0, rows=0)]
        )
        return write_table(out, PERIOD_CSV_COLUMNS, lines)


class _Sums:
    """Exact totals and row counts per key (a resource type, or a (type, id) pair), the keys in the order
    first seen: the sort by total keeps that order between equal ones."""

    def __init__(self) -> None:
        self.sums: dict[Any, Decimal] = defaultdict(Decimal)
        self.counts: dict[Any, int] = defaultdict(int)

    def add(self, key: Any, amount: Decimal) -> None:
        self.sums[key] += amount
        self.counts[key] += 1

    def groups(self) -> list[SpendGroup]:
        """Most spent first."""
        sums, counts = self.sums, self.counts
        return [
            SpendGroup(
                key=k[-1] if isinstance(k, tuple) else k,
                total_usd=usd_float(sums[k]),
                rows=counts[k],
                resource_type=k[0] if isinstance(k, tuple) else None,
            )
            for k in sorted(sums, key=lambda k: (-sums[k], str(k)))
        ]


class _Period:
    """One period's spend as the rows arrive: its total, its rows, its sums by resource type."""

    __slots__ = ("rows", "spent", "types")

    def __init__(self) -> None:
        self.spent, self.rows, self.types = Decimal(0), 0, _Sums()


class _Spend:
    """The report's fold (see `compose.Fold`): the rows created before `until`, summed in the wallet's order
    in all, by resource type, by resource id and, with `by`, by period; their newest and oldest moments; the
    rows themselves only when `keep` (the answer holds them, or a CSV of them is written)."""

    def __init__(self, until: datetime | None, by: Period | None, keep: bool) -> None:
        self.until, self.by = until, by
        self.rows: list[BillingEntry] | None = [] if keep else None
        self.row_count = 0
        self.total = Decimal(0)
        self.newest: datetime | None = None
        self.oldest: datetime | None = None
        self.by_type, self.by_id = _Sums(), _Sums()
        self.periods: dict[date, _Period] = {}

    def add(self, row: BillingEntry) -> None:
        created = row.created_at
        if self.until is not None and utc(created) >= self.until:
            return
        amount = money(row.amount_usd)
        self.row_count += 1
        self.total += amount
        if self.newest is None or created > self.newest:  # the first of equal ones, as max() keeps it
            self.newest = created
        if self.oldest is None or created < self.oldest:
            self.oldest = created
        self.by_type.add(row.resource_type, amount)
        self.by_id.add((row.resource_type, row.resource_id), amount)
        if self.by is not None:
            start = period_start(utc(created).date(), self.by)
            period = self.periods.get(start)
            if period is None:
                period = self.periods[start] = _Period()
            period.spent += amount
            period.rows += 1
            period.types.add(row.resource_type, amount)
        if self.rows is not None:
            self.rows.append(row)


# --------------------------------------------------------------------------- periods


def _preceding(start: date, by: Period) -> date:
    if by == "month":
        return (start - timedelta(days=1)).replace(day=1)
    return start - timedelta(days=7 if by == "week" else 1)


def _span(newest: date, oldest: date, by: Period) -> int:
    """How many periods from the oldest's to the newest's, both included."""
    if by == "month":
        return (newest.year - oldest.year) * 12 + newest.month - oldest.month + 1
    return (newest - oldest).days // (7 if by == "week" else 1) + 1


def periods(found: dict[date, _Period], by: Period) -> tuple[list[SpendPeriod], bool]:
    """Totals per period (`found`: each period with rows, by its first day), newest first, and whether
    the empty periods between are listed (they are unless the span holds more than MAX_PERIODS). By day,
    spikes are marked from every day of the report, listed or not."""
    if not found:
        return [], True
    newest, oldest = max(found), min(found)
    starts = sorted(found, reverse=True)
    filled = _span(newest, oldest, by) <= MAX_PERIODS
    if filled:
        starts = [newest]
        while starts[-1] > oldest:
            starts.append(_preceding(starts[-1], by))
    marked = spikes({day: period.spent for day, period in found.items()}) if by == "day" else {}
    return [_period(s, by, found.get(s) or _Period(), marked.get(s)) for s in starts], filled


def spikes(days: dict[date, Decimal]) -> dict[date, float]:
    """The days (of `days`: each one's spend) that spent more than SPIKE_FACTOR x the median of the days
    with any spend among the SPIKE_DAYS before it, with that ratio, to 0.1 rounded down. A day with no
    such day before it is never one."""
    found = {}
    for day, spent in days.items():
        before = sorted(
            days[d] for n in range(1, SPIKE_DAYS + 1) if days.get(d := day - timedelta(days=n), Decimal(0)) > 0
        )
        if spent <= 0 or not before:
            continue
        half = len(before) // 2
        median = before[half] if len(before) % 2 else (before[half - 1] + before[half]) / 2
        if spent > SPIKE_FACTOR * median:
            found[day] = float((spent * 10 / median).to_integral_value(ROUND_FLOOR) / 10)
    return found


def _period(start: date, by: Period, found: _Period, spike: float | None) -> SpendPeriod:
    label, begins, ends = named_period(start, by)
    return SpendPeriod(
        period=label,
        start=begins,
        end=ends,
        total_usd=usd_float(found.spent),
        rows=found.rows,
        by_resource_type=found.types.groups(),
        spike=spike,
    )


def spend_report(args: dict[str, Any]) -> Plan:
    """Plan: page through the wallet (stopping at `since`), totalling the rows before `until` as they come."""
    since = parse_when(args["since"]) if args.get("since") else None
    until = parse_when(args["until"]) if args.get("until") else None
    by: Period | None = args.get("by")
    every = bool(args.get("include_rows"))
    spent = _Spend(until, by, keep=every)
    scan = yield from scan_wallet(args.get("team_id"), spent, since)
    by_id = spent.by_id.groups()
    runs = [g for g in by_id if g.resource_type == RUN_TYPE]
    others = [g for g in by_id if g.resource_type != RUN_TYPE]
    top = max(1, int(args.get("top") or 5))
    listed, filled = periods(spent.periods, by) if by else (None, None)
    return SpendReport.of(
        scan.wallet,
        scan.sandbox,
        since=since,
        until=until,
        total_billings=scan.wallet.total_billings,
        row_count=spent.row_count,
        pages=scan.pages,
        total_usd=usd_float(spent.total),
        newest_at=spent.newest,
        oldest_at=spent.oldest,
        by_resource_type=spent.by_type.groups(),
        top_runs=runs[:top],
        run_count=len(runs),
        top_other_resources=others[:top],
        other_resource_count=len(others),
        by_resource_id=by_id if every else None,
        by=by,
        periods=listed if every or listed is None else listed[:PERIODS_LISTED],
        period_count=None if listed is None else len(listed),
        empty_periods_listed=filled,
        rows=spent.rows,
    )
