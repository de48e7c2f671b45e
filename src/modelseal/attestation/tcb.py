"""Reference TCBs: a measurement the model owner vouches for, signed like the package manifest.

A reference TCB file is canonical JSON (RFC 8785)::

    {"signature": {"algorithm", "certificates": [base64 DER, leaf first], "signature": base64},
     "tcb": {"type": "modelseal.tcb", "version": 1, "evidence_type", "name", "created",
             "measurements": {...}}}

The signature covers the canonical JSON of ``tcb`` (Ed25519, or ECDSA with the curve's hash, DER),
made with the owner's keystore key; the certificates are the keystore's certificate and chain.
``measurements`` per evidence type:

- ``software``: ``measurement`` (SHA-384), ``package``, ``interpreter``, ``config`` and
  ``package_files`` (what :func:`~modelseal.attestation.software.measure_runtime` found);
- ``sgx``: ``mrenclave``, or ``mrsigner`` with ``isv_prod_id`` and ``isv_svn`` (or all);
- ``tdx``: ``mrtd``;
- ``sev-snp``: ``measurement``.

:func:`license_measurements` turns verified reference TCBs into a license policy's
``require_evidence`` and ``allowed_measurements`` (see ``docs/attestation.md``).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from modelseal.attestation.errors import AttestationError
from modelseal.attestation.software import RuntimeMeasurement
from modelseal.crypto import (
    Certificate,
    CryptoError,
    SigningKey,
    canonical_json,
    load_certificates,
    parse_canonical_json,
    verify_chain,
)
from modelseal.licensing import format_datetime

__all__ = [
    "TCB_TYPE",
    "ReferenceTcb",
    "license_measurements",
    "load_reference_tcb",
    "reference_measurements",
    "sign_reference_tcb",
]

TCB_TYPE: Final = "modelseal.tcb"
_HEX_SIZES: Final = {"mrenclave": 32, "mrsigner": 32, "mrtd": 48}


@dataclass(frozen=True)
class ReferenceTcb:
    """A verified reference TCB. ``trusted`` says whether its signer chained to an anchor."""

    evidence_type: str
    name: str
    created: str
    measurements: Mapping[str, Any] = field(repr=False)
    signer: Certificate
    trusted: bool

    def allowed_measurements(self) -> tuple[str, ...]:
        """The hex values a policy's ``allowed_measurements`` needs for this TCB: SGX MRENCLAVE
        when given, else the signer identity MRSIGNER ‖ ISVPRODID u16le ‖ ISVSVN u16le; TDX
        MRTD; SEV-SNP and software the measurement."""
        m = self.measurements
        if self.evidence_type == "sgx":
            if m.get("mrenclave"):
                return (str(m["mrenclave"]),)
            identity = (
                bytes.fromhex(m["mrsigner"])
                + int(m["isv_prod_id"]).to_bytes(2, "little")
                + int(m["isv_svn"]).to_bytes(2, "little")
            )
            return (identity.hex(),)
        if self.evidence_type == "tdx":
            return (str(m["mrtd"]),)
        return (str(m["measurement"]),)

    def describe(self) -> list[str]:
        lines = [
            f"reference TCB {self.name!r} for {self.evidence_type} evidence, created {self.created}",
            f"signed by {self.signer.subject} (SHA-256 {self.signer.fingerprint})"
            + ("" if self.trusted else " — not checked against a trust anchor"),
        ]
        for key, value in self.measurements.items():
            if key == "package_files":
                lines.append(f"  package_files: {len(value)} files")
            else:
                lines.append(f"  {key}: {value}")
        lines.append(f"  allowed measurement(s): {', '.join(self.allowed_measurements())}")
        return lines


def reference_measurements(
    evidence_type: str,
    *,
    runtime: RuntimeMeasurement | None = None,
    mrenclave: str | None = None,
    mrsigner: str | None = None,
    isv_prod_id: int | None = None,
    isv_svn: int | None = None,
    mrtd: str | None = None,
    measurement: str | None = None,
) -> dict[str, Any]:
    """The ``measurements`` object for ``evidence_type``; :class:`AttestationError` names a
    missing or malformed value."""
    if evidence_type == "software":
        if runtime is None:
            raise AttestationError("a software reference TCB measures a runtime (--from-runtime)")
        return {
            "measurement": runtime.measurement,
            "package": runtime.package,
            "interpreter": runtime.interpreter,
            "config": sorted(runtime.config),
            "package_files": dict(runtime.package_files),
        }
    if evidence_type == "sgx":
        if mrenclave is None and mrsigner is None:
            raise AttestationError("an sgx reference TCB needs --mrenclave or --mrsigner")
        if mrsigner is not None and isv_svn is None:
            raise AttestationError("--mrsigner needs --isv-svn (and --isv-prod-id, default 0)")
        found: dict[str, Any] = {}
        if mrenclave is not None:
            found["mrenclave"] = _hex(mrenclave, "mrenclave")
        if mrsigner is not None:
            found["mrsigner"] = _hex(mrsigner, "mrsigner")
            found["isv_prod_id"] = _u16(isv_prod_id or 0, "isv_prod_id")
            found["isv_svn"] = _u16(isv_svn if isv_svn is not None else -1, "isv_svn")
        return found
    if evidence_type == "tdx":
        if mrtd is None:
            raise AttestationError("a tdx reference TCB needs --mrtd")
        return {"mrtd": _hex(mrtd, "mrtd")}
    if evidence_type == "sev-snp":
        if measurement is None:
            raise AttestationError("an sev-snp reference TCB needs --measurement")
        return {"measurement": _hex(measurement, "measurement", 48)}
    raise AttestationError(f"no reference TCB for evidence type {evidence_type!r}")


def sign_reference_tcb(
    evidence_type: str,
    measurements: Mapping[str, Any],
    *,
    key: SigningKey,
    chain: Sequence[Certificate],
    name: str,
    now: dt.datetime,
) -> bytes:
    """The reference TCB file's bytes, signed by ``key`` (``chain[0]`` certifies it)."""
    if not chain or chain[0].verifying_key() != key.verifying_key():
        raise AttestationError("the signing certificate does not belong to the signing key")
    tcb = {
        "type": TCB_TYPE,
        "version": 1,
        "evidence_type": evidence_type,
        "name": name,
        "created": format_datetime(now),
        "measurements": dict(measurements),
    }
    _check_measurements(tcb)
    signature = {
        "algorithm": key.algorithm,
        "signature": base64.b64encode(key.sign(canonical_json(tcb))).decode("ascii"),
        "certificates": [base64.b64encode(c.der()).decode("ascii") for c in chain],
    }
    return canonical_json({"signature": signature, "tcb": tcb}) + b"\n"


