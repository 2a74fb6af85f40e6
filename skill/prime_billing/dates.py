"""Moments as the inputs and the reports read them: dates, date-times and times ago, always in UTC.

A leaf module: the inputs' checks (operations) and the reports (spend, runway,
pace) read a moment, and find the day, ISO week or month holding it, with the
same functions, and none has to load another for them.
A time ago (`7d`, `24h`, `2w`, `today`, `yesterday`) is counted back from a "now"
the caller gives, so every moment of one request is counted from the same one.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
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


# --------------------------------------------------------------------------- periods


def period_of(when: datetime, by: Period) -> tuple[str, datetime, datetime]:
    """The UTC period holding `when` (naive means UTC): its label, first moment and the next period's."""
    return named_period(period_start(utc(when).date(), by), by)


def named_period(start: date, by: Period) -> tuple[str, datetime, datetime]:
    """The period from `start` (its first day): its label, first moment and the next period's."""
    return _label(start, by), _midnight(start), _midnight(_following(start, by))


def period_start(day: date, by: Period) -> date:
    """The first day of the period holding `day`: itself, the Monday before (ISO), the month's first."""
    if by == "day":
        return day
    if by == "week":
        return day - timedelta(days=day.weekday())  # back to Monday (ISO)
    return day.replace(day=1)


def _label(start: date, by: Period) -> str:
    if by == "day":
        return start.isoformat()
    if by == "week":
        iso = start.isocalendar()  # the ISO year: the week of 2024-12-30 is 2025-W01
        return f"{iso.year:04d}-W{iso.week:02d}"
    return f"{start.year:04d}-{start.month:02d}"


def _following(start: date, by: Period) -> date:
    """The next period's start; the calendar's last day at its very edge."""
    try:
        if by == "month":
            return (start + timedelta(days=31)).replace(day=1)
        return start + timedelta(days=7 if by == "week" else 1)
    except OverflowError:
        return date.max


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)
