"""Master-key rotation with real parts: a SoftHSM2 token, and a PostgreSQL database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pkcs11
import pytest
from click.testing import CliRunner
from pkcs11 import Attribute, ObjectClass
from sqlalchemy import Engine, update

from modelseal.cli.main import cli
from modelseal.crypto import DataKey
from modelseal.crypto.masterkey import MasterKeyRing
from modelseal.vault import db
from modelseal.vault.audit_verify import verify_audit
from modelseal.vault.db.schema import audit_log
from modelseal.vault.home import Pkcs11Master, SoftwareMaster, VaultHome, init_vault
from modelseal.vault.rotation import _Rotation, rotate_master_key
from modelseal.vault.settings import Pkcs11MasterKeySettings
from tests.softhsm import SoftHsmToken, new_token
from tests.vaultmodels import NOW, master_versions, register_models, unwrap_all

PASSPHRASE = b"rotation on postgres"


class CrashError(Exception):
    """The simulated crash."""


@pytest.fixture
def token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SoftHsmToken:
    return new_token(tmp_path, monkeypatch)


@pytest.fixture
def home(tmp_path: Path, token: SoftHsmToken) -> VaultHome:
    master = Pkcs11Master(token.module, token.label, token.pin, pin_env="MS_TEST_PIN")
    return init_vault(tmp_path / "home", database_url=None, master=master, now=NOW)


@pytest.fixture
def engine(home: VaultHome) -> Iterator[Engine]:
    engine = db.create_vault_engine(home.database_url)
    yield engine
    engine.dispose()


def register(home: VaultHome, engine: Engine, *, pin: str | None = None) -> dict[str, DataKey]:
    with VaultHome.open(home.path).unlock(passphrase=None if pin else PASSPHRASE, pin=pin) as v:
        return register_models(engine, v.master_key)


def token_labels(token: SoftHsmToken) -> list[str]:
    lib = pkcs11.lib(token.module)
    with lib.get_token(token_label=token.label).open(user_pin=token.pin) as session:
        return sorted(
            key[Attribute.LABEL]
            for key in session.get_objects({Attribute.CLASS: ObjectClass.SECRET_KEY})
        )


def assert_rotated_to(
    home: VaultHome,
    engine: Engine,
    keys: dict[str, DataKey],
    version: int,
    *,
    pin: str | None = None,
) -> None:
    opened = VaultHome.open(home.path)
    assert opened.settings.master_version == version
    assert master_versions(engine) == {version}
    with opened.unlock(passphrase=None if pin else PASSPHRASE, pin=pin) as vault:
        ring = vault.master_key
        assert isinstance(ring, MasterKeyRing) and ring.versions == (version,)
        assert unwrap_all(engine, ring) == keys
    assert verify_audit(home.path).ok


def label(home: VaultHome, version: int) -> str:
    chosen = home.settings.master_key
    assert isinstance(chosen, Pkcs11MasterKeySettings)
    return f"{chosen.key_label}-v{version}"


def test_pkcs11_rotation_keeps_the_old_object_unless_told(
    home: VaultHome, engine: Engine, token: SoftHsmToken
) -> None:
    keys = register(home, engine, pin=token.pin)
    report = rotate_master_key(home.path, pin=token.pin, now=NOW)
    assert (report.kind, report.previous_version, report.version) == ("pkcs11", 1, 2)
    assert report.data_keys_rewrapped == 3 and report.home_key_rewrapped
    assert "stays in PKCS#11 token" in report.retired
    assert token_labels(token) == [label(home, 1), label(home, 2)]
    assert_rotated_to(home, engine, keys, 2, pin=token.pin)
    report = rotate_master_key(home.path, pin=token.pin, destroy_old=True, now=NOW)
    assert report.retired == f"destroyed '{label(home, 2)}' in PKCS#11 token '{token.label}'"
    assert token_labels(token) == [label(home, 1), label(home, 3)]
    assert_rotated_to(home, engine, keys, 3, pin=token.pin)


@pytest.mark.parametrize("step", ["_rewrap_home_key", "_write_settings"])
def test_pkcs11_rotation_interrupted_after_a_step_is_finished_by_a_rerun(
    home: VaultHome,
    engine: Engine,
    token: SoftHsmToken,
    monkeypatch: pytest.MonkeyPatch,
    step: str,
) -> None:
    keys = register(home, engine, pin=token.pin)

    def crash(*_args: object, **_kwargs: object) -> None:
        raise CrashError(step)

    with monkeypatch.context() as patch:
        patch.setattr(_Rotation, step, crash)
        with pytest.raises(CrashError):
            rotate_master_key(home.path, pin=token.pin, destroy_old=True, now=NOW)
    assert master_versions(engine) == {2}
    with VaultHome.open(home.path).unlock(pin=token.pin) as vault:  # both versions meanwhile
        ring = vault.master_key
        assert isinstance(ring, MasterKeyRing) and ring.versions == (1, 2)
        assert unwrap_all(engine, ring) == keys
    report = rotate_master_key(home.path, pin=token.pin, destroy_old=True, now=NOW)
    assert report.resumed and (report.previous_version, report.version) == (1, 2)
    assert token_labels(token) == [label(home, 2)]
    assert_rotated_to(home, engine, keys, 2, pin=token.pin)


def test_pkcs11_cli_reads_the_pin_from_the_variable_in_vault_json(
    home: VaultHome, engine: Engine, token: SoftHsmToken
) -> None:
    keys = register(home, engine, pin=token.pin)
    result = CliRunner(env={"MS_TEST_PIN": token.pin}).invoke(
        cli,
        ["vault", "rotate-master-key", "--home", str(home.path), "--destroy-old"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert f"created master key '{label(home, 2)}'" in result.stderr
    assert token_labels(token) == [label(home, 2)]
    assert_rotated_to(home, engine, keys, 2, pin=token.pin)


def test_postgres_rotation_is_one_transaction_and_audit_verify_reads_it(
    tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    master = SoftwareMaster(PASSPHRASE, scrypt_n=2**10)
    home = init_vault(tmp_path / "home", database_url=postgres_url, master=master, now=NOW)
    engine = db.create_vault_engine(postgres_url)
    try:
        keys = register(home, engine)

        def audit_fails(*_args: object, **_kwargs: object) -> str:
            raise CrashError("the audit write failed")

        with monkeypatch.context() as patch:
            patch.setattr(db, "append_audit", audit_fails)
            with pytest.raises(CrashError):
                rotate_master_key(home.path, passphrase=PASSPHRASE, now=NOW)
        assert master_versions(engine) == {1}  # rolled back with the audit entry
        report = rotate_master_key(home.path, passphrase=PASSPHRASE, now=NOW)
        assert report.resumed and report.data_keys_rewrapped == 3
        assert_rotated_to(home, engine, keys, 2)
        with engine.begin() as conn:
            conn.execute(update(audit_log).where(audit_log.c.seq == 1).values(details="{}"))
        result = verify_audit(home.path)
        assert (result.first_bad, result.entries) == (1, 2)
    finally:
        engine.dispose()
