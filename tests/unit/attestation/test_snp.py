"""SEV-SNP reports: the samples, VCEK ← ASK ← ARK, tampering, debug, binding, the VCEK reader."""

from __future__ import annotations

import datetime as dt
import warnings

import pytest
from cryptography import x509
from cryptography.utils import CryptographyDeprecationWarning

from modelseal.attestation import AttestationPolicy, verify_evidence
from modelseal.attestation.certs import build_snp_cert_table, parse_snp_cert_table
from modelseal.crypto.attestation import read_vcek

from .conftest import SNP_NOW, snp_report, vector

INSPECT = AttestationPolicy.inspection()
SAMPLES = [
    ("go-sev-guest/attestation.bin", "go-sev-guest/vcek.testcer"),
    ("virtee-sev/report_milan.hex", "virtee-sev/vcek_milan.der"),
    ("trustee/test-report.bin", "trustee/test-vcek.der"),
]
GO_SEV_MEASUREMENT = (
    "b07af9620f3b839b47996422ddec6058338951d984e312115131ea82705eaf5b"
    "6bdf8a9ece31a5a608eb0cf2e4872b01"
)
VIRTEE_MEASUREMENT = (
    "7a1e5c266c0108dbc9bb94fa926951320940915d0aafb42464bd88b579ea158d"
    "3e1a0dc39b2c60bd95b9c480cd81841f"
)


def verify(report: bytes, vcek: str, milan: bytes, **kw: object) -> object:
    return verify_evidence(
        "sev-snp",
        report,
        report_data=kw.pop("report_data", None),  # type: ignore[arg-type]
        policy=kw.pop("policy", INSPECT),  # type: ignore[arg-type]
        now=kw.pop("now", SNP_NOW),  # type: ignore[arg-type]
        certs=[vector(vcek), milan],
    )


def outcomes(verdict: object) -> dict[str, str]:
    return {c.claim: c.outcome for c in verdict.checks}  # type: ignore[attr-defined]


@pytest.mark.parametrize(("report", "vcek"), SAMPLES)
def test_every_sample_verifies_to_the_pinned_ark(
    report: str, vcek: str, milan_chain: bytes
) -> None:
    result = outcomes(verify(snp_report(report), vcek, milan_chain))
    for claim in ("format", "signature_algorithm", "vcek_chain", "report_signature", "vcek_match"):
        assert result[claim] == "pass", claim


def test_go_sev_guest_sample_is_refused_for_debug(milan_chain: bytes) -> None:
    verdict = verify(
        snp_report("go-sev-guest/attestation.bin"), "go-sev-guest/vcek.testcer", milan_chain
    )
    assert [c.claim for c in verdict.failures] == ["debug"]  # type: ignore[attr-defined]
    m = verdict.measurements  # type: ignore[attr-defined]
    assert m["measurement"] == GO_SEV_MEASUREMENT and m["policy"] == "0xb0000"
    assert m["reported_tcb_parts"] == "bootloader=2 tee=0 snp=5 microcode=68"
    assert str(m["chip_id"]).startswith("3ac3fe21e13fb099")
    assert bytes.fromhex(str(m["report_data"])) == bytes.fromhex("0102030405").ljust(64, b"\0")
    assert "policy forbids debug" in verdict.failure_sentences()[0]  # type: ignore[attr-defined]


def test_virtee_sample_passes_with_its_measurement(milan_chain: bytes) -> None:
    report = snp_report("virtee-sev/report_milan.hex")
    policy = AttestationPolicy(allowed_measurements=(VIRTEE_MEASUREMENT,))
    verdict = verify(report, "virtee-sev/vcek_milan.der", milan_chain, policy=policy)
    assert verdict.passed, verdict.failure_sentences()  # type: ignore[attr-defined]
    wrong = verify(
        report,
        "virtee-sev/vcek_milan.der",
        milan_chain,
        policy=policy,
        report_data=bytes(64),
    )
    assert [c.claim for c in wrong.failures] == ["report_data"]  # type: ignore[attr-defined]


def test_trustee_sample_documented_fields(milan_chain: bytes) -> None:
    verdict = verify(snp_report("trustee/test-report.bin"), "trustee/test-vcek.der", milan_chain)
    assert verdict.passed  # type: ignore[attr-defined]
    m = verdict.measurements  # type: ignore[attr-defined]
    assert m["guest_svn"] == 4 and m["policy"] == "0x3001f"
    assert bytes.fromhex(str(m["report_data"]))[32:] == bytes(32)


# upstream's negative test (bit 7 of byte 21) and offsets across every field and the signature
SNP_FLIPS = [
    (21, 0x80),
    (0, 1),
    (8, 1),
    (0x30, 1),
    (0x50, 1),
    (0x90, 1),
    (0x180, 1),
    (0x1A0, 1),
    (0x29F, 1),
    (0x2A0, 1),
    (0x2E8, 1),
]


