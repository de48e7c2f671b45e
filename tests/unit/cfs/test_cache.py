"""The segment cache: bounded, least recently used out first, one load per key, and a clear that
also stops loads under way from filling it again."""

from __future__ import annotations

import threading

import pytest

from modelseal.cfs import SegmentCache


def test_it_keeps_at_most_capacity_and_evicts_the_least_recently_used() -> None:
    cache = SegmentCache(2)
    cache.get("a", lambda: b"A")
    cache.get("b", lambda: b"B")
    assert cache.get("a", lambda: b"never") == b"A"  # a is now the most recent
    cache.get("c", lambda: b"C")
    assert len(cache) == 2 and "b" not in cache and "a" in cache
    assert (cache.hits, cache.misses) == (1, 3)


def test_concurrent_readers_of_one_segment_load_it_once() -> None:
    cache = SegmentCache(4)
    started, release = threading.Event(), threading.Event()
    loads: list[int] = []

    def load() -> bytes:
        loads.append(1)
        started.set()
        release.wait(5)
        return b"segment"

    results: list[bytes] = []
    threads = [
        threading.Thread(target=lambda: results.append(cache.get(1, load))) for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    assert started.wait(5)
    release.set()
    for thread in threads:
        thread.join(5)
    assert results == [b"segment"] * 4 and len(loads) == 1


def test_a_failed_load_reaches_every_waiter_and_is_not_cached() -> None:
    cache = SegmentCache(4)

    def fail() -> bytes:
        raise ValueError("bad segment")

    with pytest.raises(ValueError, match="bad segment"):
        cache.get(1, fail)
    assert 1 not in cache
    assert cache.get(1, lambda: b"ok") == b"ok"


def test_clear_during_a_load_keeps_the_result_out() -> None:
    cache = SegmentCache(4)

    def load() -> bytes:
        cache.clear()  # the key was dropped while this segment was being decrypted
        return b"stale"

    assert cache.get(1, load) == b"stale"  # the caller that asked still gets its bytes
    assert len(cache) == 0 and 1 not in cache


def test_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least one segment"):
        SegmentCache(0)
