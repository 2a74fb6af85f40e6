"""Moments as the inputs and the reports read them: dates, date-times and times ago, always in UTC.

A leaf module: the inputs' checks (operations) and the reports (spend, runway)
read a moment with the same function, and neither has to load the other for it.
A time ago (`7d`, `24h`, `2w`, `today`, `yesterday`) is counted back from a "now"
the caller gives, so every moment of one request is counted from the same one.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Literal

from .errors import InvalidInputError

#: what a report can total by: a UTC day, an ISO week (Monday to Sunday, UTC) or a calendar month
Period = Literal["day", "week", "month"]

#: a time ago: whole hours, days or weeks back from now, or today's or yesterday's midnight (UTC).
#: Five digits at most: 99999 weeks back is still inside the calendar.
AGO_PATTERN = r"^([0-9]{1,5}[hdw]|today|yesterday)$"
#: every form a moment is given in, as each refusal words them
WHEN_FORMS = (
    "a date like 2026-11-01 or a date-time like 2026-11-01T09:00:00Z or a time ago (7d, 24h, 2w, today, yesterday)"
)

_AGO = re.compile(AGO_PATTERN)
_UNITS = {"h": timedelta(hours=1), "d": timedelta(days=1), "w": timedelta(weeks=1)}


def is_ago(text: str) -> bool:
    """`text` is a time ago (`7d`, `today`...), to be counted back from a now."""
    return _AGO.fullmatch(text.strip()) is not None


def parse_when(text: str, now: datetime | None = None) -> datetime:
    """A date (`2026-11-01`, midnight UTC), an ISO 8601 date-time (naive means UTC), or a time ago
    counted back from `now` (default: the current time): `7d`, `24h`, `2w`, `today`, `yesterday`."""
    value = text.strip()
    if _AGO.fullmatch(value):
        try:
            return ago(value, datetime.now(UTC) if now is None else now)
        except OverflowError:  # before the calendar's first day
            raise InvalidInputError(f"{text!r} is before the year 1") from None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInputError(f"the moment must be {WHEN_FORMS}, got {text!r}") from None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def ago(text: str, now: datetime) -> datetime:
    """The moment a time ago (`AGO_PATTERN`) names, counted back from `now` (UTC)."""
    now = utc(now)
    if text in ("today", "yesterday"):
        midnight = datetime(now.year, now.month, now.day, tzinfo=UTC)
        return midnight - timedelta(days=1) if text == "yesterday" else midnight
    return now - int(text[:-1]) * _UNITS[text[-1]]


def stamp(when: datetime) -> str:
    """`when` as an ISO 8601 date-time in UTC to the second: `2026-11-20T10:00:00Z` (a year before
    1000 with its four digits, which strftime drops)."""
    return utc(when).replace(tzinfo=None, microsecond=0).isoformat() + "Z"


def utc(when: datetime) -> datetime:
    """`when` in UTC (naive means UTC already). At the calendar's edge a moment cannot change
    zone: it is kept as given."""
    if when.tzinfo is None:
        return when.replace(tzinfo=UTC)
    try:
        return when.astimezone(UTC)
    except OverflowError:
        return when
