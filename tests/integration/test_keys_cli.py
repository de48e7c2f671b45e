"""`modelseal keys` against the real openssl binary: every file it writes, and a foreign CA."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from modelseal.cli.main import cli
from modelseal.crypto import ALGORITHMS, Algorithm
from modelseal.keys import Keystore

PASS = "open sesame"  # noqa: S105 - a test passphrase
ENV = {"MS_TEST_PASS": PASS, "MS_WRONG_PASS": "open barley"}

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl binary")


def modelseal(*args: str | Path) -> Result:
    return CliRunner(env=ENV).invoke(cli, [str(a) for a in args], catch_exceptions=False)


def openssl(*args: str | Path, cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["openssl", *map(str, args)],
        cwd=cwd,
        env={**os.environ, **ENV},
        capture_output=True,
        text=True,
        check=check,
        timeout=30,
    )


def create(out: Path, *extra: str) -> Result:
    result = modelseal(
        "keys",
        "create",
        "--name",
        "Acme Models",
        "--out",
        out,
        "--passphrase-env",
        "MS_TEST_PASS",
        *extra,
    )
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture
def ks(tmp_path: Path) -> Path:
    create(tmp_path / "ks", "-q")
    return tmp_path / "ks"


@pytest.fixture
def ca(tmp_path: Path) -> Iterator[Path]:
    """An OpenSSL-made CA (P-256, CA:TRUE from an ext file) in its own directory."""
    ca_dir = tmp_path / "ca"
    ca_dir.mkdir()
    (ca_dir / "ca.ext").write_text(
        "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n"
    )
    (ca_dir / "leaf.ext").write_text(
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=codeSigning\n"
    )
    openssl(
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-out",
        "ca.key",
        cwd=ca_dir,
    )
    openssl(
        "req", "-new", "-key", "ca.key", "-subj", "/O=Test/CN=Test CA", "-out", "ca.csr", cwd=ca_dir
    )
    openssl(
        "x509",
        "-req",
        "-in",
        "ca.csr",
        "-signkey",
        "ca.key",
        "-extfile",
        "ca.ext",
        "-days",
        "30",
        "-out",
        "ca.pem",
        cwd=ca_dir,
    )
    yield ca_dir


def issue(ca_dir: Path, csr: Path, out: str, *extra: str) -> Path:
    openssl(
        "x509",
        "-req",
        "-in",
        csr,
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-set_serial",
        "4242",
        "-extfile",
        "leaf.ext",
        "-days",
        "10",
        "-out",
        out,
        *extra,
        cwd=ca_dir,
    )
    return ca_dir / out


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_openssl_reads_every_file(tmp_path: Path, algorithm: Algorithm) -> None:
    result = create(tmp_path / "ks", "--algorithm", algorithm, "--subject", "CN=Acme Models,O=Acme")
    ks = tmp_path / "ks"
    openssl("pkey", "-in", "private-key.pem", "-passin", "env:MS_TEST_PASS", "-noout", cwd=ks)
    wrong = openssl(
        "pkey",
        "-in",
        "private-key.pem",
        "-passin",
        "env:MS_WRONG_PASS",
        "-noout",
        cwd=ks,
        check=False,
    )
    assert wrong.returncode != 0
    subject = openssl("x509", "-in", "certificate.pem", "-noout", "-subject", cwd=ks).stdout
    assert subject.strip() == "subject=O = Acme, CN = Acme Models"
    verify = openssl("req", "-in", "request.csr.pem", "-verify", "-noout", cwd=ks)
    assert "verify OK" in verify.stdout + verify.stderr
    fingerprint = openssl(
        "x509", "-in", "certificate.pem", "-noout", "-fingerprint", "-sha256", cwd=ks
    ).stdout
    hex_digits = fingerprint.strip().split("=", 1)[1].replace(":", "").lower()
    assert f"SHA-256 {hex_digits}" in result.stderr
    assert f"({algorithm})" in result.stderr
    assert "request.csr.pem" in result.stderr and "import-cert" in result.stderr


def test_quiet_create_prints_nothing(tmp_path: Path) -> None:
    assert create(tmp_path / "ks", "-q").output == ""


def test_create_refuses_an_existing_keystore(ks: Path) -> None:
    before = sorted((p.name, p.read_bytes()) for p in ks.iterdir())
    result = CliRunner(env=ENV).invoke(
        cli, ["keys", "create", "--name", "X", "--out", str(ks), "--passphrase-env", "MS_TEST_PASS"]
    )
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: {ks} already exists and is not an empty directory")
    assert sorted((p.name, p.read_bytes()) for p in ks.iterdir()) == before


def test_a_ca_certificate_is_imported_and_shown(ks: Path, ca: Path) -> None:
    leaf = issue(ca, ks / "request.csr.pem", "leaf.pem")
    result = modelseal(
        "keys", "import-cert", "--keystore", ks, "--cert", leaf, "--chain", ca / "ca.pem"
    )
    assert result.exit_code == 0, result.output
    assert "issuer       CN=Test CA,O=Test" in result.stderr
    assert "1 certificate(s) in chain.pem" in result.stderr

    shown = json.loads(modelseal("keys", "show", "--keystore", ks, "--json").stdout)
    assert shown["issuer"] == "CN=Test CA,O=Test"
    assert shown["subject"] == "CN=Acme Models"
    assert shown["self_signed"] is False
    assert shown["valid_now"] is True
    assert [c["subject"] for c in shown["chain"]] == ["CN=Test CA,O=Test"]
    text = modelseal("keys", "show", "--keystore", ks).stdout
    assert "issuer       CN=Test CA,O=Test\n" in text
    assert "chain        CN=Test CA,O=Test" in text

    openssl("verify", "-CAfile", ca / "ca.pem", "certificate.pem", cwd=ks)
    assert (ks / "certificate.previous.pem").exists()
    keystore = Keystore.load(ks)
    assert keystore.signing_key(PASS.encode()).algorithm == "ed25519"
    assert [c.subject for c in keystore.certificate_chain()] == [
        "CN=Acme Models",
        "CN=Test CA,O=Test",
    ]


def test_a_der_certificate_is_imported(ks: Path, ca: Path) -> None:
    leaf = issue(ca, ks / "request.csr.pem", "leaf.der", "-outform", "DER")
    result = modelseal(
        "keys", "import-cert", "--keystore", ks, "--cert", leaf, "--chain", ca / "ca.pem", "-q"
    )
    assert (result.exit_code, result.output) == (0, "")
    assert (ks / "certificate.pem").read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")


def test_a_certificate_for_an_unrelated_key_is_refused(ks: Path, tmp_path: Path) -> None:
    openssl(
        "req",
        "-x509",
        "-newkey",
        "ed25519",
        "-nodes",
        "-keyout",
        "other.key",
        "-subj",
        "/CN=Other",
        "-days",
        "5",
        "-out",
        "other.pem",
        cwd=tmp_path,
    )
    before = (ks / "certificate.pem").read_bytes()
    result = CliRunner(env=ENV).invoke(
        cli, ["keys", "import-cert", "--keystore", str(ks), "--cert", str(tmp_path / "other.pem")]
    )
    assert result.exit_code == 1
    assert result.stderr == (
        f"error: the certificate for 'CN=Other' certifies a different key than keystore {ks}; "
        f"nothing was changed\n  hint: have the CA sign {ks}/request.csr.pem\n"
    )
    assert (ks / "certificate.pem").read_bytes() == before
    assert not (ks / "certificate.previous.pem").exists()


def test_a_chain_from_another_ca_is_refused(ks: Path, ca: Path, tmp_path: Path) -> None:
    leaf = issue(ca, ks / "request.csr.pem", "leaf.pem")
    openssl(
        "req",
        "-x509",
        "-newkey",
        "ed25519",
        "-nodes",
        "-keyout",
        "rogue.key",
        "-subj",
        "/O=Test/CN=Test CA",
        "-days",
        "5",
        "-out",
        "rogue.pem",
        cwd=tmp_path,
    )
    result = CliRunner(env=ENV).invoke(
        cli,
        [
            "keys",
            "import-cert",
            "--keystore",
            str(ks),
            "--cert",
            str(leaf),
            "--chain",
            str(tmp_path / "rogue.pem"),
        ],
    )
    assert result.exit_code == 1
    assert result.stderr.startswith("error: the chain does not issue the certificate: ")
    assert not (ks / "chain.pem").exists()


def test_help_explains_the_files() -> None:
    for command in (["keys"], ["keys", "create"], ["keys", "import-cert"], ["keys", "show"]):
        result = modelseal(*command, "--help")
        assert result.exit_code == 0
        assert result.stdout.startswith(f"Usage: cli {' '.join(command)}")
    group_help = modelseal("keys", "--help").stdout
    for name in (
        "keystore.json",
        "private-key.pem",
        "certificate.pem",
        "request.csr.pem",
        "chain.pem",
    ):
        assert name in group_help


def test_the_installed_command(tmp_path: Path) -> None:
    """The real entry point in a subprocess: output streams and exit codes."""
    env = {**os.environ, **ENV}
    base = [sys.executable, "-m", "modelseal", "keys"]
    out = tmp_path / "ks"
    created = subprocess.run(
        [*base, "create", "--name", "Acme", "--out", str(out), "--passphrase-env", "MS_TEST_PASS"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert created.returncode == 0, created.stderr
    assert created.stdout == ""
    shown = subprocess.run(
        [*base, "show", "--keystore", str(out), "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert json.loads(shown.stdout)["subject"] == "CN=Acme"
    missing = subprocess.run(
        [*base, "show", "--keystore", str(tmp_path / "nope")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert missing.returncode == 1
    assert missing.stderr.startswith(
        f"error: no keystore at {tmp_path / 'nope'}: it does not exist\n"
    )
