"""The JSON the vault's REST API speaks: request and response models, shared with the client.

Conventions: binary values are base64url without padding (as in JOSE); times are RFC 3339 in UTC
(``2030-06-01T12:00:00Z``); durations are whole seconds; certificates and keys are PEM text.
Requests refuse unknown fields (a misspelt limit must not be ignored); responses are read
leniently by the client so a newer vault can add fields.

This module imports pydantic only (no web framework), so the device agent can use it.
"""

from __future__ import annotations

import base64
import binascii
import re
from datetime import datetime, timedelta
from typing import Annotated, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
)

from modelseal.licensing import EVIDENCE_TYPES, Policy, Rate

__all__ = [
    "JWKS",
    "AuditReport",
    "Base64Url",
    "Challenge",
    "Customer",
    "CustomerCreate",
    "DataKeyGrant",
    "DataKeyRequest",
    "Device",
    "Enrollment",
    "EnrollmentRequest",
    "EnrollmentToken",
    "EnrollmentTokenRequest",
    "ErrorBody",
    "Health",
    "IssuedLicense",
    "KeyReleaseRequest",
    "LeaseGrant",
    "LicenseRecord",
    "LicenseRequest",
    "Model",
    "ModelRegistration",
    "PolicyTerms",
    "RateTerms",
    "ReleaseGrant",
    "RenewRequest",
    "RevokeRequest",
    "b64url",
]

_B64URL = re.compile(r"[A-Za-z0-9_-]*={0,2}", re.ASCII)


def b64url(data: bytes) -> str:
    """Base64url without padding."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _from_b64url(value: object) -> object:
    if not isinstance(value, str):
        return value  # bytes from Python callers; anything else fails the bytes check
    if not _B64URL.fullmatch(value) or len(value.rstrip("=")) % 4 == 1:
        raise ValueError("is not base64url (A-Z a-z 0-9 - _, padding optional)")
    try:
        return base64.urlsafe_b64decode(value.rstrip("=") + "=" * (-len(value.rstrip("=")) % 4))
    except binascii.Error:
        raise ValueError("is not base64url") from None


Base64Url = Annotated[
    bytes,
    BeforeValidator(_from_b64url),
    PlainSerializer(b64url, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "contentEncoding": "base64url", "format": "base64url"}),
]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Response(BaseModel):
    model_config = ConfigDict(frozen=True)


# --- errors and operations -------------------------------------------------------------------------


class ErrorBody(_Response):
    """Every error answer: a stable code to branch on and one sentence a person can act on."""

    code: str = Field(
        description="Stable code: a refusal code (EXPIRED, REVOKED, USAGE_EXHAUSTED, …) or "
        "BAD_REQUEST, NOT_FOUND, CONFLICT, UNAUTHORIZED, CLIENT_CERT_REQUIRED, WRONG_ROLE, "
        "INTERNAL."
    )
    message: str = Field(description="What happened and what to do about it.")
    hint: str | None = Field(default=None, description="A next step, when there is one.")
    retry_after: int | None = Field(
        default=None, description="Seconds until trying again can succeed (RATE_LIMITED)."
    )
    request_id: str | None = Field(
        default=None, description="For INTERNAL errors: the id under which the vault logged it."
    )


class Health(_Response):
    status: Literal["ok"] = Field(description="Always `ok` when the vault answers.")
    vault_id: str = Field(description="The vault's identity, `vault-<uuid>`.")


class JWKS(_Response):
    """A JSON Web Key Set (RFC 7517): the Ed25519 keys that sign licenses and leases."""

    keys: list[dict[str, str]] = Field(
        description="One OKP/Ed25519 JWK per key, with its `kid` (RFC 7638 thumbprint)."
    )


# --- models --------------------------------------------------------------------------------------


class ModelRegistration(_Request):
    """A sealed package's signed manifest, to register the model version it describes."""

    manifest: Base64Url = Field(description="`manifest.json` of the sealed package, as signed.")
    signature: Base64Url = Field(description="`manifest.sig` of the sealed package.")
    wrapped: Base64Url | None = Field(
        default=None,
        description="The master-key-wrapped data key from `POST /v1/data-keys`; omit it for a "
        "package sealed offline to the vault's import key.",
    )


