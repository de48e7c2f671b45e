"""The vault CA: certificates checked by the openssl binary, roles, SANs, CSR checks and pins."""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import subprocess
from pathlib import Path
from typing import TypeVar

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from modelseal.crypto import (
    ALGORITHMS,
    Algorithm,
    Certificate,
    CertificateAuthority,
    CryptoError,
    KeyFormatError,
    Role,
    SignatureError,
    SigningKey,
    ca_pin,
    certificate_role,
    create_ca,
    create_csr,
    create_self_signed,
    csr_public_key,
    issue_from_csr,
    issue_server_cert,
    load_certificates,
    parse_subject,
    private_key_pem_unencrypted,
    spki_sha256,
    verify_chain,
)
from tests.conftest import expect_error

T = TypeVar("T", bound=x509.ExtensionType)
NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
CA = create_ca("CN=modelseal vault CA,O=Acme", days=3650, now=NOW)


def _csr(key: SigningKey, subject: str = "CN=device-1") -> bytes:
    return create_csr(key, parse_subject(subject))


def _device(role: Role = "device", algorithm: Algorithm = "ecdsa-p256") -> Certificate:
    key = SigningKey.generate(algorithm)
    return issue_from_csr(CA, _csr(key), subject_override=None, role=role, days=365, now=NOW)


def _openssl(*args: str | Path, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["openssl", *map(str, args)], input=stdin, capture_output=True, check=False, timeout=30
    )


def _verify(tmp_path: Path, leaf: Certificate, *options: str) -> subprocess.CompletedProcess[bytes]:
    (tmp_path / "ca.pem").write_bytes(CA.certificate.pem())
    (tmp_path / "leaf.pem").write_bytes(leaf.pem())
    at = str(int(NOW.timestamp()))
    return _openssl(
        "verify", "-attime", at, "-x509_strict", "-CAfile", tmp_path / "ca.pem", *options,
        tmp_path / "leaf.pem",
    )  # fmt: skip


def _extension(cert: Certificate, kind: type[T]) -> x509.Extension[T]:
    return x509.load_der_x509_certificate(cert.der()).extensions.get_extension_for_class(kind)


def test_the_ca_certificate() -> None:
    cert = CA.certificate
    assert cert.is_ca() and cert.is_self_signed()
    assert CA.key.algorithm == "ecdsa-p256"
    basic = _extension(cert, x509.BasicConstraints)
    assert basic.critical and basic.value == x509.BasicConstraints(ca=True, path_length=0)
    usage = _extension(cert, x509.KeyUsage)
    assert usage.critical and usage.value.key_cert_sign and usage.value.crl_sign
    assert not usage.value.digital_signature
    ski = _extension(cert, x509.SubjectKeyIdentifier).value
    assert ski == x509.SubjectKeyIdentifier.from_public_key(cert.verifying_key()._key)
    assert cert.not_after - NOW == dt.timedelta(days=3650)
    assert "private" not in repr(CA) and repr(CA).startswith("CertificateAuthority(subject=")


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("role", ["device", "admin"])
def test_client_certificates_verify_with_openssl(
    tmp_path: Path, algorithm: Algorithm, role: Role
) -> None:
    cert = _device(role, algorithm)
    assert certificate_role(cert) == role
    assert cert.subject == f"CN=device-1,OU={role}"
    assert cert.issuer == CA.certificate.subject
    assert verify_chain(cert, [], [CA.certificate], now=NOW) == [cert, CA.certificate]
    result = _verify(tmp_path, cert, "-purpose", "sslclient")
    assert result.returncode == 0 and b": OK" in result.stdout, result.stderr
    # A client certificate is no server certificate.
    assert _verify(tmp_path, cert, "-purpose", "sslserver").returncode != 0


