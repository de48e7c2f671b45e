"""KeyAgent against the real vault over HTTPS: releases, renewals reporting inferences, revocation,
the vault going away and coming back, the offline grace, local inference limits, and close."""

from __future__ import annotations

import math
import re
import ssl
import time
from datetime import UTC, datetime, timedelta
from functools import partial

import httpx
import pytest

from modelseal.agent import (
    InferenceLimitError,
    KeyAgent,
    LeaseEndedError,
)
from modelseal.errors import UsageError
from modelseal.licensing import RefusalCode, format_datetime
from modelseal.licensing.periods import period_start
from modelseal.vault.client import VaultConnectionError, VaultRequestError
from tests.conftest import expect_error
from tests.integration.agent._world import HEARTBEAT, Ending, OffsetClock, World, wait_for
from tests.vaulthome import audit_entries

DAY = timedelta(days=1)


def test_a_held_key_is_renewed_with_the_inferences_counted(running: World) -> None:
    license_id, token = running.issue(max_inferences_per=(DAY, 1000))
    with KeyAgent(running.device) as agent:
        key = agent.acquire(token, "iris", 1)
        assert key.key == running.data_key  # the key the package was sealed with
        assert "secret" not in repr(key) and running.data_key.key_id not in repr(key)
        status = key.status()
        assert (status.state, status.license_id, status.model_name, status.model_version) == (
            "active",
            license_id,
            "iris",
            1,
        )
        assert status.heartbeat == HEARTBEAT
        assert status.usable_until == status.expires_at  # no offline grace
        first_expiry = status.expires_at
        key.count_inferences(5)
        wait_for(lambda: key.status().inferences_reported == 5, "the first report")
        key.count_inferences(2)
        wait_for(lambda: key.status().inferences_reported == 7, "the second report")
        assert key.status().expires_at >= first_expiry
        assert agent.held() == [key]
        with running.admin() as admin:
            record = admin.show_license(license_id)
        assert (record.period_inferences, record.loads_used, record.active_leases) == (7, 1, 1)
        assert running.vault.server is not None
        renewals = [
            entry
            for entry in audit_entries(running.vault.server.service, "lease.renew")
            if entry["details"].get("license") == license_id
        ]
        assert all(entry["outcome"] == "ok" for entry in renewals)
        assert sum(entry["details"]["inferences"] for entry in renewals) == 7


def test_revocation_ends_the_lease_on_the_next_renewal(running: World) -> None:
    license_id, token = running.issue()
    with KeyAgent(running.device) as agent:
        key = agent.acquire(token, "iris", 1)
        ending = Ending(key)
        with running.admin() as admin:
            revoked = admin.revoke_license(license_id, reason="contract ended")
        status = ending.wait()
        assert revoked.revoked_at is not None
        reason = (
            f"License {license_id} was revoked at {format_datetime(revoked.revoked_at)}; "
            f"{RefusalCode.REVOKED.action}."
        )
        assert (status.state, status.code, status.reason) == ("ended", "REVOKED", reason)
        error = expect_error(LeaseEndedError, lambda: key.key, reason)
        assert error.code == "REVOKED"
        assert agent.held() == []
        key.close()
        agent.close()
        assert len(ending.seen) == 1  # exactly once


def test_a_refused_release_raises_the_vaults_code(running: World) -> None:
    _, token = running.issue()
    with KeyAgent(running.device) as agent:
        error = expect_error(
            VaultRequestError,
            lambda: agent.acquire(token, "iris", 2),
        )
        assert str(error) == (
            "MODEL_NOT_LICENSED: The license covers model 'iris' versions 1, not 'iris' version "
            f"2; {RefusalCode.MODEL_NOT_LICENSED.action}."
        )
        assert (error.code, error.status) == ("MODEL_NOT_LICENSED", 403)
        assert agent.held() == []


def test_offline_then_back_within_the_grace(running: World) -> None:
    _, token = running.issue(offline_grace=timedelta(minutes=5))
    with KeyAgent(running.device) as agent:
        key = agent.acquire(token, "iris", 1)
        ending = Ending(key)
        running.vault.stop()
        wait_for(lambda: key.status().state == "offline", "the offline state")
        assert key.key == running.data_key  # usable within the grace
        key.count_inferences(3)  # carried until the vault is back
        error = expect_error(
            VaultConnectionError,
            lambda: agent.acquire(token, "iris", 1),
            f"no vault is listening at {running.url}",
        )
        assert error.code == "VAULT_UNREACHABLE"
        running.vault.start()
        wait_for(lambda: key.status().state == "active", "the active state again")
        assert key.status().inferences_reported == 3
        assert ending.seen == []


