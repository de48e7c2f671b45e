"""The local inference meter: a license's ``max_inferences_per`` enforced on the device.

The vault counts reported inferences per license and period; the agent counts them as they
happen, in the same epoch-aligned windows (:func:`~modelseal.licensing.periods.period_start`), so
a workload learns at once that the period's inferences are used up instead of at the next
renewal. One meter serves every key an agent holds under one license. When the vault refuses a
report with ``RATE_LIMITED`` (other devices used the license's share), the meter stays closed until
the vault's ``retry_after``.
"""

from __future__ import annotations

import math
import threading
from datetime import datetime, timedelta

from modelseal.agent.source import InferenceLimitError
from modelseal.errors import UsageError
from modelseal.licensing import Rate, format_datetime, format_duration
from modelseal.licensing.periods import period_start

__all__ = ["InferenceMeter"]


class InferenceMeter:
    """Counts inferences of one license in its current period; thread-safe."""

    def __init__(self, limit: Rate | None) -> None:
        self._limit = limit
        self._lock = threading.Lock()
        self._window: datetime | None = None
        self._used = 0
        self._blocked_until: datetime | None = None

    def take(self, count: int, now: datetime) -> None:
        """Count ``count`` inferences at ``now``, or raise :class:`InferenceLimitError` and count
        nothing when that would pass the limit."""
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise UsageError(f"an inference count is a whole number ≥ 0, not {count!r}")
        with self._lock:
            blocked = self._blocked_until
            if blocked is not None and now < blocked:
                raise InferenceLimitError(
                    "The vault reports that the license's inferences for this period are used "
                    f"up until {format_datetime(blocked)}; wait until then",
                    retry_after=_whole_seconds(blocked - now),
                )
            if self._limit is None or count == 0:
                return
            period, allowed = self._limit
            start = period_start(now, period)
            if start != self._window:
                self._window, self._used = start, 0
            if self._used + count > allowed:
                next_start = start + period
                raise InferenceLimitError(
                    f"The license allows {allowed} inferences per {format_duration(period)}, "
                    f"and {self._used} of them are used; no more until "
                    f"{format_datetime(next_start)}",
                    retry_after=_whole_seconds(next_start - now),
                )
            self._used += count

    def block_until(self, moment: datetime) -> None:
        """Refuse every count until ``moment`` (the vault said ``RATE_LIMITED``)."""
        with self._lock:
            if self._blocked_until is None or moment > self._blocked_until:
                self._blocked_until = moment


def _whole_seconds(delta: timedelta) -> timedelta:
    return timedelta(seconds=max(1, math.ceil(delta.total_seconds())))
