"""LeaseGuard: the key is re-checked after at most 60 s of cached use, and the end of the lease
drops it at once and runs the callbacks once."""

from __future__ import annotations

import pytest

from modelseal.agent.source import LeaseEndedError, LeaseStatus
from modelseal.cfs import KEY_RECHECK_SECONDS, LeaseGuard
from modelseal.crypto import DataKey
from tests.conftest import expect_error
from tests.unit.cfs.keysource import StaticModelKey


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def held() -> tuple[StaticModelKey, DataKey]:
    key = DataKey.generate()
    return StaticModelKey(key, "license", "iris", 1), key


def test_the_key_is_asked_again_after_at_most_sixty_seconds_of_cached_use() -> None:
    model_key, key = held()
    clock = Clock()
    guard = LeaseGuard(model_key, clock=clock)
    assert guard.key() is key and model_key.key_reads == 1
    clock.now += KEY_RECHECK_SECONDS - 0.001
    assert guard.key() is key and model_key.key_reads == 1  # cached
    clock.now += 0.001
    assert guard.key() is key and model_key.key_reads == 2  # re-checked at 60 s


def test_a_lease_that_ended_silently_is_noticed_at_the_recheck() -> None:
    model_key, _ = held()
    clock = Clock()
    guard = LeaseGuard(model_key, clock=clock)
    seen: list[LeaseStatus] = []
    guard.on_end(seen.append)
    guard.key()
    model_key.end(notify=False)  # the agent dropped the key but its callback did not reach us
    guard.key()  # still within the cached 60 s
    clock.now += KEY_RECHECK_SECONDS
    error = expect_error(LeaseEndedError, guard.key, "was dropped")
    assert error.code == "REVOKED"
    assert guard.ended is not None and [s.code for s in seen] == ["REVOKED"]


def test_the_end_callback_drops_the_key_at_once(caplog: pytest.LogCaptureFixture) -> None:
    model_key, _ = held()
    guard = LeaseGuard(model_key)
    seen: list[LeaseStatus] = []
    guard.on_end(seen.append)
    guard.key()
    thread = model_key.end("USAGE_EXHAUSTED", "all 100 loads are used")
    assert thread is not None
    thread.join()
    expect_error(LeaseEndedError, guard.key, "all 100 loads are used")
    assert [s.code for s in seen] == ["USAGE_EXHAUSTED"]
    late: list[LeaseStatus] = []
    guard.on_end(late.append)  # registered after the end: runs at once
    assert [s.code for s in late] == ["USAGE_EXHAUSTED"]
    assert "ended (USAGE_EXHAUSTED): key dropped, reads now fail with EIO" in caplog.text


def test_closing_is_not_reported_as_news(caplog: pytest.LogCaptureFixture) -> None:
    model_key, _ = held()
    guard = LeaseGuard(model_key)
    guard.close()
    thread = model_key.end("CLOSED", "the holder let go")
    assert thread is not None
    thread.join()
    assert "ended" not in caplog.text


@pytest.mark.parametrize("recheck", [0, -1, KEY_RECHECK_SECONDS + 1])
def test_the_recheck_interval_is_bounded(recheck: float) -> None:
    model_key, _ = held()
    with pytest.raises(ValueError, match="recheck"):
        LeaseGuard(model_key, recheck=recheck)
