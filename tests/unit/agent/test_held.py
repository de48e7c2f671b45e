"""A held key's lease, driven step by step with an injected clock and a scripted vault: renewal
reports, backoff, offline grace, definitive refusals, the end and its callbacks."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from modelseal.agent import InferenceLimitError, LeaseEndedError, LeaseStatus
from modelseal.agent.held import (
    OFFLINE_GRACE_USED_UP,
    HeldKey,
    Outcome,
    Refused,
    Renewed,
    Unavailable,
)
from modelseal.agent.meter import InferenceMeter
from modelseal.agent.release import ReleasedKey
from modelseal.crypto import DataKey
from modelseal.licensing import License, Policy, Rate, VersionSpec, format_datetime
from tests.conftest import expect_error

T0 = datetime(2030, 6, 1, 12, 0, 0, tzinfo=UTC)
LEASE = timedelta(seconds=30)
HEARTBEAT = timedelta(seconds=10)
GRACE = timedelta(seconds=60)
LICENSE_ID = "lic-0b7e9f0a-1c2d-4e5f-8a9b-0c1d2e3f4a5b"


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class Vault:
    """A scripted renewer: answers from ``outcomes`` (then renews), records each report."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.outcomes: list[Outcome | Exception] = []
        self.reports: list[int] = []

    def __call__(self, lease_id: str, inferences: int) -> Outcome:
        assert lease_id == "lease-1"
        self.reports.append(inferences)
        if self.outcomes:
            outcome = self.outcomes.pop(0)
            if isinstance(outcome, Exception):
                raise outcome
            return outcome
        return Renewed(self.clock() + LEASE, HEARTBEAT, GRACE)


class MaxJitter(random.Random):
    def uniform(self, a: float, b: float) -> float:
        return b


def released(key: DataKey, limit: Rate | None = None) -> ReleasedKey:
    license_ = License(
        id=LICENSE_ID,
        issuer="vault-1",
        customer="acme",
        issued_at=T0 - timedelta(days=1),
        not_before=T0 - timedelta(days=1),
        model_name="iris",
        versions=VersionSpec.parse("1"),
        policy=Policy(lease=LEASE, heartbeat=HEARTBEAT, offline_grace=GRACE),
        vault_urls=("https://vault.example.com",),
        vault_pins=("ab" * 32,),
    )
    return ReleasedKey(
        key=key,
        lease_id="lease-1",
        expires_at=T0 + LEASE,
        heartbeat=HEARTBEAT,
        offline_grace=GRACE,
        lease="lease-jws",
        license=license_,
        model_name="iris",
        model_version=1,
    )


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def vault(clock: Clock) -> Vault:
    return Vault(clock)


@pytest.fixture
def data_key() -> DataKey:
    return DataKey.generate()


def hold(clock: Clock, vault: Vault, key: DataKey, limit: Rate | None = None) -> HeldKey:
    return HeldKey(
        released(key), renewer=vault, meter=InferenceMeter(limit), clock=clock, rng=MaxJitter()
    )


@pytest.fixture
def held(clock: Clock, vault: Vault, data_key: DataKey) -> Iterator[HeldKey]:
    key = hold(clock, vault, data_key)
    yield key
    key.close()


def endings(key: HeldKey) -> list[LeaseStatus]:
    seen: list[LeaseStatus] = []
    key.on_end(seen.append)
    return seen


def test_a_renewal_reports_what_was_counted_since_the_last_one(
    held: HeldKey, clock: Clock, vault: Vault, data_key: DataKey
) -> None:
    assert held.key is data_key
    held.count_inferences(3)
    held.step()
    assert vault.reports == []  # not due before a heartbeat
    clock.advance(10)
    held.step()
    assert vault.reports == [3]
    status = held.status()
    assert (status.state, status.inferences_reported) == ("active", 3)
    assert status.expires_at == clock.now + LEASE
    assert status.usable_until == clock.now + LEASE + GRACE
    held.count_inferences(2)
    clock.advance(10)
    held.step()
    assert vault.reports == [3, 2]
    assert held.status().inferences_reported == 5


