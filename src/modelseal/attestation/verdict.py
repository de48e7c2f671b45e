"""The outcome of verifying evidence: what it measures, and every claim with its result."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from modelseal.attestation.errors import EvidenceRejected

__all__ = ["Check", "Outcome", "Verdict"]

Outcome = Literal["pass", "fail", "skip"]


@dataclass(frozen=True)
class Check:
    """One claim about the evidence. ``detail`` is one sentence naming the claim."""

    claim: str
    outcome: Outcome
    detail: str

    def to_json(self) -> dict[str, str]:
        return {"claim": self.claim, "outcome": self.outcome, "detail": self.detail}


@dataclass(frozen=True)
class Verdict:
    """Everything a verifier learnt. It passes only when no check failed and some check ran.

    ``measurements`` holds the parsed fields (hex strings or numbers) even when checks failed, so
    an operator can read them before writing a policy. ``candidates`` are the measurement values a
    policy's ``allowed_measurements`` is matched against (see ``docs/attestation.md``).
    """

    kind: str
    measurements: Mapping[str, str | int] = field(default_factory=dict)
    candidates: tuple[str, ...] = ()
    tcb_status: str | None = None
    advisories: tuple[str, ...] = ()
    hardware_backed: bool = True
    checks: tuple[Check, ...] = ()

    @property
    def failures(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if c.outcome == "fail")

    @property
    def passed(self) -> bool:
        return not self.failures and any(c.outcome == "pass" for c in self.checks)

    def failure_sentences(self) -> list[str]:
        return [c.detail for c in self.failures]

    def raise_if_failed(self) -> Verdict:
        """Return ``self`` when it passed; otherwise raise :class:`EvidenceRejected` listing
        every failed claim."""
        if not self.passed:
            raise EvidenceRejected(self.kind, self.failure_sentences())
        return self

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "passed": self.passed,
            "hardware_backed": self.hardware_backed,
            "measurements": dict(self.measurements),
            "candidates": list(self.candidates),
            "tcb_status": self.tcb_status,
            "advisories": list(self.advisories),
            "checks": [c.to_json() for c in self.checks],
            "failures": self.failure_sentences(),
        }


class Checks:
    """Collects checks in order (internal helper for the verifiers)."""

    def __init__(self) -> None:
        self.items: list[Check] = []

    def ok(self, claim: str, detail: str) -> None:
        self.items.append(Check(claim, "pass", detail))

    def fail(self, claim: str, detail: str) -> None:
        self.items.append(Check(claim, "fail", detail))

    def skip(self, claim: str, detail: str) -> None:
        self.items.append(Check(claim, "skip", detail))
