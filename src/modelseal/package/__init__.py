"""Sealed model packages: seal, verify, inspect and open (see docs/format.md).

Importing this package pulls in no serving, storage or ML framework code.
"""

from modelseal.package.errors import IntegrityError, PackageError, TrustError
from modelseal.package.manifest import FileEntry, Manifest, ModelInfo, WrappedKey
from modelseal.package.seal import SealResult, seal
from modelseal.package.sealed import FileReader, SealedPackage, VerifyReport, verify_package
from modelseal.package.signature import Signer
from modelseal.package.unseal import open_package

__all__ = [
    "FileEntry",
    "FileReader",
    "IntegrityError",
    "Manifest",
    "ModelInfo",
    "PackageError",
    "SealResult",
    "SealedPackage",
    "Signer",
    "TrustError",
    "VerifyReport",
    "WrappedKey",
    "open_package",
    "seal",
    "verify_package",
]
