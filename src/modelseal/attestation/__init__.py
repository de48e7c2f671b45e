"""Attestation: evidence providers on the device, verifiers and reference TCBs for the vault.

Device side: :func:`collect_evidence` (``software``, ``sgx`` via Gramine, ``tdx`` / ``sev-snp``
via configfs-tsm), bound to :func:`report_data` of the vault's nonce and the release's public key.
Vault side: :func:`verify_evidence` returns a :class:`Verdict` listing every claim;
:meth:`Verdict.raise_if_failed` raises :class:`EvidenceRejected` naming every failed one.
Owners sign reference TCBs (:func:`sign_reference_tcb`); :func:`license_measurements` turns
verified ones into a license's ``require_evidence`` and ``allowed_measurements``.

Nothing here imports ``dcap_qvl`` until an Intel quote is verified or collateral fetched.
See ``docs/attestation.md`` for formats and the threat model.
"""

from modelseal.attestation.binding import REPORT_DATA_SIZE, report_data
from modelseal.attestation.collateral import Collateral, fetch_collateral, load_collateral
from modelseal.attestation.errors import AttestationError, EvidenceRejected
from modelseal.attestation.policy import TCB_STATUSES, AttestationPolicy
from modelseal.attestation.providers import EVIDENCE_KINDS, collect_evidence
from modelseal.attestation.software import RuntimeMeasurement, measure_runtime
from modelseal.attestation.tcb import (
    ReferenceTcb,
    license_measurements,
    load_reference_tcb,
    reference_measurements,
    sign_reference_tcb,
)
from modelseal.attestation.verdict import Check, Verdict
from modelseal.attestation.verify import verify_evidence

__all__ = [
    "EVIDENCE_KINDS",
    "REPORT_DATA_SIZE",
    "TCB_STATUSES",
    "AttestationError",
    "AttestationPolicy",
    "Check",
    "Collateral",
    "EvidenceRejected",
    "ReferenceTcb",
    "RuntimeMeasurement",
    "Verdict",
    "collect_evidence",
    "fetch_collateral",
    "license_measurements",
    "load_collateral",
    "load_reference_tcb",
    "measure_runtime",
    "reference_measurements",
    "report_data",
    "sign_reference_tcb",
    "verify_evidence",
]
