"""The small texts license options are written in: durations, rates and dates.

- duration: a whole number and a unit, ``90s``, ``10m``, ``1h``, ``30d``, ``2w``;
- duration from first use: ``30d-from-first-use``;
- rate: ``PERIOD=N`` with PERIOD one of ``minute``, ``hour``, ``day``, ``week``, ``month``
  (30 days) or a duration (``1h=50``);
- date: ``2027-01-31`` (00:00 UTC at the start of that day) or RFC 3339
  (``2027-01-31T12:00:00Z``, ``2027-01-31T14:00:00+02:00``), always returned as aware UTC.

Each parser raises :class:`~modelseal.errors.UsageError` naming the text it could not read and the
forms it accepts.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from modelseal.errors import UsageError

__all__ = [
    "PERIODS",
    "format_datetime",
    "format_duration",
    "format_rate",
    "parse_datetime",
    "parse_duration",
    "parse_duration_from_first_use",
    "parse_rate",
]

_UNITS: dict[str, int] = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
PERIODS: dict[str, timedelta] = {
    "minute": timedelta(minutes=1),
    "hour": timedelta(hours=1),
    "day": timedelta(days=1),
    "week": timedelta(weeks=1),
    "month": timedelta(days=30),
}
_MAX_SECONDS = 100 * 365 * 86400  # a century: far beyond any license, far below overflow
_MAX_COUNT = 2**53 - 1  # the largest integer every JSON reader keeps exactly

_DURATION = re.compile(r"([0-9]{1,12})([smhdw])", re.ASCII)
_FIRST_USE_SUFFIX = "-from-first-use"
_COUNT = re.compile(r"[0-9]{1,16}", re.ASCII)
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", re.ASCII)
_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?"
    r"([Zz]|[+-][0-9]{2}:[0-9]{2})",
    re.ASCII,
)
_NAIVE_TIME = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]+)?)?", re.ASCII
)

_DURATION_FORMS = "a whole number and a unit: 90s, 10m, 1h, 30d or 2w"
_RATE_FORMS = (
    "PERIOD=N with PERIOD one of minute, hour, day, week, month (30 days) or a duration "
    "such as 1h, and N a whole number ≥ 1: day=100, 1h=50"
)
_DATE_FORMS = "a date 2027-01-31 (00:00 UTC) or an RFC 3339 time 2027-01-31T12:00:00Z"


def parse_duration(text: str) -> timedelta:
    """``90s``, ``10m``, ``1h``, ``30d``, ``2w`` → timedelta (zero allowed: ``0s``)."""
    match = _DURATION.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise UsageError(f"{text!r} is not a duration; write {_DURATION_FORMS}")
    seconds = int(match[1]) * _UNITS[match[2]]
    if seconds > _MAX_SECONDS:
        raise UsageError(f"{text!r} is longer than 100 years; write a shorter duration")
    return timedelta(seconds=seconds)


def parse_duration_from_first_use(text: str) -> timedelta:
    """``30d-from-first-use`` → 30 days (must be longer than zero)."""
    if not isinstance(text, str) or not text.endswith(_FIRST_USE_SUFFIX):
        raise UsageError(
            f"{text!r} is not a duration from first use; write a duration followed by "
            f"'{_FIRST_USE_SUFFIX}', such as 30d{_FIRST_USE_SUFFIX}"
        )
    duration = parse_duration(text.removesuffix(_FIRST_USE_SUFFIX))
    if not duration:
        raise UsageError(f"{text!r} is zero; a license must last longer than that")
    return duration


def parse_rate(text: str) -> tuple[timedelta, int]:
    """``day=100``, ``1h=50`` → (period, count); the period and the count must be positive."""
    period_text, sep, count_text = text.partition("=") if isinstance(text, str) else ("", "", "")
    if not sep or not _COUNT.fullmatch(count_text):
        raise UsageError(f"{text!r} is not a rate; write {_RATE_FORMS}")
    if period_text in PERIODS:
        period = PERIODS[period_text]
    elif _DURATION.fullmatch(period_text):
        period = parse_duration(period_text)
    else:
        raise UsageError(
            f"{text!r}: {period_text!r} is not a period; write {_RATE_FORMS}",
        )
    count = int(count_text)
    if not period:
        raise UsageError(f"{text!r}: the period must be longer than zero; write {_RATE_FORMS}")
    if not 1 <= count <= _MAX_COUNT:
        raise UsageError(f"{text!r}: the count must be from 1 to 2^53-1; write {_RATE_FORMS}")
    return period, count


def parse_datetime(text: str) -> datetime:
    """A date (00:00 UTC that day) or an RFC 3339 time with an offset → aware UTC datetime."""
    if not isinstance(text, str) or not (_DATE.fullmatch(text) or _RFC3339.fullmatch(text)):
        hint = ""
        if isinstance(text, str) and _NAIVE_TIME.fullmatch(text):
            hint = " (a time needs Z or an offset such as +02:00)"
        raise UsageError(f"{text!r} is not a date or time{hint}; write {_DATE_FORMS}")
    normalised = text.upper().replace(" ", "T")
    # Python reads at most six fractional digits; RFC 3339 allows more (extra ones are dropped).
    normalised = re.sub(r"\.([0-9]+)", lambda m: "." + m[1][:6].ljust(6, "0"), normalised)
    try:
        value = datetime.fromisoformat(normalised)
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC)
    except (ValueError, OverflowError):
        raise UsageError(f"{text!r} is not a real date or time; write {_DATE_FORMS}") from None


def format_duration(value: timedelta) -> str:
    """The shortest :func:`parse_duration` text for a whole number of seconds (``600s`` → ``10m``)."""
    seconds = _whole_seconds(value)
    for unit in ("w", "d", "h", "m"):
        if seconds and seconds % _UNITS[unit] == 0:
            return f"{seconds // _UNITS[unit]}{unit}"
    return f"{seconds}s"


def format_rate(rate: tuple[timedelta, int]) -> str:
    """``(1 day, 100)`` → ``day=100``; the inverse of :func:`parse_rate`."""
    period, count = rate
    names = {value: name for name, value in PERIODS.items()}
    return f"{names.get(period) or format_duration(period)}={count}"


def format_datetime(value: datetime) -> str:
    """``2027-01-31T00:00:00Z``: UTC, whole seconds, the form refusal sentences use."""
    if value.tzinfo is None:
        raise UsageError("a time without a time zone cannot be shown as UTC")
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _whole_seconds(value: timedelta) -> int:
    if value.microseconds or value < timedelta(0):
        raise UsageError(f"{value} is not a whole, non-negative number of seconds")
    return int(value.total_seconds())
