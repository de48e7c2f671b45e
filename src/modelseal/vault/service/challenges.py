"""Challenges: single-use nonces for key releases, issued without a database write.

A nonce is a MACed token (unpadded base64url of 40 bytes)::

    version (1) = 1 ‖ random (15) ‖ expiry, µs since the epoch (8, big-endian) ‖ tag (16)

``tag`` is the first 16 bytes of HMAC-SHA256, under a key derived from the vault secret (the same
in every process of one vault), of ``"challenge" 0x00 ‖ the first 24 bytes ‖ the SHA-256 of the
certificate that asked``. So a nonce is bound to the certificate it was issued to and carries its
own expiry; issuing one touches no table, and any vault process sharing the database accepts it.

Single use is enforced where it matters, in the key release transaction: :meth:`Challenges.check`
verifies the tag, the certificate and the expiry, and the release then records the nonce's hash
with :func:`~modelseal.vault.db.use_nonce`, which inserts nothing for a nonce already recorded.
Records are swept once their nonce has expired (an expired nonce is refused before any lookup).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import struct
from datetime import datetime
from typing import Final, NamedTuple

from modelseal.crypto import Certificate
from modelseal.crypto.mac import MacKey
from modelseal.licensing import Refusal, RefusalCode
from modelseal.vault.db import from_micros, to_micros
from modelseal.vault.service._core import Core
from modelseal.vault.service.views import Challenge

__all__ = ["Challenges", "CheckedNonce"]

_VERSION: Final = 1
_RANDOM: Final = 15
_BODY: Final = struct.Struct(f">B{_RANDOM}sq")
_TAG: Final = 16
_SIZE: Final = _BODY.size + _TAG
_TEXT: Final = (_SIZE * 4 + 2) // 3  # base64url without padding
_LABEL: Final = "modelseal vault challenge"


class CheckedNonce(NamedTuple):
    """A nonce this vault issued to the caller, not yet expired."""

    digest: str
    """What the release records: SHA-256 (hex) of the decoded token, not of its text, so another
    spelling of the same bytes (base64 has several) is the same nonce."""
    expires_at: datetime


def _tag(key: MacKey, body: bytes, fingerprint: str) -> bytes:
    message = b"challenge\x00" + body + bytes.fromhex(fingerprint)
    return bytes.fromhex(key.hexdigest(message)[: 2 * _TAG])


class Challenges:
    def __init__(self, core: Core) -> None:
        self._core = core
        self._key = core.audit.mac_key(_LABEL)

    def challenge(self, device: Certificate) -> Challenge:
        """A single-use nonce bound to this certificate (an enrolled device's or not: the release
        then says DEVICE_UNKNOWN in its place in the order)."""
        core = self._core
        expires = core.now() + core.nonce_ttl
        body = _BODY.pack(_VERSION, secrets.token_bytes(_RANDOM), to_micros(expires))
        token = body + _tag(self._key, body, device.fingerprint)
        nonce = base64.urlsafe_b64encode(token).rstrip(b"=").decode("ascii")
        return Challenge(nonce=nonce, expires_at=from_micros(to_micros(expires)))

    def check(self, nonce: str, device: Certificate, now: datetime) -> CheckedNonce:
        """The nonce checked: this vault issued it to ``device`` and it has not expired;
        otherwise a :class:`Refusal` NONCE_INVALID. (Whether it was used is the release's
        question: see :func:`~modelseal.vault.db.use_nonce`.)"""
        refusal = Refusal(RefusalCode.NONCE_INVALID)
        if not isinstance(nonce, str) or len(nonce) != _TEXT or not nonce.isascii():
            raise refusal
        try:
            token = base64.urlsafe_b64decode(nonce + "=" * (-len(nonce) % 4))
        except (binascii.Error, ValueError):
            raise refusal from None
        if len(token) != _SIZE:
            raise refusal
        body, tag = token[: _BODY.size], token[_BODY.size :]
        if not hmac.compare_digest(tag, _tag(self._key, body, device.fingerprint)):
            raise refusal
        version, _, expires = _BODY.unpack(body)
        if version != _VERSION or expires <= to_micros(now):
            raise refusal
        return CheckedNonce(hashlib.sha256(token).hexdigest(), from_micros(expires))
