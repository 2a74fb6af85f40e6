"""What every report read from one wallet shares: the wallet it names, a check's alert, and its rows held on request.

Spend, reconcile, the budget check and runway each answer for one wallet; their
models name it with the same fields, in the same order, filled the one way
(`WalletReport.of`). A report that can fail a check says how in one `alert`
line (the CLI prints it and exits 3); the line for a balance below a minimum is
written here once, since two checks say it.

A report's answer is read by models with a bounded context: it holds its totals,
groups and top items, a size set by its inputs whatever the wallet's length, and
the lists that grow with the wallet (its rows, every resource id, every period,
the wallet page read) only when the caller asks (`include_rows`). Such a field is
`held_when_asked()`: None, and left out of the JSON, when not asked for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Self, TypeVar

from pydantic import BaseModel, ConfigDict, Field, computed_field

from .errors import InvalidInputError
from .money import money, usd, usd_float
from .untrusted import shown
from .wording import mark, phrase

if TYPE_CHECKING:
    from .models import Wallet

T = TypeVar("T")


def _not_held(value: Any) -> bool:
    return value is None


def held_when_asked() -> Any:
    """A field held only when asked for (`include_rows`; spend's periods: `by`): None otherwise, and
    then absent from the JSON, so an answer without it is as long as its inputs say."""
    return Field(default=None, exclude_if=_not_held)


def asked_for(items: list[T] | None) -> list[T]:
    """`items`, which the report holds only when asked (an export needs them): refused when it was not."""
    if items is None:
        asks = mark("include_rows", "true")
        raise InvalidInputError(f"this report was made without its rows: ask for them with {asks}")
    return items


class WalletReport(BaseModel):
    """The wallet a report was read from; the report's own fields follow these."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    wallet_id: str
    team_id: str | None = None
    currency: str = "USD"
    balance_usd: float
    sandbox: bool = False

    @classmethod
    def of(cls, wallet: Wallet, sandbox: bool, /, **fields: Any) -> Self:
        """The report for `wallet` (its own fields filled from it) with the report's `fields`."""
        return cls(
            wallet_id=wallet.wallet_id,
            team_id=wallet.team_id,
            currency=wallet.currency,
            balance_usd=wallet.balance_usd,
            sandbox=sandbox,
            **fields,
        )


class WalletCheck(WalletReport):
    """A report that can fail: `alert` is its one line when it did (exit 3 on the CLI), else None."""

    @computed_field  # type: ignore[prop-decorator]
    @property
    def alert(self) -> str | None:
        """`failure` as the data every surface passes on (JSON, structured content): its advice
        worded as arguments, never left as a marker. A surface's own words: `Result.alert_in`."""
        failure = self.failure()
        return None if failure is None else phrase(failure, "tool")

    def failure(self) -> str | None:
        """What failed, in one line (upstream text through `untrusted`), advice marked (see `wording`);
        None when the check passed."""
        raise NotImplementedError


def below_minimum(wallet_id: str, balance: float, minimum: float) -> str:
    """The one line for a balance under a minimum (exact: the shortfall is a decimal difference)."""
    short = usd_float(money(minimum) - money(balance))
    return (
        f"balance {usd(balance)} of wallet {shown(wallet_id)} is {usd(short)} below the minimum {usd(minimum)}: "
        "add funds"
    )
