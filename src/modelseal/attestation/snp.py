"""Verify AMD SEV-SNP attestation reports: VCEK ← ASK ← ARK, the report signature, the policy.

The report is 1184 bytes, little-endian (AMD SEV-SNP ABI, ``ATTESTATION_REPORT``): version 0x00,
guest SVN 0x04, guest policy 0x08 (bit 19: debug allowed), family id 0x10, image id 0x20,
VMPL 0x30, signature algorithm 0x34 (1 = ECDSA P-384 with SHA-384), current TCB 0x38,
platform info 0x40, report data 0x50 (64), measurement 0x90 (48), host data 0xC0 (32),
ID key digest 0xE0, author key digest 0x110, report id 0x140, reported TCB 0x180, chip id 0x1A0
(64); the signature at 0x2A0 (``r`` and ``s``, 72 bytes each, little-endian) covers [0, 0x2A0).

Evidence of type ``sev-snp`` is the report, optionally followed by the SNP certificate table
(the configfs-tsm ``auxblob``). Certificates may also come from the caller (``certs``).

Claims: ``format``, ``signature_algorithm``, ``vcek_chain`` (ARK pinned by SHA-256, RSA-PSS
signatures, validity at ``now``), ``report_signature``, ``vcek_match`` (chip id and reported TCB
equal the VCEK's extensions), ``min_tcb`` (when the policy sets one), ``debug``, ``measurement``,
``report_data``.
"""

from __future__ import annotations

import datetime as dt
import struct
from collections.abc import Sequence
from typing import Final

from modelseal.attestation._claims import (
    check_debug,
    check_measurement,
    check_report_data,
)
from modelseal.attestation.certs import parse_snp_cert_table, split_certificates
from modelseal.attestation.errors import AttestationError
from modelseal.attestation.policy import SNP_TCB_PARTS, AttestationPolicy
from modelseal.attestation.verdict import Checks, Verdict
from modelseal.crypto import Certificate, CryptoError, load_certificates
from modelseal.crypto.attestation import (
    AMD_ARK_SHA256,
    Vcek,
    certificate_signed_parts,
    read_vcek,
    verify_rsa_pss_sha384,
    verify_snp_report_signature,
)
from modelseal.licensing import format_datetime

__all__ = ["REPORT_SIZE", "SnpReport", "verify_snp_report"]

REPORT_SIZE: Final = 0x4A0
_SIGNED: Final = 0x2A0
_DEBUG_BIT: Final = 1 << 19
_RSA_PSS: Final = "1.2.840.113549.1.1.10"
_AMD: Final = "1.3.6.1.4.1.3704.1."
_SPL_OIDS: Final = {"bootloader": "3.1", "tee": "3.2", "snp": "3.3", "microcode": "3.8"}
# byte of reported_tcb holding each part: Milan and Genoa; Turin adds an FMC byte first
_TCB_BYTES: Final = {
    "Milan": {"bootloader": 0, "tee": 1, "snp": 6, "microcode": 7},
    "Genoa": {"bootloader": 0, "tee": 1, "snp": 6, "microcode": 7},
    "Turin": {"bootloader": 1, "tee": 2, "snp": 3, "microcode": 7},
}


