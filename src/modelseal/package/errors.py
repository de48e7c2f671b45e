"""Errors of sealed packages. Each names the package file (and segment) it is about."""

from __future__ import annotations

from modelseal.errors import Error

__all__ = ["IntegrityError", "PackageError", "TrustError"]


class PackageError(Error):
    """A sealed package cannot be read, written or used as asked."""

    code = "PACKAGE"


class IntegrityError(PackageError):
    """The package was changed after sealing: tampered, truncated, extended, swapped or re-signed."""

    code = "INTEGRITY"


class TrustError(PackageError):
    """The signature is valid but the signer is not trusted (or its certificate is not valid)."""

    code = "UNTRUSTED_SIGNER"
