"""Composite operations as plans: generators that ask for sub-calls and get Results back.

A report (reconcile, spend, budget check) is written once as a generator that
yields `SubCall`s and receives each one's `Result`; the sync and the async
client both drive it, so the logic never depends on how the I/O is done.
A report reading a wallet gives the scan a fold (`Fold`), which takes each row
as it is placed, so a report holds what it prints, never every page it read.
Totals are summed with `money` (exact decimals, see `money.py`).
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Protocol

from .dates import utc
from .errors import BadResponseError
from .money import money
from .plan import SubCall

if TYPE_CHECKING:
    from .models import BillingEntry, Wallet

#: the upstream's largest page
PAGE_SIZE = 100
#: a wallet that never ends is a broken upstream, not a big account (10 million rows)
MAX_PAGES = 100_000
#: wallet pages asked for at once, at most. Polite to the API: a small fixed number, the size of
#: a browser's or an HTTP library's connections per host (6 to 10), and every request is still
#: retried on its own with backoff, honouring Retry-After. A scan asks for its second page alone
#: (it shows whether rows are arriving, and by how many, before any batch goes out); then, to
#: the end, this many at a time; with `since`, whose end is unknown, 2, 4, 8... at a time, so few
#: pages past the end are read. 12: with 8 or 10, a 10,000-row scan at 50 ms a page took about
#: 3x one page, the most it may (benchmarks/bench_reports.py compares the bounds).
PAGES_IN_FLIGHT = 12


class Fold(Protocol):
    """What a report makes of the rows of a wallet scan, given them one at a time (see `scan_wallet`)."""

    def add(self, row: BillingEntry) -> None:
        """The next row of the wallet as it stood at the first page: each row once, newest first."""


@dataclass
class WalletScan:
    """How a wallet was read: its first page's body (without its rows), and how many rows went to the fold."""

    wallet: Wallet
    #: rows of the wallet as it stood at the first page (or since the moment), each given to the fold once
    row_count: int = 0
    pages: int = 0
    #: rows read twice: rows arriving while paging shifted the offsets, or a missed place was read again
    duplicates: int = 0
    sandbox: bool = False


def scan_wallet(
    team_id: str | None, fold: Fold, since: datetime | None = None
) -> Generator[SubCall | list[SubCall], Any, WalletScan]:
    """Read the wallet newest first, several pages at a time, to its end (or past `since`), giving
    `fold` each of its rows once, in the wallet's order.

    The first page says how many rows there are (`total_billings`); the others are asked for in
    batches of up to `PAGES_IN_FLIGHT` (see there), a page as long as the first really was (an
    upstream may serve fewer rows than asked). The report is the wallet as it stood at the first
    page: rows arriving later go in at the head and push every row down, and each page's own
    `total_billings` says by how much, so each row it holds gets its place in that first wallet
    (rows that came later have none and are left out). Places no page held (a tail pushed past the
    last page, pages answered out of order) are read again until every one has been. Rows are
    keyed by id, so a row read twice at its place counts once. With `since`, the first row older
    than it ends what is needed: at most one batch of pages past it is read.

    A row goes to `fold` as soon as every place before it has gone there (the order a report sums
    in, so its figures are those of the rows in a list), and its page is then dropped: the scan
    itself keeps only the ids and places seen, and the rows waiting for a place before them (a
    gap, read again in the next batch). A fold may have been given rows of a scan that fails.

    The answer is exact or a `BadResponseError` saying what did not add up: pages that do not fit
    one wallet growing at its head (see `_Pager.take`), or, at the end, a count of rows other than
    the places they fill.
    """
    first = yield SubCall("get_wallet", {"limit": PAGE_SIZE, "offset": 0, "team_id": team_id})
    pager = _Pager(first, since, fold)
    del first
    width = 1  # the second page alone: see `PAGES_IN_FLIGHT`
    while asks := pager.next_asks(width):
        if pager.scan.pages + len(asks) > MAX_PAGES:
            raise _broken(f"the wallet did not end after {MAX_PAGES:,} pages")
        # placed, then dropped: the pages of one batch are all this plan holds at once
        pager.take((yield [SubCall("get_wallet", {"limit": n, "offset": o, "team_id": team_id}) for o, n in asks]))
        width = PAGES_IN_FLIGHT if since is None else min(2 * width, PAGES_IN_FLIGHT)
    return pager.done()


def _broken(fact: str) -> BadResponseError:
    """`fact`, one line of what did not add up, as the error a scan fails with."""
    return BadResponseError(f"{fact}: the upstream paging looks broken; report it")


