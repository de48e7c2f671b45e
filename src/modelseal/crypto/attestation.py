"""Signature checks for attestation evidence: raw ECDSA in Intel quotes, the AMD VCEK chain.

Parsing and policy live in :mod:`modelseal.attestation`; this module only answers "does this
signature verify" and "what does this certificate say", and raises :class:`SignatureError` or
:class:`KeyFormatError` otherwise.

- Intel DCAP quotes sign with ECDSA P-256 / SHA-256 and write signatures as ``r ‖ s`` (32 bytes
  each, big-endian) and public keys as ``x ‖ y``.
- AMD SEV-SNP reports sign with ECDSA P-384 / SHA-384 and write ``r`` and ``s`` as 72-byte
  little-endian integers. The VCEK ← ASK ← ARK chain is RSA-PSS with SHA-384, MGF1-SHA-384 and a
  48-byte salt. AMD issues VCEKs whose serial number is not positive, which RFC 5280 forbids and
  ``cryptography`` deprecates (a later release may refuse to load them), so a VCEK is read here
  with a small DER reader instead (:func:`read_vcek`); its signature is then checked over the
  exact to-be-signed bytes, so nothing the reader returns is trusted before that check.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field
from typing import Final

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils

from modelseal.crypto.errors import KeyFormatError, SignatureError
from modelseal.crypto.x509 import Certificate

__all__ = [
    "AMD_ARK_SHA256",
    "INTEL_SGX_ROOT_SHA256",
    "Vcek",
    "certificate_signed_parts",
    "read_vcek",
    "verify_p256_by_certificate",
    "verify_p256_raw",
    "verify_rsa_pss_sha384",
    "verify_snp_report_signature",
]

#: SHA-256 of the DER of the Intel SGX Root CA (valid to 2049-12-31), the anchor of every
#: SGX and TDX DCAP quote.
INTEL_SGX_ROOT_SHA256: Final = "44a0196b2b99f889b8e149e95b807a350e7424964399e885a7cbb8ccfab674d3"
#: SHA-256 of the DER of AMD's self-signed root keys (ARK), per product line. Each is the ARK of
#: the AMD KDS ``cert_chain`` for that product (valid to 2045 and later).
AMD_ARK_SHA256: Final = {
    "Milan": "69d063b45344d26a2e94e1f4210de49ef555308287d4c174445c95639a540bcd",
    "Genoa": "4c6598d19c18719c5dfd4a7d335f674e5bfe1d8f800cea2cf270c10d103db2f1",
    "Turin": "1f084161a44bb6d93778a904877d4819cafa5d05ef4193b2ded9dd9c73dd3f6a",
}
_P256_SIZE = 32
_P384_LE_SIZE = 72


def verify_p256_raw(public_xy: bytes, signature_rs: bytes, data: bytes) -> None:
    """Check an ECDSA P-256/SHA-256 ``r ‖ s`` signature under the public point ``x ‖ y``."""
    if len(public_xy) != 2 * _P256_SIZE or len(signature_rs) != 2 * _P256_SIZE:
        raise SignatureError("an ECDSA P-256 key or signature has the wrong length")
    try:
        key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b"\x04" + public_xy)
    except ValueError:
        raise SignatureError("the attestation key is not a point on P-256") from None
    _verify_ec(key, signature_rs, data, hashes.SHA256())


def verify_p256_by_certificate(cert: Certificate, signature_rs: bytes, data: bytes) -> None:
    """Check an ECDSA P-256/SHA-256 ``r ‖ s`` signature under the certificate's key."""
    key = _certificate_key(cert)
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise SignatureError(f"certificate {cert.subject!r} does not hold a P-256 key")
    if len(signature_rs) != 2 * _P256_SIZE:
        raise SignatureError("an ECDSA P-256 signature has the wrong length")
    _verify_ec(key, signature_rs, data, hashes.SHA256())


def _verify_ec(
    key: ec.EllipticCurvePublicKey, rs: bytes, data: bytes, algorithm: hashes.HashAlgorithm
) -> None:
    half = len(rs) // 2
    der = utils.encode_dss_signature(
        int.from_bytes(rs[:half], "big"), int.from_bytes(rs[half:], "big")
    )
    try:
        key.verify(der, data, ec.ECDSA(algorithm))
    except InvalidSignature:
        raise SignatureError() from None


