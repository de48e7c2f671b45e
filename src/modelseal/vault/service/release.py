"""Challenges and the key release transaction (docs/vault.md, "Key release transaction").

One write transaction, checks in this order, each failure a :class:`Refusal` with its code:

1. the nonce: issued by this vault to this certificate, unexpired (checked before the
   transaction, see :mod:`.challenges`), and unused — recorded now, so no other release uses it
   (NONCE_INVALID);
2. the device is enrolled (DEVICE_UNKNOWN) and not revoked (DEVICE_REVOKED); it is looked up by
   the SHA-256 of its certificate, so only the certificate issued at enrolment matches;
3. the license: a JWS of this vault (LICENSE_INVALID), of the device's customer (WRONG_CUSTOMER),
   on record (LICENSE_INVALID) and not revoked (REVOKED), inside its time window including a
   duration from first use (EXPIRED, NOT_YET_VALID), covering the model version
   (MODEL_NOT_LICENSED), which is registered (MODEL_UNKNOWN);
4. the device binding: node-locked list (DEVICE_NOT_ALLOWED), seats (TOO_MANY_DEVICES; a seat is
   freed when its device holds no live lease on the license);
5. evidence of the type the license requires (EVIDENCE_REJECTED; only ``none`` exists yet);
6. loads in total (USAGE_EXHAUSTED) and per period (RATE_LIMITED, with ``retry_after``);
7. the lease row; the data key unwrapped with the master key and sealed with HPKE to the request's
   one-time public key; the lease signed; the audit entry; commit.

A refusal rolls the whole transaction back (nothing counted, the nonce not used) and is then
audited in a short transaction of its own (if that fails, the refusal still stands). A grant is
returned only after its commit: a failed unwrap or audit write releases nothing. The license row
is locked (PostgreSQL ``FOR UPDATE``) from step 3 to commit, so no release overtakes a revocation.
"""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from sqlalchemy import Connection, bindparam, insert, select

from modelseal.crypto import Certificate, CryptoError, KeyFormatError
from modelseal.crypto.hpke import EphemeralPublicKey, release_info, seal_data_key
from modelseal.licensing import License, Refusal, RefusalCode, check_model, check_time_window
from modelseal.licensing.durations import format_datetime
from modelseal.package import PackageError
from modelseal.package.manifest import validate_model_name
from modelseal.vault.db import (
    from_micros,
    sweep_nonces,
    take_load,
    take_window,
    to_micros,
    use_nonce,
)
from modelseal.vault.db import schema as s
from modelseal.vault.service._core import Attempt, Core, device_row, optional_time, period_start
from modelseal.vault.service.challenges import Challenges, CheckedNonce
from modelseal.vault.service.errors import BadRequest, VaultError
from modelseal.vault.service.keys import ModelKeys
from modelseal.vault.service.leases import lease_end, rate_limited, sign_lease
from modelseal.vault.service.seats import Seats
from modelseal.vault.service.views import ReleaseGrant, ReleaseRequest

__all__ = ["Releases"]

_MAX_VERSION: Final = 2**31 - 1
_MAX_LABEL: Final = 32

_LICENSE_ROW: Final = (
    select(s.licenses.c.customer_id, s.licenses.c.revoked_at, s.licenses.c.first_use_at)
    .where(s.licenses.c.id == bindparam("p_license"))
    .with_for_update()
)
_INSERT_LEASE: Final = insert(s.leases)
_SWEEP_EVERY: Final = 1024