class SnpReport:
    """A parsed report (fields by the published layout)."""

    def __init__(self, data: bytes) -> None:
        if len(data) != REPORT_SIZE:
            raise AttestationError(f"an SEV-SNP report is {REPORT_SIZE} bytes, not {len(data)}")
        self.raw = bytes(data)
        self.version, self.guest_svn, self.policy = struct.unpack_from("<IIQ", data, 0)
        self.vmpl, self.signature_algorithm = struct.unpack_from("<II", data, 0x30)
        if not 2 <= self.version <= 5:
            raise AttestationError(f"SEV-SNP report version {self.version} is not supported")

    def field(self, offset: int, size: int) -> bytes:
        return self.raw[offset : offset + size]

    @property
    def report_data(self) -> bytes:
        return self.field(0x50, 64)

    @property
    def measurement(self) -> str:
        return self.field(0x90, 48).hex()

    @property
    def chip_id(self) -> bytes:
        return self.field(0x1A0, 64)

    @property
    def reported_tcb(self) -> bytes:
        return self.field(0x180, 8)

    def tcb_parts(self, product: str) -> dict[str, int]:
        tcb = self.reported_tcb
        return {part: tcb[i] for part, i in _TCB_BYTES.get(product, _TCB_BYTES["Milan"]).items()}

    def measurements(self, product: str) -> dict[str, str | int]:
        parts = self.tcb_parts(product)
        return {
            "report_version": self.version,
            "measurement": self.measurement,
            "policy": f"0x{self.policy:x}",
            "guest_svn": self.guest_svn,
            "vmpl": self.vmpl,
            "host_data": self.field(0xC0, 32).hex(),
            "family_id": self.field(0x10, 16).hex(),
            "image_id": self.field(0x20, 16).hex(),
            "id_key_digest": self.field(0xE0, 48).hex(),
            "reported_tcb": self.reported_tcb.hex(),
            "reported_tcb_parts": " ".join(f"{k}={v}" for k, v in parts.items()),
            "chip_id": self.chip_id.hex(),
            "report_data": self.report_data.hex(),
        }


def verify_snp_report(
    evidence: bytes,
    *,
    report_data: bytes | None,
    policy: AttestationPolicy,
    now: dt.datetime,
    certs: Sequence[bytes] = (),
) -> Verdict:
    """Verify ``sev-snp`` evidence (report ‖ optional certificate table) at ``now``."""
    checks = Checks()
    try:
        report = SnpReport(evidence[:REPORT_SIZE])
        table = parse_snp_cert_table(evidence[REPORT_SIZE:]) if len(evidence) > REPORT_SIZE else {}
    except AttestationError as exc:
        checks.fail("format", f"format: the SEV-SNP evidence is malformed: {exc.message}")
        return Verdict(kind="sev-snp", checks=tuple(checks.items))
    checks.ok("format", f"format: SEV-SNP report version {report.version}")
    if report.signature_algorithm == 1:
        checks.ok("signature_algorithm", "signature_algorithm: ECDSA P-384 with SHA-384")
    else:
        checks.fail(
            "signature_algorithm",
            f"signature_algorithm: {report.signature_algorithm} is not ECDSA P-384 (1)",
        )
    vcek, product = _check_chain(checks, table, certs, now)
    if vcek is None:
        checks.fail("report_signature", "report_signature: no trusted VCEK to check it with")
        checks.fail("vcek_match", "vcek_match: no VCEK to compare the report with")
    else:
        try:
            verify_snp_report_signature(
                vcek,
                report.raw[:_SIGNED],
                report.raw[_SIGNED : _SIGNED + 72],
                report.raw[_SIGNED + 72 : _SIGNED + 144],
            )
            checks.ok("report_signature", "report_signature: the VCEK signs the report")
        except CryptoError:
            checks.fail(
                "report_signature",
                "report_signature: the report does not match the VCEK's signature "
                "(tampered, or from another chip or TCB)",
            )
        _check_vcek_match(checks, report, vcek, product)
    parts = report.tcb_parts(product)
    if policy.snp_min_tcb:
        low = [f"{k} {parts[k]} < {v}" for k, v in policy.snp_min_tcb.items() if parts[k] < v]
        if low:
            checks.fail(
                "min_tcb", f"min_tcb: the reported TCB is below the policy: {', '.join(low)}"
            )
        else:
            checks.ok("min_tcb", "min_tcb: the reported TCB meets the policy's minimum")
    check_debug(checks, policy, bool(report.policy & _DEBUG_BIT), "guest policy bit 19 (DEBUG)")
    check_measurement(checks, policy, (report.measurement,), "MEASUREMENT")
    check_report_data(checks, report.report_data, report_data)
    return Verdict(
        kind="sev-snp",
        measurements=report.measurements(product),
        candidates=(report.measurement,),
        tcb_status="reported TCB " + " ".join(f"{k}={parts[k]}" for k in SNP_TCB_PARTS),
        checks=tuple(checks.items),
    )