class _Pager:
    """A wallet scan's state: which places of the first wallet have been read, the id at each, and
    the rows read but not yet given to the fold."""

    def __init__(self, first: Any, since: datetime | None, fold: Fold) -> None:
        wallet: Wallet = first.data
        self.scan = WalletScan(wallet=wallet.model_copy(update={"recent_billings": []}))
        self.since = since
        self.fold = fold
        #: the wallet's length at the first page: places 0..total-1 are the report's rows
        self.total = wallet.total_billings
        #: what one page really holds (the upstream may serve fewer rows than asked)
        self.stride = len(wallet.recent_billings)
        #: places from here on need no reading: past the end, or older than `since`
        self.end = self.total
        #: rows that arrived since the first page, as the last pages said
        self.shift = 0
        #: places read so far: sorted, disjoint [start, stop) spans
        self.read: list[tuple[int, int]] = []
        #: places below this have been asked for: one still unread there was missed, and is read again
        self.asked = self.stride
        #: each row kept (newer than `since`), by id: its place
        self.kept: dict[str, int] = {}
        #: rows kept whose place has not gone to the fold yet (a place before it is unread), by place
        self.waiting: dict[int, BillingEntry] = {}
        #: places 0..given-1 have gone to the fold, in order
        self.given = 0
        self.take([first])

    def take(self, results: list[Any]) -> None:
        """Place each page's rows in the first wallet; keep those not seen yet.

        Every page must fit one wallet that only grows at its head: its total no smaller than
        those of the pages before its batch (pages of one batch are answered in any order), no
        row past that total, as many rows as asked for unless the total says the wallet ends
        first (the first page excepted: it sets the stride), and no row at another place than
        the one it was read at before. A page that does not is the scan's failure. Then every row
        now next in place order goes to the fold."""
        shifts = []
        for result in results:
            page: Wallet = result.data
            offset, rows = int(result.args["offset"]), page.recent_billings
            self._check(page.total_billings, offset, int(result.args["limit"]), len(rows))
            self.scan.pages += 1
            self.scan.sandbox = self.scan.sandbox or result.sandbox
            shift = page.total_billings - self.total
            shifts.append(shift)
            start = offset - shift
            for place, row in enumerate(rows, start):
                if place < 0:
                    continue  # arrived after the first page: not in the wallet being reported
                seen = self.kept.get(row.id)
                if seen is not None:
                    if seen != place:
                        raise _broken(
                            f"the wallet's pages overlap: its row {seen + 1:,} came again as row {place + 1:,} "
                            f"(in its page at offset {offset:,})"
                        )
                    self.scan.duplicates += 1
                elif self.since is not None and utc(row.created_at) < self.since:
                    self.end = min(self.end, place)  # newest first: every later place is older still
                else:
                    self.kept[row.id] = place
                    self.waiting.setdefault(place, row)  # two rows at one place: `done` fails the scan
            self._mark(max(start, 0), start + len(rows))
        self.shift = max(shifts)
        while (row := self.waiting.pop(self.given, None)) is not None:
            self.fold.add(row)
            self.given += 1

    def _check(self, total: int, offset: int, limit: int, held: int) -> None:
        """One page's total and length against the wallet the pages before it describe."""
        before = self.total + self.shift
        if total < before:
            raise _broken(f"the wallet's total went down between pages, from {before:,} rows to {total:,}")
        if held and offset + held > total:
            raise _broken(
                f"the wallet reports {total:,} rows but served {offset + held:,} "
                f"(its page at offset {offset:,} held {held:,})"
            )
        due = min(limit, self.stride, total - offset)  # no page holds more than the first
        if held < due:
            raise _broken(
                f"the wallet reports {total:,} rows but ends after {offset + held:,} "
                f"(its page at offset {offset:,} held {held:,} rows, not {due:,})"
            )

    def _mark(self, start: int, stop: int) -> None:
        if start >= stop:
            return
        spans = []
        for a, b in self.read:
            if b < start or a > stop:
                spans.append((a, b))
            else:
                start, stop = min(a, start), max(b, stop)
        spans.append((start, stop))
        self.read = sorted(spans)

    def gaps(self) -> list[tuple[int, int]]:
        """The places below `end` no page has held yet, as [start, stop) spans."""
        found, place = [], 0
        for a, b in self.read:
            if a > place:
                found.append((place, min(a, self.end)))
            place = max(place, b)
        found.append((place, self.end))
        return [(a, b) for a, b in found if a < b]

    def next_asks(self, width: int) -> list[tuple[int, int]]:
        """Up to `width` pages (offset, limit) for the first unread places, offsets moved by the rows
        that arrived meanwhile. A place asked for before and missed (the head moved again) is asked
        for in the middle of a whole page, so that the head moving again still leaves it covered."""
        asks: list[tuple[int, int]] = []
        if not self.stride:
            return asks  # the first page was empty: nothing more to read
        for a, b in self.gaps():
            while a < b and len(asks) < width:
                n = min(self.stride, b - a)
                slack = (self.stride - n) // 2 if a < self.asked else 0
                asks.append((max(a - slack + self.shift, 0), n + 2 * slack))
                self.asked = max(self.asked, a + n)
                a += n
        return asks

    def done(self) -> WalletScan:
        """The scan, once each place up to the end holds exactly one row: every place below the end
        was read, so as many rows kept as places means one each and none past the end, every one of
        them given to the fold in place order."""
        if len(self.kept) != self.end:
            since = f" since {self.since.isoformat()}" if self.since is not None and self.end < self.total else ""
            raise _broken(f"read {len(self.kept):,} rows of the {self.end:,} the wallet reports{since}")
        self.scan.row_count = self.end
        return self.scan


class Tally:
    """A fold for a report that sums rows: those `counts` takes, how many, their exact total (summed in
    the wallet's order, from 0); the rows themselves too when `keep` (an answer holding its rows)."""

    def __init__(self, counts: Callable[[BillingEntry], bool], *, keep: bool = False) -> None:
        self.counts = counts
        self.rows: list[BillingEntry] | None = [] if keep else None
        self.row_count = 0
        self.total = Decimal(0)

    def add(self, row: BillingEntry) -> None:
        if self.counts(row):
            self.row_count += 1
            self.total += money(row.amount_usd)
            if self.rows is not None:
                self.rows.append(row)