def load_reference_tcb(
    data: bytes,
    *,
    trust: Sequence[Certificate] = (),
    now: dt.datetime,
    what: str = "the reference TCB",
) -> ReferenceTcb:
    """Verify a reference TCB file: its signature always, its signer against ``trust`` when
    anchors are given. Any change to the file is an :class:`AttestationError`."""
    try:
        doc = parse_canonical_json(data.rstrip(b"\n"), what=what)
        tcb, sig = doc["tcb"], doc["signature"]
        if set(doc) != {"tcb", "signature"}:
            raise KeyError("extra fields")
        raw = base64.b64decode(sig["signature"], validate=True)
        chain = [
            load_certificates(base64.b64decode(c, validate=True), what=what)[0]
            for c in sig["certificates"]
        ]
        algorithm = sig["algorithm"]
    except (CryptoError, KeyError, TypeError, IndexError, binascii.Error) as exc:
        raise AttestationError(f"{what} is not a modelseal reference TCB ({exc})") from exc
    if not chain:
        raise AttestationError(f"{what} carries no signer certificate")
    signer = chain[0]
    key = signer.verifying_key()
    if key.algorithm != algorithm:
        raise AttestationError(f"{what} says {algorithm} but its certificate holds {key.algorithm}")
    try:
        key.verify(raw, canonical_json(tcb))
    except CryptoError:
        raise AttestationError(
            f"{what} does not match its signature: it was changed after signing"
        ) from None
    _check_measurements(tcb)
    trusted = False
    if trust:
        try:
            verify_chain(signer, chain[1:], trust, now=now)
        except CryptoError as exc:
            raise AttestationError(
                f"{what} is signed by {signer.subject!r}, which is not trusted: {exc.message}",
                hint="pass the owner's certificate or its CA with --trust",
            ) from exc
        trusted = True
    return ReferenceTcb(
        evidence_type=tcb["evidence_type"],
        name=str(tcb["name"]),
        created=str(tcb["created"]),
        measurements=tcb["measurements"],
        signer=signer,
        trusted=trusted,
    )


def license_measurements(tcbs: Iterable[ReferenceTcb]) -> tuple[str, tuple[str, ...]]:
    """``(require_evidence, allowed_measurements)`` for a license accepting ``tcbs``: all of one
    evidence type, measurements deduplicated in order (lowercase hex, as ``Policy`` wants)."""
    tcbs = list(tcbs)
    if not tcbs:
        raise AttestationError("no reference TCB given")
    kinds = sorted({t.evidence_type for t in tcbs})
    if len(kinds) != 1:
        raise AttestationError(
            f"the reference TCBs are for {', '.join(kinds)} evidence; a license requires one type"
        )
    allowed: list[str] = []
    for tcb in tcbs:
        for value in tcb.allowed_measurements():
            if value.lower() not in allowed:
                allowed.append(value.lower())
    return kinds[0], tuple(allowed)


def _check_measurements(tcb: Any) -> None:
    try:
        if tcb["type"] != TCB_TYPE or tcb["version"] != 1:
            raise AttestationError("the reference TCB has an unknown type or version")
        kind, m = tcb["evidence_type"], tcb["measurements"]
        if kind == "software":
            runtime = RuntimeMeasurement(
                package_files=m["package_files"], interpreter=m["interpreter"], config=m["config"]
            )
            expected = reference_measurements(kind, runtime=runtime)
        else:
            expected = reference_measurements(
                kind,
                mrenclave=m.get("mrenclave"),
                mrsigner=m.get("mrsigner"),
                isv_prod_id=m.get("isv_prod_id"),
                isv_svn=m.get("isv_svn"),
                mrtd=m.get("mrtd"),
                measurement=m.get("measurement"),
            )
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise AttestationError(f"the reference TCB's measurements are malformed ({exc})") from exc
    if expected != m:
        raise AttestationError(
            "the reference TCB's measurements are inconsistent (a digest does not match its parts)"
        )


def _hex(value: str, name: str, size: int | None = None) -> str:
    size = size or _HEX_SIZES[name]
    text = value.strip().lower()
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raw = b""
    if len(raw) != size or raw.hex() != text:
        raise AttestationError(f"{name} must be {size} bytes written as {2 * size} hex digits")
    return text


def _u16(value: int, name: str) -> int:
    if type(value) is not int or not 0 <= value <= 0xFFFF:
        raise AttestationError(f"{name} must be a whole number from 0 to 65535")
    return value