def test_a_failed_report_is_carried_to_the_next_renewal(
    held: HeldKey, clock: Clock, vault: Vault
) -> None:
    vault.outcomes = [Unavailable("VAULT_UNREACHABLE", "no vault is listening")]
    held.count_inferences(2)
    clock.advance(10)
    held.step()
    assert held.status().state == "offline"
    assert held.status().inferences_reported == 0
    held.count_inferences(1)
    clock.advance(0.5)  # the first retry comes after 0.5 s at most
    held.step()
    assert vault.reports == [2, 3]
    assert held.status().state == "active"
    assert held.status().inferences_reported == 3


def test_retries_back_off_exponentially_up_to_the_heartbeat(
    held: HeldKey, clock: Clock, vault: Vault
) -> None:
    vault.outcomes = [Unavailable("HTTP_503", "busy")] * 7
    clock.advance(10)
    held.step()
    gaps: list[float] = []
    for _ in range(6):
        waited = 0.0
        while len(vault.reports) == len(gaps) + 1:
            clock.advance(0.25)
            waited += 0.25
            held.step()
        gaps.append(waited)
    assert gaps == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0]  # MaxJitter: the top of each jitter range


def test_jitter_spreads_the_retries() -> None:
    clock = Clock()
    vault = Vault(clock)
    vault.outcomes = [Unavailable("HTTP_503", "busy")] * 2
    key = HeldKey(
        released(DataKey.generate()),
        renewer=vault,
        meter=InferenceMeter(None),
        clock=clock,
        rng=random.Random(7),  # noqa: S311 - test jitter
    )
    clock.advance(10)
    key.step()
    clock.advance(0.24)
    key.step()
    assert len(vault.reports) == 1  # never before half the backoff
    clock.advance(0.26)
    key.step()
    assert len(vault.reports) == 2  # never after all of it


def test_rate_limited_renewals_retry_and_close_the_local_meter(
    held: HeldKey, clock: Clock, vault: Vault
) -> None:
    until = T0 + timedelta(seconds=10 + 300)
    vault.outcomes = [Unavailable("RATE_LIMITED", "used up", retry_after=timedelta(seconds=300))]
    held.count_inferences(4)
    clock.advance(10)
    held.step()
    assert held.status().state == "offline"
    error = expect_error(
        InferenceLimitError,
        lambda: held.count_inferences(1),
        "The vault reports that the license's inferences for this period are used up until "
        f"{format_datetime(until)}; wait until then",
    )
    assert error.retry_after == timedelta(seconds=300)
    assert error.code == "RATE_LIMITED"
    clock.advance(9.9)
    held.step()
    assert vault.reports == [4]  # the retry waits a heartbeat, not the 300 s
    clock.advance(0.1)
    held.step()
    assert vault.reports == [4, 4]
    assert held.status().state == "active"


def test_a_refusal_ends_the_lease_at_once(held: HeldKey, clock: Clock, vault: Vault) -> None:
    reason = "License lic-1 was revoked at 2030-06-01T12:00:05Z; ask the model controller why"
    vault.outcomes = [Refused("REVOKED", reason)]
    seen = endings(held)
    clock.advance(10)
    held.step()
    assert [s.code for s in seen] == ["REVOKED"]
    assert seen[0].reason == reason and seen[0].state == "ended"
    error = expect_error(LeaseEndedError, lambda: held.key, reason)
    assert error.code == "REVOKED"
    assert str(error) == f"the key of iris version 1 was dropped: {reason}"
    expect_error(LeaseEndedError, lambda: held.count_inferences(1), reason)
    held.step()
    held.close()
    assert len(seen) == 1  # once, whatever happens next
    late: list[LeaseStatus] = []
    held.on_end(late.append)  # registered after the end: runs at once
    assert [s.code for s in late] == ["REVOKED"]


