"""The manifest signature (``manifest.sig``): algorithm, signature and the signer's chain.

The signature covers the exact bytes of ``manifest.json`` (already canonical), so
``openssl pkeyutl -verify -rawin`` (Ed25519) or ``openssl dgst -verify`` (ECDSA) can check it.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from modelseal.crypto import (
    Certificate,
    FormatError,
    KeyFormatError,
    SignatureError,
    SigningKey,
    canonical_json,
    load_certificates,
    parse_canonical_json,
    verify_chain,
)
from modelseal.package.errors import IntegrityError, PackageError, TrustError
from modelseal.package.manifest import MANIFEST_NAME, SIGNATURE_NAME

__all__ = ["Signer", "check_trust", "sign_manifest", "verify_manifest_signature"]

_TYPE = "modelseal.signature"


@dataclass(frozen=True)
class Signer:
    """Who signed: the leaf certificate first, then any chain certificates."""

    algorithm: str
    chain: tuple[Certificate, ...]

    @property
    def certificate(self) -> Certificate:
        return self.chain[0]


def sign_manifest(manifest: bytes, key: SigningKey, chain: Sequence[Certificate]) -> bytes:
    """The ``manifest.sig`` bytes for ``manifest`` signed by ``key`` (``chain[0]`` certifies it)."""
    if not chain or chain[0].verifying_key() != key.verifying_key():
        raise PackageError("the signing certificate does not belong to the signing key")
    return canonical_json(
        {
            "type": _TYPE,
            "version": 1,
            "algorithm": key.algorithm,
            "signature": base64.b64encode(key.sign(manifest)).decode("ascii"),
            "certificates": [base64.b64encode(cert.der()).decode("ascii") for cert in chain],
        }
    )


def verify_manifest_signature(manifest: bytes, envelope: bytes) -> Signer:
    """Check that ``envelope`` signs ``manifest`` with the key of its first certificate."""
    try:
        doc = parse_canonical_json(envelope, what=SIGNATURE_NAME)
    except FormatError as exc:
        raise IntegrityError(exc.message) from exc
    if not isinstance(doc, dict) or doc.get("type") != _TYPE or doc.get("version") != 1:
        raise IntegrityError(f"{SIGNATURE_NAME} is not a modelseal signature (type/version)")
    algorithm, signature, certs = (
        doc.get("algorithm"),
        doc.get("signature"),
        doc.get("certificates"),
    )
    if (
        not isinstance(algorithm, str)
        or not isinstance(signature, str)
        or not isinstance(certs, list)
        or not certs
    ):
        raise IntegrityError(f"{SIGNATURE_NAME} lacks its algorithm, signature or certificates")
    try:
        raw = base64.b64decode(signature, validate=True)
        chain = tuple(
            load_certificates(base64.b64decode(c, validate=True), what=SIGNATURE_NAME)[0]
            for c in certs
        )
        key = chain[0].verifying_key()
    except (binascii.Error, TypeError, KeyFormatError) as exc:
        raise IntegrityError(f"{SIGNATURE_NAME} holds malformed base64 or certificates") from exc
    if key.algorithm != algorithm:
        raise IntegrityError(
            f"{SIGNATURE_NAME} says {algorithm} but its certificate holds a {key.algorithm} key"
        )
    try:
        key.verify(raw, manifest)
    except SignatureError:
        raise IntegrityError(
            f"{MANIFEST_NAME} does not match its signature: the manifest or {SIGNATURE_NAME} was changed "
            "after sealing"
        ) from None
    return Signer(algorithm, chain)


def check_trust(
    signer: Signer, anchors: Sequence[Certificate], *, now: dt.datetime
) -> list[Certificate]:
    """Check the signer chains to one of ``anchors`` (a CA or the owner's own certificate)."""
    try:
        return verify_chain(signer.certificate, signer.chain[1:], anchors, now=now)
    except SignatureError as exc:
        raise TrustError(
            f"the package is signed by {signer.certificate.subject!r} "
            f"(SHA-256 {signer.certificate.fingerprint[:16]}…), which is not trusted: {exc.message}",
            hint="pass the owner's certificate or its CA with --trust",
        ) from exc