class Releases:
    def __init__(self, core: Core, challenges: Challenges) -> None:
        self._core = core
        self._challenges = challenges
        self._keys = ModelKeys(core)
        self._seats = Seats()
        self._attempts = itertools.count(1)

    def release(self, device: Certificate, request: ReleaseRequest) -> ReleaseGrant:
        core = self._core
        recipient = _recipient(request)
        now = core.now()
        fingerprint = device.fingerprint
        attempt = Attempt(
            actor=f"certificate sha256:{fingerprint}",
            details={
                "model": request.model_name,
                "version": request.model_version,
                "nonce": core.audit.secret("nonce", request.nonce),
                "kem": recipient.kem,
                "public_key": core.audit.secret("public_key", recipient.raw),
                "evidence": _evidence(request),
            },
        )
        license_: License | Refusal
        try:
            license_ = core.license(request.license)
        except Refusal as refusal:
            license_ = refusal
        if isinstance(license_, License):
            attempt.details["license"] = license_.id
        sweep = next(self._attempts) % _SWEEP_EVERY == 0
        try:
            nonce = self._challenges.check(request.nonce, device, now)
            # Evidence is verified outside the transaction (it can take milliseconds) and its
            # refusal raised at its place in the order (step 5).
            evidence = _verify_evidence(core, request, license_, now)
            if evidence is not None:
                attempt.details["evidence"] = evidence.summary
            with core.engine.begin() as conn:
                grant = self._release(
                    conn, fingerprint, nonce, request, recipient, license_, evidence, now, attempt
                )
                if sweep:
                    sweep_nonces(conn, now)
        except Exception as exc:
            outcome = exc.code.value if isinstance(exc, Refusal) else getattr(exc, "code", "ERROR")
            details = dict(attempt.details)
            if isinstance(exc, Refusal | VaultError):
                details["message"] = exc.message
            core.audit.append_alone(
                at=now,
                actor=attempt.actor,
                action="key.release",
                subject=str(details.get("license", "(no valid license)")),
                outcome=str(outcome),
                details=details,
            )
            raise
        for action in attempt.on_commit:
            action()
        return grant

    def _release(
        self,
        conn: Connection,
        fingerprint: str,
        nonce: CheckedNonce,
        request: ReleaseRequest,
        recipient: EphemeralPublicKey,
        parsed: License | Refusal,
        evidence: _Evidence | None,
        now: datetime,
        attempt: Attempt,
    ) -> ReleaseGrant:
        core = self._core
        found = device_row(conn, fingerprint)
        device_id = None if found is None else found.id
        if not use_nonce(conn, nonce.digest, now, expires_at=nonce.expires_at, device_id=device_id):
            raise Refusal(RefusalCode.NONCE_INVALID)
        if found is None:
            raise Refusal(RefusalCode.DEVICE_UNKNOWN)
        device_id, customer = found.id, found.customer
        attempt.actor = device_id
        if found.revoked_at is not None:
            raise Refusal(
                RefusalCode.DEVICE_REVOKED,
                f"Device {device_id} was revoked at "
                f"{format_datetime(from_micros(found.revoked_at))}",
            )
        # 3: license and model
        if isinstance(parsed, Refusal):
            raise parsed
        license_ = parsed
        if license_.customer != customer:
            raise _wrong_customer(device_id, customer, license_.customer)
        row = conn.execute(_LICENSE_ROW, {"p_license": license_.id}).first()
        if row is None:
            raise Refusal(
                RefusalCode.LICENSE_INVALID, f"The vault has no record of license {license_.id}"
            )
        if row.customer_id != found.customer_id:
            raise _wrong_customer(device_id, customer, license_.customer)
        if row.revoked_at is not None:
            raise Refusal(
                RefusalCode.REVOKED,
                f"License {license_.id} was revoked at "
                f"{format_datetime(from_micros(row.revoked_at))}",
            )
        first_use = optional_time(row.first_use_at)
        check_time_window(license_, now, first_use)
        check_model(license_, request.model_name, request.model_version)
        model = self._keys.find(conn, request.model_name, request.model_version)
        if model is None:
            raise Refusal(
                RefusalCode.MODEL_UNKNOWN,
                f"The vault has no registered model {request.model_name} version "
                f"{request.model_version}",
            )
        # 4-6: device binding, evidence, loads
        policy = license_.policy
        self._seats.bind(conn, license_, device_id, now, attempt)
        _check_evidence(request, evidence)
        if not take_load(conn, license_.id, now):
            raise Refusal(
                RefusalCode.USAGE_EXHAUSTED,
                f"All {policy.max_loads} loads of license {license_.id} are used",
            )
        if policy.loads_per is not None:
            period, count = policy.loads_per
            if not take_window(conn, license_.id, "loads", period_start(now, period), count):
                raise rate_limited("loads", count, period, now)
        # 7: lease, key, audit
        lease_id = f"lease-{uuid.uuid4()}"
        expires = lease_end(now, license_, first_use or now)
        conn.execute(
            _INSERT_LEASE,
            {
                "id": lease_id,
                "license_id": license_.id,
                "device_id": device_id,
                "model_name": request.model_name,
                "model_version": request.model_version,
                "issued_at": to_micros(now),
                "expires_at": expires * 1_000_000,
                "renewed_at": to_micros(now),
            },
        )
        try:
            key = self._keys.unwrap(conn, model, request.model_name, request.model_version)
        except CryptoError as exc:  # DecryptionError, or MasterKeyError for a retired version
            raise VaultError(
                f"the data key of model {request.model_name} version {request.model_version} "
                f"does not unwrap with the master key: {exc.message}",
                hint=exc.hint or "restore the model's row from a backup, or register it again",
            ) from None
        info = release_info(
            device=device_id,
            license=license_.id,
            model=request.model_name,
            version=request.model_version,
            lease_expires=expires,
        )
        try:
            sealed = seal_data_key(key, recipient, info=info)
        except KeyFormatError as exc:
            raise BadRequest(exc.message) from None
        lease = sign_lease(
            core,
            lease_id=lease_id,
            device_id=device_id,
            license_=license_,
            model=request.model_name,
            version=request.model_version,
            expires=expires,
        )
        details = dict(attempt.details, lease=lease_id, lease_expires=expires, key_id=model.key_id)
        core.audit.append(
            conn,
            at=now,
            actor=device_id,
            action="key.release",
            subject=license_.id,
            outcome="ok",
            details=details,
        )
        return ReleaseGrant(
            lease_id=lease_id,
            expires_at=from_micros(expires * 1_000_000),
            sealed_key=sealed,
            info=info,
            lease=lease,
            heartbeat=policy.heartbeat,
            offline_grace=policy.offline_grace,
            key_id=model.key_id,
        )