def test_offline_the_key_stays_usable_until_the_grace_is_used_up(
    held: HeldKey, clock: Clock, vault: Vault, data_key: DataKey
) -> None:
    vault.outcomes = [Unavailable("VAULT_UNREACHABLE", "no vault is listening at X")] * 1000
    seen = endings(held)
    clock.advance(10)
    offline_since = clock.now
    held.step()
    until = T0 + LEASE + GRACE
    while clock.now + timedelta(seconds=10) <= until:
        clock.advance(10)
        held.step()
        assert held.status().state == "offline"
        assert held.key is data_key
    clock.now = until
    held.step()
    assert held.key is data_key  # usable up to and including usable_until
    clock.advance(0.001)
    held.step()
    reason = (
        f"The vault could not be reached since {format_datetime(offline_since)} (no vault is "
        f"listening at X), and the lease with its offline grace of 1m ran out at "
        f"{format_datetime(until)}; restore the connection to the vault and load the model again"
    )
    assert [(s.code, s.reason) for s in seen] == [(OFFLINE_GRACE_USED_UP, reason)]
    expect_error(LeaseEndedError, lambda: held.key, reason)


def test_back_within_the_grace_is_active_again(held: HeldKey, clock: Clock, vault: Vault) -> None:
    vault.outcomes = [Unavailable("VAULT_UNREACHABLE", "down")] * 3
    for _ in range(4):
        clock.advance(10)
        held.step()
    assert clock.now > T0 + LEASE  # past the lease, within the grace
    status = held.status()
    assert status.state == "active"
    assert status.usable_until == clock.now + LEASE + GRACE


def test_the_deadline_holds_even_when_no_renewal_ran(
    held: HeldKey, clock: Clock, data_key: DataKey
) -> None:
    seen = endings(held)
    clock.now = T0 + LEASE + GRACE + timedelta(seconds=1)
    error = expect_error(LeaseEndedError, lambda: held.key, "was not renewed before it ran out")
    assert error.code == OFFLINE_GRACE_USED_UP
    assert seen == []  # callbacks run on the renewal thread, not on the key's user
    held.step()
    assert [s.code for s in seen] == [OFFLINE_GRACE_USED_UP]


def test_close_drops_the_key_and_runs_the_callbacks_once(held: HeldKey) -> None:
    seen = endings(held)
    held.close()
    held.close()
    assert [(s.code, s.reason) for s in seen] == [("CLOSED", "The holder let go of the key")]
    assert held.status().state == "ended"
    expect_error(LeaseEndedError, lambda: held.key, "The holder let go of the key")


def test_an_unexpected_renewal_error_is_retried(
    held: HeldKey, clock: Clock, vault: Vault, caplog: pytest.LogCaptureFixture
) -> None:
    vault.outcomes = [RuntimeError("boom")]
    clock.advance(10)
    held.step()
    assert held.status().state == "offline"
    assert "renewal of lease lease-1 failed unexpectedly" in caplog.text
    clock.advance(0.5)
    held.step()
    assert held.status().state == "active"


def test_a_failing_callback_does_not_stop_the_others(
    held: HeldKey, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(status: LeaseStatus) -> None:
        raise RuntimeError("callback bug")

    seen: list[Any] = []
    held.on_end(broken)
    held.on_end(seen.append)
    held.close()
    assert len(seen) == 1
    assert "an on_end callback failed" in caplog.text


def test_the_renewal_thread_renews_and_close_is_immediate(data_key: DataKey) -> None:
    def now() -> datetime:
        return datetime.now(UTC)

    calls: list[int] = []
    renewed = threading.Event()

    def renewer(lease_id: str, inferences: int) -> Outcome:
        calls.append(inferences)
        if len(calls) >= 3:
            renewed.set()
        return Renewed(now() + LEASE, timedelta(milliseconds=50), GRACE)

    release = released(data_key)
    fast = ReleasedKey(**{**release.__dict__, "heartbeat": timedelta(milliseconds=50)})
    key = HeldKey(fast, renewer=renewer, meter=InferenceMeter(None), clock=now)
    ended = threading.Event()
    key.on_end(lambda status: ended.set())
    key.start()
    assert renewed.wait(5), "the renewal thread did not renew"
    started = time.monotonic()
    key.close()
    assert ended.is_set() and time.monotonic() - started < 0.1
    key.join(1)
    assert key._thread is not None and not key._thread.is_alive()
