"""The key a mount decrypts with, held no longer than its lease allows.

The data key comes from a :class:`~modelseal.agent.source.ModelKey`. Between two checks the mount
uses its own reference to the key; it asks ``ModelKey.key`` again after at most ``recheck`` of
cached use (60 s, as Huawei's crypto_fs re-checks its cached key), so a lease that ended without
telling us is noticed within that time. The agent's end-of-lease callback is the fast path: the
moment it fires, the key and everything derived from it are dropped and every later read fails.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from modelseal.agent.source import LeaseEndedError, LeaseStatus, ModelKey
from modelseal.crypto import DataKey

__all__ = ["KEY_RECHECK_SECONDS", "LeaseGuard"]

KEY_RECHECK_SECONDS = 60.0
"""The longest a key is used from this mount's own cache before ``ModelKey.key`` is asked again."""

log = logging.getLogger(__name__)


class LeaseGuard:
    """Hands out the data key while the lease lasts; runs ``on_end`` callbacks once when it ends.

    ``clock`` returns monotonic seconds (injectable so tests need not wait a minute).
    """

    def __init__(
        self,
        model_key: ModelKey,
        *,
        recheck: float = KEY_RECHECK_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 < recheck <= KEY_RECHECK_SECONDS:
            raise ValueError(f"recheck must be in (0, {KEY_RECHECK_SECONDS}] seconds")
        self._model_key = model_key
        self._recheck = recheck
        self._clock = clock
        self._lock = threading.Lock()
        self._key: DataKey | None = None
        self._checked = 0.0
        self._ended: LeaseStatus | None = None
        self._closing = False
        self._callbacks: list[Callable[[LeaseStatus], None]] = []
        model_key.on_end(self._lease_ended)

    @property
    def ended(self) -> LeaseStatus | None:
        """The final status once the lease has ended, else None."""
        return self._ended

    def status(self) -> LeaseStatus:
        return self._ended or self._model_key.status()

    def key(self) -> DataKey:
        """The data key; raises :class:`LeaseEndedError` once the lease has ended."""
        with self._lock:
            if self._ended is not None:
                raise LeaseEndedError(self._ended)
            now = self._clock()
            if self._key is not None and now - self._checked < self._recheck:
                return self._key
        try:
            key = self._model_key.key  # outside our lock: the agent may call back into us
        except LeaseEndedError as exc:
            self._lease_ended(exc.status)
            raise
        with self._lock:
            if self._ended is not None:
                raise LeaseEndedError(self._ended)
            self._key, self._checked = key, now
            return key

    def on_end(self, callback: Callable[[LeaseStatus], None]) -> None:
        """Run ``callback(status)`` once when the lease ends (at once if it already has)."""
        with self._lock:
            ended = self._ended
            if ended is None:
                self._callbacks.append(callback)
        if ended is not None:
            callback(ended)

    def _lease_ended(self, status: LeaseStatus) -> None:
        with self._lock:
            if self._ended is not None:
                return
            self._ended, self._key = status, None
            callbacks, self._callbacks = self._callbacks, []
        log.log(
            logging.DEBUG if self._closing else logging.WARNING,
            "lease of %s version %s ended (%s): key dropped, reads now fail with EIO%s",
            status.model_name,
            status.model_version,
            status.code or "LEASE_ENDED",
            f": {status.reason}" if status.reason else "",
        )
        for callback in callbacks:
            try:
                callback(status)
            except Exception:  # one broken callback must not keep the others from running
                log.exception("an end-of-lease callback failed")

    def close(self) -> None:
        """Let go of the key (the holder of the ModelKey closes it; that end is not news)."""
        with self._lock:
            self._key = None
            self._closing = True
