"""Compact text for people and agents: the figures that matter, few tokens.

The one place results become text: run usage, a wallet page and the reports
(reconciliation, spend, budget check, runway, pace). The models hold data only; every
surface (CLI, LangChain content, MCP text) shows the lines built here, so an
answer read from one can be checked against another. A check's verdict is its
first line. Advice is left as markers (`wording.mark`): each surface words them.
A report made without its rows (`include_rows`) says where they are. Upstream text
is shown through `untrusted` (bare when id-like, else quoted and escaped), so every
record is one line and no upstream text can hold a marker.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import timedelta
from decimal import ROUND_DOWN, Decimal
from typing import TYPE_CHECKING, Any

from .dates import utc
from .models import FINISHED_STATUSES, BillingEntry, CostLine, RunUsage, Wallet
from .money import money, usd
from .untrusted import quoted, shown
from .wording import mark

if TYPE_CHECKING:  # the reports' modules load when a report is asked for, not with every wallet page
    from datetime import datetime

    from .budget import BudgetCheck
    from .pace import Pace
    from .reconcile import Reconciliation
    from .runway import Runway
    from .spend import SpendGroup, SpendPeriod, SpendReport

SANDBOX_BANNER = "SANDBOX DATA (demo account, not real billing)"
#: where every row and period is, in each surface's words
ALL_ROWS = mark("all_rows")
#: where they are for an answer made without them
WITH_ROWS = mark("include_rows", "true")
#: the same, with its preposition: the CLI's answer is in its --json and --csv, whatever it printed
ON_REQUEST = mark("rows_on_request")
#: the reports whose text lists the rows they hold; the others' text says where their rows are
ROWS_LISTED = frozenset({"Reconciliation", "BudgetCheck"})

__all__ = ["SANDBOX_BANNER", "Rendered", "lists_rows", "rate", "render", "usd"]


@dataclass(frozen=True)
class Rendered:
    """A result as text, in the order it is read: the verdict (checks only), the summary
    lines (what and how much), the billing rows, then where the rest of them is."""

    verdict: str | None = None
    summary: list[str] = field(default_factory=list)
    rows: list[str] = field(default_factory=list)
    more: str | None = None

    def text(self) -> str:
        lines = [self.verdict] if self.verdict else []
        lines += [*self.summary, *self.rows]
        if self.more:
            lines.append(self.more)
        return "\n".join(lines)


def render(data: Any, *, offset: int = 0, bars: bool = False) -> Rendered:
    """`data` (an operation's result model) as text; `offset` is where a wallet page starts; `bars`: draw
    a bar per period (a person at a terminal: the CLI says so; never for programs and models)."""
    if isinstance(data, Wallet):
        return _wallet(data, offset)
    kind = type(data).__name__
    if kind == "BudgetCheck":
        return _budget(data, offset)
    if kind == "SpendReport":
        return _spend(data, bars)
    if kind not in _TEXT:
        raise TypeError(f"no text for {kind}")
    return _TEXT[kind](data)


def lists_rows(model: type) -> bool:
    """Whether the text of an answer of `model` shows its rows when it holds them (`include_rows`)."""
    return model.__name__ in ROWS_LISTED


def rate(value: float | None) -> str:
    return "rate unknown" if value is None else f"@ ${value:g}/Mtok"


def billing_row(entry: BillingEntry, name: str | None, indent: str = "  ") -> str:
    """The one format of a wallet row: when (UTC), amount, resource type, and a name."""
    when = utc(entry.created_at).strftime("%Y-%m-%d %H:%M")
    return f"{indent}{when:<17} {usd(entry.amount_usd):>10}  {_or(entry.resource_type):<11} {_or(name)}"


def _or(text: str | None, missing: str = "-") -> str:
    """An upstream string as shown (see `untrusted`), or `missing` when there is none."""
    return shown(text) if text else missing


def _owner(team_id: str | None) -> str:
    return f"team {shown(team_id)}" if team_id else "personal"


def _tokens(label: str, tokens: int, rate_text: str, cost: str) -> str:
    return f"  {label:<14}{tokens:>14,} tok  {rate_text:<18}{cost:>10}"


def _cost(line: CostLine, indent: str = "  ") -> str:
    return _tokens(indent + line.label, line.tokens, rate(line.rate_per_mtok), usd(line.cost_usd))


def _run(run: RunUsage) -> Rendered:
    c = run.costs
    head = [f"run {shown(run.run_id)}"]
    if run.run_name:
        head.append(quoted(run.run_name))
    head += [_or(run.base_model, "model unknown"), _or(run.status, "status unknown"), f"{run.record_count} records"]
    lines = [" · ".join(head)]
    lines.append(_tokens("training", run.training.tokens, rate(c.training.rate_per_mtok), usd(c.training_billed_usd)))
    lines.append(_tokens("inference", run.inference.tokens, "", usd(c.inference_billed_usd)))
    lines.append(_cost(c.inference_input))
    if c.inference_cached_input is not None:
        lines.append(_cost(c.inference_cached_input))
    lines.append(_cost(c.inference_output))
    lines.append(_tokens("total", run.total_tokens, "billed", usd(c.total_billed_usd)))
    return Rendered(summary=lines)


def _wallet(wallet: Wallet, offset: int) -> Rendered:
    rows = wallet.recent_billings
    first, last = (offset + 1, offset + len(rows)) if rows else (0, 0)
    lines = [
        f"wallet {shown(wallet.wallet_id)} ({_owner(wallet.team_id)}) · balance {usd(wallet.balance_usd)}"
        f" {shown(wallet.currency)}"
        f" · {wallet.total_billings} billing rows, showing {first}-{last}"
    ]
    if not rows:
        return Rendered(summary=lines)
    lines.append(f"  {'created (UTC)':<17} {'amount':>10}  {'type':<11} resource")
    more = f"  more rows: {mark('offset', last)}" if last < wallet.total_billings else None
    return Rendered(summary=lines, rows=[billing_row(r, r.resource_id) for r in rows], more=more)


def _reconciliation(rec: Reconciliation) -> Rendered:
    head = [f"reconcile run {shown(rec.run_id)}"]
    if rec.run_name:
        head.append(quoted(rec.run_name))
    head += [_or(rec.status, "status unknown"), f"wallet {shown(rec.wallet_id)} ({_owner(rec.team_id)})"]
    diff = rec.difference_usd
    side = "" if diff == 0 else (" (wallet charged less)" if diff > 0 else " (wallet charged more)")
    lines = [
        " · ".join(head),
        f"  run billed      {usd(rec.run_billed_usd):>10}",
        f"  wallet charged  {usd(rec.wallet_charged_usd):>10}  {rec.row_count} rows of {rec.rows_scanned}",
        f"  difference      {usd(diff):>10}{side}",
    ]
    if rec.status and rec.status.upper() not in FINISHED_STATUSES:
        lines.append(f"  note: the run is {shown(rec.status)}; charges may still be arriving")
    verdict = f"RECONCILED (within {usd(rec.tolerance_usd)})" if rec.reconciled else f"MISMATCH by {usd(abs(diff))}"
    if rec.rows is None:
        more = f"  its {_plural(rec.row_count, 'row')}: with {WITH_ROWS}" if rec.row_count else None
        return Rendered(verdict=verdict, summary=lines, more=more)
    # every row names the run: the row's own id is the useful name here
    return Rendered(verdict=verdict, summary=lines, rows=[billing_row(r, r.id, indent="    ") for r in rec.rows])


def _spend(report: SpendReport, bars: bool = False) -> Rendered:
    span = _window(report.since, report.until)
    lines = [
        f"spend of wallet {shown(report.wallet_id)} ({_owner(report.team_id)}) · {span} · {usd(report.total_usd)}"
        f" {shown(report.currency)} in {report.row_count} rows · balance {usd(report.balance_usd)}"
    ]
    if report.newest_at and report.oldest_at:
        oldest, newest = utc(report.oldest_at), utc(report.newest_at)
        lines.append(f"  rows from {oldest:%Y-%m-%d %H:%M} to {newest:%Y-%m-%d %H:%M} UTC")
    # where every group is: in this answer's data, or in one that asks for it
    rest = f"all in {ALL_ROWS}" if report.rows is not None else f"all {ON_REQUEST}"
    if report.by and report.periods is not None:
        count = report.period_count or len(report.periods)
        lines += _periods(report.by, report.periods, count, rest, report.empty_periods_listed is not False, bars)
    lines.append("  by resource type")
    for g in report.by_resource_type:
        lines.append(f"    {_or(g.key):<22} {usd(g.total_usd):>10}  {_count(g.rows)}")
    if report.top_runs:
        listed = len(report.top_runs)
        of = f" of {report.run_count}; {rest}" if listed < report.run_count else ""
        lines.append(f"  top runs ({listed}{of})")
        for g in report.top_runs:
            lines.append(f"    {_or(g.key):<22} {usd(g.total_usd):>10}  {_count(g.rows)}")
    if report.top_other_resources:
        listed = len(report.top_other_resources)
        lines.append(f"  top other resources ({listed} of {report.other_resource_count}; {rest})")
        for g in report.top_other_resources:
            name = f"{_or(g.key, '(no id)')} [{_or(g.resource_type)}]"
            lines.append(f"    {name:<22} {usd(g.total_usd):>10}  {_count(g.rows)}")
    return Rendered(summary=lines)


def _window(since: datetime | None, until: datetime | None) -> str:
    """The rows a spend report asked for: `since` inclusive, `until` exclusive."""
    if since and until:
        return f"{utc(since):%Y-%m-%d %H:%M} to {utc(until):%Y-%m-%d %H:%M} UTC"
    if until:
        return f"before {utc(until):%Y-%m-%d %H:%M} UTC"
    return f"since {utc(since):%Y-%m-%d %H:%M} UTC" if since else "all time"


def _periods(by: str, periods: list[SpendPeriod], count: int, rest: str, filled: bool, bars: bool) -> list[str]:
    """A line per period, newest first: its total (and a bar, if asked), rows, what it went on and a spike's
    mark (`count`: the periods in all); as many as an answer without every row holds (the rest are in the
    JSON and the CSV)."""
    from .spend import PERIODS_LISTED, SPIKE_DAYS  # loaded already: this is its report

    listed = periods[:PERIODS_LISTED]
    head = f"  by {by} (UTC{', weeks from Monday' if by == 'week' else ''}), newest first"
    if len(listed) < count:
        head += f" ({len(listed)} of {count}; {rest})"
    if not filled:
        head += "; periods with no rows left out (too many to list)"
    lines = [head]
    most = max((p.total_usd for p in listed), default=0.0)
    for p in listed:
        bar = f"  {_bar(p.total_usd, most):<{BAR_WIDTH}}" if bars else ""
        line = f"    {p.period:<22} {usd(p.total_usd):>10}{bar}  {_count(p.rows)}  {_types(p.by_resource_type)}"
        if p.spike is not None:
            line += f"  ▲ {p.spike:.1f}x the {SPIKE_DAYS}-day median"
        lines.append(line.rstrip())
    return lines


#: a bar's length at the largest total shown, in character cells
BAR_WIDTH = 20
_EIGHTHS = "▏▎▍▌▋▊▉"


def _bar(value: float, most: float) -> str:
    """`value` against `most` as a bar of BAR_WIDTH cells at most, to the nearest eighth of a cell (any spend at
    least one eighth); none for nothing spent."""
    if value <= 0 or most <= 0:
        return ""
    full, part = divmod(max(1, int(value / most * BAR_WIDTH * 8 + 0.5)), 8)
    return "█" * full + (_EIGHTHS[part - 1] if part else "")


def _types(groups: list[SpendGroup]) -> str:
    return " · ".join(f"{_or(g.key)} {usd(g.total_usd)}" for g in groups)


def _runway(r: Runway) -> Rendered:
    owner = f"wallet {shown(r.wallet_id)}"
    target = "empties" if r.min_balance_usd == 0 else f"reaches the minimum {usd(r.min_balance_usd)}"
    if failure := r.failure():
        verdict = f"runway: 0 days: {failure}"
    elif money(r.balance_usd) == money(r.min_balance_usd):
        verdict = f"runway: 0 days: {owner} is at the minimum {usd(r.min_balance_usd)}"
    elif r.spend_usd <= 0:
        verdict = (
            f"runway: no spend in the window: {owner} is not running down, so no date to give; try more {mark('days')}"
        )
    elif r.days_left is None or r.empty_on is None:
        verdict = f"runway: beyond 9999-12-31: {owner} {target} after the calendar's end at {usd(r.usd_per_day)}/day"
    else:
        when = f"on {r.empty_on:%Y-%m-%d}"
        verdict = f"runway: {_days(r.days_left)} days: {owner} {target} {when} at {usd(r.usd_per_day)}/day"
    start, end = utc(r.window_start), utc(r.window_end)
    lines = [
        f"  {owner} ({_owner(r.team_id)}) · balance {usd(r.balance_usd)} {shown(r.currency)}"
        f" · minimum {usd(r.min_balance_usd)}",
        f"  {usd(r.spend_usd)} spent in {_plural(r.rows, 'row')} over the {_plural(r.window_days, 'day')}"
        f" {start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC: {usd(r.usd_per_day)}/day",
        f"  method: {r.method}",
    ]
    return Rendered(verdict=verdict, summary=lines)


def _days(days: float) -> str:
    """Days to one decimal, rounded down: a runway is never told longer than it is."""
    return f"{money(days).quantize(Decimal('0.1'), ROUND_DOWN):,}"


def _pace(p: Pace) -> Rendered:
    from .pace import reached_when  # loaded already: this is its report

    budget = money(p.budget_usd)
    spent = f"{usd(p.spend_usd)} of {usd(p.budget_usd)} ({_percent(p.spent_percent)})"
    start, as_of = utc(p.period_start), utc(p.as_of)
    elapsed = as_of - start
    if p.period == "day":  # "day 1 of 1" says nothing: the hour of the day
        at = f"on hour {elapsed // timedelta(hours=1) + 1} of 24"
        done = f"{_down(elapsed / timedelta(hours=1))} of the day's 24 hours"
    else:
        at = f"on day {elapsed.days + 1} of {p.period_days}"
        done = f"{_down(elapsed / timedelta(days=1))} of the {p.period}'s {p.period_days} days"
    if p.projected_usd is None or p.projected_percent is None:
        first = f"at the {p.period}'s first moment ({start:%Y-%m-%d %H:%M} UTC)"
        verdict = f"NO PACE YET: {spent} {first}; no time has passed, so no projection"
    else:
        projected = f"on pace for {usd(p.projected_usd)} ({_percent(p.projected_percent)})"
        if p.status == "over_budget":
            verdict = f"OVER BUDGET: {spent} {at}, {usd(float(money(p.spend_usd) - budget))} over; {projected}"
        elif p.status == "over_pace":
            crossing = (
                f"crossing {usd(p.budget_usd)} {reached_when(p.crossing_at, p.period)}"
                if p.crossing_at is not None
                else f"{usd(p.budget_usd)} reached already"
            )
            verdict = f"OVER PACE: {spent} {at}; {projected}, {crossing}"
        else:
            verdict = f"ON PACE: {spent} {at}; {projected}, {usd(float(budget - money(p.projected_usd)))} under"
    lines = [
        f"  wallet {shown(p.wallet_id)} ({_owner(p.team_id)}) · balance {usd(p.balance_usd)} {shown(p.currency)}"
        f" · budget {usd(p.budget_usd)} for the {p.period} {p.period_label}",
        f"  {usd(p.spend_usd)} spent in {_plural(p.rows, 'row')} from {start:%Y-%m-%d %H:%M} to "
        f"{as_of:%Y-%m-%d %H:%M} UTC: {done}",
    ]
    if p.thresholds:
        marks = []
        for t in p.thresholds:
            if t.crossed:
                when = "crossed"
            elif t.at is not None:
                when = reached_when(t.at, p.period)
            else:
                when = "no pace yet" if p.projected_usd is None else f"not this {p.period}"
            marks.append(f"{t.percent:g}% ({usd(t.usd)}) {when}")
        lines.append("  thresholds: " + " · ".join(marks))
    lines.append(f"  method: {p.method}")
    return Rendered(verdict=verdict, summary=lines)


def _percent(value: float) -> str:
    """A percent as the verdict shows it: whole, rounded down (the report's own is to 1/100, also down)."""
    return f"{math.floor(value):,}%"


def _down(value: float) -> str:
    """Elapsed time to 1/100, rounded down."""
    return f"{Decimal(math.floor(value * 100)).scaleb(-2):,}"


def _budget(check: BudgetCheck, offset: int) -> Rendered:
    if check.ok:
        verdict = (
            f"budget OK: balance {usd(check.balance_usd)} is {usd(check.headroom_usd)} "
            f"above the minimum {usd(check.min_balance_usd)}"
        )
    else:
        verdict = f"BELOW MINIMUM: {check.failure()}"
    if check.wallet is None:  # the verdict and the balance only: no page was asked for
        line = (
            f"wallet {shown(check.wallet_id)} ({_owner(check.team_id)}) · balance {usd(check.balance_usd)}"
            f" {shown(check.currency)}"
            f" · minimum {usd(check.min_balance_usd)}"
        )
        return Rendered(verdict=verdict, summary=[line])
    return replace(_wallet(Wallet.model_validate(check.wallet), offset), verdict=verdict)


def _plural(n: int, unit: str) -> str:
    return f"{n} {unit}" if n == 1 else f"{n} {unit}s"


def _count(n: int) -> str:
    return f"{n:>4} row" if n == 1 else f"{n:>4} rows"


#: the results whose text needs nothing but the result (a wallet page and the budget check need
#: where the page starts)
_TEXT: dict[str, Callable[[Any], Rendered]] = {
    "RunUsage": _run,
    "Reconciliation": _reconciliation,
    "Runway": _runway,
    "Pace": _pace,
}