@pytest.mark.parametrize(("offset", "mask"), SNP_FLIPS)
def test_flipping_any_signed_byte_fails(offset: int, mask: int, milan_chain: bytes) -> None:
    report = bytearray(snp_report("virtee-sev/report_milan.hex"))
    report[offset] ^= mask
    verdict = verify(bytes(report), "virtee-sev/vcek_milan.der", milan_chain)
    assert not verdict.passed  # type: ignore[attr-defined]
    failed = {c.claim for c in verdict.failures}  # type: ignore[attr-defined]
    assert failed & {"report_signature", "format", "signature_algorithm"}


def test_a_report_checked_with_another_chips_vcek_fails(milan_chain: bytes) -> None:
    verdict = verify(
        snp_report("virtee-sev/report_milan.hex"), "trustee/test-vcek.der", milan_chain
    )
    failed = {c.claim for c in verdict.failures}  # type: ignore[attr-defined]
    assert {"report_signature", "vcek_match"} <= failed


def test_chain_outside_its_validity_or_without_ark_fails(milan_chain: bytes) -> None:
    report = snp_report("virtee-sev/report_milan.hex")
    early = verify(
        report, "virtee-sev/vcek_milan.der", milan_chain, now=dt.datetime(2022, 1, 1, tzinfo=dt.UTC)
    )
    assert "vcek_chain" in {c.claim for c in early.failures}  # type: ignore[attr-defined]
    assert "not valid at 2022-01-01" in " ".join(early.failure_sentences())  # type: ignore[attr-defined]
    genoa = verify(report, "virtee-sev/vcek_milan.der", vector("go-sev-guest/ask_ark_genoa.pem"))
    assert "no pinned AMD ARK" in " ".join(genoa.failure_sentences())  # type: ignore[attr-defined]
    bare = verify_evidence("sev-snp", report, report_data=None, policy=INSPECT, now=SNP_NOW)
    assert {"vcek_chain", "report_signature"} <= {c.claim for c in bare.failures}


def test_certificate_table_after_the_report_carries_the_chain(milan_chain: bytes) -> None:
    from modelseal.attestation.certs import split_certificates

    ask, ark = split_certificates(milan_chain, what="chain")
    table = build_snp_cert_table(
        {"vcek": vector("virtee-sev/vcek_milan.der"), "ask": ask, "ark": ark}
    )
    assert parse_snp_cert_table(table)["ark"] == ark
    evidence = snp_report("virtee-sev/report_milan.hex") + table
    verdict = verify_evidence("sev-snp", evidence, report_data=None, policy=INSPECT, now=SNP_NOW)
    assert verdict.passed, verdict.failure_sentences()
    broken = verify_evidence(
        "sev-snp", evidence[:-1] + b"", report_data=None, policy=INSPECT, now=SNP_NOW
    )
    assert not broken.passed


def test_min_tcb_policy(milan_chain: bytes) -> None:
    report = snp_report("virtee-sev/report_milan.hex")
    low = AttestationPolicy(require_measurement=False, snp_min_tcb={"snp": 8, "microcode": 115})
    assert verify(report, "virtee-sev/vcek_milan.der", milan_chain, policy=low).passed  # type: ignore[attr-defined]
    high = AttestationPolicy(require_measurement=False, snp_min_tcb={"microcode": 200})
    verdict = verify(report, "virtee-sev/vcek_milan.der", milan_chain, policy=high)
    assert [c.claim for c in verdict.failures] == ["min_tcb"]  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", [v for _, v in SAMPLES])
def test_vcek_reader_agrees_with_cryptography(name: str) -> None:
    """The VCEKs have non-positive serials: cryptography warns (and may refuse later); the
    DER reader reads them without warnings and agrees with cryptography's parse today."""
    der = vector(name)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        vcek = read_vcek(der)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        reference = x509.load_der_x509_certificate(der)
        assert reference.serial_number <= 0
        assert vcek.tbs == reference.tbs_certificate_bytes
        assert vcek.signature == reference.signature
        assert (vcek.not_before, vcek.not_after) == (
            reference.not_valid_before_utc,
            reference.not_valid_after_utc,
        )
    assert vcek.issuer_cn == "SEV-Milan" and vcek.subject_cn == "SEV-VCEK"


def test_truncated_or_garbage_evidence_is_a_format_failure() -> None:
    for data in (b"", bytes(100), bytes(1184)):
        verdict = verify_evidence("sev-snp", data, report_data=None, policy=INSPECT, now=SNP_NOW)
        assert [c.claim for c in verdict.failures] == ["format"]
