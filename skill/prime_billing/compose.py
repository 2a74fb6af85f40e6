"""Composite operations as plans: generators that ask for sub-calls and get Results back.

A report (reconcile, spend, budget check) is written once as a generator that
yields `SubCall`s and receives each one's `Result`; the sync and the async
client both drive it, so the logic never depends on how the I/O is done.
Totals are summed with `money` (exact decimals, see `money.py`).
"""

from __future__ import annotations

import csv
from collections.abc import Generator, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import IO, TYPE_CHECKING, Any

from .errors import BadResponseError, InvalidInputError
from .money import money

if TYPE_CHECKING:
    from .models import BillingEntry, Wallet

#: the upstream's largest page
PAGE_SIZE = 100
#: a wallet that never ends is a broken upstream, not a big account (10 million rows)
MAX_PAGES = 100_000


@dataclass(frozen=True)
class SubCall:
    """One step a plan asks for: call operation `name` with `args`, send back its Result."""

    name: str
    args: dict[str, Any]


#: what a composite operation's `compose(args)` returns
Plan = Generator[SubCall, Any, Any]


def parse_when(text: str) -> datetime:
    """A date (`2026-11-01`, midnight UTC) or an ISO 8601 date-time; naive means UTC."""
    value = text.strip()
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInputError(
            f"since must be a date like 2026-11-01 or a date-time like 2026-11-01T09:00:00Z, got {text!r}"
        ) from None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


@dataclass
class WalletScan:
    """Every row of a wallet (or every row since a moment), each exactly once."""

    wallet: Wallet
    rows: list[BillingEntry] = field(default_factory=list)
    pages: int = 0
    #: rows met twice because newer rows arrived while paging and shifted the offsets
    duplicates: int = 0
    sandbox: bool = False


def scan_wallet(team_id: str | None, since: datetime | None = None) -> Generator[SubCall, Any, WalletScan]:
    """Page through the wallet newest first until the end (or past `since`).

    Rows are keyed by id: a row that a shift pushed onto the next page is
    counted once. Offsets advance by what a page really held, so an upstream
    that serves fewer rows than asked is still read to the end.
    """
    offset = 0
    seen: dict[str, BillingEntry] = {}
    scan: WalletScan | None = None
    while True:
        result = yield SubCall("get_wallet", {"limit": PAGE_SIZE, "offset": offset, "team_id": team_id})
        wallet: Wallet = result.data
        if scan is None:
            scan = WalletScan(wallet=wallet)
        scan.pages += 1
        scan.sandbox = scan.sandbox or result.sandbox
        page = wallet.recent_billings
        for row in page:
            if row.id in seen:
                scan.duplicates += 1
            elif since is None or aware(row.created_at) >= since:
                seen[row.id] = row
        offset += len(page)
        if not page or offset >= wallet.total_billings:
            break
        if since is not None and aware(page[-1].created_at) < since:
            break  # newest first: everything further is older still
        if scan.pages >= MAX_PAGES:
            raise BadResponseError(
                f"the wallet did not end after {MAX_PAGES} pages: the upstream paging looks broken; report it"
            )
    scan.rows = list(seen.values())
    return scan


def aware(when: datetime) -> datetime:
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def total(rows: Iterable[BillingEntry]) -> Decimal:
    return sum((money(r.amount_usd) for r in rows), Decimal(0))


CSV_COLUMNS = (
    "id",
    "created_at",
    "updated_at",
    "last_billed_at",
    "amount_usd",
    "currency",
    "resource_type",
    "resource_id",
)


def write_rows_csv(rows: Iterable[BillingEntry], out: IO[str]) -> int:
    """Rows as CSV (header first), dates as the upstream wrote them; returns the row count."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    n = 0
    for row in rows:
        data = row.model_dump(mode="json")
        writer.writerow(["" if data.get(c) is None else data[c] for c in CSV_COLUMNS])
        n += 1
    return n


def describe_step(result: Any) -> str:
    """A progress line for one finished sub-call (shown on a terminal only)."""
    from .models import Wallet

    data = result.data
    if isinstance(data, Wallet):
        offset = int(result.args.get("offset") or 0)
        return f"read wallet rows {offset + len(data.recent_billings)} of {data.total_billings}"
    return f"read {result.operation.command} {getattr(data, 'run_id', '')}".rstrip()