class Model(_Response):
    name: str = Field(description="Model name.")
    version: int = Field(description="Model version.")
    model_id: str = Field(description="The model's UUID from its manifest.")
    key_id: str = Field(description="Id of the model's data key (never the key).")
    owner: str = Field(description="Subject of the owner's signing certificate.")
    owner_fingerprint: str = Field(description="SHA-256 (hex) of the owner's certificate.")
    files: int = Field(description="Number of files in the package.")
    size: int = Field(description="Total plaintext size in bytes.")
    registered_at: datetime = Field(description="When the vault registered it.")


class DataKeyRequest(_Request):
    model_id: str = Field(description="UUID of the model about to be sealed.")
    version: int = Field(ge=1, description="Version of the model about to be sealed.")


class DataKeyGrant(_Response):
    """A fresh data key for sealing: the key for the owner, and its wrapped form to hand back at
    registration."""

    model_id: str = Field(description="The model's UUID.")
    version: int = Field(description="The model version.")
    key_id: str = Field(description="The data key's id.")
    key_file: Base64Url = Field(
        description="The data key as a modelseal key file (the JSON `seal --data-key-out` writes)."
    )
    wrapped: Base64Url = Field(
        description="The key wrapped by the vault's master key; pass it to `POST /v1/models`."
    )


# --- customers and devices -----------------------------------------------------------------------


class CustomerCreate(_Request):
    name: str = Field(description="Customer name, 1 to 200 printable characters.")


class Customer(_Response):
    name: str = Field(description="Customer name.")
    created_at: datetime = Field(description="When it was created.")


class EnrollmentTokenRequest(_Request):
    customer: str = Field(description="The customer the enrolled device will belong to.")
    ttl: int = Field(
        default=3600, ge=1, description="Seconds the token stays valid (at most 30 days)."
    )


class EnrollmentToken(_Response):
    token: str = Field(
        description="One-time token `mset1.<secret>.<CA pin>`; give it to the device's "
        "`modelseal agent enroll --token`."
    )


class EnrollmentRequest(_Request):
    token: str = Field(description="The one-time enrolment token.")
    csr: str = Field(description="PEM certificate signing request for the device's key.")


class Enrollment(_Response):
    device_id: str = Field(description="The new device's id.")
    customer: str = Field(description="The customer it belongs to.")
    certificate: str = Field(description="The device certificate (PEM), issued by the vault CA.")
    ca: str = Field(description="The vault CA certificate (PEM).")


class Device(_Response):
    id: str = Field(description="Device id.")
    customer: str = Field(description="The customer it belongs to.")
    subject: str = Field(description="Subject of its certificate.")
    fingerprint: str = Field(description="SHA-256 (hex) of its certificate.")
    enrolled_at: datetime = Field(description="When it enrolled.")
    revoked_at: datetime | None = Field(description="When it was revoked, or null.")
    revoked_reason: str | None = Field(description="Why it was revoked, or null.")


class RevokeRequest(_Request):
    reason: str = Field(description="Why (recorded in the audit log), 1 to 200 characters.")


# --- licenses ------------------------------------------------------------------------------------


class RateTerms(_Request):
    period: int = Field(ge=1, description="Length of the period in seconds (86400: a day).")
    count: int = Field(ge=1, description="How many are allowed per period.")

    def to_rate(self) -> Rate:
        return (timedelta(seconds=self.period), self.count)

    @classmethod
    def of(cls, rate: Rate | None) -> RateTerms | None:
        return None if rate is None else cls(period=_seconds(rate[0]), count=rate[1])


