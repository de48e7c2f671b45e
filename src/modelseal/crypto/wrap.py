"""Wrapping a data key to a recipient's public key with HPKE (RFC 9180, base mode).

Suite: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM. The wrapped form is ``enc ‖ ct``
(32 + 48 bytes). The HPKE ``info`` binds the key to its context (key id, model id, version), so a
wrapped key copied into another package does not unwrap there.
"""

from __future__ import annotations

import hashlib
from typing import NoReturn

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hpke, serialization
from cryptography.hazmat.primitives.asymmetric import x25519

from modelseal.crypto.canonical import canonical_json
from modelseal.crypto.datakey import KEY_SIZE, DataKey
from modelseal.crypto.errors import DecryptionError, KeyFormatError

__all__ = [
    "WRAP_ALGORITHM",
    "ImportPrivateKey",
    "ImportPublicKey",
    "unwrap_data_key",
    "wrap_data_key",
    "wrap_info",
]

WRAP_ALGORITHM = "HPKE-Base-X25519-SHA256-AES256GCM"
_SUITE = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM)
_INFO_LABEL = b"modelseal/v1 data-key-wrap\x00"
_TOKEN = object()


def wrap_info(*, key_id: str, model_id: str, version: int) -> bytes:
    """The HPKE info string: a fixed label then canonical JSON of the context."""
    return _INFO_LABEL + canonical_json(
        {"key_id": key_id, "model_id": model_id, "version": version}
    )


class ImportPublicKey:
    """The vault's import key (X25519), published for offline sealing."""

    __slots__ = ("_key",)

    def __init__(self, token: object, key: x25519.X25519PublicKey) -> None:
        if token is not _TOKEN:
            raise TypeError("use ImportPublicKey.from_pem()")
        self._key = key

    @classmethod
    def from_pem(cls, data: bytes) -> ImportPublicKey:
        try:
            key = serialization.load_pem_public_key(data)
        except (ValueError, UnsupportedAlgorithm) as exc:
            raise KeyFormatError("the import key is not a PEM public key") from exc
        if not isinstance(key, x25519.X25519PublicKey):
            raise KeyFormatError(
                f"the import key must be an X25519 public key, not {type(key).__name__}"
            )
        return cls(_TOKEN, key)

    def to_pem(self) -> bytes:
        return self._key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    @property
    def key_id(self) -> str:
        """SHA-256 of the SubjectPublicKeyInfo DER, hex: names the key without revealing anything."""
        der = self._key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return hashlib.sha256(der).hexdigest()

    def __repr__(self) -> str:
        return f"ImportPublicKey({self.key_id[:16]}…)"


class ImportPrivateKey:
    """The private half, kept by the vault."""

    __slots__ = ("_key",)

    def __init__(self, token: object, key: x25519.X25519PrivateKey) -> None:
        if token is not _TOKEN:
            raise TypeError("use ImportPrivateKey.generate() or from_pem()")
        self._key = key

    @classmethod
    def generate(cls) -> ImportPrivateKey:
        return cls(_TOKEN, x25519.X25519PrivateKey.generate())

    @classmethod
    def from_pem(cls, data: bytes, passphrase: bytes | None = None) -> ImportPrivateKey:
        try:
            key = serialization.load_pem_private_key(data, password=passphrase)
        except (TypeError, ValueError, UnsupportedAlgorithm) as exc:
            raise KeyFormatError(
                "the import private key could not be read (PEM, passphrase?)"
            ) from exc
        if not isinstance(key, x25519.X25519PrivateKey):
            raise KeyFormatError("the import private key must be X25519")
        return cls(_TOKEN, key)

    def to_pem(self, passphrase: bytes | None) -> bytes:
        encryption: serialization.KeySerializationEncryption = (
            serialization.BestAvailableEncryption(passphrase)
            if passphrase
            else serialization.NoEncryption()
        )
        return self._key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
        )

    def public_key(self) -> ImportPublicKey:
        return ImportPublicKey(_TOKEN, self._key.public_key())

    def __repr__(self) -> str:
        return "ImportPrivateKey(<private>)"

    def __reduce__(self) -> NoReturn:
        raise TypeError("an ImportPrivateKey cannot be pickled")


def wrap_data_key(key: DataKey, recipient: ImportPublicKey, *, info: bytes) -> bytes:
    """Seal the data key to ``recipient``; ``info`` from :func:`wrap_info`."""
    return _SUITE.encrypt(key._secret_bytes(), recipient._key, info=info)


def unwrap_data_key(
    wrapped: bytes, recipient: ImportPrivateKey, *, key_id: str, info: bytes
) -> DataKey:
    """Open a wrapped data key; any mismatch (key, info, bytes) raises :class:`DecryptionError`."""
    try:
        secret = _SUITE.decrypt(wrapped, recipient._key, info=info)
    except Exception:
        raise DecryptionError() from None
    if len(secret) != KEY_SIZE:  # authentic but not a data key: same fixed refusal
        raise DecryptionError()
    return DataKey._from_secret(secret, key_id)
