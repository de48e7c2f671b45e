"""``vault init`` with real parts: a SoftHSM2 token, a PostgreSQL server, and the CLI itself."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pkcs11
import pytest
from click.testing import CliRunner, Result
from pkcs11 import Attribute, ObjectClass
from sqlalchemy import inspect

from modelseal.cli.main import cli
from modelseal.crypto.masterkey import MasterKeyError
from modelseal.errors import UsageError
from modelseal.vault import _create
from modelseal.vault.db import (
    StorageError,
    check_schema_current,
    create_vault_engine,
    current_revision,
    metadata,
)
from modelseal.vault.home import HomeError, Pkcs11Master, SoftwareMaster, VaultHome, init_vault
from modelseal.vault.settings import Pkcs11MasterKeySettings
from tests.conftest import expect_error
from tests.softhsm import SoftHsmToken, new_token

NOW = datetime.now(UTC)
PASSPHRASE = "vault passphrase for the tests"  # noqa: S105 - a test passphrase
FAST = SoftwareMaster(PASSPHRASE.encode(), scrypt_n=2**10)


@pytest.fixture
def token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SoftHsmToken:
    return new_token(tmp_path, monkeypatch)


def pkcs11_master(token: SoftHsmToken, pin: str | None = None) -> Pkcs11Master:
    return Pkcs11Master(token.module, token.label, pin or token.pin, pin_env="MS_TEST_PIN")


def token_key_labels(token: SoftHsmToken) -> list[str]:
    """The labels of the secret keys in the token, read with a session of our own."""
    lib = pkcs11.lib(token.module)
    with lib.get_token(token_label=token.label).open(user_pin=token.pin) as session:
        return sorted(
            key[Attribute.LABEL]
            for key in session.get_objects({Attribute.CLASS: ObjectClass.SECRET_KEY})
        )


def failing_upgrade(monkeypatch: pytest.MonkeyPatch) -> None:
    import modelseal.vault.db as db

    def broken(*_args: object, **_kwargs: object) -> None:
        raise StorageError("the database went away")

    monkeypatch.setattr(db, "upgrade", broken)


def vault_tables(url: str) -> set[str]:
    engine = create_vault_engine(url)
    try:
        return set(inspect(engine).get_table_names()) & set(metadata.tables)
    finally:
        engine.dispose()


# --- PKCS#11 (SoftHSM2) ---------------------------------------------------------------------------


def test_pkcs11_init_then_unlock_with_the_pin(tmp_path: Path, token: SoftHsmToken) -> None:
    home = init_vault(tmp_path / "home", database_url=None, master=pkcs11_master(token), now=NOW)
    chosen = home.settings.master_key
    assert isinstance(chosen, Pkcs11MasterKeySettings)
    assert chosen.key_label == f"modelseal-{home.settings.vault_id}"
    assert (chosen.module, chosen.token_label, chosen.pin_env) == (
        token.module,
        token.label,
        "MS_TEST_PIN",
    )
    assert not (home.path / "master-key.json").exists()
    assert token_key_labels(token) == [f"{chosen.key_label}-v1"]
    for path in home.path.rglob("*"):
        if path.is_file():
            assert token.pin.encode() not in path.read_bytes(), path
    with home.unlock(pin=token.pin) as vault:
        assert vault.master_key.kind == "pkcs11"
        assert vault.ca.certificate == home.ca_certificate
        engine = vault.engine()
        engine.dispose()


def test_pkcs11_wrong_pin_is_refused(tmp_path: Path, token: SoftHsmToken) -> None:
    home = init_vault(tmp_path / "home", database_url=None, master=pkcs11_master(token), now=NOW)
    expect_error(
        MasterKeyError,
        lambda: home.unlock(pin="0000-wrong"),
        f"wrong PIN for PKCS#11 token '{token.label}'",
    )
    error = expect_error(UsageError, lambda: home.unlock(passphrase=b"x"), "give its user PIN")
    assert "export MS_TEST_PIN=" in error.diagnostics()
    with home.unlock(pin=token.pin) as vault:  # the refusals did not lock or break anything
        assert vault.settings == home.settings


def test_pkcs11_wrong_pin_at_init_leaves_nothing(tmp_path: Path, token: SoftHsmToken) -> None:
    expect_error(
        MasterKeyError,
        lambda: init_vault(
            tmp_path / "home", database_url=None, master=pkcs11_master(token, "bad"), now=NOW
        ),
        "wrong PIN",
    )
    assert sorted(os.listdir(tmp_path)) == ["softhsm"]
    assert token_key_labels(token) == []


def test_a_failure_after_the_token_key_names_what_the_token_kept(
    tmp_path: Path, token: SoftHsmToken, monkeypatch: pytest.MonkeyPatch
) -> None:
    failing_upgrade(monkeypatch)
    error = expect_error(
        HomeError,
        lambda: init_vault(
            tmp_path / "home", database_url=None, master=pkcs11_master(token), now=NOW
        ),
        f"vault init failed and was undone except that PKCS#11 token '{token.label}' keeps the "
        "master key 'modelseal-vault-",
        "the database went away",
    )
    (label,) = token_key_labels(token)
    assert f"'{label}'" in str(error) and f"--label {label}" in str(error)
    assert sorted(os.listdir(tmp_path)) == ["softhsm"]


# --- PostgreSQL ---------------------------------------------------------------------------------


def test_postgres_init_creates_the_schema_there(tmp_path: Path, postgres_url: str) -> None:
    home = init_vault(tmp_path / "home", database_url=postgres_url, master=FAST, now=NOW)
    assert home.settings.database_url == postgres_url
    assert home.database_url == postgres_url
    assert not (home.path / "vault.db").exists()
    with home.unlock(passphrase=PASSPHRASE.encode()) as vault:
        engine = vault.engine()
        try:
            assert engine.dialect.name == "postgresql"
            check_schema_current(engine)
        finally:
            engine.dispose()


def test_a_second_init_against_the_same_database_is_refused(
    tmp_path: Path, postgres_url: str
) -> None:
    init_vault(tmp_path / "first", database_url=postgres_url, master=FAST, now=NOW)
    expect_error(
        HomeError,
        lambda: init_vault(tmp_path / "second", database_url=postgres_url, master=FAST, now=NOW),
        "already holds a vault's tables; vault init needs an empty database",
    )
    assert sorted(os.listdir(tmp_path)) == ["first"]


def test_a_failure_after_the_migrations_drops_the_new_tables(
    tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_rename = _create._rename_into

    def rename(source: Path, target: Path, what: str) -> None:
        if what == "the vault home":
            raise HomeError("cannot move the vault home into place: simulated")
        real_rename(source, target, what)

    monkeypatch.setattr(_create, "_rename_into", rename)
    expect_error(
        HomeError,
        lambda: init_vault(
            tmp_path / "home",
            database_url=postgres_url,
            master=FAST,
            admin_out=tmp_path / "admin",
            now=NOW,
        ),
        "simulated",
    )
    assert os.listdir(tmp_path) == []  # neither the home nor the admin credential
    assert vault_tables(postgres_url) == set()
    engine = create_vault_engine(postgres_url)
    try:
        assert current_revision(engine) is None
    finally:
        engine.dispose()
    monkeypatch.undo()
    init_vault(tmp_path / "home", database_url=postgres_url, master=FAST, now=NOW)  # usable again


def test_an_unreachable_database_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    url = "postgresql+psycopg://postgres:hunter2@127.0.0.1:1/none"
    error = expect_error(
        StorageError,
        lambda: init_vault(tmp_path / "home", database_url=url, master=FAST, now=NOW),
        "cannot open the vault database",
    )
    assert "hunter2" not in str(error)
    assert os.listdir(tmp_path) == []


# --- the CLI --------------------------------------------------------------------------------------


def modelseal(env: dict[str, str], *args: str | Path) -> Result:
    return CliRunner(env=env).invoke(cli, [str(a) for a in args], catch_exceptions=False)


def test_cli_prints_exactly_the_two_export_lines(tmp_path: Path) -> None:
    home = tmp_path / "home"
    result = modelseal(
        {"MS_PASS": PASSPHRASE}, "vault", "init", "--home", home, "--passphrase-env", "MS_PASS"
    )
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        f"export MODELSEAL_VAULT=https://127.0.0.1:8443\nexport MODELSEAL_ADMIN={home / 'admin'}\n"
    )
    for step in (
        "created the vault CA (sha256:",
        "created the master key (software",
        "vault home ready",
    ):
        assert step in result.stderr
    VaultHome.open(home).unlock(passphrase=PASSPHRASE.encode()).close()


def test_cli_quiet_prints_only_the_export_lines(tmp_path: Path) -> None:
    result = modelseal(
        {"MS_PASS": PASSPHRASE},
        "vault",
        "init",
        "--home",
        tmp_path / "home",
        "--passphrase-env",
        "MS_PASS",
        "--url",
        "https://vault.example.com",
        "-q",
    )
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    assert result.stdout.splitlines()[0] == "export MODELSEAL_VAULT=https://vault.example.com"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--master-key", "pkcs11"], "needs --pkcs11-module PATH and --pkcs11-token LABEL"),
        (["--pkcs11-token", "t"], "need --master-key pkcs11"),
        (["--passphrase-env", "MS_UNSET"], "environment variable MS_UNSET is not set"),
        (["--url", "http://x"], "is not an https:// URL"),
    ],
)
def test_cli_usage_errors(tmp_path: Path, args: list[str], message: str) -> None:
    result = modelseal({"MS_PASS": PASSPHRASE}, "vault", "init", "--home", tmp_path / "h", *args)
    assert result.exit_code == 1
    assert result.stdout == ""
    assert message in result.stderr
    assert os.listdir(tmp_path) == []


def test_cli_refuses_an_existing_home(tmp_path: Path) -> None:
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "keep.txt").write_text("mine")
    result = modelseal(
        {"MS_PASS": PASSPHRASE},
        "vault",
        "init",
        "--home",
        tmp_path / "home",
        "--passphrase-env",
        "MS_PASS",
    )
    assert result.exit_code == 1 and result.stdout == ""
    assert "already exists and is not empty; vault init never overwrites one" in result.stderr
    assert os.listdir(tmp_path / "home") == ["keep.txt"]


def test_cli_in_a_process_with_pkcs11_and_postgres(
    tmp_path: Path, token: SoftHsmToken, postgres_database: Callable[[], str]
) -> None:
    url = postgres_database()
    home, admin = tmp_path / "home", tmp_path / "admin"
    command = [sys.executable, "-m", "modelseal", "vault", "init", "--home", str(home)]
    command += ["--database-url", url, "--master-key", "pkcs11"]
    command += ["--pkcs11-module", token.module, "--pkcs11-token", token.label]
    command += ["--pkcs11-pin-env", "MS_PIN", "--url", "https://vault.test:8443"]
    command += ["--tls-host", "10.1.2.3", "--admin-out", str(admin)]
    result = subprocess.run(
        command,
        env={**os.environ, "MS_PIN": token.pin},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        f"export MODELSEAL_VAULT=https://vault.test:8443\nexport MODELSEAL_ADMIN={admin}\n"
    )
    assert "PKCS#11 token" in result.stderr and "***" not in result.stdout
    settings = VaultHome.open(home).settings
    assert settings.tls_hosts == ["127.0.0.1", "localhost", "10.1.2.3", "vault.test"]
    assert isinstance(settings.master_key, Pkcs11MasterKeySettings)
    assert settings.master_key.pin_env == "MS_PIN"
    pkcs11.lib(token.module).reinitialize()  # see the key the other process created
    with VaultHome.open(home).unlock(pin=token.pin) as vault:
        engine = vault.engine()
        try:
            assert engine.dialect.name == "postgresql"
        finally:
            engine.dispose()
    assert sorted(os.listdir(admin)) == [
        "ca.pem",
        "client-key.pem",
        "client.pem",
        "credential.json",
    ]
