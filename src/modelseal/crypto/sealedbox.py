"""Sealing small secrets (a PEM private key, a token) under a data key, bound to a label.

Blob::

    b"MSB1" ‖ nonce (12, random) ‖ AES-256-GCM ciphertext ‖ tag (16)

The AES key is ``HKDF-SHA256(data key, salt = none, info = b"modelseal/v1 sealed-box\\0" ‖
label)``, so one data key seals many files and a blob opens only under the label it was sealed
with (a sealed CA key renamed to the TLS key's file does not open). The magic is the associated
data. Every failure — wrong key, wrong label, altered or truncated blob — raises the fixed
:class:`DecryptionError`.
"""

from __future__ import annotations

import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from modelseal.crypto.datakey import KEY_SIZE, DataKey
from modelseal.crypto.errors import DecryptionError

__all__ = ["SEALED_BOX_MAGIC", "open_bytes", "seal_bytes"]

SEALED_BOX_MAGIC = b"MSB1"
_NONCE_SIZE = 12
_TAG_SIZE = 16
_INFO_PREFIX = b"modelseal/v1 sealed-box\x00"


def seal_bytes(key: DataKey, data: bytes, *, label: str) -> bytes:
    """``data`` encrypted and authenticated under ``key`` for ``label`` (a fresh nonce each time)."""
    nonce = secrets.token_bytes(_NONCE_SIZE)
    return SEALED_BOX_MAGIC + nonce + _aead(key, label).encrypt(nonce, data, SEALED_BOX_MAGIC)


def open_bytes(key: DataKey, blob: bytes, *, label: str) -> bytes:
    """The data sealed by :func:`seal_bytes` with the same key and label; else DecryptionError."""
    aead = _aead(key, label)
    head = len(SEALED_BOX_MAGIC) + _NONCE_SIZE
    if len(blob) < head + _TAG_SIZE or not blob.startswith(SEALED_BOX_MAGIC):
        raise DecryptionError()
    try:
        return aead.decrypt(blob[len(SEALED_BOX_MAGIC) : head], blob[head:], SEALED_BOX_MAGIC)
    except InvalidTag:
        raise DecryptionError() from None


def _aead(key: DataKey, label: str) -> AESGCM:
    if not isinstance(label, str) or not label:
        raise ValueError("a sealed box needs a non-empty label")
    derived = HKDF(
        algorithm=hashes.SHA256(),
        length=KEY_SIZE,
        salt=None,
        info=_INFO_PREFIX + label.encode("utf-8"),
    ).derive(key._secret_bytes())
    return AESGCM(derived)
