"""Enrolment: one-time tokens (the pre-shared key) and device certificates from CSRs.

A token is ``mset1.<secret>.<pin>``: 32 random bytes in unpadded base64url, then the SHA-256 (hex)
of the vault CA's SubjectPublicKeyInfo, so the device can pin the vault on first contact (as
``kubeadm join`` does with its discovery hash). The vault keeps only SHA-256(secret) and the
customer; the token is single use and expires. The device certificate (role ``device``, subject
``CN=dev-<uuid>``) is issued by the vault CA from the device's CSR, whose signature is checked; the
device row records its customer and the certificate's SHA-256.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
import uuid
from datetime import timedelta
from typing import Final

from sqlalchemy import Connection, insert, select, update

from modelseal.crypto import (
    CryptoError,
    KeyFormatError,
    SignatureError,
    csr_public_key,
    issue_from_csr,
)
from modelseal.vault.db import claim_enrollment_token, to_micros
from modelseal.vault.db import schema as s
from modelseal.vault.service._core import Core
from modelseal.vault.service.errors import BadRequest, Unauthorized, VaultError
from modelseal.vault.service.views import Enrollment

__all__ = ["DEVICE_CERT_DAYS", "MAX_TOKEN_TTL", "TOKEN_PREFIX", "Enrollment", "Enrolments"]

TOKEN_PREFIX: Final = "mset1"  # noqa: S105 - the token format name, not a secret
MAX_TOKEN_TTL: Final = timedelta(days=30)
DEVICE_CERT_DAYS: Final = 365
_SECRET_SIZE: Final = 32
_TOKEN: Final = re.compile(r"mset1\.([A-Za-z0-9_-]{43})\.([0-9a-f]{64})", re.ASCII)
_MAX_SERIAL: Final = 1 << 159


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class Enrolments:
    def __init__(self, core: Core) -> None:
        self._core = core

    def create_token(self, actor: str, *, customer: str, ttl: timedelta) -> str:
        if not isinstance(ttl, timedelta) or not timedelta(seconds=1) <= ttl <= MAX_TOKEN_TTL:
            raise BadRequest(f"an enrolment token lives from 1 second to 30 days, not {ttl}")
        core = self._core
        secret = secrets.token_bytes(_SECRET_SIZE)
        token_hash = hashlib.sha256(secret).hexdigest()
        now = core.now()
        with core.engine.begin() as conn:
            customer_id = core.customer_id(conn, customer)
            conn.execute(
                insert(s.enrollment_tokens).values(
                    token_hash=token_hash,
                    customer_id=customer_id,
                    created_at=to_micros(now),
                    expires_at=to_micros(now + ttl),
                )
            )
            core.audit.append(
                conn,
                at=now,
                actor=actor,
                action="enrollment_token.create",
                subject=customer,
                outcome="ok",
                details={
                    "token": core.audit.secret("token", secret),
                    "expires_at": to_micros(now + ttl),
                },
            )
        return f"{TOKEN_PREFIX}.{_b64url(secret)}.{core.ca_spki}"

    def enroll(self, *, token: str, csr_pem: bytes) -> Enrollment:
        core = self._core
        secret = self._secret_of(token)
        try:
            csr_public_key(csr_pem)
        except (KeyFormatError, SignatureError) as exc:
            raise BadRequest(f"the certificate request was refused: {exc.message}") from None
        token_hash = hashlib.sha256(secret).hexdigest()
        audited_token = core.audit.secret("token", secret)
        now = core.now()
        device_id = f"dev-{uuid.uuid4()}"
        with core.engine.begin() as conn:
            customer_id = claim_enrollment_token(conn, token_hash, now)
            if customer_id is not None:
                serial = secrets.randbelow(_MAX_SERIAL - 1) + 1
                try:
                    cert = issue_from_csr(
                        core.vault.ca,
                        csr_pem,
                        subject_override=f"CN={device_id}",
                        role="device",
                        days=DEVICE_CERT_DAYS,
                        now=now,
                        serial=serial,
                    )
                except CryptoError as exc:
                    raise VaultError(
                        f"the vault CA cannot issue the device certificate: {exc.message}",
                        hint=exc.hint,
                    ) from None
                customer = conn.execute(
                    select(s.customers.c.name).where(s.customers.c.id == customer_id)
                ).scalar_one()
                conn.execute(
                    insert(s.devices).values(
                        id=device_id,
                        customer_id=customer_id,
                        cert_serial=format(serial, "x"),
                        cert_sha256=cert.fingerprint,
                        subject=cert.subject,
                        enrolled_at=to_micros(now),
                    )
                )
                conn.execute(
                    update(s.enrollment_tokens)
                    .where(s.enrollment_tokens.c.token_hash == token_hash)
                    .values(device_id=device_id)
                )
                core.audit.append(
                    conn,
                    at=now,
                    actor=device_id,
                    action="device.enroll",
                    subject=device_id,
                    outcome="ok",
                    details={
                        "customer": customer,
                        "token": audited_token,
                        "certificate_sha256": cert.fingerprint,
                    },
                )
                return Enrollment(
                    device_id=device_id,
                    customer=customer,
                    certificate_pem=cert.pem(),
                    ca_pem=core.vault.ca.certificate.pem(),
                )
            why = self._why_refused(conn, token_hash)
        core.audit.append_alone(
            at=now,
            actor="enrolment",
            action="device.enroll",
            subject="(refused)",
            outcome=Unauthorized.code,
            details={"token": audited_token, "reason": why},
        )
        raise Unauthorized(
            f"the enrolment token {why}",
            hint="ask the model controller for a new token (`modelseal device enroll-token`)",
        )

    def _secret_of(self, token: str) -> bytes:
        match = _TOKEN.fullmatch(token.strip()) if isinstance(token, str) else None
        if match is None:
            raise Unauthorized(
                "the enrolment token is not a modelseal token (mset1.<secret>.<pin>)",
                hint="copy the whole token the model controller gave you",
            )
        encoded, pin = match.groups()
        if not hmac.compare_digest(pin, self._core.ca_spki):
            raise Unauthorized(
                "the enrolment token was made by another vault (its CA pin does not match this "
                "vault's CA)",
                hint="enrol with the vault that made the token",
            )
        try:
            return base64.urlsafe_b64decode(encoded + "=")
        except (binascii.Error, ValueError):  # pragma: no cover - the pattern admits 43 chars only
            raise Unauthorized("the enrolment token's secret is not base64url") from None

    def _why_refused(self, conn: Connection, token_hash: str) -> str:
        row = conn.execute(
            select(s.enrollment_tokens.c.used_at, s.enrollment_tokens.c.expires_at).where(
                s.enrollment_tokens.c.token_hash == token_hash
            )
        ).first()
        if row is None:
            return "is not known to this vault"
        if row.used_at is not None:
            return "was used already (a token enrols one device)"
        return "has expired"