class PolicyTerms(_Request):
    """License terms; every field is optional (an absent limit is no limit)."""

    expires_at: AwareDatetime | None = Field(
        default=None, description="When the license expires (not with duration_from_first_use)."
    )
    duration_from_first_use: int | None = Field(
        default=None, ge=1, description="Seconds the license lasts after its first key release."
    )
    max_loads: int | None = Field(default=None, ge=1, description="Key releases in total.")
    loads_per: RateTerms | None = Field(default=None, description="Key releases per period.")
    max_devices: int | None = Field(
        default=None, ge=1, description="Devices that may hold a lease at the same time."
    )
    devices: list[str] = Field(
        default_factory=list, description="Device ids the license is locked to (empty: any)."
    )
    lease: int = Field(default=600, description="Seconds a released key may be used unrenewed.")
    heartbeat: int | None = Field(
        default=None, description="Seconds between lease renewals (default: a third of the lease)."
    )
    offline_grace: int = Field(
        default=0,
        description="Seconds past the lease a runtime that cannot reach the vault "
        "may keep the model loaded.",
    )
    max_inferences_per: RateTerms | None = Field(
        default=None, description="Inferences per period, reported by the runtime on renewal."
    )
    require_evidence: str = Field(
        default="none", description=f"Attestation evidence required: {', '.join(EVIDENCE_TYPES)}."
    )
    allowed_measurements: list[str] = Field(
        default_factory=list, description="Accepted measurements (hex), with require_evidence."
    )

    def to_policy(self) -> Policy:
        """The :class:`Policy` these terms describe (a :class:`UsageError` names a bad term)."""
        return Policy(
            expires_at=self.expires_at,
            duration_from_first_use=_delta(self.duration_from_first_use),
            max_loads=self.max_loads,
            loads_per=None if self.loads_per is None else self.loads_per.to_rate(),
            max_devices=self.max_devices,
            devices=self.devices,
            lease=timedelta(seconds=self.lease),
            heartbeat=_delta(self.heartbeat),
            offline_grace=timedelta(seconds=self.offline_grace),
            max_inferences_per=None
            if self.max_inferences_per is None
            else self.max_inferences_per.to_rate(),
            require_evidence=self.require_evidence,
            allowed_measurements=self.allowed_measurements,
        )

    @classmethod
    def of(cls, policy: Policy) -> PolicyTerms:
        return cls(
            expires_at=policy.expires_at,
            duration_from_first_use=None
            if policy.duration_from_first_use is None
            else _seconds(policy.duration_from_first_use),
            max_loads=policy.max_loads,
            loads_per=RateTerms.of(policy.loads_per),
            max_devices=policy.max_devices,
            devices=list(policy.devices),
            lease=_seconds(policy.lease),
            heartbeat=_seconds(policy.heartbeat),
            offline_grace=_seconds(policy.offline_grace),
            max_inferences_per=RateTerms.of(policy.max_inferences_per),
            require_evidence=policy.require_evidence,
            allowed_measurements=list(policy.allowed_measurements),
        )


class LicenseRequest(_Request):
    customer: str = Field(description="The customer the license is for.")
    model: str = Field(description="The registered model's name.")
    versions: str = Field(
        default="*", description="Model versions covered: `*`, or versions and ranges `1,2,5-7`."
    )
    policy: PolicyTerms = Field(default_factory=PolicyTerms, description="The license terms.")


