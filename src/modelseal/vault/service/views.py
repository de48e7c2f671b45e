"""What the vault service takes and returns: frozen dataclasses, free of any protocol.

Times are aware UTC datetimes; durations are timedeltas; keys and certificates are bytes (PEM) or
modelseal handles. The REST adapter turns these into JSON and back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from modelseal.crypto import DataKey
from modelseal.licensing import Policy, VersionSpec

__all__ = [
    "AuditReport",
    "Challenge",
    "CustomerView",
    "DeviceView",
    "Enrollment",
    "GeneratedKey",
    "LeaseGrant",
    "LicenseState",
    "LicenseView",
    "ModelView",
    "ReleaseGrant",
    "ReleaseRequest",
]

LicenseState = Literal["active", "revoked", "expired", "exhausted"]


@dataclass(frozen=True)
class ModelView:
    """A registered sealed model (one name and version)."""

    name: str
    version: int
    model_id: str
    key_id: str
    owner: str
    """Subject of the owner's signing certificate."""
    owner_fingerprint: str
    """SHA-256 (hex) of the owner's certificate."""
    files: int
    size: int
    """Total plaintext size in bytes."""
    registered_at: datetime


@dataclass(frozen=True)
class CustomerView:
    name: str
    created_at: datetime


@dataclass(frozen=True)
class DeviceView:
    id: str
    customer: str
    subject: str
    fingerprint: str
    """SHA-256 (hex) of the device certificate."""
    enrolled_at: datetime
    revoked_at: datetime | None
    revoked_reason: str | None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


@dataclass(frozen=True)
class LicenseView:
    """A license as the vault's database sees it: terms, state, counters and bound devices."""

    id: str
    customer: str
    model_name: str
    versions: VersionSpec
    policy: Policy
    state: LicenseState
    issued_at: datetime
    not_before: datetime
    ends_at: datetime | None
    """When it stops: the expiry date, or the duration after first use (None: not yet known)."""
    first_use_at: datetime | None
    revoked_at: datetime | None
    revoked_reason: str | None
    loads_used: int
    max_loads: int | None
    period_loads: int | None
    """Loads in the current ``loads_per`` period (None when the policy has no such limit)."""
    period_inferences: int | None
    """Inferences reported in the current ``max_inferences_per`` period (None: no such limit)."""
    devices: tuple[str, ...]
    """Devices bound to the license (holding or having held a seat)."""
    active_leases: int


@dataclass(frozen=True)
class Enrollment:
    device_id: str
    customer: str
    certificate_pem: bytes
    ca_pem: bytes


@dataclass(frozen=True)
class Challenge:
    nonce: str
    """32 random bytes, base64url without padding; single use."""
    expires_at: datetime


@dataclass(frozen=True)
class ReleaseRequest:
    """A device's request for a model key (the device itself is its client certificate)."""

    license: str
    """The license JWS, as issued."""
    model_name: str
    model_version: int
    nonce: str
    """From :meth:`VaultService.challenge`."""
    public_key: bytes = field(repr=False)
    """The raw one-time HPKE public key the key is sealed to."""
    kem: str = "x25519"
    """``x25519`` or ``mlkem768-x25519``."""
    evidence_type: str = "none"
    evidence: bytes = field(default=b"", repr=False)


@dataclass(frozen=True)
class ReleaseGrant:
    lease_id: str
    expires_at: datetime
    sealed_key: bytes = field(repr=False)
    """HPKE ``enc ‖ ct`` of the data key, sealed to the request's public key."""
    info: bytes
    """The HPKE info it was sealed under (:func:`modelseal.crypto.hpke.release_info`)."""
    lease: str
    """The lease as a JWS (typ ``modelseal-lease+jwt``) signed by the license key."""
    heartbeat: timedelta
    offline_grace: timedelta
    key_id: str
    """The data key's id (the sealed package's ``key_id``)."""


@dataclass(frozen=True)
class LeaseGrant:
    lease_id: str
    expires_at: datetime
    lease: str
    heartbeat: timedelta
    offline_grace: timedelta


@dataclass(frozen=True)
class GeneratedKey:
    """A fresh data key for ``seal --vault``: the key for the owner, the wrapped form to return."""

    key: DataKey = field(repr=False)
    wrapped: bytes = field(repr=False)
    """Wrapped by the master key, bound to the model id, version and key id; opaque to clients."""
    model_id: str
    version: int


@dataclass(frozen=True)
class AuditReport:
    entries: int
    first_bad: int | None
    """The sequence number of the first entry that does not verify, or None."""

    @property
    def ok(self) -> bool:
        return self.first_bad is None
