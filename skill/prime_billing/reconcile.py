"""Did the wallet really pay what the run says? A run's billed total against its wallet rows.

The run's `total_cost_usd` is compared with the sum of every wallet row whose
`resource_id` is the run, read from all pages. Agreement within one cent
(inclusive) is reconciled; anything else is an alert with the figures. The
run's rows themselves are in the answer when asked for (`include_rows`).
"""

from __future__ import annotations

from decimal import Decimal
from typing import IO, Any

from .compose import Tally, scan_wallet
from .export import write_rows_csv
from .models import BillingEntry, RunUsage
from .money import money, usd, usd_float
from .plan import Plan, SubCall
from .report import WalletCheck, asked_for, held_when_asked
from .untrusted import shown
from .wording import mark

#: agreement within this much (inclusive) is "reconciled"
TOLERANCE = Decimal("0.01")


class Reconciliation(WalletCheck):
    """One run's billed total against what its wallet was charged for it."""

    run_id: str
    run_name: str | None = None
    status: str | None = None
    #: what the run reports as billed (`total_cost_usd`)
    run_billed_usd: float
    #: sum of the wallet rows whose resource_id is the run
    wallet_charged_usd: float
    #: run_billed - wallet_charged: positive means the wallet was charged less than the run reports
    difference_usd: float
    tolerance_usd: float = float(TOLERANCE)
    reconciled: bool
    #: the run's wallet rows: how many
    row_count: int
    #: wallet rows read to find the run's rows (all of them)
    rows_scanned: int
    pages: int
    #: with `include_rows` only: the run's wallet rows, newest first
    rows: list[BillingEntry] | None = held_when_asked()

    def failure(self) -> str | None:
        """The figures disagree: both of them, and which way."""
        if self.reconciled:
            return None
        diff = self.difference_usd
        gap = f"the wallet was charged {usd(abs(diff))} {'less' if diff > 0 else 'more'}"
        elsewhere = f"; no rows for it among {self.rows_scanned}: another wallet? try {mark('team_id')}"
        hint = "" if self.row_count else elsewhere
        return (
            f"run {shown(self.run_id)} does not reconcile: it reports {usd(self.run_billed_usd)} billed, "
            f"its {self.row_count} wallet rows sum to {usd(self.wallet_charged_usd)}, {gap}{hint}"
        )

    def write_csv(self, out: IO[str]) -> int:
        return write_rows_csv(asked_for(self.rows), out)


def reconcile_run(args: dict[str, Any]) -> Plan:
    """Plan: the run's usage, then every wallet page; compare to the cent."""
    run_id = args["run_id"]
    usage = yield SubCall("get_run_usage", {"run_id": run_id})
    run: RunUsage = usage.data
    mine = Tally(lambda r: r.resource_id == run_id, keep=bool(args.get("include_rows")))
    scan = yield from scan_wallet(args.get("team_id"), mine)
    billed, charged = money(run.total_cost_usd), mine.total
    diff = billed - charged
    return Reconciliation.of(
        scan.wallet,
        usage.sandbox or scan.sandbox,
        run_id=run.run_id,
        run_name=run.run_name,
        status=run.status,
        run_billed_usd=usd_float(billed),
        wallet_charged_usd=usd_float(charged),
        difference_usd=usd_float(diff),
        reconciled=abs(diff) <= TOLERANCE,
        row_count=mine.row_count,
        rows_scanned=scan.row_count,
        pages=scan.pages,
        rows=mine.rows,
    )
