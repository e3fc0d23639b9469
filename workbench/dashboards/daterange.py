"""A manager's date range: both days included, checked, with a message a person can act on."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

#: the longest range the dashboards answer, in days (a year and a day)
MAX_DAYS = 366


class RangeError(ValueError):
    """A date range the dashboards refuse; ``str(e)`` says why and what to do."""


@dataclass(frozen=True)
class DateRange:
    start: date
    end: date

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    @property
    def start_time(self) -> datetime:
        return datetime.combine(self.start, time(), UTC)

    @property
    def end_time(self) -> datetime:
        """The end of the last day (exclusive bound)."""
        return datetime.combine(self.end + timedelta(days=1), time(), UTC)

    def __str__(self) -> str:
        return f"{self.start:%Y-%m-%d} to {self.end:%Y-%m-%d}"


def _as_date(value, what: str) -> date:
    if value is None or value == "":
        raise RangeError(f"Choose a {what} date: the range is empty.")
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value).strip())
    except ValueError as e:
        raise RangeError(f"The {what} date {value!r} is not a date (write YYYY-MM-DD).") from e


def check_range(start, end, max_days: int = MAX_DAYS, today: date | None = None) -> DateRange:
    """``start``/``end`` (dates or ``YYYY-MM-DD``) as a :class:`DateRange`, or
    :class:`RangeError` for an empty, reversed, too long or future range."""
    s, e = _as_date(start, "start"), _as_date(end, "end")
    if s > e:
        raise RangeError(f"The start ({s}) is after the end ({e}): swap them.")
    days = (e - s).days + 1
    if days > max_days:
        raise RangeError(f"{days} days is longer than the {max_days} days the dashboard "
                         "answers: choose a shorter range.")
    today = today or datetime.now(UTC).date()
    if s > today:
        raise RangeError(f"The range starts in the future ({s}); nothing has run yet.")
    return DateRange(s, e)


def last_days(days: int, today: date | None = None) -> DateRange:
    today = today or datetime.now(UTC).date()
    return DateRange(today - timedelta(days=days - 1), today)