class LicenseRecord(_Response):
    """A license as the vault's database sees it: terms, state, counters and devices."""

    id: str = Field(description="License id, `lic-<uuid>`.")
    customer: str = Field(description="The customer it is for.")
    model: str = Field(description="The model's name.")
    versions: str = Field(description="Model versions covered.")
    policy: PolicyTerms = Field(description="The license terms.")
    state: Literal["active", "revoked", "expired", "exhausted"] = Field(
        description="Whether it can still release keys."
    )
    issued_at: datetime = Field(description="When it was issued.")
    not_before: datetime = Field(description="When it starts to be valid.")
    ends_at: datetime | None = Field(
        description="When it stops: its expiry, or first use plus its duration (null: unknown "
        "or never)."
    )
    first_use_at: datetime | None = Field(description="Its first key release, or null.")
    revoked_at: datetime | None = Field(description="When it was revoked, or null.")
    revoked_reason: str | None = Field(description="Why it was revoked, or null.")
    loads_used: int = Field(description="Key releases so far.")
    max_loads: int | None = Field(description="Key releases allowed in total (null: no limit).")
    period_loads: int | None = Field(
        description="Key releases in the current loads_per period (null: no such limit)."
    )
    period_inferences: int | None = Field(
        description="Inferences reported in the current period (null: no such limit)."
    )
    devices: list[str] = Field(description="Devices that hold or held a seat.")
    active_leases: int = Field(description="Leases that have not expired.")


class IssuedLicense(_Response):
    license: LicenseRecord = Field(description="The license as recorded.")
    token: str = Field(
        description="The license document: a compact JWS (EdDSA) verifiable with "
        "`GET /v1/license-keys`. Give it to the customer."
    )


# --- key release ---------------------------------------------------------------------------------


class Challenge(_Response):
    nonce: str = Field(description="Single-use nonce (base64url) for one key release.")
    expires_at: datetime = Field(description="When the nonce stops being accepted.")


class KeyReleaseRequest(_Request):
    license: str = Field(description="The license JWS, exactly as issued.")
    model_name: str = Field(description="Name of the model to load.")
    model_version: int = Field(ge=1, description="Version of the model to load.")
    nonce: str = Field(description="The nonce from `POST /v1/challenge`.")
    public_key: Base64Url = Field(
        description="A fresh HPKE public key for this release only: 32 raw bytes for x25519, "
        "1216 bytes (ML-KEM-768 then X25519) for mlkem768-x25519."
    )
    kem: Literal["x25519", "mlkem768-x25519"] = Field(
        default="x25519", description="The key encapsulation of public_key."
    )
    evidence_type: str = Field(
        default="none", description=f"Type of attestation evidence: {', '.join(EVIDENCE_TYPES)}."
    )
    evidence: Base64Url = Field(
        default=b"",
        description="The evidence; its report data is SHA-384 of canonical JSON "
        "{nonce, public key}. Empty for type none.",
    )


class ReleaseGrant(_Response):
    lease_id: str = Field(description="The lease to renew with `POST /v1/leases/{id}/renew`.")
    expires_at: datetime = Field(description="When the lease ends unless renewed.")
    sealed_key: Base64Url = Field(
        description="The model data key, HPKE-sealed to public_key (enc ‖ ct)."
    )
    info: Base64Url = Field(
        description="The HPKE info it is sealed under: binds device, license, model, version and "
        "lease expiry."
    )
    lease: str = Field(description="The lease as a JWS signed by the license key.")
    heartbeat: int = Field(description="Seconds between renewals.")
    offline_grace: int = Field(description="Seconds past the lease allowed without the vault.")
    key_id: str = Field(description="The data key's id (the sealed package's key_id).")


class RenewRequest(_Request):
    inferences: int = Field(
        default=0, ge=0, description="Inferences run since the last renewal (or the release)."
    )


class LeaseGrant(_Response):
    lease_id: str = Field(description="The lease.")
    expires_at: datetime = Field(description="Its new end.")
    lease: str = Field(description="The renewed lease as a JWS.")
    heartbeat: int = Field(description="Seconds between renewals.")
    offline_grace: int = Field(description="Seconds past the lease allowed without the vault.")


# --- audit ---------------------------------------------------------------------------------------


class AuditReport(_Response):
    entries: int = Field(description="Entries checked.")
    first_bad: int | None = Field(
        description="Sequence number of the first entry that does not verify, or null."
    )
    ok: bool = Field(description="True when the whole chain verifies.")


def _seconds(value: timedelta) -> int:
    return value // timedelta(seconds=1)


def _delta(seconds: int | None) -> timedelta | None:
    return None if seconds is None else timedelta(seconds=seconds)
