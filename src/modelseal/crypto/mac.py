"""Keyed digests (HMAC-SHA256) for values that must be comparable but not readable.

The vault's audit log records nonces, tokens and device public keys this way: equal values give
equal digests, so an investigator can match entries, but a reader of the log learns nothing it
could replay. The key is derived for one purpose (``label``) from a data key, so the same data key
never serves two purposes.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Final, NoReturn

from modelseal.crypto.datakey import DataKey

__all__ = ["MacKey"]

_LABEL: Final = b"modelseal/v1 mac\x00"
_TOKEN = object()


class MacKey:
    """An HMAC-SHA256 key for one purpose. No public constructor, no pickling, no secret in repr."""

    __slots__ = ("_key", "label")

    def __init__(self, token: object, key: bytes, label: str) -> None:
        if token is not _TOKEN:
            raise TypeError("use MacKey.derive()")
        self._key = key
        self.label = label

    @classmethod
    def derive(cls, key: DataKey, *, label: str) -> MacKey:
        """The key for ``label``: HMAC-SHA256(data key, "modelseal/v1 mac" 0x00 label)."""
        if not isinstance(label, str) or not label:
            raise ValueError("a MAC key needs a non-empty label")
        derived = hmac.digest(key._secret_bytes(), _LABEL + label.encode("utf-8"), hashlib.sha256)
        return cls(_TOKEN, derived, label)

    def hexdigest(self, data: bytes) -> str:
        """Lower-case hex HMAC-SHA256 of ``data``."""
        return hmac.digest(self._key, data, hashlib.sha256).hex()

    def __repr__(self) -> str:
        return f"MacKey({self.label!r}, <secret>)"

    def __reduce__(self) -> NoReturn:
        raise TypeError("a MacKey cannot be pickled")
