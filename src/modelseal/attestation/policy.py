"""What a verifier accepts: measurements, debug, TCB status, software TCBs, SNP minimum TCB.

A policy file is JSON with these optional fields (unknown fields are refused)::

    {
      "allowed_measurements": ["33d8…"],   # hex; matched against the evidence's candidates
      "require_measurement": true,         # false: measurements are shown but not checked
      "allow_debug": false,                # debug enclaves / TDs / debug-allowed SNP guests
      "tcb_statuses": ["UpToDate"],        # Intel TCB statuses accepted (UpToDate always is)
      "reject_advisories": [],             # Intel advisory ids refused even when the status is
      "allow_software": false,             # accept the software TCB (not hardware-backed)
      "snp_min_tcb": null                  # {"bootloader": n, "tee": n, "snp": n, "microcode": n}
    }

The report-data binding and freshness (certificates and collateral valid at the verifier's
``now``) are not options: a verifier given report data always checks it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from modelseal.attestation.errors import AttestationError

__all__ = ["SNP_TCB_PARTS", "TCB_STATUSES", "AttestationPolicy"]

#: Intel DCAP TCB statuses, from best to worst (``Revoked`` is never accepted).
TCB_STATUSES: Final = (
    "UpToDate",
    "SWHardeningNeeded",
    "ConfigurationNeeded",
    "ConfigurationAndSWHardeningNeeded",
    "OutOfDate",
    "OutOfDateConfigurationNeeded",
    "Revoked",
)
SNP_TCB_PARTS: Final = ("bootloader", "tee", "snp", "microcode")
_HEX = re.compile(r"(?:[0-9a-f]{2}){16,64}", re.ASCII)
_ADVISORY = re.compile(r"INTEL-SA-\d{5}", re.ASCII)
_FIELDS: Final = (
    "allowed_measurements",
    "require_measurement",
    "allow_debug",
    "tcb_statuses",
    "reject_advisories",
    "allow_software",
    "snp_min_tcb",
)


@dataclass(frozen=True)
class AttestationPolicy:
    """Verifier policy; construction validates it (:class:`AttestationError` naming the field).

    The default is strict: a measurement list is required, debug is refused, only ``UpToDate``
    is accepted and software TCBs are refused. An empty measurement list with
    ``require_measurement`` is an error, not "allow any".
    """

    allowed_measurements: tuple[str, ...] = ()
    require_measurement: bool = True
    allow_debug: bool = False
    tcb_statuses: tuple[str, ...] = ("UpToDate",)
    reject_advisories: tuple[str, ...] = ()
    allow_software: bool = False
    snp_min_tcb: Mapping[str, int] | None = field(default=None)

    def __post_init__(self) -> None:
        measurements = tuple(_lower_hex(m) for m in self.allowed_measurements)
        if len(set(measurements)) != len(measurements):
            raise AttestationError("policy: allowed_measurements lists a measurement twice")
        object.__setattr__(self, "allowed_measurements", measurements)
        if self.require_measurement and not measurements:
            raise AttestationError(
                "policy: no allowed measurements; an empty list would accept any runtime",
                hint="list the reference measurements (modelseal tcb create), or set "
                "require_measurement false to inspect evidence without checking them",
            )
        for name in ("require_measurement", "allow_debug", "allow_software"):
            if not isinstance(getattr(self, name), bool):
                raise AttestationError(f"policy: {name} must be true or false")
        statuses = tuple(self.tcb_statuses)
        for status in statuses:
            if status not in TCB_STATUSES:
                raise AttestationError(
                    f"policy: TCB status {status!r} is not one of {', '.join(TCB_STATUSES)}"
                )
            if status == "Revoked":
                raise AttestationError("policy: a Revoked TCB is never acceptable")
        if "UpToDate" not in statuses:
            statuses = ("UpToDate", *statuses)
        object.__setattr__(self, "tcb_statuses", statuses)
        advisories = tuple(self.reject_advisories)
        for advisory in advisories:
            if not isinstance(advisory, str) or not _ADVISORY.fullmatch(advisory):
                raise AttestationError(f"policy: {advisory!r} is not an id like INTEL-SA-00289")
        object.__setattr__(self, "reject_advisories", advisories)
        if self.snp_min_tcb is not None:
            tcb = dict(self.snp_min_tcb)
            unknown = sorted(set(tcb) - set(SNP_TCB_PARTS))
            if unknown:
                raise AttestationError(f"policy: snp_min_tcb has unknown part(s) {unknown}")
            for part, value in tcb.items():
                if type(value) is not int or not 0 <= value <= 255:
                    raise AttestationError(f"policy: snp_min_tcb.{part} must be 0 to 255")
            object.__setattr__(self, "snp_min_tcb", tcb)

    @classmethod
    def inspection(cls) -> AttestationPolicy:
        """Genuineness only: measurements are shown, not checked; everything else is strict.

        What ``modelseal evidence verify`` uses without ``--policy``."""
        return cls(require_measurement=False)

    @classmethod
    def for_license(
        cls, require_evidence: str, allowed_measurements: Iterable[str], **overrides: Any
    ) -> AttestationPolicy:
        """The policy a license's terms describe: its measurements (checked when it lists any),
        and software TCBs accepted exactly when the license requires ``software`` evidence
        (the issuer chose a TCB that is not hardware-backed). ``overrides`` (the vault's own
        settings, e.g. ``tcb_statuses``) take precedence."""
        measurements = tuple(allowed_measurements)
        values: dict[str, Any] = {
            "allowed_measurements": measurements,
            "require_measurement": bool(measurements),
            "allow_software": require_evidence == "software",
        }
        values.update(overrides)
        return cls(**values)

    @classmethod
    def from_json(cls, data: bytes | str, *, what: str = "policy") -> AttestationPolicy:
        try:
            doc = json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise AttestationError(f"{what} is not valid JSON: {exc}") from exc
        if not isinstance(doc, dict):
            raise AttestationError(f"{what} must be a JSON object")
        unknown = sorted(set(doc) - set(_FIELDS))
        if unknown:
            raise AttestationError(
                f"{what}: unknown field(s) {', '.join(map(repr, unknown))}; "
                f"known: {', '.join(_FIELDS)}"
            )
        for name in ("allowed_measurements", "tcb_statuses", "reject_advisories"):
            if name in doc and not (
                isinstance(doc[name], list) and all(isinstance(v, str) for v in doc[name])
            ):
                raise AttestationError(f"{what}: {name} must be a list of strings")
            if name in doc:
                doc[name] = tuple(doc[name])
        if doc.get("snp_min_tcb") is not None and not isinstance(doc["snp_min_tcb"], dict):
            raise AttestationError(f"{what}: snp_min_tcb must be an object or null")
        return cls(**doc)

    def to_json(self) -> dict[str, Any]:
        return {
            "allowed_measurements": list(self.allowed_measurements),
            "require_measurement": self.require_measurement,
            "allow_debug": self.allow_debug,
            "tcb_statuses": list(self.tcb_statuses),
            "reject_advisories": list(self.reject_advisories),
            "allow_software": self.allow_software,
            "snp_min_tcb": None if self.snp_min_tcb is None else dict(self.snp_min_tcb),
        }


def _lower_hex(value: object) -> str:
    if not isinstance(value, str) or not _HEX.fullmatch(value.lower()):
        raise AttestationError(
            f"policy: measurement {value!r} is not 16 to 64 bytes written as hex"
        )
    return value.lower()
