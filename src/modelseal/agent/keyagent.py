"""The in-process agent: key releases with this device's identity, and their leases kept alive.

:class:`KeyAgent` is the :class:`~modelseal.agent.source.KeySource` for a workload that may hold
the device key itself (the model server on a single-user device, ``modelseal agent serve``).
Each :meth:`KeyAgent.acquire` is one real key release (a fresh challenge and a fresh HPKE key
pair); the key it returns is held in memory only, renewed by its own thread every heartbeat
with the inferences counted since the last successful renewal, and dropped when the lease ends.

How a renewal's answer is read (see :mod:`modelseal.agent.held`):

- the vault unreachable, a 5xx answer, or ``RATE_LIMITED`` (429): try again with exponential
  backoff and jitter, at least every heartbeat; the state is ``offline`` and the key stays usable
  until the last lease expiry plus the license's offline grace, then ends with
  ``OFFLINE_GRACE_USED_UP``;
- any other refusal (``REVOKED``, ``DEVICE_REVOKED``, ``EXPIRED``, ``LEASE_EXPIRED``,
  ``LEASE_UNKNOWN``, ``USAGE_EXHAUSTED``, …) ends the lease at once with the vault's code and
  sentence.

The license's ``max_inferences_per`` is also enforced locally (:mod:`modelseal.agent.meter`).
The HTTP client is imported at the first :meth:`~KeyAgent.acquire`.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from modelseal._closing import Closing
from modelseal.agent.held import CLOSED, Clock, HeldKey, Outcome, Refused, Renewed, Unavailable
from modelseal.agent.home import AgentHome
from modelseal.agent.meter import InferenceMeter
from modelseal.agent.release import EvidenceSource, default_evidence, request_key
from modelseal.agent.source import LeaseStatus, ModelKey
from modelseal.crypto.hpke import Kem
from modelseal.errors import UsageError

if TYPE_CHECKING:
    from modelseal.vault.client import VaultClient

__all__ = ["DEFAULT_TIMEOUT", "KeyAgent"]

DEFAULT_TIMEOUT = 10.0
"""Seconds one request to the vault may take (a lease is at least 30 s long)."""
_CLOSED_REASON = "The agent was closed; load the model again once an agent runs"


class KeyAgent(Closing):
    """Releases and holds model keys for this process with the device identity in ``home``.

    ``clock`` (aware datetimes; default: the system clock) decides lease expiry, offline grace
    and inference periods; ``timeout`` bounds each request to the vault; ``evidence`` makes the
    attestation evidence a license requires (default: :func:`~.release.default_evidence`, which
    measures this installation for ``software``). Use as a context manager, or call :meth:`close`.
    """

    def __init__(
        self,
        home: AgentHome,
        *,
        clock: Clock | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        kem: Kem = "x25519",
        evidence: EvidenceSource | None = None,
    ) -> None:
        if not timeout > 0:
            raise UsageError(f"timeout must be a positive number of seconds, not {timeout!r}")
        self._home = home
        self._clock = _aware(clock or _utc_now)
        self._timeout = timeout
        self._kem: Kem = kem
        self._evidence = evidence or default_evidence()
        self._lock = threading.Lock()
        self._client: VaultClient | None = None
        self._keys: set[HeldKey] = set()
        self._meters: dict[str, InferenceMeter] = {}
        self._closed = False

    @property
    def home(self) -> AgentHome:
        return self._home

    def acquire(self, license_token: str, model_name: str, model_version: int) -> ModelKey:
        """One key release (it counts as a load); the key is held until its lease ends."""
        client = self._vault()
        released = request_key(
            client,
            device_id=self._home.device_id,
            license_token=license_token,
            model_name=model_name,
            model_version=model_version,
            kem=self._kem,
            evidence=self._evidence,
        )
        with self._lock:
            meter = self._meters.setdefault(
                released.license.id, InferenceMeter(released.license.policy.max_inferences_per)
            )
            held = HeldKey(released, renewer=_Renewer(client), meter=meter, clock=self._clock)
            closed = self._closed
            if not closed:
                self._keys.add(held)
        if closed:
            held.end(CLOSED, _CLOSED_REASON)
            raise UsageError("the agent was closed while the key was being released")
        held.on_end(_Forget(self, held))
        held.start()
        return held

    def held(self) -> list[ModelKey]:
        """The keys held now."""
        with self._lock:
            return list(self._keys)

    def close(self) -> None:
        """End every lease (code ``CLOSED``; each key's ``on_end`` callbacks run here), stop the
        renewals and close the connection to the vault. Returns at once."""
        with self._lock:
            self._closed = True
            keys, self._keys = list(self._keys), set()
            client, self._client = self._client, None
        for key in keys:
            key.end(CLOSED, _CLOSED_REASON)
        if client is not None:
            client.close()

    def __repr__(self) -> str:
        return f"KeyAgent(device {self._home.device_id}, vault {self._home.vault_url})"

    # --- inside -----------------------------------------------------------------------------------

    def _vault(self) -> VaultClient:
        from modelseal.vault.client import VaultClient

        with self._lock:
            if self._closed:
                raise UsageError("this agent is closed; create a new one to acquire keys")
            if self._client is None:
                home = self._home
                self._client = VaultClient.device(
                    home.vault_url,
                    home.cert_file,
                    home.key_file,
                    home.ca_file,
                    timeout=self._timeout,
                )
            return self._client

    def _drop(self, held: HeldKey) -> None:
        with self._lock:
            self._keys.discard(held)


class _Forget:
    """The ``on_end`` callback that removes an ended key from its agent."""

    def __init__(self, agent: KeyAgent, held: HeldKey) -> None:
        self._agent, self._held = agent, held

    def __call__(self, status: LeaseStatus) -> None:
        self._agent._drop(self._held)


class _Renewer:
    """One renewal through the vault client, its exceptions read as outcomes."""

    def __init__(self, client: VaultClient) -> None:
        self._client = client

    def __call__(self, lease_id: str, inferences: int) -> Outcome:
        from modelseal.vault.client import VaultConnectionError, VaultRequestError

        try:
            grant = self._client.renew(lease_id, inferences=inferences)
        except VaultConnectionError as exc:
            return Unavailable(exc.code, exc.message)
        except VaultRequestError as exc:
            if exc.status >= 500 or exc.status == 429:
                retry = None if exc.retry_after is None else timedelta(seconds=exc.retry_after)
                return Unavailable(exc.code, exc.reason, retry)
            return Refused(exc.code, exc.reason)
        return Renewed(
            expires_at=grant.expires_at,
            heartbeat=timedelta(seconds=grant.heartbeat),
            offline_grace=timedelta(seconds=grant.offline_grace),
        )


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _aware(clock: Clock) -> Clock:
    def now() -> datetime:
        moment = clock()
        if moment.tzinfo is None or moment.utcoffset() is None:
            raise ValueError(f"the agent's clock returned a naive time {moment!r}")
        return moment

    return now
