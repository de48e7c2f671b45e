"""Verify SGX and TDX DCAP quotes: signatures and chain here, TCB status through dcap-qvl.

The checks, each a claim in the :class:`Verdict`:

``format`` the quote parses; ``evidence_type`` it is the TEE asked for; ``quote_signature`` the
attestation key signs header and body; ``qe_report_binding`` the QE report data is SHA-256 of the
attestation key and QE authentication data; ``pck_chain`` the PCK leaf chains to the Intel SGX
Root CA, pinned by SHA-256, every certificate valid at ``now``; ``qe_report_signature`` the PCK
leaf signs the QE report; ``freshness`` the collateral's TCB info and QE identity are current at
``now``; ``collateral`` dcap-qvl verifies the quote against the collateral (CRLs, TCB info and QE
identity signatures, FMSPC); ``tcb_status`` and ``advisories`` against the policy; then
``debug``, ``measurement`` and ``report_data``.

Every check runs even after another failed, so a refusal lists every failed claim.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence

from modelseal.attestation._claims import (
    check_debug,
    check_measurement,
    check_report_data,
)
from modelseal.attestation.collateral import Collateral
from modelseal.attestation.errors import AttestationError
from modelseal.attestation.policy import AttestationPolicy
from modelseal.attestation.quote import IntelQuote, parse_intel_quote
from modelseal.attestation.verdict import Checks, Verdict
from modelseal.crypto import Certificate, CryptoError, load_certificates, verify_chain
from modelseal.crypto.attestation import (
    INTEL_SGX_ROOT_SHA256,
    verify_p256_by_certificate,
    verify_p256_raw,
)
from modelseal.licensing import format_datetime

__all__ = ["verify_intel_quote"]


def verify_intel_quote(
    kind: str,
    evidence: bytes,
    *,
    report_data: bytes | None,
    policy: AttestationPolicy,
    now: dt.datetime,
    collateral: Sequence[Collateral] = (),
) -> Verdict:
    """Verify an ``sgx`` or ``tdx`` quote (raw bytes) at ``now``."""
    checks = Checks()
    try:
        quote = parse_intel_quote(evidence)
    except AttestationError as exc:
        checks.fail("format", f"format: the {kind} quote is malformed: {exc.message}")
        return Verdict(kind=kind, checks=tuple(checks.items))
    checks.ok("format", f"format: quote v{quote.version} ({'TDX' if quote.is_tdx else 'SGX'})")
    if quote.is_tdx != (kind == "tdx"):
        checks.fail(
            "evidence_type",
            f"evidence_type: this is a {'TDX' if quote.is_tdx else 'SGX'} quote, not {kind}",
        )
    root = _check_signatures(checks, quote, now)
    status, advisories = _check_collateral(checks, quote, evidence, root, collateral, now, policy)
    if quote.is_tdx:
        check_debug(checks, policy, quote.debug, "TD_ATTRIBUTES.DEBUG")
        names = "MRTD"
    else:
        check_debug(checks, policy, quote.debug, "the enclave's ATTRIBUTES.DEBUG flag")
        names = "MRENCLAVE / MRSIGNER identity"
    check_measurement(checks, policy, quote.candidates(), names)
    check_report_data(checks, quote.report_data, report_data)
    return Verdict(
        kind=kind,
        measurements=quote.measurements(),
        candidates=quote.candidates(),
        tcb_status=status,
        advisories=advisories,
        checks=tuple(checks.items),
    )


def _check_signatures(checks: Checks, quote: IntelQuote, now: dt.datetime) -> Certificate | None:
    try:
        verify_p256_raw(quote.attestation_key, quote.signature, quote.signed)
        checks.ok("quote_signature", "quote_signature: the attestation key signs the quote")
    except CryptoError:
        checks.fail(
            "quote_signature",
            "quote_signature: the quote's header or body does not match its signature "
            "(tampered, or signed by another key)",
        )
    expected = hashlib.sha256(quote.attestation_key + quote.qe_auth_data).digest()
    if quote.qe_report_data == expected + bytes(32):
        checks.ok("qe_report_binding", "qe_report_binding: the QE report certifies the key")
    else:
        checks.fail(
            "qe_report_binding",
            "qe_report_binding: the QE report does not certify this attestation key",
        )
    root: Certificate | None = None
    leaf: Certificate | None = None
    try:
        chain = load_certificates(quote.pck_chain_pem, what="the PCK certificate chain")
        leaf = chain[0]
        root = next((c for c in chain if c.fingerprint == INTEL_SGX_ROOT_SHA256), None)
        if root is None:
            raise CryptoError("it does not end in the pinned Intel SGX Root CA")
        verify_chain(leaf, [c for c in chain[1:] if c != root], [root], now=now)
        checks.ok(
            "pck_chain",
            f"pck_chain: {leaf.subject.split(',')[-1]} chains to the pinned Intel SGX Root CA, "
            f"valid at {format_datetime(now)}",
        )
    except CryptoError as exc:
        root = None
        checks.fail("pck_chain", f"pck_chain: the PCK certificate chain fails: {exc.message}")
    if leaf is None:
        checks.fail("qe_report_signature", "qe_report_signature: no PCK certificate to check it")
        return root
    try:
        verify_p256_by_certificate(leaf, quote.qe_report_signature, quote.qe_report)
        checks.ok("qe_report_signature", "qe_report_signature: the PCK key signs the QE report")
    except CryptoError:
        checks.fail(
            "qe_report_signature",
            "qe_report_signature: the QE report does not match the PCK key's signature",
        )
    return root


def _check_collateral(
    checks: Checks,
    quote: IntelQuote,
    raw: bytes,
    root: Certificate | None,
    collateral: Sequence[Collateral],
    now: dt.datetime,
    policy: AttestationPolicy,
) -> tuple[str | None, tuple[str, ...]]:
    tee = "TDX" if quote.is_tdx else "SGX"
    chosen = _choose(raw, tee, collateral)
    if chosen is None:
        detail = (
            f"no {tee} collateral was given" if collateral else "no collateral was given"
        ) + "; the platform's TCB status is unknown"
        checks.fail("collateral", f"collateral: {detail} (pass --collateral or a service URL)")
        checks.fail("tcb_status", "tcb_status: unknown without collateral")
        return None, ()
    problems = chosen.freshness_problems(now)
    if problems:
        checks.fail(
            "freshness",
            f"freshness: at {format_datetime(now)} the collateral's {'; '.join(problems)}",
        )
    else:
        checks.ok("freshness", f"freshness: the collateral is current at {format_datetime(now)}")
    if root is None:
        checks.fail("collateral", "collateral: not checked, the quote has no trusted PCK chain")
        checks.fail("tcb_status", "tcb_status: unknown without a trusted PCK chain")
        return None, ()
    import dcap_qvl

    try:
        report = dcap_qvl.verify_with_root_ca(
            raw,
            dcap_qvl.QuoteCollateralV3.from_json(chosen.text),
            root.der(),
            int(now.timestamp()),
        )
    except (ValueError, RuntimeError) as exc:
        message = str(exc).removeprefix("Verification failed: ")
        checks.fail(
            "collateral",
            f"collateral: dcap-qvl refuses the quote with its {tee} collateral at "
            f"{format_datetime(now)}: {message}",
        )
        checks.fail("tcb_status", f"tcb_status: unknown ({message})")
        return None, ()
    checks.ok("collateral", f"collateral: dcap-qvl verifies the quote (FMSPC {chosen.fmspc})")
    status, advisories = str(report.status), tuple(report.advisory_ids)
    if status in policy.tcb_statuses:
        checks.ok("tcb_status", f"tcb_status: {status} is accepted")
    else:
        checks.fail(
            "tcb_status",
            f"tcb_status: the platform is {status}; the policy accepts "
            f"{', '.join(policy.tcb_statuses)}",
        )
    refused = [a for a in advisories if a in policy.reject_advisories]
    if refused:
        checks.fail("advisories", f"advisories: the policy refuses {', '.join(refused)}")
    elif advisories:
        checks.ok("advisories", f"advisories: {', '.join(advisories)} (none refused)")
    return status, advisories


def _choose(raw: bytes, tee: str, collateral: Sequence[Collateral]) -> Collateral | None:
    same_tee = [c for c in collateral if c.tee == tee]
    if len(same_tee) <= 1:
        return same_tee[0] if same_tee else None
    try:
        import dcap_qvl

        fmspc = dcap_qvl.parse_quote(raw).fmspc().upper()
    except ValueError:
        return same_tee[0]
    return next((c for c in same_tee if c.fmspc == fmspc), same_tee[0])
