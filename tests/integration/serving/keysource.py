"""A test double for the vault + agent chain: a KeySource that hands out known data keys.

``StaticKeySource`` implements :class:`modelseal.agent.source.KeySource` without a vault: it
accepts a license token unless that token was revoked, hands out the data key registered for
the model, meters inferences against an optional limit, and lets the test end every lease of a
license (:meth:`revoke`), which is what a failed renewal does in the real agent. The real chain
(``KeyAgent`` against a vault) is exercised by the agent's integration tests.

With ``control`` set, a background thread watches that directory: a file ``revoke-<anything>``
holding a license token revokes it, so a test can revoke inside a server subprocess.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from pathlib import Path

from modelseal.agent.source import (
    InferenceLimitError,
    LeaseEndedError,
    LeaseStatus,
    ModelKey,
)
from modelseal.crypto import DataKey
from modelseal.errors import Error

__all__ = ["RefusedError", "StaticKey", "StaticKeySource"]

_EPOCH = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)


class RefusedError(Error):
    """What the vault answers for a revoked license."""

    code = "REVOKED"


class StaticKey:
    """One held key; ends when the source revokes its license."""

    def __init__(self, key: DataKey, token: str, name: str, version: int, limit: int | None):
        self._key: DataKey | None = key
        self.token = token
        self._limit = limit
        self._count = 0
        self._callbacks: list[Callable[[LeaseStatus], None]] = []
        self._lock = threading.Lock()
        self._status = LeaseStatus(
            state="active",
            license_id=f"lic-{token}",
            model_name=name,
            model_version=version,
            lease_id=f"lease-{token}",
            expires_at=_EPOCH,
            usable_until=_EPOCH,
            heartbeat=dt.timedelta(seconds=30),
            inferences_reported=0,
        )

    @property
    def key(self) -> DataKey:
        with self._lock:
            if self._key is None:
                raise LeaseEndedError(self._status)
            return self._key

    def status(self) -> LeaseStatus:
        return self._status

    def count_inferences(self, count: int = 1) -> None:
        with self._lock:
            if self._key is None:
                raise LeaseEndedError(self._status)
            if self._limit is not None and self._count + count > self._limit:
                raise InferenceLimitError(
                    f"this device may run {self._limit} inferences of the model per day; "
                    "that many have run",
                    retry_after=dt.timedelta(hours=1, seconds=0.5),
                )
            self._count += count

    def on_end(self, callback: Callable[[LeaseStatus], None]) -> None:
        with self._lock:
            ended = self._key is None
            if not ended:
                self._callbacks.append(callback)
        if ended:
            callback(self._status)

    def end(self, code: str, reason: str) -> None:
        with self._lock:
            if self._key is None:
                return
            self._key = None
            self._status = LeaseStatus(
                **{**self._status.__dict__, "state": "ended", "code": code, "reason": reason}
            )
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback(self._status)

    def close(self) -> None:
        self.end("CLOSED", "the holder let go of the key")


class StaticKeySource:
    """Known data keys by (model name, version); see the module docstring."""

    def __init__(
        self,
        keys: dict[tuple[str, int], DataKey],
        *,
        inference_limit: int | None = None,
        control: Path | None = None,
    ) -> None:
        self._keys = keys
        self._limit = inference_limit
        self._revoked: set[str] = set()
        self.held: list[StaticKey] = []
        self.acquired = 0
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        if control is not None:
            self._watcher = threading.Thread(target=self._watch, args=(control,), daemon=True)
            self._watcher.start()

    def acquire(self, license_token: str, model_name: str, model_version: int) -> ModelKey:
        if license_token in self._revoked:
            raise RefusedError(f"license {license_token} was revoked by the model controller")
        self.acquired += 1
        key = StaticKey(
            self._keys[(model_name, model_version)],
            license_token,
            model_name,
            model_version,
            self._limit,
        )
        self.held.append(key)
        return key

    def revoke(self, token: str) -> None:
        """End every lease of ``token`` (as a failed renewal would) and refuse it from now on."""
        self._revoked.add(token)
        for key in list(self.held):
            if key.token == token:
                key.end("REVOKED", f"license lic-{token} was revoked by the model controller")

    def _watch(self, control: Path) -> None:
        done: set[Path] = set()
        while not self._stop.wait(0.05):
            for path in sorted(control.glob("revoke-*")):
                if path not in done:
                    done.add(path)
                    self.revoke(path.read_text().strip())

    def close(self) -> None:
        self._stop.set()
        for key in list(self.held):
            key.close()
