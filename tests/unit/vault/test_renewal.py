"""``vault renew-cert``: a new TLS server certificate (and admin credential) from the vault CA,
replaced so that a crash at any point leaves a home that opens with a matching pair."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import stat
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from cryptography import x509

from modelseal.cli.main import cli
from modelseal.crypto import (
    Certificate,
    SigningKey,
    certificate_role,
    create_ca,
    issue_server_cert,
    load_certificates,
    public_key_matches,
    verify_chain,
)
from modelseal.crypto.masterkey import MasterKeyError
from modelseal.errors import UsageError
from modelseal.vault import _layout as layout
from modelseal.vault import db, renewal
from modelseal.vault._create import CA_DAYS, LEAF_DAYS
from modelseal.vault.audit_verify import verify_audit
from modelseal.vault.db.schema import audit_log
from modelseal.vault.home import HomeError, VaultHome, init_vault
from modelseal.vault.renewal import RenewalError, RenewalReport, renew_certificates
from modelseal.vault.rotation import ACTOR, RotationError, rotate_master_key
from tests.conftest import expect_error
from tests.vaulthome import FAST, NOW, PASSPHRASE

LATER = NOW + timedelta(days=700)  # the certificates of vault init end at NOW + 730 days
STAGED = [layout.staged(layout.TLS_KEY), layout.staged(layout.TLS_CERT)]


class CrashError(Exception):
    """The simulated crash."""


@pytest.fixture
def home(pristine_vault_home: VaultHome, tmp_path: Path) -> VaultHome:
    """A private copy of the pristine home (SQLite inside)."""
    shutil.copytree(pristine_vault_home.path, tmp_path / "home")
    return VaultHome.open(tmp_path / "home")


def renew(home: VaultHome, **changes: object) -> RenewalReport:
    arguments: dict[str, object] = {"passphrase": PASSPHRASE, "now": LATER, **changes}
    return renew_certificates(home.path, **arguments)  # type: ignore[arg-type]


def snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under ``root``: its bytes and mode."""
    return {
        str(path.relative_to(root)): (path.read_bytes(), stat.S_IMODE(path.stat().st_mode))
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def hosts_of(cert: Certificate) -> list[str]:
    names = x509.load_pem_x509_certificate(cert.pem()).extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    )
    return [str(name.value) for name in names.value]


def audit(home: VaultHome, action: str) -> list[dict[str, Any]]:
    engine = db.create_vault_engine(home.database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                audit_log.select().where(audit_log.c.action == action).order_by(audit_log.c.seq)
            )
            return [dict(row._mapping, details=json.loads(row.details)) for row in rows]
    finally:
        engine.dispose()


def staged_files(home: VaultHome) -> list[str]:
    return sorted(
        str(path.relative_to(home.path)) for path in home.path.rglob(f"*{layout.STAGED_SUFFIX}")
    )


def assert_opens_with(home: VaultHome, cert: Certificate) -> None:
    """The home unlocks with ``cert`` in place and its key matching; nothing is left staged."""
    reopened = VaultHome.open(home.path)
    with reopened.unlock(passphrase=PASSPHRASE) as vault:
        assert reopened.tls_certificate == cert
        assert public_key_matches(cert, SigningKey.from_pem(vault.tls_key_pem, None))
    assert VaultHome.open(home.path).tls_certificate == cert
    assert staged_files(home) == []


def the_certificate(path: Path) -> Certificate:
    return load_certificates(path.read_bytes(), what=str(path))[0]


# --- the TLS server certificate -------------------------------------------------------------------


