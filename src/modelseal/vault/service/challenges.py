"""Challenges: single-use nonces for key releases, stored only as hashes, bound to the device.

A nonce is 32 random bytes (unpadded base64url) that lives ``nonce_ttl`` (default two minutes).
It is bound to the device whose certificate asked for it; a certificate the vault never enrolled
gets an unbound nonce, so that its release is refused with DEVICE_UNKNOWN in its place in the
order (after the nonce). Expired nonces are swept now and then by a later challenge.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import secrets
from typing import Final

from sqlalchemy import bindparam, delete, insert

from modelseal.crypto import Certificate
from modelseal.vault.db import schema as s
from modelseal.vault.db import to_micros
from modelseal.vault.service._core import Core, device_row
from modelseal.vault.service.views import Challenge

__all__ = ["Challenges", "nonce_hash"]

_NONCE_SIZE: Final = 32
_SWEEP_EVERY: Final = 1024
_INSERT_NONCE: Final = insert(s.nonces)
_SWEEP_NONCES: Final = delete(s.nonces).where(s.nonces.c.expires_at < bindparam("p_before"))


def nonce_hash(nonce: str) -> str:
    """What the vault stores for a nonce: SHA-256 of its text (any text; unknown ones match none)."""
    return hashlib.sha256(nonce.encode("utf-8", "surrogatepass")).hexdigest()


class Challenges:
    def __init__(self, core: Core) -> None:
        self._core = core
        self._issued = itertools.count(1)

    def challenge(self, device: Certificate) -> Challenge:
        """A single-use nonce bound to this device (an unbound one for an unknown certificate,
        so that the release says DEVICE_UNKNOWN in its place in the order)."""
        core = self._core
        now = core.now()
        nonce = base64.urlsafe_b64encode(secrets.token_bytes(_NONCE_SIZE)).rstrip(b"=").decode()
        expires = now + core.nonce_ttl
        sweep = next(self._issued) % _SWEEP_EVERY == 0
        with core.engine.begin() as conn:
            found = device_row(conn, device.fingerprint)
            if sweep:
                conn.execute(_SWEEP_NONCES, {"p_before": to_micros(now - core.nonce_ttl)})
            conn.execute(
                _INSERT_NONCE,
                {
                    "nonce_hash": nonce_hash(nonce),
                    "device_id": None if found is None else found.id,
                    "expires_at": to_micros(expires),
                },
            )
        return Challenge(nonce=nonce, expires_at=expires)
