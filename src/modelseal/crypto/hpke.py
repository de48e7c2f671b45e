"""Sealing a released data key to a device's one-time public key with HPKE (RFC 9180, base mode).

The device makes a fresh key pair for every key release and sends the public half; the vault
seals the model data key to it, so the key is readable only by the process that holds the private
half, whatever happens to the TLS session. Two KEMs, both with HKDF-SHA256 and AES-256-GCM:

``x25519``
    DHKEM(X25519, HKDF-SHA256); the public key is its 32 raw bytes.
``mlkem768-x25519``
    the hybrid post-quantum KEM ML-KEM-768 + X25519 (X-Wing, the HPKE ``MLKEM768-X25519``);
    the public key is the ML-KEM-768 encapsulation key (1184 bytes) followed by the X25519 key
    (32 bytes), as X-Wing serialises it.

The sealed form is ``enc ‖ ct``. The HPKE ``info`` is :func:`release_info`: a label and the
canonical JSON of the device, license, model, version and lease expiry, so a sealed key answers
exactly one release and opens nowhere else.
"""

from __future__ import annotations

from typing import Final, Literal, NoReturn, get_args

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric import mlkem, x25519

from modelseal.crypto.canonical import canonical_json
from modelseal.crypto.datakey import KEY_SIZE, DataKey
from modelseal.crypto.errors import DecryptionError, KeyFormatError

__all__ = [
    "KEMS",
    "PUBLIC_KEY_SIZES",
    "EphemeralPrivateKey",
    "EphemeralPublicKey",
    "Kem",
    "open_data_key",
    "release_info",
    "seal_data_key",
]

Kem = Literal["x25519", "mlkem768-x25519"]
KEMS: Final[tuple[Kem, ...]] = get_args(Kem)
_MLKEM_PUBLIC = 1184
_X25519_PUBLIC = 32
PUBLIC_KEY_SIZES: Final[dict[Kem, int]] = {
    "x25519": _X25519_PUBLIC,
    "mlkem768-x25519": _MLKEM_PUBLIC + _X25519_PUBLIC,
}
_SUITES: Final = {
    "x25519": hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM),
    "mlkem768-x25519": hpke.Suite(
        hpke.KEM.MLKEM768_X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM
    ),
}
_INFO_LABEL: Final = b"modelseal/v1 key-release\x00"
_TOKEN = object()
_PublicKey = x25519.X25519PublicKey | hpke.MLKEM768X25519PublicKey
_PrivateKey = x25519.X25519PrivateKey | hpke.MLKEM768X25519PrivateKey


def release_info(
    *, device: str, license: str, model: str, version: int, lease_expires: int
) -> bytes:
    """The HPKE info of a released key: a fixed label, then canonical JSON of the release.

    ``lease_expires`` is the lease's expiry in whole seconds since the epoch (its ``exp``).
    """
    return _INFO_LABEL + canonical_json(
        {
            "device": device,
            "lease_expires": lease_expires,
            "license": license,
            "model": model,
            "version": version,
        }
    )


def _check_kem(kem: str) -> Kem:
    for known in KEMS:
        if kem == known:
            return known
    raise KeyFormatError(f"unknown key encapsulation {kem!r}; use one of {', '.join(KEMS)}")


class EphemeralPublicKey:
    """A device's one-time HPKE public key, read from its raw bytes."""

    __slots__ = ("_key", "kem", "raw")

    def __init__(self, token: object, kem: Kem, key: _PublicKey, raw: bytes) -> None:
        if token is not _TOKEN:
            raise TypeError("use EphemeralPublicKey.from_bytes()")
        self.kem = kem
        self._key = key
        self.raw = raw

    @classmethod
    def from_bytes(cls, raw: bytes, *, kem: str) -> EphemeralPublicKey:
        """Parse ``raw`` for ``kem``; a wrong size or an invalid key is a :class:`KeyFormatError`."""
        chosen = _check_kem(kem)
        raw = bytes(raw)
        size = PUBLIC_KEY_SIZES[chosen]
        if len(raw) != size:
            raise KeyFormatError(f"a {chosen} public key has {size} bytes, not {len(raw)}")
        try:
            if chosen == "x25519":
                return cls(_TOKEN, chosen, x25519.X25519PublicKey.from_public_bytes(raw), raw)
            key = hpke.MLKEM768X25519PublicKey(
                mlkem.MLKEM768PublicKey.from_public_bytes(raw[:_MLKEM_PUBLIC]),
                x25519.X25519PublicKey.from_public_bytes(raw[_MLKEM_PUBLIC:]),
            )
        except (ValueError, UnsupportedAlgorithm) as exc:
            raise KeyFormatError(f"the {chosen} public key is not valid") from exc
        return cls(_TOKEN, chosen, key, raw)

    def __repr__(self) -> str:
        return f"EphemeralPublicKey({self.kem}, {self.raw[:8].hex()}…)"


class EphemeralPrivateKey:
    """The device's half: generated for one release, used once to open the key, then dropped."""

    __slots__ = ("_key", "_public", "kem")

    def __init__(self, token: object, kem: Kem, key: _PrivateKey, public: bytes) -> None:
        if token is not _TOKEN:
            raise TypeError("use EphemeralPrivateKey.generate()")
        self.kem = kem
        self._key = key
        self._public = public

    @classmethod
    def generate(cls, kem: str = "x25519") -> EphemeralPrivateKey:
        chosen = _check_kem(kem)
        x_key = x25519.X25519PrivateKey.generate()
        x_public = x_key.public_key().public_bytes_raw()
        if chosen == "x25519":
            return cls(_TOKEN, chosen, x_key, x_public)
        m_key = mlkem.MLKEM768PrivateKey.generate()
        public = m_key.public_key().public_bytes_raw() + x_public
        return cls(_TOKEN, chosen, hpke.MLKEM768X25519PrivateKey(m_key, x_key), public)

    def public_bytes(self) -> bytes:
        """The raw public key to send with the release request."""
        return self._public

    def __repr__(self) -> str:
        return f"EphemeralPrivateKey({self.kem}, <private>)"

    def __reduce__(self) -> NoReturn:
        raise TypeError("an EphemeralPrivateKey cannot be pickled")


def seal_data_key(key: DataKey, recipient: EphemeralPublicKey, *, info: bytes) -> bytes:
    """``enc ‖ ct``: ``key`` sealed to ``recipient`` under ``info`` (from :func:`release_info`).

    A public key that parses but cannot be used (an X25519 point of small order) is a
    :class:`KeyFormatError`.
    """
    if not isinstance(info, bytes) or not info:
        raise ValueError("the HPKE info is required and must be non-empty bytes")
    try:
        return _SUITES[recipient.kem].encrypt(key._secret_bytes(), recipient._key, info=info)
    except ValueError as exc:
        raise KeyFormatError(f"the {recipient.kem} public key cannot be used") from exc


def open_data_key(
    sealed: bytes, private: EphemeralPrivateKey, *, info: bytes, key_id: str
) -> DataKey:
    """Open what :func:`seal_data_key` sealed; any mismatch raises :class:`DecryptionError`."""
    try:
        secret = _SUITES[private.kem].decrypt(sealed, private._key, info=info)
    except Exception:
        raise DecryptionError() from None
    if len(secret) != KEY_SIZE:
        raise DecryptionError()
    return DataKey._from_secret(secret, key_id)