def test_renewal_issues_a_new_server_certificate_from_the_same_ca(home: VaultHome) -> None:
    old = home.tls_certificate
    lines: list[str] = []
    report = renew(home, tls_hosts=["Vault.Example.test", "localhost"], report=lines.append)

    renewed = VaultHome.open(home.path)
    new = renewed.tls_certificate
    assert new != old and new.verifying_key() != old.verifying_key()
    assert report.tls.fingerprint == new.fingerprint
    assert report.tls.path == home.path / layout.TLS_CERT
    assert new.issuer == home.ca_certificate.subject
    verify_chain(new, [], [home.ca_certificate], now=LATER)
    assert renewed.ca_certificate == home.ca_certificate  # the pin of devices and licenses
    assert hosts_of(new) == ["127.0.0.1", "localhost", "vault.example.test"]
    assert hosts_of(old) == ["127.0.0.1", "localhost"]
    assert report.hosts == ("127.0.0.1", "localhost", "vault.example.test")
    assert report.added_hosts == ("vault.example.test",)
    assert renewed.settings.tls_hosts == list(report.hosts)
    assert new.not_after - LATER > timedelta(days=LEAF_DAYS - 1) and not report.tls.capped
    assert report.admin is None
    assert_opens_with(home, new)
    mode = stat.S_IMODE((home.path / layout.TLS_KEY).stat().st_mode)
    assert (mode, stat.S_IMODE((home.path / layout.TLS_CERT).stat().st_mode)) == (0o600, 0o644)
    assert any("renewed the TLS server certificate" in line for line in lines)

    [entry] = audit(home, "tls.renew")
    assert (entry["actor"], entry["subject"], entry["outcome"]) == (ACTOR, "tls/server.pem", "ok")
    assert entry["details"] == {
        "sha256": new.fingerprint,
        "previous_sha256": old.fingerprint,
        "not_after": new.not_after.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "hosts": ["127.0.0.1", "localhost", "vault.example.test"],
    }
    assert verify_audit(home.path).ok


def test_known_hosts_leave_the_settings_alone(home: VaultHome) -> None:
    settings = (home.path / layout.SETTINGS).read_bytes()
    report = renew(home, tls_hosts=["LOCALHOST", "127.0.0.1"], days=30)
    assert report.added_hosts == ()
    assert (home.path / layout.SETTINGS).read_bytes() == settings
    assert abs(report.tls.not_after - (LATER + timedelta(days=30))) < timedelta(minutes=1)


def test_the_lifetime_ends_with_the_ca(home: VaultHome) -> None:
    late = NOW + timedelta(days=CA_DAYS - 10)
    report = renew(home, now=late)
    assert report.tls.capped
    assert report.tls.not_after == home.ca_certificate.not_after


def test_a_second_renewal_and_a_stale_home_object(home: VaultHome) -> None:
    first = renew(home)
    second = renew(home, now=LATER + timedelta(days=1))
    assert first.tls.fingerprint != second.tls.fingerprint
    assert len(audit(home, "tls.renew")) == 2
    with home.unlock(passphrase=PASSPHRASE) as vault:  # opened before both renewals
        assert home.tls_certificate.fingerprint == second.tls.fingerprint
        assert public_key_matches(
            home.tls_certificate, SigningKey.from_pem(vault.tls_key_pem, None)
        )


def test_a_renewed_home_rotates_and_still_opens(home: VaultHome) -> None:
    report = renew(home)
    rotate_master_key(home.path, passphrase=PASSPHRASE, now=LATER)
    assert VaultHome.open(home.path).tls_certificate.fingerprint == report.tls.fingerprint
    with VaultHome.open(home.path).unlock(passphrase=PASSPHRASE):
        pass


# --- the admin credential -------------------------------------------------------------------------


def test_admin_renewal_replaces_the_credential(home: VaultHome) -> None:
    admin = home.path / layout.ADMIN_DIR
    before = snapshot(admin)
    old = the_certificate(admin / layout.ADMIN_CERT)
    report = renew(home, admin=True)

    assert report.admin is not None
    new = the_certificate(admin / layout.ADMIN_CERT)
    key = SigningKey.from_pem((admin / layout.ADMIN_KEY).read_bytes(), None)
    assert new != old and public_key_matches(new, key)
    assert not public_key_matches(old, key)
    assert (new.subject, certificate_role(new)) == (old.subject, "admin")
    verify_chain(new, [], [home.ca_certificate], now=LATER)
    assert report.admin.fingerprint == new.fingerprint
    after = snapshot(admin)
    assert after["ca.pem"] == before["ca.pem"]
    assert after["client-key.pem"][1] == 0o600
    assert after["client-key.pem"][0] != before["client-key.pem"][0]
    credential = json.loads(after["credential.json"][0])
    assert credential["vault_url"] == json.loads(before["credential.json"][0])["vault_url"]
    assert credential["created"] == LATER.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert sorted(after) == sorted(before)  # nothing staged left behind
    [entry] = audit(home, "admin.renew")
    assert entry["subject"] == new.subject
    assert entry["details"]["sha256"] == new.fingerprint
    assert entry["details"]["previous_sha256"] == old.fingerprint
    assert verify_audit(home.path).ok


