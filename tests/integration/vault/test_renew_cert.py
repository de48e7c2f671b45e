"""``vault renew-cert`` against the real server: after a restart the vault serves the new TLS
certificate, a device enrolled before still gets its key (its CA pin is unchanged), licenses
issued before still verify, and the admin commands work with the re-issued admin credential."""

from __future__ import annotations

import datetime as dt
import socket
import ssl
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from click.testing import CliRunner

from modelseal.agent import AgentHome, request_key
from modelseal.cli.main import cli
from modelseal.crypto import Certificate, load_certificates, spki_sha256
from modelseal.licensing import Policy, parse_license
from modelseal.vault.api.schemas import LicenseRequest, PolicyTerms
from modelseal.vault.client import VaultClient
from modelseal.vault.home import Pkcs11Master, VaultHome, init_vault
from tests.integration.vault._server import (
    PASSPHRASE,
    PASSPHRASE_ENV,
    make_home,
    running_vault,
    seal_to_vault,
)
from tests.softhsm import new_token


def served_certificate(url: str, ca: Path, name: str = "127.0.0.1") -> Certificate:
    """The certificate the server at ``url`` presents to a client that trusts only ``ca`` and
    reaches it as ``name`` (the handshake fails unless the certificate names it)."""
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    context = ssl.create_default_context(cafile=ca)
    with (
        socket.create_connection((parts.hostname, parts.port), timeout=10) as sock,
        context.wrap_socket(sock, server_hostname=name) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    pem = ssl.DER_cert_to_PEM_cert(der).encode()
    return load_certificates(pem, what="the served certificate")[0]


def test_a_renewed_vault_serves_the_new_certificate_to_enrolled_devices(tmp_path: Path) -> None:
    home = make_home(tmp_path / "home")
    admin_dir, ca_file = home.path / "admin", home.path / "ca/ca.pem"
    with running_vault(home) as running:
        with VaultClient.admin(running.url, admin_dir) as admin:
            package, data_key = seal_to_vault(tmp_path, admin.import_key_pem())
            admin.register_model(
                manifest=(package / "manifest.json").read_bytes(),
                signature=(package / "manifest.sig").read_bytes(),
            )
            admin.create_customer("acme")
            token = admin.create_enrollment_token(customer="acme", ttl_seconds=600).token
            request = LicenseRequest(
                customer="acme",
                model="iris",
                versions="1",
                policy=PolicyTerms.of(Policy(max_loads=10)),
            )
            license_token = admin.issue_license(request).token
        device = AgentHome.enroll(tmp_path / "device", vault_url=running.url, token=token)
        assert served_certificate(running.url, ca_file) == home.tls_certificate
        with pytest.raises(ssl.SSLCertVerificationError):
            served_certificate(running.url, ca_file, "vault.example.test")
    old_admin = (admin_dir / "client.pem").read_bytes()

    result = CliRunner(env={PASSPHRASE_ENV: PASSPHRASE}).invoke(
        cli,
        [
            "vault",
            "renew-cert",
            "--home",
            str(home.path),
            "--passphrase-env",
            PASSPHRASE_ENV,
            "--tls-host",
            "vault.example.test",
            "--admin",
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert "restart `modelseal vault serve`" in result.stdout

    renewed = VaultHome.open(home.path)
    assert renewed.tls_certificate != home.tls_certificate
    assert spki_sha256(renewed.ca_certificate) == spki_sha256(home.ca_certificate)
    assert (admin_dir / "client.pem").read_bytes() != old_admin
    with running_vault(renewed) as running:  # the restart
        assert served_certificate(running.url, ca_file) == renewed.tls_certificate
        # a device enrolled before the renewal, with the CA it pinned then
        with VaultClient.device(
            running.url, device.cert_file, device.key_file, device.ca_file
        ) as client:
            released = request_key(
                client,
                device_id=device.device_id,
                license_token=license_token,
                model_name="iris",
                model_version=None,
            )
        assert released.key == data_key
        # the re-issued admin credential
        with VaultClient.admin(running.url, admin_dir) as admin:
            assert [customer.name for customer in admin.list_customers()] == ["acme"]
            assert admin.verify_audit().ok
        # a client that reaches it under the added host name
        assert served_certificate(running.url, ca_file, "vault.example.test").fingerprint == (
            renewed.tls_certificate.fingerprint
        )
    # licenses issued before still verify against the license keys the home publishes
    assert parse_license(license_token, renewed.license_keys, now=None).customer == "acme"


def test_renewal_with_a_pkcs11_master_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    token = new_token(tmp_path, monkeypatch)
    master = Pkcs11Master(token.module, token.label, token.pin, pin_env="MS_TEST_PIN")
    home = init_vault(
        tmp_path / "home", database_url=None, master=master, now=dt.datetime.now(dt.UTC)
    )
    args = ["vault", "renew-cert", "--home", str(home.path), "-q"]
    refused = CliRunner(env={"MS_TEST_PIN": token.pin}).invoke(
        cli, [*args, "--passphrase-env", "MS_TEST_PIN"]
    )
    assert refused.exit_code == 1
    assert "--passphrase-env is for a software master key" in refused.stderr
    result = CliRunner(env={"MS_TEST_PIN": token.pin}).invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    renewed = VaultHome.open(home.path)
    assert renewed.tls_certificate != home.tls_certificate
    assert renewed.tls_certificate.fingerprint in result.stdout
    with renewed.unlock(pin=token.pin) as vault:
        assert vault.home.tls_certificate == renewed.tls_certificate
