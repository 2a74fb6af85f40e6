"""Money: exact sums, and the one way an amount of dollars is written.

Amounts are summed in `Decimal` built from each amount's shortest repr, so
totals of many rows come out to the cent with no float drift. `usd` is here,
below the models, because a check's one-line alert (part of its JSON) and the
rendered text must write a figure the same way.
"""

from __future__ import annotations

from decimal import Decimal


def money(value: float | int | str | Decimal) -> Decimal:
    """Exact decimal of a JSON number (1.13 stays 1.13, not 1.12999…)."""
    return value if isinstance(value, Decimal) else Decimal(str(value))


def usd_float(value: Decimal) -> float:
    """Back to a JSON number for the report, once, after summing."""
    return float(value)


def usd(value: float | None) -> str:
    """Cents for ordinary figures, more digits for sub-cent ones; None is unknown."""
    if value is None:
        return "unknown"
    if value != 0 and abs(value) < 0.01:
        return f"${value:,.4f}"
    return f"-${-value:,.2f}" if value < 0 else f"${value:,.2f}"
