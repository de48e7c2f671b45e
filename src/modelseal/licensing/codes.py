"""Refusal codes: why a key release, renewal or license check said no, and what to do about it.

Every refusal carries a stable code (the value clients branch on), the HTTP status the REST
adapter answers with, and one sentence a person can act on. The table below is the only place
that maps codes to statuses.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from modelseal.errors import Error

__all__ = ["Refusal", "RefusalCode"]


class RefusalCode(StrEnum):
    """A stable, machine-readable reason for a refusal (the value is the name)."""

    EXPIRED = "EXPIRED"
    NOT_YET_VALID = "NOT_YET_VALID"
    REVOKED = "REVOKED"
    USAGE_EXHAUSTED = "USAGE_EXHAUSTED"
    RATE_LIMITED = "RATE_LIMITED"
    DEVICE_NOT_ALLOWED = "DEVICE_NOT_ALLOWED"
    TOO_MANY_DEVICES = "TOO_MANY_DEVICES"
    EVIDENCE_REJECTED = "EVIDENCE_REJECTED"
    LICENSE_INVALID = "LICENSE_INVALID"
    MODEL_NOT_LICENSED = "MODEL_NOT_LICENSED"
    DEVICE_REVOKED = "DEVICE_REVOKED"
    DEVICE_UNKNOWN = "DEVICE_UNKNOWN"
    WRONG_CUSTOMER = "WRONG_CUSTOMER"
    NONCE_INVALID = "NONCE_INVALID"
    LEASE_EXPIRED = "LEASE_EXPIRED"
    LEASE_UNKNOWN = "LEASE_UNKNOWN"
    GRACE_EXHAUSTED = "GRACE_EXHAUSTED"
    MODEL_UNKNOWN = "MODEL_UNKNOWN"

    @property
    def http_status(self) -> int:
        return _TABLE[self].status

    @property
    def summary(self) -> str:
        """What happened, as the start of a sentence (no final period)."""
        return _TABLE[self].summary

    @property
    def action(self) -> str:
        """What a person can do about it (no final period)."""
        return _TABLE[self].action

    @property
    def sentence(self) -> str:
        """The default sentence: what happened; what to do."""
        return f"{self.summary}; {self.action}."


@dataclass(frozen=True)
class _Entry:
    status: int
    summary: str
    action: str


# 401: the caller's proof (license signature, device certificate, nonce) does not hold.
# 403: the caller is known, but the license terms say no.  404: no such thing.
# 409: in conflict with current state (seats taken).  410: it existed and is gone for good.
# 429: try again later (Retry-After).
_CONTROLLER = "ask the model controller"
_TABLE: dict[RefusalCode, _Entry] = {
    RefusalCode.EXPIRED: _Entry(
        403, "The license has expired", f"{_CONTROLLER} for a renewed license"
    ),
    RefusalCode.NOT_YET_VALID: _Entry(
        403,
        "The license is not valid yet",
        "wait until its start date, or check that this machine's clock is right",
    ),
    RefusalCode.REVOKED: _Entry(
        403, "The license has been revoked", f"{_CONTROLLER} why and for a new license"
    ),
    RefusalCode.USAGE_EXHAUSTED: _Entry(
        403,
        "The license's total number of model loads is used up",
        f"{_CONTROLLER} for a license with a higher limit",
    ),
    RefusalCode.RATE_LIMITED: _Entry(
        429,
        "The license's limit for this period is reached",
        "try again after the time given in Retry-After",
    ),
    RefusalCode.DEVICE_NOT_ALLOWED: _Entry(
        403,
        "This device is not one of the devices the license is locked to",
        f"use a listed device, or {_CONTROLLER} to add this one",
    ),
    RefusalCode.TOO_MANY_DEVICES: _Entry(
        409,
        "The license is already in use on as many devices as it allows",
        "stop the model on another device and wait for its lease to end, "
        f"or {_CONTROLLER} for more devices",
    ),
    RefusalCode.EVIDENCE_REJECTED: _Entry(
        403,
        "The attestation evidence does not satisfy the license",
        "run the model in the trusted environment and runtime version the license requires",
    ),
    RefusalCode.LICENSE_INVALID: _Entry(
        401,
        "The license is not a valid license from this vault",
        "use the license file exactly as the model controller issued it",
    ),
    RefusalCode.MODEL_NOT_LICENSED: _Entry(
        403,
        "The license does not cover this model or version",
        f"load a model version the license names, or {_CONTROLLER} to extend it",
    ),
    RefusalCode.DEVICE_REVOKED: _Entry(
        401,
        "This device's certificate has been revoked",
        f"{_CONTROLLER} to enrol the device again",
    ),
    RefusalCode.DEVICE_UNKNOWN: _Entry(
        401,
        "The vault does not know this device",
        "enrol it with 'modelseal agent enroll' using a token from the model controller",
    ),
    RefusalCode.WRONG_CUSTOMER: _Entry(
        403,
        "This device belongs to a different customer than the license",
        "use a license issued to this device's customer",
    ),
    RefusalCode.NONCE_INVALID: _Entry(
        401,
        "The challenge nonce is unknown, expired or already used",
        "request a fresh challenge and send the request again promptly",
    ),
    RefusalCode.LEASE_EXPIRED: _Entry(
        410,
        "The lease has expired",
        "request the key again; the runtime renews leases before they end",
    ),
    RefusalCode.LEASE_UNKNOWN: _Entry(
        404, "The vault has no such lease", "request the key again to get a new lease"
    ),
    RefusalCode.GRACE_EXHAUSTED: _Entry(
        403,
        "The offline grace period is used up without reaching the vault",
        "restore the connection to the vault so the lease can be renewed",
    ),
    RefusalCode.MODEL_UNKNOWN: _Entry(
        404,
        "The vault has no registered model with this name and version",
        f"check the name and version, or {_CONTROLLER} to register the sealed model",
    ),
}


class Refusal(Error):  # noqa: N818 - a refusal is an answer, not a fault
    """A refusal with a stable :class:`RefusalCode`, its HTTP status and a sentence to act on.

    ``detail`` replaces the default "what happened" with specifics (dates, limits, names); the
    code's action is always appended, so every message ends with what to do. ``retry_after``
    (whole seconds) tells the caller when trying again can succeed.
    """

    code: RefusalCode

    def __init__(
        self,
        code: RefusalCode,
        detail: str | None = None,
        *,
        retry_after: int | None = None,
    ) -> None:
        if retry_after is not None and (
            not isinstance(retry_after, int) or isinstance(retry_after, bool) or retry_after < 0
        ):
            raise ValueError(f"retry_after must be whole seconds ≥ 0, not {retry_after!r}")
        super().__init__(f"{detail or code.summary}; {code.action}.")
        self.code = RefusalCode(code)
        self.detail = detail
        self.retry_after = retry_after

    @property
    def http_status(self) -> int:
        return self.code.http_status

    def as_dict(self) -> dict[str, Any]:
        """The JSON body adapters send: ``{"code", "message"[, "retry_after"]}``."""
        body: dict[str, Any] = {"code": self.code.value, "message": self.message}
        if self.retry_after is not None:
            body["retry_after"] = self.retry_after
        return body

    def __repr__(self) -> str:
        return f"Refusal({self.code.value}, {self.message!r})"
