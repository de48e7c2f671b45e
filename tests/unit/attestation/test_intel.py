"""SGX and TDX quotes: every sample's documented result, tampering, debug, binding, freshness."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from modelseal.attestation import AttestationPolicy, EvidenceRejected, verify_evidence
from modelseal.attestation.quote import parse_intel_quote

from .conftest import (
    SGX_NOW,
    SPR_E4_NOW,
    TDX_NOW,
    TDX_OUTDATED_NOW,
    TRUSTEE_NOW,
    V5_SAMPLE_NOW,
    collateral,
    vector,
)

INSPECT = AttestationPolicy.inspection()
SGX_MRENCLAVE = "33d8736db756ed4997e04ba358d27833188f1932ff7b1d156904d3f560452fbb"
SGX_MRSIGNER = "815f42f11cf64430c30bab7816ba596a1da0130c3b028b673133a66cf9a3e0e6"
TDX_MRTD = (
    "91eb2b44d141d4ece09f0c75c2c53d247a3c68edd7fafe8a3520c942a604a407"
    "de03ae6dc5f87f27428b2538873118b7"
)
SIGNATURE_CLAIMS = ("quote_signature", "qe_report_binding", "pck_chain", "qe_report_signature")


def outcomes(verdict: object) -> dict[str, str]:
    return {c.claim: c.outcome for c in verdict.checks}  # type: ignore[attr-defined]


def sgx(now: dt.datetime = SGX_NOW, policy: AttestationPolicy = INSPECT, **kw: object) -> object:
    return verify_evidence(
        "sgx",
        kw.pop("evidence", vector("dcap-qvl/sgx_quote")),  # type: ignore[arg-type]
        report_data=kw.pop("report_data", None),  # type: ignore[arg-type]
        policy=policy,
        now=now,
        collateral=[collateral("dcap-qvl/sgx_quote_collateral.json")],
    )


def test_sgx_sample_verifies_with_its_documented_status() -> None:
    verdict = sgx()
    result = outcomes(verdict)
    assert all(result[c] == "pass" for c in (*SIGNATURE_CLAIMS, "collateral", "freshness"))
    assert verdict.tcb_status == "ConfigurationAndSWHardeningNeeded"  # type: ignore[attr-defined]
    assert verdict.advisories == ("INTEL-SA-00289", "INTEL-SA-00615")  # type: ignore[attr-defined]
    m = verdict.measurements  # type: ignore[attr-defined]
    assert (m["mrenclave"], m["mrsigner"], m["isv_prod_id"], m["isv_svn"]) == (
        SGX_MRENCLAVE,
        SGX_MRSIGNER,
        0,
        0,
    )
    assert bytes.fromhex(str(m["report_data"])) == b"Hello, world!".ljust(64, b"\0")
    # the default minimum is UpToDate: refused, naming the claim
    assert result["tcb_status"] == "fail" and not verdict.passed  # type: ignore[attr-defined]


def test_sgx_sample_passes_a_policy_that_allows_its_status_and_measurement() -> None:
    policy = AttestationPolicy(
        allowed_measurements=(SGX_MRENCLAVE,),
        tcb_statuses=("ConfigurationAndSWHardeningNeeded",),
    )
    verdict = sgx(policy=policy)
    assert verdict.passed, verdict.failure_sentences()  # type: ignore[attr-defined]
    assert verdict.raise_if_failed() is verdict  # type: ignore[attr-defined]


def test_sgx_signer_identity_is_a_candidate() -> None:
    identity = SGX_MRSIGNER + "0000" + "0000"
    policy = AttestationPolicy(
        allowed_measurements=(identity,), tcb_statuses=("ConfigurationAndSWHardeningNeeded",)
    )
    assert sgx(policy=policy).passed  # type: ignore[attr-defined]


def test_a_refused_advisory_fails_its_claim() -> None:
    policy = AttestationPolicy(
        require_measurement=False,
        tcb_statuses=("ConfigurationAndSWHardeningNeeded",),
        reject_advisories=("INTEL-SA-00615",),
    )
    verdict = sgx(policy=policy)
    assert outcomes(verdict)["advisories"] == "fail"
    assert "INTEL-SA-00615" in " ".join(verdict.failure_sentences())  # type: ignore[attr-defined]


def test_expired_collateral_at_now_plus_40_days_names_every_failed_claim() -> None:
    verdict = sgx(now=SGX_NOW + dt.timedelta(days=40))
    failed = {c.claim for c in verdict.failures}  # type: ignore[attr-defined]
    assert {"freshness", "collateral", "tcb_status"} <= failed
    text = " ".join(verdict.failure_sentences())  # type: ignore[attr-defined]
    assert "TCBInfo expired" in text and "TCB info expired at 2025-07-19T10:56:11Z" in text
    assert outcomes(verdict)["pck_chain"] == "pass"  # the PCK chain is valid until 2030
    with pytest.raises(EvidenceRejected) as info:
        verdict.raise_if_failed()  # type: ignore[attr-defined]
    assert "freshness:" in info.value.message and "collateral:" in info.value.message


def test_report_data_mismatch_is_refused() -> None:
    policy = AttestationPolicy(
        allowed_measurements=(SGX_MRENCLAVE,), tcb_statuses=("ConfigurationAndSWHardeningNeeded",)
    )
    good = sgx(policy=policy, report_data=b"Hello, world!".ljust(64, b"\0"))
    assert good.passed  # type: ignore[attr-defined]
    bad = sgx(policy=policy, report_data=bytes(64))
    assert [c.claim for c in bad.failures] == ["report_data"]  # type: ignore[attr-defined]


def test_tdx_v4_sample_is_up_to_date() -> None:
    verdict = verify_evidence(
        "tdx",
        vector("dcap-qvl/tdx_quote"),
        report_data=None,
        policy=AttestationPolicy(allowed_measurements=(TDX_MRTD,)),
        now=TDX_NOW,
        collateral=[collateral("dcap-qvl/tdx_quote_collateral.json")],
    )
    assert verdict.passed, verdict.failure_sentences()
    assert verdict.tcb_status == "UpToDate" and verdict.advisories == ()
    assert verdict.measurements["mrtd"] == TDX_MRTD
    assert verdict.measurements["td_attributes"] == "0000001000000000"


def test_tdx_v5_outdated_sample_has_no_matching_tcb_level() -> None:
    verdict = verify_evidence(
        "tdx",
        vector("dcap-qvl/tdx_quote_outdated"),
        report_data=None,
        policy=INSPECT,
        now=TDX_OUTDATED_NOW,
        collateral=[collateral("dcap-qvl/tdx_quote_outdated_collateral.json")],
    )
    result = outcomes(verdict)
    assert all(result[c] == "pass" for c in SIGNATURE_CLAIMS)
    assert result["collateral"] == "fail" and result["tcb_status"] == "fail"
    assert "No matching TCB level found" in " ".join(verdict.failure_sentences())
    assert verdict.measurements["quote_version"] == 5 and "mrservicetd" in verdict.measurements


@pytest.mark.parametrize(
    ("name", "now", "kind", "debug"),
    [
        ("go-tdx-guest/tdx_prod_quote_SPR_E4.dat", SPR_E4_NOW, "tdx", False),
        ("go-tdx-guest/quote_v5_sample.dat", V5_SAMPLE_NOW, "tdx", False),
        ("trustee/tdx_quote_4.dat", TRUSTEE_NOW, "tdx", True),
        ("trustee/occlum_quote.dat", TRUSTEE_NOW, "sgx", True),
    ],
)
def test_samples_without_collateral_verify_chain_and_signatures(
    name: str, now: dt.datetime, kind: str, debug: bool
) -> None:
    verdict = verify_evidence(kind, vector(name), report_data=None, policy=INSPECT, now=now)
    result = outcomes(verdict)
    assert all(result[c] == "pass" for c in SIGNATURE_CLAIMS), verdict.failure_sentences()
    # no collateral: the TCB status is unknown, which fails (and says so)
    assert result["collateral"] == "fail" and result["tcb_status"] == "fail"
    assert result["debug"] == ("fail" if debug else "pass")
    if debug:
        assert any(s.startswith("debug:") for s in verdict.failure_sentences())


def test_documented_measurements_of_other_samples() -> None:
    spr = parse_intel_quote(vector("go-tdx-guest/tdx_prod_quote_SPR_E4.dat"))
    assert spr.measurements()["mrtd"] == (
        "6363b8043668a3ad953278e10389574d326c6749fb78aa810ecd9336923db86f"
        "22fc00b8dcd404bc10d5e119d7215cbb"
    )
    assert spr.report_data.hex().startswith("6c62dec1") and spr.report_data.hex().endswith(
        "281f1113"
    )
    occlum = parse_intel_quote(vector("trustee/occlum_quote.dat")).measurements()
    assert occlum["mrenclave"] == "8f173e4613ff05c52aaf04162d234edae8c9977eae47eb2299ae16a553011c68"
    assert occlum["mrsigner"] == "83d719e77deaca1470f6baf62a4d774303c899db69020f9c70ee1dfc08c7ce9e"
    assert bytes.fromhex(str(occlum["report_data"])) == b"test".ljust(64, b"\0")
    assert parse_intel_quote(vector("trustee/tdx_quote_4.dat")).measurements()["td_attributes"] == (
        "0100001000000000"
    )


def test_debug_sample_is_refused_even_with_an_allowed_measurement() -> None:
    mrenclave = "8f173e4613ff05c52aaf04162d234edae8c9977eae47eb2299ae16a553011c68"
    verdict = verify_evidence(
        "sgx",
        vector("trustee/occlum_quote.dat"),
        report_data=b"test".ljust(64, b"\0"),
        policy=AttestationPolicy(allowed_measurements=(mrenclave,)),
        now=TRUSTEE_NOW,
    )
    result = outcomes(verdict)
    assert result["debug"] == "fail" and result["measurement"] == "pass"
    assert result["report_data"] == "pass"
    allowed = dataclasses.replace(
        AttestationPolicy(allowed_measurements=(mrenclave,)), allow_debug=True
    )
    result = outcomes(
        verify_evidence(
            "sgx",
            vector("trustee/occlum_quote.dat"),
            report_data=None,
            policy=allowed,
            now=TRUSTEE_NOW,
        )
    )
    assert result["debug"] == "pass"


# offsets: header (version, QE vendor id), body (attributes, MRENCLAVE, report data), the quote
# signature, the attestation key, the QE report, the QE report signature, the PCK chain
SGX_FLIPS = [0, 12, 96, 120, 400, 440, 500, 600, 900, 1000, 1200, 3000, 4000]


@pytest.mark.parametrize("offset", SGX_FLIPS)
def test_flipping_any_signed_sgx_byte_fails(offset: int) -> None:
    data = bytearray(vector("dcap-qvl/sgx_quote"))
    data[offset] ^= 0x01
    policy = AttestationPolicy(
        allowed_measurements=(SGX_MRENCLAVE,), tcb_statuses=("ConfigurationAndSWHardeningNeeded",)
    )
    verdict = sgx(policy=policy, evidence=bytes(data))
    assert not verdict.passed  # type: ignore[attr-defined]
    assert verdict.failures  # type: ignore[attr-defined]


TDX_FLIPS = [2, 30, 48 + 136, 48 + 520, 640, 700, 800, 1100, 1300, 2000, 4500]


@pytest.mark.parametrize("offset", TDX_FLIPS)
def test_flipping_any_signed_tdx_byte_fails(offset: int) -> None:
    data = bytearray(vector("dcap-qvl/tdx_quote"))
    data[offset] ^= 0x80
    verdict = verify_evidence(
        "tdx",
        bytes(data),
        report_data=None,
        policy=AttestationPolicy(allowed_measurements=(TDX_MRTD,)),
        now=TDX_NOW,
        collateral=[collateral("dcap-qvl/tdx_quote_collateral.json")],
    )
    assert not verdict.passed


def test_wrong_type_and_garbage_are_named() -> None:
    verdict = verify_evidence(
        "tdx", vector("dcap-qvl/sgx_quote"), report_data=None, policy=INSPECT, now=SGX_NOW
    )
    assert "evidence_type" in {c.claim for c in verdict.failures}
    garbage = verify_evidence(
        "sgx", b"\x03\x00" * 10, report_data=None, policy=INSPECT, now=SGX_NOW
    )
    assert [c.claim for c in garbage.failures] == ["format"]
    assert garbage.measurements == {}


def test_a_chain_to_another_root_fails_the_pin(monkeypatch: pytest.MonkeyPatch) -> None:
    from modelseal.attestation import intel

    monkeypatch.setattr(intel, "INTEL_SGX_ROOT_SHA256", "00" * 32)
    verdict = sgx()
    result = outcomes(verdict)
    assert result["pck_chain"] == "fail" and result["collateral"] == "fail"
    assert "pinned Intel SGX Root CA" in " ".join(verdict.failure_sentences())  # type: ignore[attr-defined]