def test_the_key_ends_when_the_offline_grace_is_used_up(running: World) -> None:
    clock = OffsetClock()
    _, token = running.issue(offline_grace=timedelta(seconds=5))
    with KeyAgent(running.device, clock=clock) as agent:
        key = agent.acquire(token, "iris", 1)
        ending = Ending(key)
        running.vault.stop()
        wait_for(lambda: key.status().state == "offline", "the offline state")
        until = key.status().usable_until
        clock.offset = until - datetime.now(UTC) - timedelta(seconds=2)
        assert key.key == running.data_key  # just inside the grace
        assert not ending.done.is_set()
        clock.offset += timedelta(seconds=3)  # just past it
        status = ending.wait()
    assert status.code == "OFFLINE_GRACE_USED_UP"
    pattern = (
        r"The vault could not be reached since \S+ \((?P<problem>.+)\), and the lease with its "
        rf"offline grace of 5s ran out at {re.escape(format_datetime(until))}; restore the "
        "connection to the vault and load the model again"
    )
    match = re.fullmatch(pattern, status.reason or "")
    assert match is not None, status.reason
    assert running.url in match["problem"]
    expect_error(LeaseEndedError, lambda: key.key, "restore the connection to the vault")


def test_max_inferences_per_is_enforced_locally(running: World) -> None:
    now = datetime.now(UTC)
    _, token = running.issue(max_inferences_per=(DAY, 3))
    with KeyAgent(running.device, clock=lambda: now) as agent:
        key = agent.acquire(token, "iris", 1)
        other = agent.acquire(token, "iris", 1)  # same license: the same meter
        key.count_inferences(2)
        other.count_inferences(1)
        next_start = period_start(now, DAY) + DAY
        message = (
            "The license allows 3 inferences per 1d, and 3 of them are used; no more until "
            f"{format_datetime(next_start)}"
        )
        for holder in (key, other):
            error = expect_error(InferenceLimitError, partial(holder.count_inferences, 1), message)
            assert error.code == "RATE_LIMITED"
            assert error.retry_after == timedelta(
                seconds=math.ceil((next_start - now).total_seconds())
            )
        key.count_inferences(0)


def test_close_is_immediate_and_drops_every_key(running: World) -> None:
    _, token = running.issue()
    agent = KeyAgent(running.device)
    keys = [agent.acquire(token, "iris", 1) for _ in range(2)]
    endings = [Ending(key) for key in keys]
    started = time.monotonic()
    agent.close()
    assert time.monotonic() - started < 0.5
    for key, ending in zip(keys, endings, strict=True):
        assert [(s.code, s.reason) for s in ending.seen] == [
            ("CLOSED", "The agent was closed; load the model again once an agent runs")
        ]
        assert expect_error(LeaseEndedError, partial(getattr, key, "key")).code == "CLOSED"
    assert agent.held() == []
    expect_error(
        UsageError,
        lambda: agent.acquire(token, "iris", 1),
        "this agent is closed; create a new one to acquire keys",
    )
    agent.close()  # twice is fine


@pytest.mark.parametrize("timeout", [0, -1.0])
def test_a_timeout_must_be_positive(running: World, timeout: float) -> None:
    expect_error(
        UsageError,
        lambda: KeyAgent(running.device, timeout=timeout),
        f"timeout must be a positive number of seconds, not {timeout!r}",
    )


def _license_key_fetches(world: World) -> float:
    """How many times the vault answered GET /v1/license-keys (its own request counter)."""
    ca = ssl.create_default_context(cafile=world.vault.home.path / "ca" / "ca.pem")
    text = httpx.get(f"{world.url}/metrics", verify=ca, timeout=10).text
    pattern = re.compile(
        r'^modelseal_vault_http_requests_total\{[^}]*route="/v1/license-keys"[^}]*\} (\S+)$', re.M
    )
    return sum(float(value) for value in pattern.findall(text))


def test_the_license_keys_are_fetched_once_per_agent(running: World) -> None:
    """Each release checks the license locally first; the vault's keys for that are fetched by
    the first release only, not on every one."""
    _, token = running.issue()
    before = _license_key_fetches(running)
    with KeyAgent(running.device) as agent:
        for _ in range(3):
            agent.acquire(token, "iris", 1).close()
    assert _license_key_fetches(running) - before == 1
