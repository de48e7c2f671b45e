"""Errors of the keystore."""

from __future__ import annotations

from modelseal.errors import Error

__all__ = ["KeystoreError"]


class KeystoreError(Error):
    """A keystore is missing, damaged, locked with another passphrase, or refused a change."""

    code = "KEYSTORE"