def _check_chain(
    checks: Checks, table: dict[str, bytes], extra: Sequence[bytes], now: dt.datetime
) -> tuple[Vcek | None, str]:
    vcek: Vcek | None = None
    others: list[Certificate] = []
    try:
        blobs = [v for k, v in table.items() if k in ("vcek", "vlek", "ask", "ark")]
        for data in extra:
            blobs.extend(split_certificates(data, what="a certificate file"))
        for der in blobs:
            candidate = _as_vcek(der)
            if candidate is not None:
                vcek = vcek or candidate
            else:
                others.extend(load_certificates(der, what="an AMD certificate"))
    except (AttestationError, CryptoError) as exc:
        checks.fail("vcek_chain", f"vcek_chain: a certificate is unreadable: {exc.message}")
        return None, "Milan"
    if vcek is None:
        checks.fail("vcek_chain", "vcek_chain: no VCEK was given (pass it with --certs)")
        return None, "Milan"
    product = vcek.issuer_cn.removeprefix("SEV-")
    try:
        ark = next((c for c in others if c.fingerprint == AMD_ARK_SHA256.get(product)), None)
        if ark is None:
            raise CryptoError(
                f"no pinned AMD ARK for {product!r} was given (pass the ASK/ARK chain)"
            )
        ask = next((c for c in others if c.subject.startswith(f"CN=SEV-{product},")), None)
        if ask is None:
            raise CryptoError(f"no ASK SEV-{product} was given")
        verify_rsa_pss_sha384(ark, *reversed(certificate_signed_parts(ark)))
        verify_rsa_pss_sha384(ark, *reversed(certificate_signed_parts(ask)))
        if vcek.signature_algorithm != _RSA_PSS:
            raise CryptoError("the VCEK is not signed with RSA-PSS")
        verify_rsa_pss_sha384(ask, vcek.signature, vcek.tbs)
        for name, begin, end in (
            ("the ARK", ark.not_before, ark.not_after),
            ("the ASK", ask.not_before, ask.not_after),
            ("the VCEK", vcek.not_before, vcek.not_after),
        ):
            if not begin <= now <= end:
                raise CryptoError(
                    f"{name} is not valid at {format_datetime(now)} (valid {format_datetime(begin)} to "
                    f"{format_datetime(end)})"
                )
    except CryptoError as exc:
        detail = (
            "a signature does not verify" if exc.message.startswith("signature") else exc.message
        )
        checks.fail("vcek_chain", f"vcek_chain: VCEK ← ASK ← ARK fails: {detail}")
        return None, product
    checks.ok(
        "vcek_chain",
        f"vcek_chain: VCEK ← SEV-{product} ← ARK-{product} (pinned), valid at {format_datetime(now)}",
    )
    return vcek, product


def _as_vcek(der: bytes) -> Vcek | None:
    try:
        vcek = read_vcek(der)
    except CryptoError:
        return None
    return vcek if vcek.subject_cn in ("SEV-VCEK", "SEV-VLEK") else None


def _check_vcek_match(checks: Checks, report: SnpReport, vcek: Vcek, product: str) -> None:
    problems = []
    hwid = vcek.extensions.get(_AMD + "4")
    if vcek.subject_cn == "SEV-VCEK" and hwid != report.chip_id:
        problems.append("the chip id differs from the VCEK's hwID")
    parts = report.tcb_parts(product)
    for part, suffix in _SPL_OIDS.items():
        value = _der_int(vcek.extensions.get(_AMD + suffix))
        if value != parts[part]:
            problems.append(f"{part} SPL {parts[part]} differs from the VCEK's {value}")
    if problems:
        checks.fail(
            "vcek_match",
            f"vcek_match: the VCEK was issued for another platform: {'; '.join(problems)}",
        )
    else:
        checks.ok("vcek_match", "vcek_match: chip id and reported TCB match the VCEK")


def _der_int(value: bytes | None) -> int | None:
    if not value or value[0] != 0x02 or len(value) < 3 or value[1] != len(value) - 2:
        return None
    return int.from_bytes(value[2:], "big", signed=True)
