"""Vault side: one entry point that verifies evidence of any kind against a policy."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from modelseal.attestation.collateral import Collateral
from modelseal.attestation.errors import AttestationError
from modelseal.attestation.intel import verify_intel_quote
from modelseal.attestation.policy import AttestationPolicy
from modelseal.attestation.providers import EVIDENCE_KINDS
from modelseal.attestation.snp import verify_snp_report
from modelseal.attestation.software import verify_software_evidence
from modelseal.attestation.tcb import ReferenceTcb
from modelseal.attestation.verdict import Verdict

__all__ = ["verify_evidence"]

_MAX_EVIDENCE = 1 << 20


def verify_evidence(
    kind: str,
    evidence: bytes,
    *,
    report_data: bytes | None,
    policy: AttestationPolicy,
    now: dt.datetime,
    collateral: Sequence[Collateral] = (),
    certs: Sequence[bytes] = (),
    references: Sequence[ReferenceTcb] = (),
) -> Verdict:
    """Verify ``evidence`` of ``kind`` at ``now``; the :class:`Verdict` lists every claim.

    ``report_data`` is what the evidence must carry (the vault always passes
    :func:`~modelseal.attestation.report_data` of the request's nonce and public key; ``None``
    skips the check, for inspection only). ``collateral`` serves ``sgx``/``tdx``; ``certs``
    (PEM or DER blobs) serve ``sev-snp`` when the evidence carries no certificate table;
    ``references`` only sharpen the message for ``software`` (which files differ).
    Call :meth:`Verdict.raise_if_failed` to turn a failed verdict into
    :class:`~modelseal.attestation.EvidenceRejected`.
    """
    if kind not in EVIDENCE_KINDS:
        raise AttestationError(f"evidence kind {kind!r} is not one of {', '.join(EVIDENCE_KINDS)}")
    if now.tzinfo is None:
        raise AttestationError("`now` must be a timezone-aware datetime")
    if not isinstance(evidence, bytes | bytearray) or len(evidence) > _MAX_EVIDENCE:
        raise AttestationError(f"evidence must be at most {_MAX_EVIDENCE} bytes")
    evidence = bytes(evidence)
    if kind in ("sgx", "tdx"):
        return verify_intel_quote(
            kind, evidence, report_data=report_data, policy=policy, now=now, collateral=collateral
        )
    if kind == "sev-snp":
        return verify_snp_report(
            evidence, report_data=report_data, policy=policy, now=now, certs=certs
        )
    files = next(
        (t.measurements.get("package_files") for t in references if t.evidence_type == "software"),
        None,
    )
    return verify_software_evidence(
        evidence, report_data=report_data, policy=policy, reference_files=files
    )
