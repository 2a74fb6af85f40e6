"""Money: exact sums, and the one way an amount of dollars is written.

Amounts are summed in `Decimal` built from each amount's shortest repr, so
totals of many rows come out to the cent with no float drift. `usd` is here,
below the models, because a check's one-line alert (part of its JSON) and the
rendered text must write a figure the same way.
"""

from __future__ import annotations

import math
from decimal import Decimal

from .errors import BadResponseError


def money(value: float | int | str | Decimal) -> Decimal:
    """Exact decimal of a JSON number (1.13 stays 1.13, not 1.12999…)."""
    return value if isinstance(value, Decimal) else Decimal(str(value))


def usd_float(value: Decimal) -> float:
    """Back to a JSON number for the report, once, after summing. Every amount is a finite float,
    but their sum need not be: beyond a float's range it would be written `inf` (JSON null),
    so it fails as the broken answer it is."""
    number = float(value)
    if not math.isfinite(number):
        raise BadResponseError(
            f"the wallet's amounts add up to {value:.3e} USD, more than a float can hold: "
            "the upstream's figures look broken; report it"
        )
    return number


def usd(value: float | None) -> str:
    """Cents for ordinary figures, four decimals for sub-cent ones; None is unknown. The sign
    goes before the `$`, and only on a figure whose digits are not all zero (never `-$0.00`)."""
    if value is None:
        return "unknown"
    digits = f"{abs(value):,.4f}" if value != 0 and abs(value) < 0.01 else f"{abs(value):,.2f}"
    return f"-${digits}" if value < 0 and digits.strip("0.,") else f"${digits}"
