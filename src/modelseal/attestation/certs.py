"""Certificate files as given: a PEM bundle, a DER certificate, or an SNP certificate table.

PEM is split into DER blocks here (not by ``cryptography.x509``), because AMD VCEKs have serial
numbers that ``cryptography`` deprecates; each block is then read by the verifier that needs it.
"""

from __future__ import annotations

import base64
import binascii
import re
import struct
import uuid
from typing import Final

from modelseal.attestation.errors import AttestationError

__all__ = ["SNP_CERT_GUIDS", "build_snp_cert_table", "parse_snp_cert_table", "split_certificates"]

_PEM = re.compile(
    rb"-----BEGIN CERTIFICATE-----\s*(.*?)\s*-----END CERTIFICATE-----", re.DOTALL | re.ASCII
)
#: GUIDs of the SEV-SNP certificate table (the configfs-tsm auxblob / extended guest request).
SNP_CERT_GUIDS: Final = {
    "vcek": uuid.UUID("63da758d-e664-4564-adc5-f4b93be8accd"),
    "vlek": uuid.UUID("a8074bc2-a25a-483e-aae6-39c045a0b8a1"),
    "ask": uuid.UUID("4ab7b379-bbac-4fe4-a02f-05aef327c782"),
    "ark": uuid.UUID("c0b406a4-a803-4952-9743-3fb6014cd0ae"),
}
_ENTRY: Final = struct.Struct("<16sII")


def split_certificates(data: bytes, *, what: str) -> list[bytes]:
    """Each certificate in ``data`` (PEM, possibly several, or one DER) as DER bytes."""
    if b"-----BEGIN" in data:
        blocks = _PEM.findall(data)
        if not blocks:
            raise AttestationError(f"{what} holds no PEM certificate")
        try:
            return [base64.b64decode(re.sub(rb"\s+", b"", b), validate=True) for b in blocks]
        except binascii.Error as exc:
            raise AttestationError(f"{what} holds a malformed PEM certificate") from exc
    if data[:1] != b"\x30":
        raise AttestationError(f"{what} is neither PEM nor a DER certificate")
    return [data]


def parse_snp_cert_table(table: bytes) -> dict[str, bytes]:
    """The certificates of an SNP certificate table by name (``vcek``, ``ask``, ``ark``, ...).

    Entries are a 16-byte GUID, a u32 offset (from the start of the table) and a u32 length;
    an all-zero entry ends the table."""
    names = {guid: name for name, guid in SNP_CERT_GUIDS.items()}
    found: dict[str, bytes] = {}
    pos = 0
    while True:
        if pos + _ENTRY.size > len(table):
            raise AttestationError("the SNP certificate table has no terminating entry")
        raw_guid, offset, length = _ENTRY.unpack_from(table, pos)
        pos += _ENTRY.size
        if raw_guid == bytes(16) and offset == 0 and length == 0:
            return found
        if offset + length > len(table) or offset < pos:
            raise AttestationError("an SNP certificate table entry points outside the table")
        name = names.get(uuid.UUID(bytes_le=raw_guid))
        if name is not None:
            found[name] = table[offset : offset + length]


def build_snp_cert_table(certs: dict[str, bytes]) -> bytes:
    """An SNP certificate table holding ``certs`` (the inverse of :func:`parse_snp_cert_table`)."""
    header = _ENTRY.size * (len(certs) + 1)
    entries, blobs = b"", b""
    for name, der in certs.items():
        entries += _ENTRY.pack(SNP_CERT_GUIDS[name].bytes_le, header + len(blobs), len(der))
        blobs += der
    return entries + bytes(_ENTRY.size) + blobs
