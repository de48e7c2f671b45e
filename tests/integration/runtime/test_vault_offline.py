"""The vault goes away (the ``offline`` fixture stopped it right after the server answered): the
sealed model keeps serving, with the lease shown ``offline`` in /metrics, until the last lease
expiry plus the license's offline grace, and then answers 503 naming OFFLINE_GRACE_USED_UP.

This module's name sorts last, so the wait for the lease (30 s at least) overlaps the other tests.
"""

from __future__ import annotations

import time

from sqlalchemy import create_engine, select

from modelseal.vault.db import schema as s
from tests.integration.runtime._chain import HEARTBEAT
from tests.integration.runtime.conftest import OFFLINE_GRACE, Offline

SLACK = 0.6  # the sampler's period, the renewal thread's wake-up and the scrape


def _last_lease_expiry(offline: Offline) -> float:
    """The expiry the vault gave at the last renewal before it stopped (its database, read while
    it is down), in seconds since the epoch."""
    engine = create_engine(offline.vault.control.home.database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                select(s.leases.c.expires_at).where(s.leases.c.license_id == offline.license_id)
            ).all()
    finally:
        engine.dispose()
    assert len(rows) == 1, rows
    return float(rows[0][0]) / 1e6


def test_serving_continues_within_the_grace_and_stops_after(offline: Offline) -> None:
    assert offline.thread is not None
    offline.thread.join(timeout=60)
    assert not offline.thread.is_alive(), "the server kept serving long past the grace"
    usable_until = _last_lease_expiry(offline) + OFFLINE_GRACE.total_seconds()
    assert usable_until > offline.stopped_at + 25  # a 30 s lease, renewed every second
    samples = offline.samples
    served = [x for x in samples if x.status == 200]
    refused = [x for x in samples if x.status != 200]
    assert served and refused
    # within the grace: served, and after the first failed renewal, shown offline
    assert all(x.at < usable_until + SLACK for x in served)
    assert served[-1].at > usable_until - SLACK, "serving stopped before the grace was used up"
    late = [x for x in served if x.at > offline.stopped_at + 2 * HEARTBEAT.total_seconds()]
    assert late and all(x.lease == "offline" for x in late), {x.lease for x in late}
    # after it: 503 naming the reason, and the lease shown ended
    assert all(x.status == 503 for x in refused), {x.status for x in refused}
    first = refused[0]
    assert first.at >= usable_until - SLACK
    assert first.at <= usable_until + SLACK, first.at - usable_until
    assert (
        '"model iris version 1 is not available: The vault could not be reached since '
        in first.body
    )
    assert "(OFFLINE_GRACE_USED_UP)" in first.body
    assert refused[-1].lease in ("ended", "none")
    print(
        f"\nvault stopped; served {served[-1].at - offline.stopped_at:.1f} s more (lease + "
        f"{OFFLINE_GRACE.total_seconds():g} s grace); first 503 "
        f"{first.at - usable_until:+.2f} s from the end of the grace"
    )
    assert time.time() > usable_until
