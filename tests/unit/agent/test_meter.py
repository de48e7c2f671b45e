"""The local inference meter and the period windows it shares with the vault."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from modelseal.agent import InferenceLimitError
from modelseal.agent.meter import InferenceMeter
from modelseal.errors import UsageError
from modelseal.licensing import format_datetime
from modelseal.licensing.periods import period_start
from tests.conftest import expect_error

MINUTE = timedelta(minutes=1)
T0 = datetime(2030, 6, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("now", "period", "start"),
    [
        (T0 + timedelta(hours=5, seconds=7), timedelta(days=1), datetime(2030, 6, 1, tzinfo=UTC)),
        (T0 + timedelta(seconds=59.999), MINUTE, T0),
        (T0 + timedelta(seconds=60), MINUTE, T0 + MINUTE),
        (T0, timedelta(seconds=7), T0 - timedelta(seconds=(T0.timestamp() % 7))),
        # Another time zone is the same instant, and the window is in UTC.
        (datetime(2030, 6, 1, 14, 30, tzinfo=timezone(timedelta(hours=2))), timedelta(hours=1), T0),
    ],
)
def test_windows_are_aligned_to_the_epoch(
    now: datetime, period: timedelta, start: datetime
) -> None:
    assert period_start(now, period) == start
    assert period_start(now, period).tzinfo is UTC


def test_period_start_refuses_naive_times_and_empty_periods() -> None:
    with pytest.raises(ValueError, match="naive datetime"):
        period_start(datetime(2030, 1, 1), MINUTE)
    with pytest.raises(ValueError, match="a period must be positive"):
        period_start(T0, timedelta(0))


def test_the_limit_holds_within_a_window_and_resets_in_the_next() -> None:
    meter = InferenceMeter((MINUTE, 5))
    late = T0 + timedelta(seconds=58, milliseconds=200)
    meter.take(3, T0)
    meter.take(2, late)
    error = expect_error(
        InferenceLimitError,
        lambda: meter.take(1, late),
        "The license allows 5 inferences per 1m, and 5 of them are used; no more until "
        f"{format_datetime(T0 + MINUTE)}",
    )
    assert error.retry_after == timedelta(seconds=2)  # whole seconds, rounded up
    assert error.code == "RATE_LIMITED"
    meter.take(5, T0 + MINUTE)  # a new window


def test_a_refused_count_counts_nothing() -> None:
    meter = InferenceMeter((MINUTE, 5))
    meter.take(4, T0)
    expect_error(InferenceLimitError, lambda: meter.take(2, T0), "4 of them are used")
    meter.take(1, T0)


def test_more_than_a_whole_period_at_once_is_refused() -> None:
    meter = InferenceMeter((MINUTE, 5))
    expect_error(InferenceLimitError, lambda: meter.take(6, T0), "allows 5 inferences per 1m")


@pytest.mark.parametrize("count", [-1, 1.5, True, "3"])
def test_a_count_is_a_whole_number(count: object) -> None:
    expect_error(
        UsageError,
        lambda: InferenceMeter(None).take(count, T0),  # type: ignore[arg-type]
        f"an inference count is a whole number ≥ 0, not {count!r}",
    )


def test_no_limit_counts_freely_until_the_vault_says_stop() -> None:
    meter = InferenceMeter(None)
    meter.take(10**9, T0)
    meter.block_until(T0 + timedelta(seconds=90))
    meter.block_until(T0 + timedelta(seconds=30))  # an earlier moment does not shorten it
    error = expect_error(
        InferenceLimitError,
        lambda: meter.take(1, T0 + timedelta(seconds=60)),
        "The vault reports that the license's inferences for this period are used up until "
        f"{format_datetime(T0 + timedelta(seconds=90))}; wait until then",
    )
    assert error.retry_after == timedelta(seconds=30)
    meter.take(1, T0 + timedelta(seconds=90))
