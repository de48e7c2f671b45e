"""The model data key: an opaque handle around 32 secret bytes.

There is no public constructor and no way to pickle it; ``repr`` shows only the key id. The bytes
leave the handle only through the functions of this package that need them (the streaming AEAD,
key wrapping, and the owner's key file).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import secrets
import uuid
from typing import Any, NoReturn

from modelseal.crypto.canonical import canonical_json
from modelseal.crypto.errors import KeyFormatError

__all__ = ["KEY_SIZE", "DataKey", "dump_data_key", "load_data_key"]

KEY_SIZE = 32
_TOKEN = object()
_FILE_TYPE = "modelseal.data-key"


class DataKey:
    """A 256-bit model data key with a public, random key id."""

    __slots__ = ("_secret", "key_id")

    def __init__(self, token: object, secret: bytes, key_id: str) -> None:
        if token is not _TOKEN:
            raise TypeError(
                "use DataKey.generate() or load_data_key(); DataKey has no public constructor"
            )
        if len(secret) != KEY_SIZE:
            raise KeyFormatError(f"a data key has {KEY_SIZE} bytes, not {len(secret)}")
        self._secret = bytes(secret)
        self.key_id = key_id

    @classmethod
    def generate(cls) -> DataKey:
        """A fresh random key (from the OS CSPRNG) with a fresh key id."""
        return cls(_TOKEN, secrets.token_bytes(KEY_SIZE), f"dk-{uuid.uuid4()}")

    @classmethod
    def _from_secret(cls, secret: bytes, key_id: str) -> DataKey:
        return cls(_TOKEN, secret, key_id)

    def _secret_bytes(self) -> bytes:
        return self._secret

    def __repr__(self) -> str:
        return f"DataKey(key_id={self.key_id!r}, secret=<hidden>)"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DataKey):
            return NotImplemented
        return self.key_id == other.key_id and hmac.compare_digest(self._secret, other._secret)

    def __hash__(self) -> int:
        return hash(self.key_id)

    def __reduce__(self) -> NoReturn:
        raise TypeError("a DataKey cannot be pickled")

    def __copy__(self) -> DataKey:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> DataKey:
        return self


def dump_data_key(key: DataKey) -> bytes:
    """The owner's key file: canonical JSON with the key id and the key in base64."""
    return canonical_json(
        {
            "type": _FILE_TYPE,
            "version": 1,
            "key_id": key.key_id,
            "key": base64.b64encode(key._secret_bytes()).decode("ascii"),
        }
    )


def load_data_key(data: bytes) -> DataKey:
    """Read a key file written by :func:`dump_data_key`."""
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise KeyFormatError("not a modelseal data key file (it is not JSON)") from exc
    if not isinstance(doc, dict) or doc.get("type") != _FILE_TYPE:
        raise KeyFormatError(f"not a modelseal data key file (type is not {_FILE_TYPE!r})")
    if doc.get("version") != 1:
        raise KeyFormatError(f"unsupported data key file version {doc.get('version')!r}")
    key_id, encoded = doc.get("key_id"), doc.get("key")
    if not isinstance(key_id, str) or not isinstance(encoded, str):
        raise KeyFormatError("data key file lacks 'key_id' or 'key'")
    try:
        secret = base64.b64decode(encoded, validate=True)
    except binascii.Error as exc:
        raise KeyFormatError("data key file: 'key' is not base64") from exc
    return DataKey._from_secret(secret, key_id)
