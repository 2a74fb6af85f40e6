"""Moments as the inputs and the reports read them: dates and date-times, always in UTC.

A leaf module: the inputs' checks (operations) and the reports (spend, runway)
read a date with the same function, and neither has to load the other for it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from .errors import InvalidInputError

#: what a report can total by: a UTC day, an ISO week (Monday to Sunday, UTC) or a calendar month
Period = Literal["day", "week", "month"]


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


def utc(when: datetime) -> datetime:
    """`when` in UTC (naive means UTC already). At the calendar's edge a moment cannot change
    zone: it is kept as given."""
    if when.tzinfo is None:
        return when.replace(tzinfo=UTC)
    try:
        return when.astimezone(UTC)
    except OverflowError:
        return when
