"""What did we spend, and on what? Every wallet row (or every row since a date), totalled.

Totals by resource type and by resource id, the runs that cost most, and the
rows themselves for export. Sums are exact to the cent (Decimal), and paging
reads every row exactly once.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from decimal import Decimal
from typing import IO, Any

from pydantic import BaseModel, ConfigDict

from .compose import Plan, parse_when, scan_wallet, total, write_rows_csv
from .models import BillingEntry
from .money import money, usd_float

#: the resource type of RFT runs' rows
RUN_TYPE = "rft_run"


class SpendGroup(BaseModel):
    model_config = ConfigDict(frozen=True)

    #: resource type or resource id; None for rows that name no resource
    key: str | None
    total_usd: float
    rows: int
    #: the group's resource type (for groups by resource id)
    resource_type: str | None = None


class SpendReport(BaseModel):
    """Spend of one wallet over all its rows, or since a moment."""

    model_config = ConfigDict(frozen=True)

    wallet_id: str
    team_id: str | None = None
    currency: str = "USD"
    balance_usd: float
    #: the lower bound asked for (inclusive), None for all rows
    since: datetime | None = None
    #: rows in the wallet when paging began (all time)
    total_billings: int
    #: rows in this report
    row_count: int
    pages: int
    total_usd: float
    #: newest and oldest row in the report
    newest_at: datetime | None = None
    oldest_at: datetime | None = None
    by_resource_type: list[SpendGroup]
    by_resource_id: list[SpendGroup]
    #: the most expensive RFT runs, most first
    top_runs: list[SpendGroup]
    rows: list[BillingEntry]
    sandbox: bool = False

    def write_csv(self, out: IO[str]) -> int:
        return write_rows_csv(self.rows, out)


def _groups(rows: list[BillingEntry], key: Any) -> list[SpendGroup]:
    sums: dict[Any, Decimal] = defaultdict(Decimal)
    counts: dict[Any, int] = defaultdict(int)
    for r in rows:
        k = key(r)
        sums[k] += money(r.amount_usd)
        counts[k] += 1
    ordered = sorted(sums, key=lambda k: (-sums[k], str(k)))
    return [
        SpendGroup(
            key=k[-1] if isinstance(k, tuple) else k,
            total_usd=usd_float(sums[k]),
            rows=counts[k],
            resource_type=k[0] if isinstance(k, tuple) else None,
        )
        for k in ordered
    ]


def spend_report(args: dict[str, Any]) -> Plan:
    """Plan: page through the wallet (stopping at `since`), then total."""
    since = parse_when(args["since"]) if args.get("since") else None
    scan = yield from scan_wallet(args.get("team_id"), since)
    rows = scan.rows
    by_id = _groups(rows, lambda r: (r.resource_type, r.resource_id))
    top = max(1, int(args.get("top") or 5))
    return SpendReport(
        wallet_id=scan.wallet.wallet_id,
        team_id=scan.wallet.team_id,
        currency=scan.wallet.currency,
        balance_usd=scan.wallet.balance_usd,
        since=since,
        total_billings=scan.wallet.total_billings,
        row_count=len(rows),
        pages=scan.pages,
        total_usd=usd_float(total(rows)),
        newest_at=max((r.created_at for r in rows), default=None),
        oldest_at=min((r.created_at for r in rows), default=None),
        by_resource_type=_groups(rows, lambda r: r.resource_type),
        by_resource_id=by_id,
        top_runs=[g for g in by_id if g.resource_type == RUN_TYPE][:top],
        rows=rows,
        sandbox=scan.sandbox,
    )
