"""Intel DCAP quotes read by their published layout: SGX quote v3, TDX quote v4 and v5.

All integers are little-endian. A quote is a 48-byte header, a report body (SGX enclave report,
384 bytes; TDX TD report 1.0, 584 bytes; TDX 1.5, 648 bytes — quote v5 puts a u16 body type and a
u32 body size before it), a u32 signature-data length and the signature data:

- v3: ECDSA signature (64) ‖ attestation key (64) ‖ QE report (384) ‖ QE report signature (64) ‖
  QE authentication data (u16 size + bytes) ‖ certification data (u16 type, u32 size, bytes);
- v4/v5: signature (64) ‖ attestation key (64) ‖ certification data of type 6, whose bytes are
  QE report ‖ QE report signature ‖ QE authentication data ‖ certification data as in v3.

Certification data type 5 is the PCK certificate chain in PEM (leaf first).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

from modelseal.attestation.errors import AttestationError

__all__ = ["IntelQuote", "parse_intel_quote"]

HEADER_SIZE: Final = 48
SGX_BODY: Final = 384
TDX10_BODY: Final = 584
TDX15_BODY: Final = 648
TEE_SGX: Final = 0x00000000
TEE_TDX: Final = 0x00000081
_QE_REPORT: Final = 384
_CERT_PCK_CHAIN: Final = 5
_CERT_QE_REPORT: Final = 6
_V5_BODY_SIZES: Final = {1: SGX_BODY, 2: TDX10_BODY, 3: TDX15_BODY}


@dataclass(frozen=True)
class IntelQuote:
    """The parts of a quote a verifier needs; ``signed`` is exactly what the attestation key
    signed (header and body, with v5's type and size)."""

    version: int
    tee_type: int
    attestation_key_type: int
    body: bytes
    signed: bytes
    signature: bytes
    attestation_key: bytes
    qe_report: bytes
    qe_report_signature: bytes
    qe_auth_data: bytes
    pck_chain_pem: bytes

    @property
    def is_tdx(self) -> bool:
        return self.tee_type == TEE_TDX

    @property
    def qe_report_data(self) -> bytes:
        return self.qe_report[320:384]

    def measurements(self) -> dict[str, str | int]:
        b = self.body
        if not self.is_tdx:
            return {
                "quote_version": self.version,
                "mrenclave": b[64:96].hex(),
                "mrsigner": b[128:160].hex(),
                "isv_prod_id": int.from_bytes(b[256:258], "little"),
                "isv_svn": int.from_bytes(b[258:260], "little"),
                "attributes": b[48:64].hex(),
                "cpu_svn": b[0:16].hex(),
                "report_data": b[320:384].hex(),
            }
        found: dict[str, str | int] = {
            "quote_version": self.version,
            "mrtd": b[136:184].hex(),
            "rtmr0": b[328:376].hex(),
            "rtmr1": b[376:424].hex(),
            "rtmr2": b[424:472].hex(),
            "rtmr3": b[472:520].hex(),
            "td_attributes": b[120:128].hex(),
            "xfam": b[128:136].hex(),
            "mrconfigid": b[184:232].hex(),
            "mrowner": b[232:280].hex(),
            "mrownerconfig": b[280:328].hex(),
            "mrseam": b[16:64].hex(),
            "tee_tcb_svn": b[0:16].hex(),
            "report_data": b[520:584].hex(),
        }
        if len(b) == TDX15_BODY:
            found["tee_tcb_svn2"] = b[584:600].hex()
            found["mrservicetd"] = b[600:648].hex()
        return found

    @property
    def report_data(self) -> bytes:
        return self.body[520:584] if self.is_tdx else self.body[320:384]

    @property
    def debug(self) -> bool:
        if self.is_tdx:
            return bool(self.body[120] & 0x01)  # TD_ATTRIBUTES bit 0: DEBUG
        return bool(self.body[48] & 0x02)  # ATTRIBUTES.FLAGS bit 1: DEBUG

    def candidates(self) -> tuple[str, ...]:
        """Values matched against allowed measurements: SGX MRENCLAVE and the signer identity
        (MRSIGNER ‖ ISVPRODID u16le ‖ ISVSVN u16le); TDX MRTD."""
        b = self.body
        if self.is_tdx:
            return (b[136:184].hex(),)
        return (b[64:96].hex(), (b[128:160] + b[256:260]).hex())


class _Reader:
    def __init__(self, data: bytes, pos: int, end: int, what: str) -> None:
        self.data, self.pos, self.end, self.what = data, pos, end, what

    def take(self, size: int) -> bytes:
        if size < 0 or self.pos + size > self.end:
            raise AttestationError(f"{self.what} is truncated")
        out = self.data[self.pos : self.pos + size]
        self.pos += size
        return out

    def u16(self) -> int:
        return int(struct.unpack("<H", self.take(2))[0])

    def u32(self) -> int:
        return int(struct.unpack("<I", self.take(4))[0])


def parse_intel_quote(data: bytes) -> IntelQuote:
    """Parse an SGX v3 or TDX v4/v5 quote; :class:`AttestationError` says what is malformed."""
    data = bytes(data)
    r = _Reader(data, 0, len(data), "the quote")
    version, key_type, tee_type = struct.unpack("<HHI", r.take(8))
    r.take(HEADER_SIZE - 8)
    if version not in (3, 4, 5):
        raise AttestationError(f"quote version {version} is not supported (3, 4 or 5)")
    if key_type != 2:
        raise AttestationError(f"attestation key type {key_type} is not ECDSA P-256 (2)")
    if tee_type not in (TEE_SGX, TEE_TDX):
        raise AttestationError(f"TEE type 0x{tee_type:x} is neither SGX (0) nor TDX (0x81)")
    if version == 5:
        body_type, body_size = r.u16(), r.u32()
        if _V5_BODY_SIZES.get(body_type) != body_size:
            raise AttestationError(
                f"quote v5 body type {body_type} of {body_size} bytes is unknown"
            )
    elif version == 3:
        if tee_type != TEE_SGX:
            raise AttestationError("quote v3 is an SGX quote, but its TEE type is TDX")
        body_size = SGX_BODY
    else:
        body_size = TDX10_BODY if tee_type == TEE_TDX else SGX_BODY
    if (tee_type == TEE_TDX) != (body_size != SGX_BODY):
        raise AttestationError("the quote's TEE type does not match its report body")
    body = r.take(body_size)
    signed = data[: r.pos]
    sig_len = r.u32()
    s = _Reader(data, r.pos, r.pos + sig_len, "the quote's signature data")
    if s.end > len(data):
        raise AttestationError("the quote's signature data is truncated")
    signature, key = s.take(64), s.take(64)
    if version == 3:
        inner = s
    else:
        cert_type, cert_size = s.u16(), s.u32()
        if cert_type != _CERT_QE_REPORT:
            raise AttestationError(f"certification data type {cert_type} is not the QE report (6)")
        inner = _Reader(data, s.pos, s.pos + cert_size, "the QE report certification data")
        s.take(cert_size)
    qe_report, qe_sig = inner.take(_QE_REPORT), inner.take(64)
    auth = inner.take(inner.u16())
    cert_type, cert_size = inner.u16(), inner.u32()
    if cert_type != _CERT_PCK_CHAIN:
        raise AttestationError(
            f"certification data type {cert_type} is not the PCK certificate chain (5); "
            "fetch the PCK certificate from a collateral service"
        )
    chain = inner.take(cert_size).rstrip(b"\x00")
    return IntelQuote(
        version=version,
        tee_type=tee_type,
        attestation_key_type=key_type,
        body=body,
        signed=signed,
        signature=signature,
        attestation_key=key,
        qe_report=qe_report,
        qe_report_signature=qe_sig,
        qe_auth_data=auth,
        pck_chain_pem=chain,
    )
