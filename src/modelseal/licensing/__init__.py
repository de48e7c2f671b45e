"""Licenses: the signed document, its policy, and the refusal codes the vault and agent share.

A license is a compact JWS (EdDSA) the vault signs and any JOSE library can verify; this package
reads and writes it and checks what a license alone can decide (signature, shape, time window,
model coverage). Counters, revocation and device seats live in the vault's database.
It imports no web or database framework, so the device agent uses it too.
"""

from modelseal.licensing.codes import Refusal, RefusalCode
from modelseal.licensing.durations import (
    PERIODS,
    format_datetime,
    format_duration,
    format_rate,
    parse_datetime,
    parse_duration,
    parse_duration_from_first_use,
    parse_rate,
)
from modelseal.licensing.license import (
    LICENSE_TYP,
    License,
    check_model,
    check_time_window,
    issue_license,
    new_license_id,
    parse_license,
)
from modelseal.licensing.policy import (
    DEFAULT_LEASE,
    EVIDENCE_TYPES,
    MAX_LEASE,
    MAX_OFFLINE_GRACE,
    MIN_LEASE,
    Policy,
    Rate,
)
from modelseal.licensing.versions import MAX_VERSION, VersionSpec

__all__ = [
    "DEFAULT_LEASE",
    "EVIDENCE_TYPES",
    "LICENSE_TYP",
    "MAX_LEASE",
    "MAX_OFFLINE_GRACE",
    "MAX_VERSION",
    "MIN_LEASE",
    "PERIODS",
    "License",
    "Policy",
    "Rate",
    "Refusal",
    "RefusalCode",
    "VersionSpec",
    "check_model",
    "check_time_window",
    "format_datetime",
    "format_duration",
    "format_rate",
    "issue_license",
    "new_license_id",
    "parse_datetime",
    "parse_duration",
    "parse_duration_from_first_use",
    "parse_license",
    "parse_rate",
]
