"""A test double for the vault + agent chain: a KeySource that hands out a known data key.

``StaticKeySource`` stands in for ``KeyAgent`` / ``AgentSocketClient`` (src/modelseal/agent/
source.py is the contract). It grants every acquire with the key it was given, and lets a test
end a lease the way the agent does when the vault refuses a renewal: the key is dropped, ``key``
raises ``LeaseEndedError``, and the ``on_end`` callbacks run once, on another thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from modelseal.agent.source import LeaseEndedError, LeaseStatus
from modelseal.crypto import DataKey

__all__ = ["StaticKeySource", "StaticModelKey"]


class StaticModelKey:
    """One held key; ``end()`` plays the agent's end of lease."""

    def __init__(self, key: DataKey, license_token: str, name: str, version: int) -> None:
        now = datetime.now(UTC)
        self.license_token = license_token
        self._key: DataKey | None = key
        self._lock = threading.Lock()
        self._callbacks: list[Callable[[LeaseStatus], None]] = []
        self.key_reads = 0
        self.closed = False
        self._status = LeaseStatus(
            state="active",
            license_id="lic-test",
            model_name=name,
            model_version=version,
            lease_id="lease-test",
            expires_at=now + timedelta(minutes=5),
            usable_until=now + timedelta(minutes=5),
            heartbeat=timedelta(seconds=30),
            inferences_reported=0,
        )

    @property
    def key(self) -> DataKey:
        with self._lock:
            self.key_reads += 1
            if self._key is None:
                raise LeaseEndedError(self._status)
            return self._key

    def status(self) -> LeaseStatus:
        return self._status

    def count_inferences(self, count: int = 1) -> None:
        pass

    def on_end(self, callback: Callable[[LeaseStatus], None]) -> None:
        with self._lock:
            if self._key is not None:
                self._callbacks.append(callback)
                return
        callback(self._status)

    def end(
        self,
        code: str = "REVOKED",
        reason: str = "the license was revoked by the model controller",
        *,
        notify: bool = True,
    ) -> threading.Thread | None:
        """End the lease; with ``notify`` the callbacks run on a new thread (returned)."""
        with self._lock:
            self._key = None
            self._status = replace(self._status, state="ended", code=code, reason=reason)
            callbacks, self._callbacks = self._callbacks, []
        if not notify:
            return None
        status = self._status

        def run() -> None:
            for callback in callbacks:
                callback(status)

        thread = threading.Thread(target=run)
        thread.start()
        return thread

    def close(self) -> None:
        self.closed = True
        self.end("CLOSED", "the holder let go", notify=True)


class StaticKeySource:
    """Grants every key release with ``key``; remembers what it handed out."""

    def __init__(self, key: DataKey) -> None:
        self._key = key
        self.held: list[StaticModelKey] = []
        self.closed = False

    def acquire(self, license_token: str, model_name: str, model_version: int) -> StaticModelKey:
        held = StaticModelKey(self._key, license_token, model_name, model_version)
        self.held.append(held)
        return held

    def close(self) -> None:
        self.closed = True
        for held in self.held:
            held.close()
