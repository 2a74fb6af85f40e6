"""Warn me when the balance is low: the wallet against a minimum, as a verdict.

A separate operation rather than a parameter on the contract's wallet
operation, so the contract's REST route and MCP tool stay exactly the
upstream's; the CLI still offers it as `wallet --min-balance USD`. The answer is
the verdict and the balance; the wallet page read for it only when asked for
(`include_rows`: the CLI asks, its text shows the page).
"""

from __future__ import annotations

from typing import Any

from .models import Wallet
from .money import money, usd_float
from .plan import Plan, SubCall
from .report import WalletCheck, below_minimum, held_when_asked


class BudgetCheck(WalletCheck):
    """The balance against a minimum; with `include_rows`, the wallet page read for it (upstream body as is)."""

    min_balance_usd: float
    #: balance >= minimum
    ok: bool
    #: how far below the minimum (0 when ok)
    shortfall_usd: float
    #: how far above the minimum (0 when below)
    headroom_usd: float
    #: with `include_rows` only: the wallet body exactly as the upstream sent it
    wallet: dict[str, Any] | None = held_when_asked()

    def failure(self) -> str | None:
        """Below the minimum: by how much, and what to do."""
        return None if self.ok else below_minimum(self.wallet_id, self.balance_usd, self.min_balance_usd)


def check_budget(args: dict[str, Any]) -> Plan:
    """Plan: one wallet page, then the verdict (exact decimal comparison)."""
    page = {k: args.get(k) for k in ("limit", "offset", "team_id")}
    result = yield SubCall("get_wallet", page)
    wallet: Wallet = result.data
    gap = money(wallet.balance_usd) - money(args["min_balance"])
    return BudgetCheck.of(
        wallet,
        result.sandbox,
        min_balance_usd=args["min_balance"],
        ok=gap >= 0,
        shortfall_usd=usd_float(-gap) if gap < 0 else 0.0,
        headroom_usd=usd_float(gap) if gap > 0 else 0.0,
        wallet=result.raw if args.get("include_rows") else None,
    )
