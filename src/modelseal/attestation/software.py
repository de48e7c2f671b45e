"""The software TCB: a measured runtime, NOT hardware-backed.

Evidence of type ``software`` is a canonical JSON document (RFC 8785) that the runtime writes
about itself: the SHA-256 of every file of the installed ``modelseal`` package, of the Python
interpreter binary and of the server configuration file(s), and one SHA-384 ``measurement`` over
those digests. Nothing signs it but the runtime itself, so it proves only what an honest runtime
is running — it catches a changed file, a different interpreter or a different configuration on
a device whose owner does not forge evidence. Anyone who can run code on the device can write
this document for any measurement. Use a TEE (sgx, tdx, sev-snp) when that matters.

The measurement is SHA-384 of canonical JSON
``{"config": [sorted config SHA-256s], "interpreter": SHA-256, "package": SHA-256}``, where the
package digest is SHA-256 of canonical JSON ``{relative path: SHA-256}`` over every file below the
package directory except ``__pycache__`` and ``*.pyc``.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Final

from modelseal.attestation._claims import check_measurement, check_report_data
from modelseal.attestation.errors import AttestationError
from modelseal.attestation.policy import AttestationPolicy
from modelseal.attestation.verdict import Checks, Verdict
from modelseal.crypto import FormatError, canonical_json, parse_canonical_json

__all__ = [
    "SOFTWARE_EVIDENCE_TYPE",
    "RuntimeMeasurement",
    "measure_runtime",
    "software_evidence",
    "verify_software_evidence",
]

SOFTWARE_EVIDENCE_TYPE: Final = "modelseal.evidence.software"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class RuntimeMeasurement:
    """Digests of one installation (all hex)."""

    package_files: Mapping[str, str]
    interpreter: str
    config: tuple[str, ...]

    @cached_property  # computed once: the evidence and its check each read it several times
    def package(self) -> str:
        return hashlib.sha256(canonical_json(dict(self.package_files))).hexdigest()

    @cached_property
    def measurement(self) -> str:
        return _measurement(self.package, self.interpreter, self.config)

    def components(self) -> dict[str, Any]:
        return {
            "package": {"digest": self.package, "files": dict(self.package_files)},
            "interpreter": self.interpreter,
            "config": sorted(self.config),
        }


def measure_runtime(
    *,
    package_dir: Path | None = None,
    interpreter: Path | None = None,
    config: Sequence[Path] = (),
) -> RuntimeMeasurement:
    """Measure this installation (or the given package directory, interpreter and configs)."""
    if package_dir is None:
        import modelseal

        package_dir = Path(modelseal.__file__).resolve().parent
    if interpreter is None:
        interpreter = Path(os.path.realpath(sys.executable))
    package_dir = Path(package_dir)
    if not package_dir.is_dir():
        raise AttestationError(f"package directory {package_dir} does not exist")
    files = {
        path.relative_to(package_dir).as_posix(): _sha256(path)
        for path in sorted(package_dir.rglob("*"))
        if path.is_file()
        and "__pycache__" not in path.relative_to(package_dir).parts
        and path.suffix != ".pyc"
    }
    if not files:
        raise AttestationError(f"package directory {package_dir} holds no files")
    return RuntimeMeasurement(
        package_files=files,
        interpreter=_sha256(Path(interpreter)),
        config=tuple(_sha256(Path(p)) for p in config),
    )


def software_evidence(report_data: bytes, measured: RuntimeMeasurement) -> bytes:
    """The ``software`` evidence document for ``measured``, bound to ``report_data``."""
    return canonical_json(
        {
            "type": SOFTWARE_EVIDENCE_TYPE,
            "version": 1,
            "hardware_backed": False,
            "report_data": report_data.hex(),
            "measurement": measured.measurement,
            **measured.components(),
        }
    )


def verify_software_evidence(
    evidence: bytes,
    *,
    report_data: bytes | None,
    policy: AttestationPolicy,
    reference_files: Mapping[str, str] | None = None,
) -> Verdict:
    """Verify a ``software`` document. ``reference_files`` (from a software reference TCB) only
    improves the message: it names the files that differ."""
    checks = Checks()
    try:
        doc = parse_canonical_json(evidence, what="the software evidence")
        measured, claimed, bound = _read(doc)
    except (FormatError, AttestationError) as exc:
        checks.fail("format", f"format: {exc.message}")
        return Verdict(kind="software", hardware_backed=False, checks=tuple(checks.items))
    checks.ok("format", "format: a modelseal software evidence document")
    if policy.allow_software:
        checks.ok(
            "hardware_backed",
            "hardware_backed: no (software TCB), accepted because the policy allows software",
        )
    else:
        checks.fail(
            "hardware_backed",
            "hardware_backed: software evidence is not hardware-backed (the device could forge "
            "it); the policy accepts only TEE evidence",
        )
    if hmac.compare_digest(measured.measurement, claimed):
        checks.ok("digests", "digests: the measurement matches the listed digests")
    else:
        checks.fail(
            "digests", "digests: the measurement does not match the digests the document lists"
        )
    changed = _changed(measured.package_files, reference_files)
    note = f"differs from the reference in {changed}" if changed else ""
    check_measurement(checks, policy, (claimed,), "software measurement", note=note)
    check_report_data(checks, bound, report_data)
    return Verdict(
        kind="software",
        measurements={
            "measurement": claimed,
            "package": measured.package,
            "package_files": len(measured.package_files),
            "interpreter": measured.interpreter,
            "config": ",".join(measured.config) or "(none)",
            "report_data": bound.hex(),
        },
        candidates=(claimed,),
        hardware_backed=False,
        tcb_status="software TCB (not hardware-backed)",
        checks=tuple(checks.items),
    )


def _read(doc: object) -> tuple[RuntimeMeasurement, str, bytes]:
    if not isinstance(doc, dict) or doc.get("type") != SOFTWARE_EVIDENCE_TYPE:
        raise AttestationError("not a modelseal software evidence document (type)")
    if doc.get("version") != 1 or doc.get("hardware_backed") is not False:
        raise AttestationError("software evidence: unknown version, or hardware_backed not false")
    try:
        package, config = doc["package"], doc["config"]
        files = package["files"]
        bound = bytes.fromhex(doc["report_data"])
        measured = RuntimeMeasurement(
            package_files={str(k): _hex(v) for k, v in files.items()},
            interpreter=_hex(doc["interpreter"]),
            config=tuple(_hex(c) for c in config),
        )
        claimed = _hex(doc["measurement"], 48)
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise AttestationError(f"software evidence lacks or garbles a field ({exc})") from exc
    if package.get("digest") != measured.package:
        raise AttestationError("software evidence: the package digest does not match its files")
    return measured, claimed, bound


def _changed(files: Mapping[str, str], reference: Mapping[str, str] | None) -> str:
    if reference is None:
        return ""
    names = sorted({k for k in files.keys() | reference.keys() if files.get(k) != reference.get(k)})
    if not names:
        return ""
    shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    return f"package file(s) {shown}"


def _measurement(package: str, interpreter: str, config: Sequence[str]) -> str:
    body = {"config": sorted(config), "interpreter": interpreter, "package": package}
    return hashlib.sha384(canonical_json(body)).hexdigest()


def _hex(value: object, size: int = 32) -> str:
    if not isinstance(value, str) or len(value) != 2 * size:
        raise ValueError(f"{value!r} is not a {size}-byte hex digest")
    bytes.fromhex(value)
    return value.lower()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    try:
        with path.open("rb") as handle:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
    except OSError as exc:
        raise AttestationError(f"cannot measure {path}: {exc.strerror or exc}") from exc
    return digest.hexdigest()
