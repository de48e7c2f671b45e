"""Device side: collect evidence of each kind, bound to the 64 report-data bytes.

- ``software``: the measured runtime document (:mod:`.software`), not hardware-backed;
- ``sgx``: inside Gramine, write the report data to ``<attestation_dir>/user_report_data`` and
  read the SGX quote from ``<attestation_dir>/quote`` (``attestation_type`` must be ``dcap``);
- ``tdx`` / ``sev-snp``: Linux configfs-tsm. Make an entry under ``<tsm_dir>``, check its
  ``provider`` (``tdx_guest`` / ``sev_guest``), write the report data to ``inblob``, read
  ``outblob`` (the TDX quote / the 1184-byte SNP report) and, for SNP, ``auxblob`` (the
  certificate table, when the host supplies one), check ``generation`` advanced by exactly one
  (nobody else wrote to the entry meanwhile), and remove the entry.

The directories are arguments so tests run the providers against a fake tree (there is no TEE in
CI); the configfs operations go through :class:`TsmFilesystem`, which a test double replaces.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Final, Protocol

from modelseal.attestation.binding import REPORT_DATA_SIZE
from modelseal.attestation.errors import AttestationError
from modelseal.attestation.snp import REPORT_SIZE
from modelseal.attestation.software import measure_runtime, software_evidence

__all__ = [
    "ATTESTATION_DIR",
    "EVIDENCE_KINDS",
    "TSM_DIR",
    "OsTsmFilesystem",
    "TsmFilesystem",
    "collect_evidence",
]

EVIDENCE_KINDS: Final = ("software", "sgx", "tdx", "sev-snp")
ATTESTATION_DIR: Final = Path("/dev/attestation")
TSM_DIR: Final = Path("/sys/kernel/config/tsm/report")
_PROVIDERS: Final = {"tdx": "tdx_guest", "sev-snp": "sev_guest"}


class TsmFilesystem(Protocol):
    """The four operations configfs-tsm needs (a test double implements them on a temp dir)."""

    def mkdir(self, path: Path) -> None: ...
    def rmdir(self, path: Path) -> None: ...
    def read(self, path: Path) -> bytes: ...
    def write(self, path: Path, data: bytes) -> None: ...


class OsTsmFilesystem:
    """The real configfs: plain system calls."""

    def mkdir(self, path: Path) -> None:
        os.mkdir(path, 0o700)

    def rmdir(self, path: Path) -> None:
        os.rmdir(path)

    def read(self, path: Path) -> bytes:
        return path.read_bytes()

    def write(self, path: Path, data: bytes) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            if os.write(fd, data) != len(data):
                raise OSError(f"short write to {path}")
        finally:
            os.close(fd)


def collect_evidence(
    kind: str,
    report_data: bytes,
    *,
    attestation_dir: Path = ATTESTATION_DIR,
    tsm_dir: Path = TSM_DIR,
    tsm: TsmFilesystem | None = None,
    package_dir: Path | None = None,
    interpreter: Path | None = None,
    config: Sequence[Path] = (),
) -> bytes:
    """Evidence of ``kind`` bound to ``report_data`` (64 bytes; see :func:`report_data`).

    ``package_dir``, ``interpreter`` and ``config`` are what ``software`` evidence measures
    (default: this installation and interpreter, no configuration file)."""
    if len(report_data) != REPORT_DATA_SIZE:
        raise AttestationError(
            f"report data must be {REPORT_DATA_SIZE} bytes, not {len(report_data)}"
        )
    if kind == "software":
        measured = measure_runtime(package_dir=package_dir, interpreter=interpreter, config=config)
        return software_evidence(report_data, measured)
    if kind == "sgx":
        return _gramine_quote(Path(attestation_dir), report_data)
    if kind in _PROVIDERS:
        return _tsm_report(kind, Path(tsm_dir), tsm or OsTsmFilesystem(), report_data)
    raise AttestationError(f"evidence kind {kind!r} is not one of {', '.join(EVIDENCE_KINDS)}")


def _gramine_quote(root: Path, report_data: bytes) -> bytes:
    try:
        kind_file = root / "attestation_type"
        if not kind_file.exists():
            raise AttestationError(
                f"{root} is missing: not running inside Gramine-SGX",
                hint='run under gramine-sgx with sgx.remote_attestation = "dcap" in the manifest',
            )
        attestation = kind_file.read_text(encoding="ascii").strip()
        if attestation != "dcap":
            raise AttestationError(
                f"Gramine's attestation type is {attestation!r}, not 'dcap'",
                hint='set sgx.remote_attestation = "dcap" in the manifest',
            )
        (root / "user_report_data").write_bytes(report_data)
        quote = (root / "quote").read_bytes()
    except OSError as exc:
        raise AttestationError(f"Gramine attestation failed: {exc.strerror or exc}") from exc
    if len(quote) < 1020:
        raise AttestationError(f"Gramine returned a {len(quote)}-byte quote; it is too short")
    return quote


def _tsm_report(kind: str, root: Path, fs: TsmFilesystem, report_data: bytes) -> bytes:
    entry = root / f"modelseal-{uuid.uuid4().hex}"
    try:
        fs.mkdir(entry)
    except FileNotFoundError:
        raise AttestationError(
            f"{root} does not exist: configfs-tsm is not available (Linux 6.7 or later in a "
            "TDX or SEV-SNP guest, configfs mounted)"
        ) from None
    except OSError as exc:
        raise AttestationError(f"cannot create a report in {root}: {exc.strerror or exc}") from exc
    try:
        provider = fs.read(entry / "provider").decode("ascii", "replace").strip()
        if provider != _PROVIDERS[kind]:
            raise AttestationError(
                f"configfs-tsm's provider is {provider!r}, so this is not a {kind} guest "
                f"({_PROVIDERS[kind]!r} expected)"
            )
        before = _generation(fs, entry)
        fs.write(entry / "inblob", report_data)
        out = fs.read(entry / "outblob")
        aux = fs.read(entry / "auxblob") if kind == "sev-snp" else b""
        after = _generation(fs, entry)
        if after != before + 1:
            raise AttestationError(
                f"configfs-tsm report {entry.name} changed while it was read (generation "
                f"{before} → {after}); another process wrote to it, try again"
            )
    except OSError as exc:
        raise AttestationError(f"configfs-tsm failed: {exc.strerror or exc}") from exc
    finally:
        try:
            fs.rmdir(entry)
        except OSError:
            pass  # the kernel frees it when the last reference goes; nothing secret is left
    if kind == "sev-snp":
        if len(out) != REPORT_SIZE:
            raise AttestationError(f"configfs-tsm returned {len(out)} bytes, not an SNP report")
        return out + aux
    return out


def _generation(fs: TsmFilesystem, entry: Path) -> int:
    text = fs.read(entry / "generation").decode("ascii", "replace").strip()
    if not text.isdigit():
        raise AttestationError(f"configfs-tsm generation {text!r} is not a number")
    return int(text)