def test_client_certificate_extensions_ignore_the_request() -> None:
    key = SigningKey.generate("ecdsa-p256")
    # create_csr asks for codeSigning; the CSR subject also claims the admin role.
    csr = _csr(key, "CN=sneaky,OU=admin,OU=ops")
    cert = issue_from_csr(CA, csr, subject_override=None, role="device", days=30, now=NOW)
    assert certificate_role(cert) == "device"
    assert cert.subject == "CN=sneaky,OU=device"
    eku = _extension(cert, x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    usage = _extension(cert, x509.KeyUsage)
    assert usage.critical and usage.value.digital_signature and not usage.value.key_cert_sign
    assert _extension(cert, x509.BasicConstraints).value.ca is False
    aki = _extension(cert, x509.AuthorityKeyIdentifier).value
    ca_ski = _extension(CA.certificate, x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ca_ski.digest
    assert cert.verifying_key() == key.verifying_key() == csr_public_key(csr)


def test_subject_override_and_serial() -> None:
    key = SigningKey.generate()
    cert = issue_from_csr(
        CA,
        _csr(key, "CN=whatever-the-device-says"),
        subject_override="CN=dev-42,O=Customer A",
        role="device",
        days=30,
        now=NOW,
        serial=4242,
    )
    assert cert.subject == "CN=dev-42,O=Customer A,OU=device"
    assert x509.load_der_x509_certificate(cert.der()).serial_number == 4242
    expect_error(
        CryptoError,
        lambda: issue_from_csr(
            CA, _csr(key), subject_override=None, role="device", days=1, now=NOW, serial=0
        ),
        "serial must be positive",
    )


def test_validity_is_backdated_a_little_and_ends_with_the_ca() -> None:
    cert = _device()
    assert cert.not_before == NOW - dt.timedelta(minutes=5)
    assert cert.not_after == NOW + dt.timedelta(days=365)
    late = NOW + dt.timedelta(days=3600)
    key = SigningKey.generate()
    clamped = issue_from_csr(
        CA, _csr(key), subject_override=None, role="device", days=365, now=late
    )
    assert clamped.not_after == CA.certificate.not_after
    expired = NOW + dt.timedelta(days=3651)
    error = expect_error(
        CryptoError,
        lambda: issue_from_csr(
            CA, _csr(key), subject_override=None, role="device", days=1, now=expired
        ),
        "is not valid at",
    )
    assert error.hint and "new vault CA" in error.hint


def test_server_certificate(tmp_path: Path) -> None:
    key = SigningKey.generate("ecdsa-p256")
    hosts = ["vault.example", "localhost", "127.0.0.1", "::1"]
    cert = issue_server_cert(CA, key, hosts=hosts, days=90, now=NOW)
    san = _extension(cert, x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["vault.example", "localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    ]
    assert list(_extension(cert, x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert certificate_role(cert) is None
    for check in (["-verify_ip", "127.0.0.1"], ["-verify_hostname", "vault.example"]):
        result = _verify(tmp_path, cert, "-purpose", "sslserver", *check)
        assert result.returncode == 0, result.stderr
    assert _verify(tmp_path, cert, "-verify_hostname", "other.example").returncode != 0
    assert _verify(tmp_path, cert, "-purpose", "sslclient").returncode != 0
    expect_error(
        CryptoError, lambda: issue_server_cert(CA, key, hosts=[], days=1, now=NOW), "at least one"
    )
    expect_error(
        CryptoError,
        lambda: issue_server_cert(CA, key, hosts=["https://x"], days=1, now=NOW),
        "neither a DNS name nor an IP address",
    )


def test_a_tampered_csr_is_refused() -> None:
    key = SigningKey.generate("ecdsa-p256")
    csr = x509.load_pem_x509_csr(_csr(key))
    der = bytearray(csr.public_bytes(serialization.Encoding.DER))
    name_at = der.find(b"device-1")
    der[name_at] ^= 0x01  # the subject now says "eevice-1" under the old signature
    tampered = x509.load_der_x509_csr(bytes(der)).public_bytes(serialization.Encoding.PEM)
    for call in (
        lambda: csr_public_key(tampered),
        lambda: issue_from_csr(
            CA, tampered, subject_override="CN=x", role="device", days=1, now=NOW
        ),
    ):
        expect_error(SignatureError, call, "the CSR signature does not verify")


def test_unsupported_csr_keys_and_garbage_are_refused() -> None:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    p521 = ec.generate_private_key(ec.SECP521R1())
    for private, fragment in ((rsa_key, "RSA"), (p521, "ECDSA secp521r1")):
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "d")]))
            .sign(private, hashes.SHA256())
            .public_bytes(serialization.Encoding.PEM)
        )
        expect_error(
            KeyFormatError,
            lambda csr=csr: issue_from_csr(  # type: ignore[misc]
                CA, csr, subject_override=None, role="device", days=1, now=NOW
            ),
            fragment,
            "ECDSA P-256, ECDSA P-384 or Ed25519",
        )
    expect_error(KeyFormatError, lambda: csr_public_key(b"hello"), "not a PEM PKCS#10 CSR")
    expect_error(
        CryptoError,
        lambda: issue_from_csr(
            CA,
            _csr(SigningKey.generate()),
            subject_override=None,
            role="root",  # type: ignore[arg-type]
            days=1,
            now=NOW,
        ),
        "unknown certificate role 'root'",
    )


def test_roles_only_from_a_single_known_ou() -> None:
    key = SigningKey.generate()
    for subject in ("CN=a", "CN=a,OU=root", "CN=a,OU=device,OU=admin"):
        assert certificate_role(create_self_signed(key, parse_subject(subject))) is None
    assert certificate_role(create_self_signed(key, parse_subject("CN=a,OU=admin"))) == "admin"


def test_pins_are_the_kubeadm_discovery_hash(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_bytes(CA.certificate.pem())
    # kubeadm's documented recipe: openssl x509 -pubkey | openssl pkey -pubin -outform der | sha256
    pubkey = _openssl("x509", "-pubkey", "-noout", "-in", tmp_path / "ca.pem").stdout
    spki = _openssl("pkey", "-pubin", "-outform", "der", stdin=pubkey).stdout
    assert CA.pin == ca_pin(CA.certificate) == "sha256:" + hashlib.sha256(spki).hexdigest()
    assert spki_sha256(CA.certificate) == hashlib.sha256(spki).hexdigest()
    # Stable across reloading and across a re-issued certificate for the same key.
    (reloaded,) = load_certificates(CA.certificate.pem(), what="ca")
    assert ca_pin(reloaded) == CA.pin
    reissued = create_self_signed(CA.key, parse_subject("CN=renamed CA"))
    assert ca_pin(reissued) == CA.pin
    assert ca_pin(create_ca("CN=other", days=1, now=NOW).certificate) != CA.pin


def test_the_ca_key_and_certificate_must_match() -> None:
    other = create_ca("CN=other", days=1, now=NOW)
    expect_error(
        KeyFormatError,
        lambda: CertificateAuthority(other.key, CA.certificate),
        "does not belong to the CA certificate",
    )
    leaf_key = SigningKey.generate()
    expect_error(
        KeyFormatError,
        lambda: CertificateAuthority(
            leaf_key, create_self_signed(leaf_key, parse_subject("CN=leaf"))
        ),
        "is not a CA certificate",
    )
    assert CertificateAuthority(CA.key, CA.certificate).pin == CA.pin


def test_unencrypted_private_key_pem(tmp_path: Path) -> None:
    key = SigningKey.generate("ecdsa-p256")
    pem = private_key_pem_unencrypted(key)
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    assert SigningKey.from_pem(pem, None).verifying_key() == key.verifying_key()
    (tmp_path / "key.pem").write_bytes(pem)
    assert _openssl("pkey", "-in", tmp_path / "key.pem", "-noout").returncode == 0
