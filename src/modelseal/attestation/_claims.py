"""Claims every kind of evidence shares: debug, measurement, report-data binding."""

from __future__ import annotations

import hmac
from collections.abc import Sequence

from modelseal.attestation.policy import AttestationPolicy
from modelseal.attestation.verdict import Checks

__all__ = ["check_debug", "check_measurement", "check_report_data"]


def check_debug(checks: Checks, policy: AttestationPolicy, debug: bool, what: str) -> None:
    if not debug:
        checks.ok("debug", f"debug: {what} is not set")
    elif policy.allow_debug:
        checks.ok("debug", f"debug: {what} is set, and the policy allows debug")
    else:
        checks.fail(
            "debug",
            f"debug: {what} is set, so the host can read the runtime's memory; the policy "
            "forbids debug",
        )


def check_measurement(
    checks: Checks,
    policy: AttestationPolicy,
    candidates: Sequence[str],
    names: str,
    *,
    note: str = "",
) -> None:
    if not policy.require_measurement:
        checks.skip(
            "measurement", f"measurement: not checked (no allowed measurements); {names} shown"
        )
        return
    allowed = set(policy.allowed_measurements)
    match = next((c for c in candidates if c in allowed), None)
    if match is not None:
        checks.ok("measurement", f"measurement: {names} {match} is allowed")
    else:
        checks.fail(
            "measurement",
            f"measurement: {names} {' / '.join(candidates) or '(none)'} is not among the "
            f"{len(allowed)} allowed measurement(s)" + (f"; {note}" if note else ""),
        )


def check_report_data(checks: Checks, actual: bytes | None, expected: bytes | None) -> None:
    if expected is None:
        checks.skip("report_data", "report_data: not checked (no expected report data given)")
    elif actual is None:
        checks.fail("report_data", "report_data: the evidence carries no report data")
    elif hmac.compare_digest(actual, expected):
        checks.ok("report_data", "report_data: binds this nonce and public key")
    else:
        checks.fail(
            "report_data",
            f"report_data: the evidence carries {actual.hex()[:32]}…, not the expected "
            f"{expected.hex()[:32]}… (made for another nonce or key, or replayed)",
        )