def test_admin_renewal_into_another_directory(home: VaultHome, tmp_path: Path) -> None:
    elsewhere = tmp_path / "operator-admin"
    report = renew(home, admin=True, admin_out=elsewhere)
    assert report.admin is not None and report.admin.path == elsewhere / "client.pem"
    assert stat.S_IMODE(elsewhere.stat().st_mode) == 0o700
    assert sorted(p.name for p in elsewhere.iterdir()) == [
        "ca.pem",
        "client-key.pem",
        "client.pem",
        "credential.json",
    ]
    assert (elsewhere / "ca.pem").read_bytes() == home.ca_certificate.pem()
    vault_url = json.loads((elsewhere / "credential.json").read_bytes())["vault_url"]
    assert vault_url == home.settings.public_urls[0]


def test_arguments_are_checked_before_any_secret(home: VaultHome, tmp_path: Path) -> None:
    before = snapshot(home.path)
    check = renewal.plan_renewal
    expect_error(UsageError, lambda: check(home.path, tls_hosts=["bad host"]), "--tls-host")
    expect_error(UsageError, lambda: check(home.path, admin_out=tmp_path), "--admin-out needs")
    expect_error(UsageError, lambda: check(home.path, days=0), "at least one day")
    shutil.rmtree(home.path / layout.ADMIN_DIR)
    expect_error(UsageError, lambda: check(home.path, admin=True), "has no admin/ directory")
    expect_error(UsageError, lambda: renew(home, pin="1234"), "takes a passphrase, not")
    assert snapshot(home.path) == {k: v for k, v in before.items() if not k.startswith("admin/")}


# --- refusals change nothing ----------------------------------------------------------------------


def test_a_wrong_passphrase_changes_nothing(home: VaultHome) -> None:
    before = snapshot(home.path)
    expect_error(
        MasterKeyError,
        lambda: renew(home, passphrase=b"not the passphrase", admin=True, tls_hosts=["x.test"]),
        "wrong passphrase",
    )
    assert snapshot(home.path) == before