def verify_rsa_pss_sha384(issuer: Certificate | Vcek, signature: bytes, tbs: bytes) -> None:
    """Check an AMD certificate signature: RSA-PSS, SHA-384, MGF1-SHA-384, salt 48."""
    key = issuer._public_key() if isinstance(issuer, Vcek) else _certificate_key(issuer)
    if not isinstance(key, rsa.RSAPublicKey):
        raise SignatureError("the issuer does not hold an RSA key")
    try:
        key.verify(
            signature,
            tbs,
            padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48),
            hashes.SHA384(),
        )
    except InvalidSignature:
        raise SignatureError() from None


def _certificate_key(cert: Certificate) -> object:
    try:
        return cert._cert.public_key()
    except (ValueError, UnsupportedAlgorithm) as exc:  # e.g. a point not on the curve
        raise KeyFormatError(
            f"certificate {cert.subject!r} holds an unreadable public key"
        ) from exc


def certificate_signed_parts(cert: Certificate) -> tuple[bytes, bytes]:
    """The to-be-signed bytes of ``cert`` and its signature value."""
    return cert._cert.tbs_certificate_bytes, cert._cert.signature


# --- the VCEK -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Vcek:
    """An AMD VCEK (or VLEK) read from DER: the fields a report check needs.

    ``extensions`` maps each extension's dotted OID to its ``extnValue`` contents."""

    der: bytes = field(repr=False)
    tbs: bytes = field(repr=False)
    signature_algorithm: str
    signature: bytes = field(repr=False)
    issuer_cn: str
    subject_cn: str
    not_before: dt.datetime
    not_after: dt.datetime
    spki: bytes = field(repr=False)
    extensions: dict[str, bytes] = field(repr=False)

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(self.der).hexdigest()

    def _public_key(self) -> object:
        try:
            return serialization.load_der_public_key(self.spki)
        except (ValueError, UnsupportedAlgorithm) as exc:
            raise KeyFormatError("the VCEK holds an unreadable public key") from exc


_COMMON_NAME: Final = "2.5.4.3"


def read_vcek(der: bytes) -> Vcek:
    """Read a VCEK certificate (DER) without ``cryptography.x509``; see the module docstring."""
    try:
        cert, rest = _tlv(der, 0, 0x30)
        if rest != len(der):
            raise ValueError("trailing bytes")
        tbs_start = cert.start
        tbs, pos = _tlv(der, tbs_start, 0x30)
        tbs_bytes = der[tbs_start:pos]
        alg, pos = _tlv(der, pos, 0x30)
        alg_oid, _ = _tlv(der, alg.start, 0x06)
        sig, pos = _tlv(der, pos, 0x03)
        if der[sig.start] != 0:
            raise ValueError("signature bit string has unused bits")
        signature = der[sig.start + 1 : sig.end]
        # TBSCertificate
        pos = tbs.start
        if der[pos] == 0xA0:
            _, pos = _tlv(der, pos, 0xA0)
        _, pos = _tlv(der, pos, 0x02)  # serial: any sign (that is the point of this reader)
        _, pos = _tlv(der, pos, 0x30)  # signature algorithm (repeated)
        issuer, pos = _tlv(der, pos, 0x30)
        validity, pos = _tlv(der, pos, 0x30)
        subject, pos = _tlv(der, pos, 0x30)
        spki_node, pos = _tlv(der, pos, 0x30)
        spki = der[spki_node.header : spki_node.end]
        extensions: dict[str, bytes] = {}
        while pos < tbs.end:
            node, nxt = _tlv(der, pos, None)
            if der[pos] == 0xA3:
                extensions = _extensions(der, node.start)
            pos = nxt
        begin, after = _tlv(der, validity.start, None)
        end, _ = _tlv(der, after, None)
        return Vcek(
            der=bytes(der),
            tbs=tbs_bytes,
            signature_algorithm=_oid(der[alg_oid.start : alg_oid.end]),
            signature=signature,
            issuer_cn=_common_name(der, issuer),
            subject_cn=_common_name(der, subject),
            not_before=_time(der, begin),
            not_after=_time(der, end),
            spki=spki,
            extensions=extensions,
        )
    except (ValueError, IndexError) as exc:
        raise KeyFormatError(f"the VCEK is not a readable DER certificate ({exc})") from exc


