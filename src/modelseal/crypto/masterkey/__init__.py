"""The vault's master key, in a PKCS#11 token or sealed by a passphrase (DESIGN §3.4).

Both backends satisfy :class:`MasterKey` and write the same wrapped-key format, so the vault stores
wrapped data keys the same way whatever holds the master key. :class:`Pkcs11MasterKey` is imported
on first use, so the software backend does not load python-pkcs11.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from modelseal.crypto.masterkey.base import (
    WRAPPED_SIZE,
    MasterKey,
    MasterKeyError,
    data_key_context,
    generate_data_key,
    master_version_of,
)
from modelseal.crypto.masterkey.ring import MasterKeyRing
from modelseal.crypto.masterkey.software import DEFAULT_SCRYPT_N, SoftwareMasterKey

if TYPE_CHECKING:
    from modelseal.crypto.masterkey.pkcs11 import Pkcs11MasterKey

__all__ = [
    "DEFAULT_SCRYPT_N",
    "WRAPPED_SIZE",
    "MasterKey",
    "MasterKeyError",
    "MasterKeyRing",
    "Pkcs11MasterKey",
    "SoftwareMasterKey",
    "data_key_context",
    "generate_data_key",
    "master_version_of",
]


def __getattr__(name: str) -> object:
    if name == "Pkcs11MasterKey":
        from modelseal.crypto.masterkey.pkcs11 import Pkcs11MasterKey

        return Pkcs11MasterKey
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
