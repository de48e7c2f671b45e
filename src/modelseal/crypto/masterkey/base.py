"""What every master-key backend shares: the protocol, the context, and the wrapped-key format.

The vault's master key wraps each model's data key (DESIGN §3.4) and never leaves its backend: a
PKCS#11 token holds it as a non-extractable object, or the software backend holds it in memory
after unsealing it with a passphrase. Both backends write the same 68-byte wrapped form, so the
vault stores one format whatever the backend::

    b"MSK1" ‖ u32 master-key version (big-endian) ‖ nonce (12) ‖ ciphertext (32) ‖ tag (16)

The cipher is AES-256-GCM with a fresh random nonce per wrap (never derived from the key or the
context). The associated data is the 8-byte header followed by the caller's context, normally
:func:`data_key_context` (model id, model version, data-key id and master-key version), so a
wrapped key moved to another model, version or key id, or relabelled with another master-key
version, fails authentication.
"""

from __future__ import annotations

import logging
import struct
from typing import Protocol

from modelseal.crypto.canonical import canonical_json
from modelseal.crypto.datakey import KEY_SIZE, DataKey
from modelseal.crypto.errors import CryptoError, DecryptionError, FormatError

__all__ = [
    "MAGIC",
    "NONCE_SIZE",
    "TAG_SIZE",
    "WRAPPED_SIZE",
    "MasterKey",
    "MasterKeyError",
    "associated_data",
    "check_version",
    "data_key_context",
    "generate_data_key",
    "header_for",
    "master_version_of",
    "split_wrapped",
]

MAGIC = b"MSK1"
NONCE_SIZE = 12
TAG_SIZE = 16
_HEADER = struct.Struct(">4sI")
WRAPPED_SIZE = _HEADER.size + NONCE_SIZE + KEY_SIZE + TAG_SIZE
_CONTEXT_LABEL = b"modelseal/v1 master-key-wrap\x00"
_MAX_VERSION = 0xFFFFFFFF

log = logging.getLogger(__name__)


class MasterKeyError(CryptoError):
    """The master key cannot be created, opened or used (wrong passphrase or PIN, missing token)."""

    code = "MASTER_KEY"


class MasterKey(Protocol):
    """A vault master key: wraps data keys, and unwraps what it wrapped.

    ``kind`` is ``"software"`` or ``"pkcs11"``; ``version`` counts rotations (rotation creates
    ``version + 1`` and rewraps every data key under it). ``close`` releases the backend's
    resources; a closed key refuses further use.
    """

    @property
    def kind(self) -> str: ...

    @property
    def version(self) -> int: ...

    def wrap(self, key: DataKey, *, context: bytes) -> bytes: ...

    def unwrap(self, blob: bytes, *, context: bytes, key_id: str) -> DataKey: ...

    def close(self) -> None: ...


def data_key_context(*, model_id: str, version: int, key_id: str, master_version: int) -> bytes:
    """The context a data key is wrapped under: a fixed label, then canonical JSON of the fields."""
    if not model_id or not key_id:
        raise ValueError("a data key context needs a model id and a key id")
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        raise ValueError(f"the model version must be a non-negative integer, not {version!r}")
    check_version(master_version)
    return _CONTEXT_LABEL + canonical_json(
        {
            "key_id": key_id,
            "master_version": master_version,
            "model_id": model_id,
            "version": version,
        }
    )


def generate_data_key() -> DataKey:
    """A fresh random data key (the same as :meth:`DataKey.generate`)."""
    return DataKey.generate()


def master_version_of(blob: bytes) -> int:
    """The master-key version a wrapped key names (unauthenticated: use it to pick the key)."""
    if len(blob) != WRAPPED_SIZE or blob[: len(MAGIC)] != MAGIC:
        raise FormatError(f"not a master-key-wrapped data key ({WRAPPED_SIZE} bytes, 'MSK1' …)")
    return int(_HEADER.unpack_from(blob)[1])


# --- for the backends -----------------------------------------------------------------------------


def check_version(version: int) -> int:
    """A master-key version is an integer from 1 to 2**32 - 1."""
    if (
        isinstance(version, bool)
        or not isinstance(version, int)
        or not 1 <= version <= _MAX_VERSION
    ):
        raise ValueError(
            f"a master key version is an integer from 1 to {_MAX_VERSION}, not {version!r}"
        )
    return version


def header_for(version: int) -> bytes:
    """The 8-byte header of a key wrapped by master-key ``version``."""
    return _HEADER.pack(MAGIC, version)


def associated_data(header: bytes, context: bytes) -> bytes:
    """What GCM authenticates besides the key: the header, then the caller's context."""
    if not isinstance(context, bytes) or not context:
        raise ValueError("the context (associated data) is required and must be non-empty bytes")
    return header + context


def split_wrapped(blob: bytes, *, version: int) -> tuple[bytes, bytes, bytes]:
    """``(header, nonce, ciphertext ‖ tag)`` of a blob for master-key ``version``.

    Anything else (wrong length, magic or version) is refused with the fixed
    :class:`DecryptionError`; the reason goes to the debug log only.
    """
    if len(blob) != WRAPPED_SIZE:
        log.debug("wrapped data key refused: %d bytes, expected %d", len(blob), WRAPPED_SIZE)
        raise DecryptionError()
    magic, blob_version = _HEADER.unpack_from(blob)
    if magic != MAGIC or blob_version != version:
        log.debug("wrapped data key refused: header %r, master key version %d", blob[:8], version)
        raise DecryptionError()
    start = _HEADER.size
    return blob[:start], blob[start : start + NONCE_SIZE], blob[start + NONCE_SIZE :]
