"""A small bounded LRU of decrypted segments, shared by the threads that serve reads.

Two threads that want the same segment at once decrypt it once: the second waits for the first.
:meth:`SegmentCache.clear` also stops loads that are under way from filling the cache again, so
nothing decrypted with a dropped key survives the drop.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from concurrent.futures import Future

__all__ = ["DEFAULT_CACHE_SEGMENTS", "SegmentCache"]

DEFAULT_CACHE_SEGMENTS = 32
"""32 segments of 1 MiB: enough for several readers streaming at once, small next to a model."""


class SegmentCache:
    """At most ``capacity`` plaintext segments, least recently used evicted first."""

    def __init__(self, capacity: int = DEFAULT_CACHE_SEGMENTS) -> None:
        if capacity < 1:
            raise ValueError("the segment cache holds at least one segment")
        self.capacity = capacity
        self._lock = threading.Lock()
        self._done: OrderedDict[Hashable, bytes] = OrderedDict()
        self._pending: dict[Hashable, Future[bytes]] = {}
        self._generation = 0
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._done)

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._done or key in self._pending

    def get(self, key: Hashable, load: Callable[[], bytes]) -> bytes:
        """The cached value of ``key``, or ``load()`` (run once however many threads ask)."""
        with self._lock:
            data = self._done.get(key)
            if data is not None:
                self._done.move_to_end(key)
                self.hits += 1
                return data
            pending = self._pending.get(key)
            owner = pending is None
            if pending is None:
                pending = self._pending[key] = Future()
                self.misses += 1
            generation = self._generation
        if not owner:
            return pending.result()
        try:
            data = load()
        except BaseException as exc:
            with self._lock:
                if self._pending.get(key) is pending:
                    del self._pending[key]
            pending.set_exception(exc)
            raise
        with self._lock:
            if self._pending.get(key) is pending:
                del self._pending[key]
            if generation == self._generation:
                self._done[key] = data
                while len(self._done) > self.capacity:
                    self._done.popitem(last=False)
        pending.set_result(data)
        return data

    def clear(self) -> None:
        """Forget every segment, including those being decrypted right now."""
        with self._lock:
            self._generation += 1
            self._done.clear()
            self._pending.clear()