def verify_snp_report_signature(vcek: Vcek, signed: bytes, r_le: bytes, s_le: bytes) -> None:
    """Check an SEV-SNP report signature (ECDSA P-384/SHA-384, little-endian ``r`` and ``s``)."""
    key = vcek._public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp384r1":
        raise SignatureError("the VCEK does not hold a P-384 key")
    if len(r_le) != _P384_LE_SIZE or len(s_le) != _P384_LE_SIZE:
        raise SignatureError("an SEV-SNP signature component has the wrong length")
    der = utils.encode_dss_signature(int.from_bytes(r_le, "little"), int.from_bytes(s_le, "little"))
    try:
        key.verify(der, signed, ec.ECDSA(hashes.SHA384()))
    except InvalidSignature:
        raise SignatureError() from None


@dataclass(frozen=True)
class _Node:
    header: int  # offset of the tag
    start: int  # offset of the contents
    end: int  # offset after the contents


def _tlv(data: bytes, pos: int, tag: int | None) -> tuple[_Node, int]:
    if tag is not None and data[pos] != tag:
        raise ValueError(f"expected tag 0x{tag:02x} at {pos}, found 0x{data[pos]:02x}")
    length = data[pos + 1]
    start = pos + 2
    if length & 0x80:
        count = length & 0x7F
        if not 1 <= count <= 4:
            raise ValueError("unsupported length")
        length = int.from_bytes(data[start : start + count], "big")
        start += count
    end = start + length
    if end > len(data):
        raise ValueError("truncated")
    return _Node(pos, start, end), end


def _oid(raw: bytes) -> str:
    if not raw:
        raise ValueError("empty OID")
    parts = [min(raw[0] // 40, 2)]
    parts.append(raw[0] - 40 * parts[0])
    value = 0
    for byte in raw[1:]:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            parts.append(value)
            value = 0
    return ".".join(map(str, parts))


def _extensions(data: bytes, pos: int) -> dict[str, bytes]:
    seq, _ = _tlv(data, pos, 0x30)
    found: dict[str, bytes] = {}
    pos = seq.start
    while pos < seq.end:
        ext, pos = _tlv(data, pos, 0x30)
        oid, inner = _tlv(data, ext.start, 0x06)
        if data[inner] == 0x01:  # critical BOOLEAN
            _, inner = _tlv(data, inner, 0x01)
        value, _ = _tlv(data, inner, 0x04)
        found[_oid(data[oid.start : oid.end])] = data[value.start : value.end]
    return found


def _common_name(data: bytes, name: _Node) -> str:
    pos = name.start
    while pos < name.end:
        rdn, pos = _tlv(data, pos, 0x31)
        inner = rdn.start
        while inner < rdn.end:
            attr, inner = _tlv(data, inner, 0x30)
            oid, value_pos = _tlv(data, attr.start, 0x06)
            if _oid(data[oid.start : oid.end]) == _COMMON_NAME:
                value, _ = _tlv(data, value_pos, None)
                return data[value.start : value.end].decode("utf-8", "replace")
    return ""


def _time(data: bytes, node: _Node) -> dt.datetime:
    text = data[node.start : node.end].decode("ascii")
    if data[node.header] == 0x17:  # UTCTime YYMMDDHHMMSSZ
        year = int(text[:2])
        text = ("19" if year >= 50 else "20") + text
    elif data[node.header] != 0x18:  # GeneralizedTime YYYYMMDDHHMMSSZ
        raise ValueError("unexpected time type")
    if not text.endswith("Z") or len(text) != 15:
        raise ValueError("time is not in UTC seconds")
    return dt.datetime.strptime(text, "%Y%m%d%H%M%SZ").replace(tzinfo=dt.UTC)
