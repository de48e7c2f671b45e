"""Durations, rates and dates as people type them on the command line."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelseal.errors import UsageError
from modelseal.licensing import (
    PERIODS,
    format_datetime,
    format_duration,
    format_rate,
    parse_datetime,
    parse_duration,
    parse_duration_from_first_use,
    parse_rate,
)
from tests.conftest import expect_error

DURATION_FORMS = "a whole number and a unit: 90s, 10m, 1h, 30d or 2w"
RATE_FORMS = (
    "PERIOD=N with PERIOD one of minute, hour, day, week, month (30 days) or a duration "
    "such as 1h, and N a whole number ≥ 1: day=100, 1h=50"
)
DATE_FORMS = "a date 2027-01-31 (00:00 UTC) or an RFC 3339 time 2027-01-31T12:00:00Z"
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def _message(call: object) -> str:
    assert callable(call)
    return str(expect_error(UsageError, call))


# --- durations ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("10m", timedelta(minutes=10)),
        ("1h", timedelta(hours=1)),
        ("30d", timedelta(days=30)),
        ("2w", timedelta(weeks=2)),
        ("0s", timedelta(0)),
        ("007m", timedelta(minutes=7)),
    ],
)
def test_parse_duration(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "text",
    ["", "10", "m", "10x", "1.5h", "-1h", "+1h", " 1h", "1h ", "1h\n", "1 h", "1H", "1h30m",
     "\uff11h", "\u0663h", "10mins", "1e3s"],
)  # fmt: skip
def test_malformed_durations_name_the_text_and_the_forms(text: str) -> None:
    assert _message(lambda: parse_duration(text)) == (
        f"{text!r} is not a duration; write {DURATION_FORMS}"
    )


def test_absurdly_long_durations_are_refused() -> None:
    assert parse_duration("5200w") == timedelta(weeks=5200)
    assert _message(lambda: parse_duration("999999999999w")) == (
        "'999999999999w' is longer than 100 years; write a shorter duration"
    )
    assert _message(lambda: parse_duration("1234567890123s")) == (
        f"'1234567890123s' is not a duration; write {DURATION_FORMS}"
    )


@given(st.integers(0, 5200), st.sampled_from(sorted(UNITS)))
def test_every_number_and_unit_parses(number: int, unit: str) -> None:
    assert parse_duration(f"{number}{unit}") == timedelta(seconds=number * UNITS[unit])


@given(st.integers(0, 100 * 365 * 86400))
def test_format_duration_round_trips(seconds: int) -> None:
    text = format_duration(timedelta(seconds=seconds))
    assert parse_duration(text) == timedelta(seconds=seconds)
    assert len(text) <= len(f"{seconds}s")


@given(st.text(max_size=12))
def test_any_text_parses_or_raises_usage_error(text: str) -> None:
    try:
        value = parse_duration(text)
    except UsageError as error:
        assert repr(text) in str(error)
    else:
        assert value >= timedelta(0)
        assert text[-1] in UNITS


def test_format_duration_picks_the_largest_whole_unit() -> None:
    assert [
        format_duration(timedelta(seconds=s)) for s in (0, 59, 60, 90, 3600, 86400, 1209600)
    ] == ["0s", "59s", "1m", "90s", "1h", "1d", "2w"]
    assert _message(lambda: format_duration(timedelta(seconds=1.5))) == (
        "0:00:01.500000 is not a whole, non-negative number of seconds"
    )
    assert _message(lambda: format_duration(timedelta(seconds=-1))) == (
        "-1 day, 23:59:59 is not a whole, non-negative number of seconds"
    )


# --- from first use -------------------------------------------------------------------------------


def test_duration_from_first_use() -> None:
    assert parse_duration_from_first_use("30d-from-first-use") == timedelta(days=30)
    assert parse_duration_from_first_use("12h-from-first-use") == timedelta(hours=12)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "30d",
            "'30d' is not a duration from first use; write a duration followed by "
            "'-from-first-use', such as 30d-from-first-use",
        ),
        (
            "30d-from-first-use ",
            "'30d-from-first-use ' is not a duration from first use; write a duration followed "
            "by '-from-first-use', such as 30d-from-first-use",
        ),
        ("30x-from-first-use", f"'30x' is not a duration; write {DURATION_FORMS}"),
        ("-from-first-use", f"'' is not a duration; write {DURATION_FORMS}"),
        ("0d-from-first-use", "'0d-from-first-use' is zero; a license must last longer than that"),
    ],
)
def test_malformed_durations_from_first_use(text: str, message: str) -> None:
    assert _message(lambda: parse_duration_from_first_use(text)) == message


# --- rates ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("minute=10", (timedelta(minutes=1), 10)),
        ("hour=50", (timedelta(hours=1), 50)),
        ("day=100", (timedelta(days=1), 100)),
        ("week=1", (timedelta(weeks=1), 1)),
        ("month=1000", (timedelta(days=30), 1000)),
        ("1h=50", (timedelta(hours=1), 50)),
        ("90s=3", (timedelta(seconds=90), 3)),
    ],
)
def test_parse_rate(text: str, expected: tuple[timedelta, int]) -> None:
    assert parse_rate(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("day", f"'day' is not a rate; write {RATE_FORMS}"),
        ("day=", f"'day=' is not a rate; write {RATE_FORMS}"),
        ("day=x", f"'day=x' is not a rate; write {RATE_FORMS}"),
        ("day=-1", f"'day=-1' is not a rate; write {RATE_FORMS}"),
        ("day=1.5", f"'day=1.5' is not a rate; write {RATE_FORMS}"),
        ("day=1=2", f"'day=1=2' is not a rate; write {RATE_FORMS}"),
        ("100/day", f"'100/day' is not a rate; write {RATE_FORMS}"),
        ("days=100", f"'days=100': 'days' is not a period; write {RATE_FORMS}"),
        ("Day=100", f"'Day=100': 'Day' is not a period; write {RATE_FORMS}"),
        ("=100", f"'=100': '' is not a period; write {RATE_FORMS}"),
        ("day=0", f"'day=0': the count must be from 1 to 2^53-1; write {RATE_FORMS}"),
        ("0s=5", f"'0s=5': the period must be longer than zero; write {RATE_FORMS}"),
        (
            "day=9007199254740992",
            f"'day=9007199254740992': the count must be from 1 to 2^53-1; write {RATE_FORMS}",
        ),
        (
            "day=99999999999999999",
            f"'day=99999999999999999' is not a rate; write {RATE_FORMS}",
        ),
    ],
)
def test_malformed_rates(text: str, message: str) -> None:
    assert _message(lambda: parse_rate(text)) == message


@given(st.sampled_from([*PERIODS, "90s", "2h", "3d"]), st.integers(1, 2**53 - 1))
def test_rates_round_trip(period: str, count: int) -> None:
    rate = parse_rate(f"{period}={count}")
    assert parse_rate(format_rate(rate)) == rate


def test_format_rate_uses_period_names() -> None:
    assert format_rate((timedelta(days=1), 100)) == "day=100"
    assert format_rate((timedelta(hours=2), 5)) == "2h=5"


# --- dates ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2027-01-31", datetime(2027, 1, 31, tzinfo=UTC)),
        ("2027-01-31T12:00:00Z", datetime(2027, 1, 31, 12, tzinfo=UTC)),
        ("2027-01-31t12:00:00z", datetime(2027, 1, 31, 12, tzinfo=UTC)),
        ("2027-01-31 12:00:00Z", datetime(2027, 1, 31, 12, tzinfo=UTC)),
        ("2027-01-31T14:00:00+02:00", datetime(2027, 1, 31, 12, tzinfo=UTC)),
        ("2027-01-31T00:30:00-01:00", datetime(2027, 1, 31, 1, 30, tzinfo=UTC)),
        ("2027-01-31T12:00:00.5Z", datetime(2027, 1, 31, 12, 0, 0, 500000, tzinfo=UTC)),
        ("2027-01-31T12:00:00.123456789Z", datetime(2027, 1, 31, 12, 0, 0, 123456, tzinfo=UTC)),
        ("2028-02-29", datetime(2028, 2, 29, tzinfo=UTC)),
    ],
)
def test_parse_datetime(text: str, expected: datetime) -> None:
    value = parse_datetime(text)
    assert value == expected
    assert value.tzinfo is UTC


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("tomorrow", f"'tomorrow' is not a date or time; write {DATE_FORMS}"),
        ("", f"'' is not a date or time; write {DATE_FORMS}"),
        ("31/01/2027", f"'31/01/2027' is not a date or time; write {DATE_FORMS}"),
        ("20270131", f"'20270131' is not a date or time; write {DATE_FORMS}"),
        ("2027-W05", f"'2027-W05' is not a date or time; write {DATE_FORMS}"),
        ("2027-1-31", f"'2027-1-31' is not a date or time; write {DATE_FORMS}"),
        (" 2027-01-31", f"' 2027-01-31' is not a date or time; write {DATE_FORMS}"),
        (
            "2027-01-31T12:00:00",
            "'2027-01-31T12:00:00' is not a date or time (a time needs Z or an offset such as "
            f"+02:00); write {DATE_FORMS}",
        ),
        (
            "2027-01-31T12:00",
            "'2027-01-31T12:00' is not a date or time (a time needs Z or an offset such as "
            f"+02:00); write {DATE_FORMS}",
        ),
        (
            "2027-01-31T12:00Z",
            f"'2027-01-31T12:00Z' is not a date or time; write {DATE_FORMS}",
        ),
        ("2027-02-30", f"'2027-02-30' is not a real date or time; write {DATE_FORMS}"),
        ("2027-13-01", f"'2027-13-01' is not a real date or time; write {DATE_FORMS}"),
        (
            "2027-01-31T24:00:00Z",
            f"'2027-01-31T24:00:00Z' is not a real date or time; write {DATE_FORMS}",
        ),
        (
            "2027-01-31T23:59:60Z",
            f"'2027-01-31T23:59:60Z' is not a real date or time; write {DATE_FORMS}",
        ),
        ("0000-01-01", f"'0000-01-01' is not a real date or time; write {DATE_FORMS}"),
        (
            "0001-01-01T00:00:00+01:00",
            f"'0001-01-01T00:00:00+01:00' is not a real date or time; write {DATE_FORMS}",
        ),
    ],
)
def test_malformed_dates(text: str, message: str) -> None:
    assert _message(lambda: parse_datetime(text)) == message


@given(
    st.datetimes(
        min_value=datetime(1971, 1, 1),
        max_value=datetime(9998, 12, 31),
        timezones=st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30))]),
    )
)
def test_datetimes_round_trip_through_rfc3339(value: datetime) -> None:
    assert parse_datetime(value.isoformat()) == value
    whole = value.replace(microsecond=0)
    assert parse_datetime(format_datetime(whole)) == whole


def test_format_datetime() -> None:
    assert format_datetime(datetime(2027, 1, 31, 14, tzinfo=timezone(timedelta(hours=2)))) == (
        "2027-01-31T12:00:00Z"
    )
    assert _message(lambda: format_datetime(datetime(2027, 1, 31))) == (
        "a time without a time zone cannot be shown as UTC"
    )
