"""Warn me when the balance is low: the wallet against a minimum, as a verdict.

A separate operation rather than a parameter on the contract's wallet
operation, so the contract's REST route and MCP tool stay exactly the
upstream's; the CLI still offers it as `wallet --min-balance USD`.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, computed_field

from .compose import Plan, SubCall
from .models import Wallet
from .money import money, usd, usd_float


class BudgetCheck(BaseModel):
    """The balance against a minimum, plus the wallet page read for it (upstream body as is)."""

    model_config = ConfigDict(frozen=True)

    wallet_id: str
    team_id: str | None = None
    currency: str = "USD"
    balance_usd: float
    min_balance_usd: float
    #: balance >= minimum
    ok: bool
    #: how far below the minimum (0 when ok)
    shortfall_usd: float
    #: how far above the minimum (0 when below)
    headroom_usd: float
    #: the wallet body exactly as the upstream sent it
    wallet: dict[str, Any]
    sandbox: bool = False

    @computed_field  # type: ignore[prop-decorator]
    @property
    def alert(self) -> str | None:
        """One line when the balance is below the minimum; None otherwise."""
        if self.ok:
            return None
        return (
            f"balance {usd(self.balance_usd)} of wallet {self.wallet_id} is {usd(self.shortfall_usd)} "
            f"below the minimum {usd(self.min_balance_usd)}: add funds"
        )


def check_budget(args: dict[str, Any]) -> Plan:
    """Plan: one wallet page, then the verdict (exact decimal comparison)."""
    page = {k: args.get(k) for k in ("limit", "offset", "team_id")}
    result = yield SubCall("get_wallet", page)
    wallet: Wallet = result.data
    balance, minimum = money(wallet.balance_usd), money(args["min_balance"])
    gap = balance - minimum
    return BudgetCheck(
        wallet_id=wallet.wallet_id,
        team_id=wallet.team_id,
        currency=wallet.currency,
        balance_usd=wallet.balance_usd,
        min_balance_usd=args["min_balance"],
        ok=gap >= 0,
        shortfall_usd=usd_float(-gap) if gap < 0 else 0.0,
        headroom_usd=usd_float(gap) if gap > 0 else 0.0,
        wallet=result.raw,
        sandbox=result.sandbox,
    )