def test_refused_while_a_rotation_or_renewal_holds_the_home(home: VaultHome) -> None:
    before = snapshot(home.path)
    fd = os.open(home.path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        expect_error(
            RenewalError, lambda: renew(home), "another certificate renewal or master-key rotation"
        )
    finally:
        os.close(fd)
    assert snapshot(home.path) == before


def test_a_rotation_is_refused_during_a_renewal(
    home: VaultHome, monkeypatch: pytest.MonkeyPatch
) -> None:
    def rotate_meanwhile(root: Path, relative: str) -> None:
        # Another thread: the lock is re-entrant only for the thread that holds it.
        errors: list[BaseException] = []

        def run() -> None:
            try:
                rotate_master_key(home.path, passphrase=PASSPHRASE, now=LATER)
            except BaseException as exc:  # handed to the test thread
                errors.append(exc)

        thread = threading.Thread(target=run)
        thread.start()
        thread.join()
        assert isinstance(errors[0], RotationError), errors
        assert "another master-key rotation or certificate renewal" in str(errors[0])
        promote(root, relative)

    promote = renewal._promote
    monkeypatch.setattr(renewal, "_promote", rotate_meanwhile)
    renew(home)
    assert VaultHome.open(home.path).settings.master_version == 1


def test_a_failure_before_the_renames_keeps_the_old_pair(
    home: VaultHome, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = snapshot(home.path)

    def fail(*_args: object, **_kwargs: object) -> None:
        raise CrashError("the database is gone")

    monkeypatch.setattr(renewal._Renewal, "_audit", fail)
    with pytest.raises(CrashError):
        renew(home, tls_hosts=["new.test"])
    after = snapshot(home.path)
    assert {k: v for k, v in after.items() if not k.startswith("vault.db")} == {
        k: v for k, v in before.items() if not k.startswith("vault.db")
    }
    assert_opens_with(home, home.tls_certificate)


# --- crash safety ---------------------------------------------------------------------------------


def crash_at_rename(monkeypatch: pytest.MonkeyPatch, number: int) -> None:
    """Make the ``number``-th rename of a staged file (1: the key, 2: the certificate) crash."""
    calls = []
    promote = renewal._promote

    def crashing(root: Path, relative: str) -> None:
        calls.append(relative)
        if len(calls) == number:
            raise CrashError(f"crashed before renaming {relative}")
        promote(root, relative)

    monkeypatch.setattr(renewal, "_promote", crashing)


def staged_certificate(home: VaultHome) -> Certificate:
    return the_certificate(home.path / layout.staged(layout.TLS_CERT))


@pytest.mark.parametrize(
    ("number", "left"),
    [(1, STAGED), (2, [layout.staged(layout.TLS_CERT)])],
    ids=["after-staging", "after-the-key-rename"],
)
def test_unlock_finishes_an_interrupted_renewal(
    home: VaultHome, monkeypatch: pytest.MonkeyPatch, number: int, left: list[str]
) -> None:
    old = home.tls_certificate
    crash_at_rename(monkeypatch, number)
    with pytest.raises(CrashError):
        renew(home)
    monkeypatch.undo()
    assert staged_files(home) == sorted(left)
    new = staged_certificate(home)
    [entry] = audit(home, "tls.renew")  # audited before the certificate was staged
    assert entry["details"]["sha256"] == new.fingerprint
    assert (
        VaultHome.open(home.path).tls_certificate == old
    )  # open() needs no secret, changes nothing
    assert staged_files(home) == sorted(left)
    assert_opens_with(home, new)


def test_a_renewal_after_a_crash_finishes_it_first(
    home: VaultHome, monkeypatch: pytest.MonkeyPatch
) -> None:
    crash_at_rename(monkeypatch, 2)
    with pytest.raises(CrashError):
        renew(home)
    monkeypatch.undo()
    report = renew(home, now=LATER + timedelta(hours=1))
    assert [e["details"]["sha256"] for e in audit(home, "tls.renew")][-1] == report.tls.fingerprint
    assert_opens_with(home, VaultHome.open(home.path).tls_certificate)


def tamper_key(home: VaultHome) -> None:
    path = home.path / layout.staged(layout.TLS_KEY)
    blob = bytearray(path.read_bytes())
    blob[-1] ^= 1
    path.write_bytes(bytes(blob))


def truncate_certificate(home: VaultHome) -> None:
    path = home.path / layout.staged(layout.TLS_CERT)
    path.write_bytes(path.read_bytes()[:200])  # a half-written file


def drop_certificate(home: VaultHome) -> None:  # a crash while staging the key
    (home.path / layout.staged(layout.TLS_CERT)).unlink()


def old_certificate(home: VaultHome) -> None:  # a certificate that does not fit the staged key
    (home.path / layout.staged(layout.TLS_CERT)).write_bytes(home.tls_certificate.pem())


def certificate_from_another_ca(home: VaultHome) -> None:
    other = create_ca("CN=not the vault", days=3650, now=NOW)
    key = SigningKey.generate("ecdsa-p256")
    cert = issue_server_cert(other, key, hosts=["127.0.0.1"], days=1, now=LATER)
    (home.path / layout.staged(layout.TLS_CERT)).write_bytes(cert.pem())


@pytest.mark.parametrize(
    "tamper",
    [
        tamper_key,
        truncate_certificate,
        drop_certificate,
        old_certificate,
        certificate_from_another_ca,
    ],
)
def test_a_staged_pair_that_does_not_fit_is_discarded(
    home: VaultHome, monkeypatch: pytest.MonkeyPatch, tamper: Callable[[VaultHome], None]
) -> None:
    old = home.tls_certificate
    crash_at_rename(monkeypatch, 1)
    with pytest.raises(CrashError):
        renew(home)
    monkeypatch.undo()
    tamper(home)
    assert_opens_with(home, old)


def test_a_matching_pair_not_signed_by_the_vault_ca_is_never_used(
    home: VaultHome, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A staged key with a certificate for it from another CA (made by a patched issuer)."""
    old = home.tls_certificate
    other = create_ca("CN=not the vault", days=3650, now=NOW)

    def issue_elsewhere(_ca: object, key: SigningKey, **kwargs: object) -> Certificate:
        return issue_server_cert(other, key, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(renewal, "issue_server_cert", issue_elsewhere)
    crash_at_rename(monkeypatch, 2)
    with pytest.raises(CrashError):
        renew(home)
    monkeypatch.undo()
    assert staged_files(home) == [layout.staged(layout.TLS_CERT)]
    # The key in place is the new one and the staged certificate is unusable: the home does not
    # open (rather than serve a certificate the CA did not sign), and says what to do.
    expect_error(
        HomeError,
        lambda: VaultHome.open(home.path).unlock(passphrase=PASSPHRASE),
        "does not belong to tls/server.pem",
    )
    assert staged_files(home) == []
    assert VaultHome.open(home.path).tls_certificate == old


def test_an_interrupted_admin_renewal_is_finished_by_the_next_one(
    home: VaultHome, monkeypatch: pytest.MonkeyPatch
) -> None:
    admin = home.path / layout.ADMIN_DIR
    crash_at_rename(monkeypatch, 4)  # TLS key, TLS certificate, admin key, (crash) admin cert
    with pytest.raises(CrashError):
        renew(home, admin=True)
    monkeypatch.undo()
    assert sorted(p.name for p in admin.iterdir() if p.name.endswith(".next")) == [
        "client.pem.next"
    ]
    staged = the_certificate(admin / "client.pem.next")
    key = SigningKey.from_pem((admin / layout.ADMIN_KEY).read_bytes(), None)
    assert public_key_matches(staged, key)  # the key in place is already the new one
    report = renew(home, admin=True, now=LATER + timedelta(hours=1))
    assert report.admin is not None
    cert = the_certificate(admin / layout.ADMIN_CERT)
    assert cert.fingerprint == report.admin.fingerprint
    assert public_key_matches(
        cert, SigningKey.from_pem((admin / layout.ADMIN_KEY).read_bytes(), None)
    )
    assert not any(p.name.endswith(".next") for p in admin.iterdir())


def test_settling_directly_finishes_a_staged_admin_pair(
    home: VaultHome, monkeypatch: pytest.MonkeyPatch
) -> None:
    admin = home.path / layout.ADMIN_DIR
    crash_at_rename(monkeypatch, 3)  # before the admin key's rename
    with pytest.raises(CrashError):
        renew(home, admin=True)
    monkeypatch.undo()
    staged = the_certificate(admin / "client.pem.next")
    settled = layout.settle_staged_pair(
        admin,
        layout.ADMIN_KEY,
        layout.ADMIN_CERT,
        ca=home.ca_certificate,
        open_key=lambda pem: SigningKey.from_pem(pem, None),
    )
    assert settled == staged == the_certificate(admin / layout.ADMIN_CERT)
    assert public_key_matches(
        staged, SigningKey.from_pem((admin / layout.ADMIN_KEY).read_bytes(), None)
    )


# --- the command ----------------------------------------------------------------------------------


@pytest.fixture
def current_home(tmp_path: Path) -> VaultHome:
    """A home made now (the command renews at the current time; the pristine CA starts later)."""
    return init_vault(tmp_path / "now", database_url=None, master=FAST, now=datetime.now(UTC))


def test_cli_renews_and_says_to_restart(current_home: VaultHome) -> None:
    home = current_home
    env = {"MS_PASSPHRASE": PASSPHRASE.decode()}
    args = ["vault", "renew-cert", "--home", str(home.path), "--passphrase-env", "MS_PASSPHRASE"]
    result = CliRunner(env=env).invoke(
        cli, [*args, "--tls-host", "vault.example.test", "--admin"], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    renewed = VaultHome.open(home.path)
    assert f"sha256 {renewed.tls_certificate.fingerprint}" in result.stdout
    assert "renewed the TLS server certificate" in result.stdout
    assert "renewed the admin credential" in result.stdout
    assert f"valid until {renewed.tls_certificate.not_after:%Y-%m-%d}" in result.stdout
    assert "restart `modelseal vault serve`" in result.stdout
    assert "vault.example.test" in renewed.settings.tls_hosts
    assert "renewed the TLS server certificate (tls/server.pem)" in result.stderr
    quiet = CliRunner(env=env).invoke(cli, [*args, "-q"], catch_exceptions=False)
    assert quiet.exit_code == 0 and quiet.stderr == ""


def test_cli_help_and_defaults() -> None:
    result = CliRunner().invoke(cli, ["vault", "renew-cert", "--help"])
    assert result.exit_code == 0
    assert "restart" in result.stdout and "--admin-out" in result.stdout
    command = cli.commands["vault"].commands["renew-cert"]  # type: ignore[attr-defined]
    days = next(p for p in command.params if p.name == "days")
    assert days.default == LEAF_DAYS


def test_cli_refuses_a_bad_host_before_asking(home: VaultHome) -> None:
    result = CliRunner().invoke(
        cli, ["vault", "renew-cert", "--home", str(home.path), "--tls-host", "no such host"]
    )
    assert result.exit_code == 1
    assert "--tls-host" in result.stderr and "Passphrase" not in result.output
