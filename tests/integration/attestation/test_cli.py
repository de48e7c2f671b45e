"""``modelseal tcb`` and ``modelseal evidence`` as a user runs them (subprocesses)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import PASSPHRASE, PASSPHRASE_ENV

VECTORS = Path(__file__).resolve().parents[2] / "vectors" / "attestation"
MRENCLAVE = "33d8736db756ed4997e04ba358d27833188f1932ff7b1d156904d3f560452fbb"


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, **{PASSPHRASE_ENV: PASSPHRASE})
    return subprocess.run(
        [sys.executable, "-m", "modelseal", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def test_verify_prints_measurements_and_every_failed_claim() -> None:
    result = run(
        "evidence", "verify", VECTORS / "trustee/occlum_quote.dat", "--type", "sgx",
        "--now", "1735689600",
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    out = result.stdout
    assert "mrenclave: 8f173e4613ff05c52aaf04162d234edae8c9977eae47eb2299ae16a553011c68" in out
    assert "verdict: FAIL (3 failed claim(s))" in out
    for claim in ("collateral:", "tcb_status:", "debug:"):
        assert f"  - {claim}" in out


def test_verify_passes_with_a_policy_and_collateral(tmp_path: Path) -> None:
    policy = tmp_path / "policy.json"
    policy.write_text(
        json.dumps(
            {
                "allowed_measurements": [MRENCLAVE],
                "tcb_statuses": ["ConfigurationAndSWHardeningNeeded"],
            }
        )
    )
    args = (
        "evidence", "verify", VECTORS / "dcap-qvl/sgx_quote", "--type", "sgx",
        "--collateral", VECTORS / "dcap-qvl/sgx_quote_collateral.json",
        "--policy", policy, "--report-data", b"Hello, world!".ljust(64, b"\0").hex(),
    )  # fmt: skip
    passed = run(*args, "--now", "1752919277", "--json")
    assert passed.returncode == 0, passed.stdout + passed.stderr
    verdict = json.loads(passed.stdout)
    assert verdict["passed"] and verdict["tcb_status"] == "ConfigurationAndSWHardeningNeeded"
    expired = run(*args, "--now", str(1752919277 + 40 * 86400))
    assert expired.returncode == 1
    assert "  - freshness: " in expired.stdout and "  - collateral: " in expired.stdout


def test_snp_hex_report_with_certs() -> None:
    result = run(
        "evidence", "verify", VECTORS / "virtee-sev/report_milan.hex", "--type", "sev-snp",
        "--certs", VECTORS / "virtee-sev/vcek_milan.der",
        "--certs", VECTORS / "virtee-sev/cert_chain_milan", "--now", "1735689600",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "verdict: PASS" in result.stdout


def test_tcb_create_show_and_verify_with_it(owner_keystore: Path, tmp_path: Path) -> None:
    tcb = tmp_path / "runtime.tcb"
    created = run(
        "tcb", "create", "--keystore", owner_keystore, "--type", "sgx", "--mrenclave", MRENCLAVE,
        "--out", tcb, "--passphrase-env", PASSPHRASE_ENV,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    cert = owner_keystore / "certificate.pem"
    shown = run("tcb", "show", tcb, "--trust", cert, "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["allowed_measurements"] == [MRENCLAVE]
    verified = run(
        "evidence", "verify", VECTORS / "dcap-qvl/sgx_quote", "--type", "sgx", "--tcb", tcb,
        "--collateral", VECTORS / "dcap-qvl/sgx_quote_collateral.json", "--now", "1752919277",
    )  # fmt: skip
    assert "ok   measurement: MRENCLAVE / MRSIGNER identity" in verified.stdout
    tcb.write_bytes(tcb.read_bytes().replace(MRENCLAVE.encode(), b"0" * 64))
    tampered = run("tcb", "show", tcb, "--trust", cert)
    assert tampered.returncode == 1
    assert "changed after signing" in tampered.stderr
