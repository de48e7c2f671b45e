"""Errors of the attestation room."""

from __future__ import annotations

from collections.abc import Sequence

from modelseal.errors import Error

__all__ = ["AttestationError", "EvidenceRejected"]


class AttestationError(Error):
    """Evidence could not be collected, or an input (policy, reference TCB, collateral) is unusable."""

    code = "ATTESTATION"


class EvidenceRejected(AttestationError):  # noqa: N818 - a verdict, like licensing.Refusal
    """Evidence was verified and at least one claim failed; the message names every one."""

    code = "EVIDENCE_REJECTED"

    def __init__(self, kind: str, failures: Sequence[str]) -> None:
        listed = "; ".join(failures) if failures else "no claim passed"
        super().__init__(
            f"{kind} evidence rejected ({len(failures)} failed claim(s)): {listed}",
            hint="run `modelseal evidence verify` on the evidence to see every measurement",
        )
        self.kind = kind
        self.failures = tuple(failures)
