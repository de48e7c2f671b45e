"""Signing keys: Ed25519 (default), ECDSA P-256 with SHA-256, ECDSA P-384 with SHA-384.

Signatures use each algorithm's standard encoding (Ed25519: 64 raw bytes; ECDSA: DER), so
``openssl pkeyutl -verify`` / ``openssl dgst -verify`` check them too.
"""

from __future__ import annotations

from typing import Literal, NoReturn, get_args

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from modelseal.crypto.errors import KeyFormatError, SignatureError

__all__ = ["ALGORITHMS", "Algorithm", "SigningKey", "VerifyingKey"]

Algorithm = Literal["ed25519", "ecdsa-p256", "ecdsa-p384"]
ALGORITHMS: tuple[Algorithm, ...] = get_args(Algorithm)
_TOKEN = object()

_PrivateKey = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey
_PublicKey = ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey
_CURVES: dict[str, tuple[Algorithm, hashes.HashAlgorithm]] = {
    "secp256r1": ("ecdsa-p256", hashes.SHA256()),
    "secp384r1": ("ecdsa-p384", hashes.SHA384()),
}


def _algorithm_of(key: _PrivateKey | _PublicKey) -> Algorithm:
    if isinstance(key, ed25519.Ed25519PrivateKey | ed25519.Ed25519PublicKey):
        return "ed25519"
    if (
        isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey)
        and key.curve.name in _CURVES
    ):
        return _CURVES[key.curve.name][0]
    raise KeyFormatError(
        f"unsupported key type {type(key).__name__}: use Ed25519, ECDSA P-256 or ECDSA P-384"
    )


def _hash_for(algorithm: Algorithm) -> hashes.HashAlgorithm:
    return hashes.SHA256() if algorithm == "ecdsa-p256" else hashes.SHA384()


class VerifyingKey:
    """A public key that checks signatures; raises :class:`SignatureError` on any mismatch."""

    __slots__ = ("_key", "algorithm")

    def __init__(self, token: object, key: _PublicKey) -> None:
        if token is not _TOKEN:
            raise TypeError("VerifyingKey has no public constructor")
        self.algorithm = _algorithm_of(key)
        self._key = key

    @classmethod
    def _wrap(cls, key: object) -> VerifyingKey:
        if not isinstance(key, ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey):
            raise KeyFormatError(
                f"unsupported public key type {type(key).__name__}: use Ed25519, ECDSA P-256 or P-384"
            )
        return cls(_TOKEN, key)

    @classmethod
    def from_pem(cls, data: bytes) -> VerifyingKey:
        try:
            return cls._wrap(serialization.load_pem_public_key(data))
        except (ValueError, UnsupportedAlgorithm) as exc:
            raise KeyFormatError("not a PEM public key") from exc

    def verify(self, signature: bytes, data: bytes) -> None:
        try:
            if isinstance(self._key, ed25519.Ed25519PublicKey):
                self._key.verify(signature, data)
            else:
                self._key.verify(signature, data, ec.ECDSA(_hash_for(self.algorithm)))
        except InvalidSignature:
            raise SignatureError() from None

    def public_bytes_der(self) -> bytes:
        return self._key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, VerifyingKey) and self.public_bytes_der() == other.public_bytes_der()
        )

    def __hash__(self) -> int:
        return hash(self.public_bytes_der())

    def __repr__(self) -> str:
        return f"VerifyingKey({self.algorithm})"


class SigningKey:
    """A private signing key. Never printed, never pickled."""

    __slots__ = ("_key", "algorithm")

    def __init__(self, token: object, key: _PrivateKey) -> None:
        if token is not _TOKEN:
            raise TypeError("use SigningKey.generate() or SigningKey.from_pem()")
        self.algorithm = _algorithm_of(key)
        self._key = key

    @classmethod
    def generate(cls, algorithm: Algorithm = "ed25519") -> SigningKey:
        if algorithm == "ed25519":
            return cls(_TOKEN, ed25519.Ed25519PrivateKey.generate())
        if algorithm == "ecdsa-p256":
            return cls(_TOKEN, ec.generate_private_key(ec.SECP256R1()))
        if algorithm == "ecdsa-p384":
            return cls(_TOKEN, ec.generate_private_key(ec.SECP384R1()))
        raise KeyFormatError(
            f"unknown algorithm {algorithm!r}; choose one of {', '.join(ALGORITHMS)}"
        )

    @classmethod
    def from_pem(cls, data: bytes, passphrase: bytes | None) -> SigningKey:
        """Load a PKCS#8 PEM key; a wrong passphrase gives one clear error."""
        try:
            key = serialization.load_pem_private_key(data, password=passphrase)
        except TypeError as exc:  # encrypted but no passphrase, or the other way round
            raise KeyFormatError(f"private key: {exc}") from exc
        except (ValueError, UnsupportedAlgorithm) as exc:
            raise KeyFormatError(
                "the private key could not be decrypted: wrong passphrase, or not a PKCS#8 PEM key"
            ) from exc
        if not isinstance(key, ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey):
            raise KeyFormatError(f"unsupported private key type {type(key).__name__}")
        return cls(_TOKEN, key)

    def to_pem(self, passphrase: bytes) -> bytes:
        """PKCS#8 PEM encrypted with the passphrase (OpenSSL's best available scheme)."""
        if not passphrase:
            raise KeyFormatError("an empty passphrase is not allowed for a private key")
        return self._key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(passphrase),
        )

    def sign(self, data: bytes) -> bytes:
        if isinstance(self._key, ed25519.Ed25519PrivateKey):
            return self._key.sign(data)
        return self._key.sign(data, ec.ECDSA(_hash_for(self.algorithm)))

    def verifying_key(self) -> VerifyingKey:
        return VerifyingKey(_TOKEN, self._key.public_key())

    def _private_key(self) -> _PrivateKey:
        return self._key

    def __repr__(self) -> str:
        return f"SigningKey({self.algorithm}, <private>)"

    def __reduce__(self) -> NoReturn:
        raise TypeError("a SigningKey cannot be pickled")
