"""Report data, the software TCB, and the providers against fake device trees (test doubles:
there is no TEE here)."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
from pathlib import Path

import pytest

from modelseal.attestation import (
    AttestationError,
    AttestationPolicy,
    collect_evidence,
    measure_runtime,
    report_data,
    verify_evidence,
)
from modelseal.attestation.certs import build_snp_cert_table
from modelseal.attestation.providers import OsTsmFilesystem

from .conftest import SNP_NOW, snp_report, vector

RD = report_data("bm9uY2U", b"\x01" * 32)


def test_report_data_is_sha384_of_canonical_json_padded() -> None:
    body = json.dumps(
        {
            "nonce": "bm9uY2U",
            "public_key": base64.urlsafe_b64encode(b"\x01" * 32).decode().rstrip("="),
        },
        sort_keys=True,
        separators=(",", ":"),
    ).encode()
    assert RD == hashlib.sha384(body).digest() + bytes(16)
    assert report_data("bm9uY2U", b"\x02" * 32) != RD
    with pytest.raises(Exception, match="nonce"):
        report_data("", b"\x01")


@pytest.fixture
def runtime(tmp_path: Path) -> dict[str, Path]:
    """A fake installation: a package directory, an 'interpreter' and a config file."""
    package = tmp_path / "modelseal"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("x = 1\n")
    (package / "sub" / "mod.py").write_text("y = 2\n")
    (package / "__pycache__").mkdir()
    (package / "__pycache__" / "junk.pyc").write_bytes(b"ignored")
    interpreter = tmp_path / "python"
    interpreter.write_bytes(b"\x7fELF fake interpreter")
    config = tmp_path / "config.json"
    config.write_text('{"model_config_list": []}\n')
    return {"package_dir": package, "interpreter": interpreter, "config": config}


def collect(runtime: dict[str, Path], rd: bytes = RD) -> bytes:
    return collect_evidence(
        "software",
        rd,
        package_dir=runtime["package_dir"],
        interpreter=runtime["interpreter"],
        config=[runtime["config"]],
    )


def software_policy(runtime: dict[str, Path]) -> AttestationPolicy:
    measured = measure_runtime(
        package_dir=runtime["package_dir"],
        interpreter=runtime["interpreter"],
        config=[runtime["config"]],
    )
    return AttestationPolicy.for_license("software", [measured.measurement])


def test_unchanged_runtime_passes_and_is_labelled_not_hardware_backed(
    runtime: dict[str, Path],
) -> None:
    verdict = verify_evidence(
        "software", collect(runtime), report_data=RD, policy=software_policy(runtime), now=SNP_NOW
    )
    assert verdict.passed, verdict.failure_sentences()
    assert verdict.hardware_backed is False
    assert verdict.measurements["package_files"] == 2  # __pycache__ is not measured


@pytest.mark.parametrize("change", ["package", "interpreter", "config", "new-file"])
def test_changed_runtime_is_refused(runtime: dict[str, Path], change: str) -> None:
    policy = software_policy(runtime)
    if change == "package":
        (runtime["package_dir"] / "sub" / "mod.py").write_text("y = 3\n")
    elif change == "new-file":
        (runtime["package_dir"] / "evil.py").write_text("import os\n")
    else:
        runtime[change].write_bytes(runtime[change].read_bytes() + b" ")
    verdict = verify_evidence(
        "software", collect(runtime), report_data=RD, policy=policy, now=SNP_NOW
    )
    assert [c.claim for c in verdict.failures] == ["measurement"]


def test_software_is_refused_by_a_production_policy(runtime: dict[str, Path]) -> None:
    measured = measure_runtime(
        package_dir=runtime["package_dir"],
        interpreter=runtime["interpreter"],
        config=[runtime["config"]],
    )
    policy = AttestationPolicy(allowed_measurements=(measured.measurement,))
    verdict = verify_evidence(
        "software", collect(runtime), report_data=RD, policy=policy, now=SNP_NOW
    )
    assert [c.claim for c in verdict.failures] == ["hardware_backed"]
    assert "not hardware-backed" in verdict.failure_sentences()[0]


def test_forged_document_and_wrong_binding_are_refused(runtime: dict[str, Path]) -> None:
    policy = software_policy(runtime)
    evidence = collect(runtime)
    doc = json.loads(evidence)
    doc["measurement"] = "ab" * 48
    forged = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    verdict = verify_evidence("software", forged, report_data=RD, policy=policy, now=SNP_NOW)
    assert {"digests", "measurement"} <= {c.claim for c in verdict.failures}
    other = verify_evidence(
        "software", collect(runtime, bytes(64)), report_data=RD, policy=policy, now=SNP_NOW
    )
    assert [c.claim for c in other.failures] == ["report_data"]
    garbage = verify_evidence("software", b"{}", report_data=RD, policy=policy, now=SNP_NOW)
    assert [c.claim for c in garbage.failures] == ["format"]


def test_this_installation_can_be_measured() -> None:
    measured = measure_runtime()
    assert "__init__.py" in measured.package_files
    assert "attestation/software.py" in measured.package_files
    assert len(measured.measurement) == 96


# --- sgx: Gramine's /dev/attestation, faked as a directory ----------------------------------------


def test_gramine_provider_writes_report_data_and_reads_the_quote(tmp_path: Path) -> None:
    dev = tmp_path / "attestation"
    dev.mkdir()
    (dev / "attestation_type").write_text("dcap\n")
    (dev / "user_report_data").write_bytes(b"")
    (dev / "quote").write_bytes(vector("dcap-qvl/sgx_quote"))
    quote = collect_evidence("sgx", RD, attestation_dir=dev)
    assert quote == vector("dcap-qvl/sgx_quote")
    assert (dev / "user_report_data").read_bytes() == RD
    (dev / "attestation_type").write_text("epid\n")
    with pytest.raises(AttestationError, match="not 'dcap'"):
        collect_evidence("sgx", RD, attestation_dir=dev)
    with pytest.raises(AttestationError, match="not running inside Gramine"):
        collect_evidence("sgx", RD, attestation_dir=tmp_path / "absent")


# --- tdx / sev-snp: configfs-tsm, faked ------------------------------------------------------------


class FakeTsm(OsTsmFilesystem):
    """A test double of the kernel's configfs-tsm on a temporary directory: mkdir makes the
    attribute files, writing inblob bumps generation and produces outblob (a sample whose
    report data is replaced, so the binding is visible) and auxblob."""

    def __init__(self, provider: str, outblob: bytes, auxblob: bytes = b"", rd_offset: int = 0):
        self.provider, self.outblob, self.auxblob, self.rd_offset = (
            provider,
            outblob,
            auxblob,
            rd_offset,
        )
        self.extra_writes = 0
        self.made: list[Path] = []

    def mkdir(self, path: Path) -> None:
        super().mkdir(path)
        self.made.append(path)
        (path / "provider").write_text(self.provider + "\n")
        (path / "generation").write_text("0\n")
        for name in ("inblob", "outblob", "auxblob"):
            (path / name).write_bytes(b"")

    def write(self, path: Path, data: bytes) -> None:
        super().write(path, data)
        generation = int((path.parent / "generation").read_text()) + 1 + self.extra_writes
        (path.parent / "generation").write_text(f"{generation}\n")
        out = bytearray(self.outblob)
        out[self.rd_offset : self.rd_offset + 64] = data
        (path.parent / "outblob").write_bytes(bytes(out))
        (path.parent / "auxblob").write_bytes(self.auxblob)

    def rmdir(self, path: Path) -> None:
        shutil.rmtree(path)


def test_tsm_provider_for_snp_returns_report_and_certificate_table(tmp_path: Path) -> None:
    table = build_snp_cert_table({"vcek": vector("virtee-sev/vcek_milan.der")})
    fake = FakeTsm("sev_guest", snp_report("virtee-sev/report_milan.hex"), table, rd_offset=0x50)
    evidence = collect_evidence("sev-snp", RD, tsm_dir=tmp_path, tsm=fake)
    assert evidence[0x50:0x90] == RD and evidence[0x4A0:] == table
    assert list(tmp_path.iterdir()) == []  # the entry was removed
    # the fake's report is not signed over our report data: the signature claim says so
    verdict = verify_evidence(
        "sev-snp",
        evidence,
        report_data=RD,
        policy=AttestationPolicy.inspection(),
        now=SNP_NOW,
        certs=[vector("go-sev-guest/ask_ark_milan.pem")],
    )
    assert {c.claim: c.outcome for c in verdict.checks}["report_data"] == "pass"
    assert "report_signature" in {c.claim for c in verdict.failures}


def test_tsm_provider_for_tdx_and_its_refusals(tmp_path: Path) -> None:
    quote = vector("dcap-qvl/tdx_quote")
    fake = FakeTsm("tdx_guest", quote, rd_offset=48 + 520)
    assert collect_evidence("tdx", RD, tsm_dir=tmp_path, tsm=fake)[568:632] == RD
    with pytest.raises(AttestationError, match="not a sev-snp guest"):
        collect_evidence("sev-snp", RD, tsm_dir=tmp_path, tsm=fake)
    fake.extra_writes = 1  # someone else wrote to the entry meanwhile
    with pytest.raises(AttestationError, match="changed while it was read"):
        collect_evidence("tdx", RD, tsm_dir=tmp_path, tsm=fake)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(AttestationError, match="configfs-tsm is not available"):
        collect_evidence("tdx", RD, tsm_dir=tmp_path / "absent")
    with pytest.raises(AttestationError, match="64 bytes"):
        collect_evidence("tdx", b"short", tsm_dir=tmp_path, tsm=fake)
