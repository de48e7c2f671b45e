"""Errors of the crypto core.

Authentication failures carry a fixed message (no detail that could help an attacker, never key
material); callers that know the file and segment add them in their own error.
"""

from __future__ import annotations

from modelseal.errors import Error

__all__ = ["CryptoError", "DecryptionError", "FormatError", "KeyFormatError", "SignatureError"]


class CryptoError(Error):
    """A cryptographic operation failed."""

    code = "CRYPTO"


class DecryptionError(CryptoError):
    """Ciphertext failed authentication: tampered, truncated, reordered or the wrong key."""

    code = "DECRYPTION_FAILED"

    def __init__(self, *, segment: int | None = None) -> None:
        where = f" (segment {segment})" if segment is not None else ""
        super().__init__(
            "ciphertext failed authentication"
            + where
            + ": it was tampered with, truncated, reordered, or the key or context is wrong"
        )
        self.segment = segment


class FormatError(CryptoError):
    """Bytes do not have the shape the format requires (before any authentication)."""

    code = "BAD_FORMAT"


class SignatureError(CryptoError):
    """A signature did not verify."""

    code = "BAD_SIGNATURE"

    def __init__(self, message: str = "signature verification failed") -> None:
        super().__init__(message)


class KeyFormatError(CryptoError):
    """A key or certificate file could not be read."""

    code = "BAD_KEY"
