"""What the model server and the crypto filesystem need from an agent: a key that lives as long as
its lease.

Two implementations share this contract: :class:`~modelseal.agent.keyagent.KeyAgent` runs in the
workload's own process (it holds the device key), and
:class:`~modelseal.agent.socket_client.AgentSocketClient` talks to ``modelseal agent serve`` over a
Unix socket (the workload never sees the device key). Code that uses a key depends on this module
only, never on how the key arrived.

A :class:`ModelKey` is *held*: while held, the agent renews its lease every heartbeat with the
inferences counted since the last renewal. When the license says stop (revoked, exhausted,
expired, or the vault unreachable for longer than the offline grace) the key is dropped, ``key``
raises :class:`LeaseEndedError`, and every ``on_end`` callback runs once with the final status.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, Protocol

from modelseal.crypto import DataKey
from modelseal.errors import Error

__all__ = [
    "InferenceLimitError",
    "KeySource",
    "LeaseEndedError",
    "LeaseState",
    "LeaseStatus",
    "ModelKey",
]

LeaseState = Literal["active", "offline", "ended"]
"""``active``: the last renewal succeeded; ``offline``: renewals fail to reach the vault and the
offline grace is running; ``ended``: the key is gone (see ``code``)."""


@dataclass(frozen=True)
class LeaseStatus:
    """Where a held key's lease stands."""

    state: LeaseState
    license_id: str
    model_name: str
    model_version: int
    lease_id: str
    expires_at: datetime
    """The current lease's expiry (moves forward with each renewal)."""
    usable_until: datetime
    """The last moment the key may be used without another successful renewal: the lease
    expiry plus the license's offline grace."""
    heartbeat: timedelta
    inferences_reported: int
    """Inferences reported to the vault so far under this lease."""
    code: str | None = None
    """When ended: the refusal code (REVOKED, USAGE_EXHAUSTED, EXPIRED, DEVICE_REVOKED, …) or
    ``OFFLINE_GRACE_USED_UP`` or ``CLOSED`` (the holder let go)."""
    reason: str | None = None
    """When ended: one sentence a person can act on."""


class LeaseEndedError(Error):
    """The key's lease has ended; the key was dropped. ``code`` says why (see LeaseStatus.code)."""

    code = "LEASE_ENDED"

    def __init__(self, status: LeaseStatus) -> None:
        super().__init__(
            f"the key of {status.model_name} version {status.model_version} was dropped: "
            f"{status.reason or status.code}"
        )
        self.status = status
        self.code = status.code or "LEASE_ENDED"


class InferenceLimitError(Error):
    """The license's ``max_inferences_per`` for the current period is used up on this device."""

    code = "RATE_LIMITED"

    def __init__(self, message: str, *, retry_after: timedelta) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ModelKey(Protocol):
    """One released model data key, held under a renewed lease."""

    @property
    def key(self) -> DataKey:
        """The data key; raises :class:`LeaseEndedError` once the lease has ended."""
        ...

    def status(self) -> LeaseStatus: ...

    def count_inferences(self, count: int = 1) -> None:
        """Meter ``count`` inferences (reported on the next renewal). Raises
        :class:`InferenceLimitError` (counting nothing) when the license's per-period limit
        would be passed, and :class:`LeaseEndedError` after the end."""
        ...

    def on_end(self, callback: Callable[[LeaseStatus], None]) -> None:
        """Run ``callback(status)`` once when the lease ends (at once if it already has).
        Callbacks run on the agent's renewal thread and must not block."""
        ...

    def close(self) -> None:
        """Let go: stop renewing and drop the key (the lease then simply runs out at the vault)."""
        ...


class KeySource(Protocol):
    """Where held keys come from."""

    def acquire(self, license_token: str, model_name: str, model_version: int) -> ModelKey:
        """One key release (counts as a load). Raises
        :class:`~modelseal.vault.client.VaultRequestError` with the vault's refusal code,
        :class:`~modelseal.vault.client.VaultConnectionError` when the vault is unreachable, or a
        :class:`~modelseal.licensing.Refusal` when the license fails the local check."""
        ...

    def close(self) -> None:
        """Drop every key this source holds and stop its threads."""
        ...