def _recipient(request: ReleaseRequest) -> EphemeralPublicKey:
    """The request's one-time public key, after checking the request's shape."""
    try:
        validate_model_name(request.model_name)
    except (PackageError, TypeError):
        raise BadRequest(f"{request.model_name!r} is not a model name") from None
    kind = request.evidence_type
    if not isinstance(kind, str) or not 1 <= len(kind) <= _MAX_LABEL or not kind.isprintable():
        raise BadRequest(f"the evidence type must be a short name such as 'none', not {kind!r}")
    if not isinstance(request.model_version, int) or isinstance(request.model_version, bool):
        raise BadRequest(f"the model version must be a whole number, not {request.model_version!r}")
    if not 1 <= request.model_version <= _MAX_VERSION:
        raise BadRequest(f"the model version must be from 1 to {_MAX_VERSION}")
    try:
        return EphemeralPublicKey.from_bytes(request.public_key, kem=request.kem)
    except KeyFormatError as exc:
        raise BadRequest(f"the release public key was refused: {exc.message}") from None


def _evidence(request: ReleaseRequest) -> dict[str, Any]:
    """What the audit records of the evidence: for type ``none``, that none was given."""
    if request.evidence_type == "none":
        return {"type": "none", "given": False}
    return {"type": request.evidence_type, "given": True}


@dataclass(frozen=True)
class _Evidence:
    """The verdict on a request's evidence: the refusal it leads to (None: accepted), and what
    the audit entry records of it."""

    refusal: Refusal | None
    summary: dict[str, Any]


def _verify_evidence(
    core: Core, request: ReleaseRequest, parsed: License | Refusal, now: datetime
) -> _Evidence | None:
    """Verify the evidence the license requires (None when it requires none, or the license is
    refused anyway). Report data binds the evidence to this request's nonce and one-time key."""
    if not isinstance(parsed, License) or parsed.policy.require_evidence == "none":
        return None
    from modelseal.attestation import (
        AttestationError,
        AttestationPolicy,
        report_data,
        verify_evidence,
    )

    required = parsed.policy.require_evidence
    if request.evidence_type != required:
        return _Evidence(
            Refusal(
                RefusalCode.EVIDENCE_REJECTED,
                f"The license requires {required} evidence, and the request has "
                f"{request.evidence_type!r} evidence",
            ),
            {"type": request.evidence_type, "given": bool(request.evidence)},
        )
    policy = AttestationPolicy.for_license(required, parsed.policy.allowed_measurements)
    try:
        verdict = verify_evidence(
            required,
            request.evidence or b"",
            report_data=report_data(request.nonce, request.public_key),
            policy=policy,
            now=now,
            collateral=core.collateral,
        )
    except AttestationError as exc:  # evidence that does not even parse
        return _Evidence(
            Refusal(
                RefusalCode.EVIDENCE_REJECTED, f"The {required} evidence was refused: {exc.message}"
            ),
            {"type": required, "given": True, "passed": False},
        )
    summary: dict[str, Any] = {
        "type": required,
        "given": True,
        "passed": verdict.passed,
        "measurements": dict(verdict.measurements),
        "tcb_status": verdict.tcb_status,
    }
    if verdict.passed:
        return _Evidence(None, summary)
    reasons = "; ".join(verdict.failure_sentences())
    return _Evidence(
        Refusal(RefusalCode.EVIDENCE_REJECTED, f"The {required} evidence was refused: {reasons}"),
        summary,
    )


def _check_evidence(request: ReleaseRequest, evidence: _Evidence | None) -> None:
    if evidence is not None:
        if evidence.refusal is not None:
            raise evidence.refusal
        return
    if request.evidence_type != "none":
        raise Refusal(
            RefusalCode.EVIDENCE_REJECTED,
            f"The license requires no evidence, and the request has {request.evidence_type!r} "
            "evidence; send the evidence type none",
        )


def _wrong_customer(device_id: str, customer: str, licensed: str) -> Refusal:
    return Refusal(
        RefusalCode.WRONG_CUSTOMER,
        f"Device {device_id} belongs to customer {customer!r}, and the license to {licensed!r}",
    )
