"""Usage periods: the windows per-period limits count in, aligned to the Unix epoch.

The vault (its usage counters) and the agent (its local inference meter) use the same windows, so
"100 per day" means the same day on both sides: a window of length ``period`` starts at every
whole multiple of ``period`` since 1970-01-01T00:00:00Z.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Final

__all__ = ["period_start"]

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND: Final = timedelta(microseconds=1)


def period_start(now: datetime, period: timedelta) -> datetime:
    """The start of the ``period``-long window holding ``now`` (time-zone aware), in UTC."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"naive datetime {now!r}; pass a time-zone aware datetime")
    step = period // _MICROSECOND
    if step <= 0:
        raise ValueError(f"a period must be positive, not {period}")
    micros = (now - _EPOCH) // _MICROSECOND
    return _EPOCH + (micros // step * step) * _MICROSECOND
