"""Master-key rotation of a software-key vault on SQLite: rewrap, retire, and resume after a crash."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, insert, select, update

from modelseal.cli.main import cli
from modelseal.crypto import DataKey
from modelseal.crypto.masterkey import MasterKeyError, MasterKeyRing, SoftwareMasterKey
from modelseal.errors import UsageError
from modelseal.vault import _layout as layout
from modelseal.vault import db
from modelseal.vault.audit_verify import verify_audit
from modelseal.vault.db.schema import audit_log, models, vault_meta
from modelseal.vault.home import HomeError, SoftwareMaster, VaultHome, init_vault
from modelseal.vault.rotation import (
    ACTOR,
    RotationError,
    RotationReport,
    _Rotation,
    rotate_master_key,
)
from modelseal.vault.service import VaultService
from modelseal.vault.service.audit import AuditTrail
from tests.conftest import expect_error
from tests.vaulthome import PASSPHRASE as SEEDED_PASSPHRASE
from tests.vaulthome import Clock, enroll, issue, open_grant, release_request
from tests.vaultmodels import NOW, master_versions, register_models, unwrap_all

OLD = b"old passphrase of the master key"
NEW = b"new passphrase of the master key"


class CrashError(Exception):
    """The simulated crash."""


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> VaultHome:
    path = tmp_path_factory.mktemp("vault") / "home"
    return init_vault(path, database_url=None, master=SoftwareMaster(OLD, scrypt_n=2**10), now=NOW)


@pytest.fixture
def home(pristine: VaultHome, tmp_path: Path) -> VaultHome:
    """A private copy of ``pristine`` (its SQLite database inside) to rotate."""
    target = tmp_path / "home"
    shutil.copytree(pristine.path, target)
    return VaultHome.open(target)


@pytest.fixture
def keys(home: VaultHome) -> dict[str, DataKey]:
    """Three model rows registered under master key version 1."""
    with home.unlock(passphrase=OLD) as vault:
        engine = vault.engine()
        try:
            return register_models(engine, vault.master_key)
        finally:
            engine.dispose()


@pytest.fixture
def engine(home: VaultHome) -> Iterator[Engine]:
    engine = db.create_vault_engine(home.database_url)
    yield engine
    engine.dispose()


def rotate(home: VaultHome, **changes: object) -> RotationReport:
    arguments: dict[str, object] = {"passphrase": OLD, "now": NOW}
    arguments.update(changes)
    return rotate_master_key(home.path, **arguments)  # type: ignore[arg-type]


def files(home: VaultHome) -> list[str]:
    return sorted(name for name in os.listdir(home.path) if name.startswith("master-key"))


def settings_version(home: VaultHome) -> int:
    return VaultHome.open(home.path).settings.master_version


def home_key_version(home: VaultHome) -> int:
    data = layout.read_file(home.path, layout.HOME_KEY)
    return layout.load_wrapped_home_key(data, home=home.path)[1]


def audit_actions(engine: Engine) -> list[tuple[str, str, str]]:
    with engine.begin() as conn:
        rows = conn.execute(select(audit_log).order_by(audit_log.c.seq)).all()
    return [(row.actor, row.action, row.subject) for row in rows]


def assert_rotated_to(
    home: VaultHome, engine: Engine, keys: dict[str, DataKey], version: int, passphrase: bytes
) -> None:
    """Every file and row names ``version``, unlock works, and every data key is the same."""
    assert settings_version(home) == version
    assert home_key_version(home) == version
    assert master_versions(engine) == {version}
    with VaultHome.open(home.path).unlock(passphrase=passphrase) as vault:
        ring = vault.master_key
        assert isinstance(ring, MasterKeyRing) and ring.versions == (version,)
        assert unwrap_all(engine, ring) == keys
    assert verify_audit(home.path).ok


# --- a whole rotation -----------------------------------------------------------------------------


def test_rotation_rewraps_every_data_key_under_a_new_passphrase(
    home: VaultHome, keys: dict[str, DataKey], engine: Engine
) -> None:
    with engine.begin() as conn:
        before = {row.name: bytes(row.wrapped_key) for row in conn.execute(select(models))}
    lines: list[str] = []
    report = rotate(home, new_passphrase=NEW, report=lines.append)
    assert report == RotationReport(
        kind="software",
        previous_version=1,
        version=2,
        data_keys_rewrapped=3,
        vault_keys_rewrapped=0,
        home_key_rewrapped=True,
        resumed=False,
        retired="master-key.json → master-key.json.retired",
    )
    assert_rotated_to(home, engine, keys, 2, NEW)
    with engine.begin() as conn:
        after = {row.name: bytes(row.wrapped_key) for row in conn.execute(select(models))}
    assert all(after[name] != before[name] for name in before)
    assert files(home) == ["master-key.json.retired", "master-key.v2.json"]
    mode = stat.S_IMODE((home.path / "master-key.v2.json").stat().st_mode)
    assert mode == 0o600
    # The old passphrase opens neither the new key nor the vault; the retired file is the old key.
    new_file = (home.path / "master-key.v2.json").read_bytes()
    expect_error(
        MasterKeyError, lambda: SoftwareMasterKey.unseal(new_file, OLD), "wrong passphrase"
    )
    rotated = VaultHome.open(home.path)
    expect_error(MasterKeyError, lambda: rotated.unlock(passphrase=OLD), "wrong passphrase")
    retired = SoftwareMasterKey.unseal((home.path / "master-key.json.retired").read_bytes(), OLD)
    assert retired.version == 1
    assert audit_actions(engine) == [
        (ACTOR, "master_key.rotate", "master-key-v2"),
        (ACTOR, "master_key.retire", "master-key-v1"),
    ]
    assert lines[0] == "created master key version 2 (master-key.v2.json)"
    assert any("rewrapped 3 data keys" in line for line in lines)


def test_rotating_again_keeps_the_passphrase_and_destroy_old_deletes_the_file(
    home: VaultHome, keys: dict[str, DataKey], engine: Engine
) -> None:
    rotate(home)
    assert_rotated_to(home, engine, keys, 2, OLD)
    report = rotate(home, destroy_old=True)
    assert (report.previous_version, report.version, report.retired) == (
        2,
        3,
        "deleted master-key.v2.json",
    )
    assert_rotated_to(home, engine, keys, 3, OLD)
    assert files(home) == ["master-key.json.retired", "master-key.v3.json"]


def test_the_new_file_keeps_the_scrypt_cost_unless_told(home: VaultHome) -> None:
    rotate(home, scrypt_n=2**11)
    sealed = json.loads((home.path / "master-key.v2.json").read_bytes())
    assert sealed["kdf"]["n"] == 2**11 and sealed["version"] == 2
    rotate(home)
    assert json.loads((home.path / "master-key.v3.json").read_bytes())["kdf"]["n"] == 2**11


def test_the_audit_key_of_the_service_is_rewrapped(home: VaultHome, engine: Engine) -> None:
    with home.unlock(passphrase=OLD) as vault:
        digest = AuditTrail(vault, engine, lambda: NOW).secret("nonce", b"same value")
    report = rotate(home, new_passphrase=NEW)
    assert report.vault_keys_rewrapped == 1
    with engine.begin() as conn:
        stored = json.loads(
            conn.execute(
                select(vault_meta.c.value).where(vault_meta.c.key == "audit_hmac_key")
            ).scalar_one()
        )
    assert stored["master_version"] == 2
    with VaultHome.open(home.path).unlock(passphrase=NEW) as vault:
        assert AuditTrail(vault, engine, lambda: NOW).secret("nonce", b"same value") == digest


# --- crashes and re-runs --------------------------------------------------------------------------


def crash_in(monkeypatch: pytest.MonkeyPatch, step: str) -> None:
    def crash(*_args: object, **_kwargs: object) -> None:
        raise CrashError(step)

    monkeypatch.setattr(_Rotation, step, crash)


def test_a_crash_after_the_database_step_is_finished_by_a_rerun(
    home: VaultHome, keys: dict[str, DataKey], engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as patch:
        crash_in(patch, "_rewrap_home_key")  # step c fails: b is committed
        with pytest.raises(CrashError):
            rotate(home)
    assert master_versions(engine) == {2}
    assert (settings_version(home), home_key_version(home)) == (1, 1)
    assert files(home) == ["master-key.json", "master-key.v2.json"]
    # Meanwhile the vault still unlocks, with both versions, and every data key opens.
    with home.unlock(passphrase=OLD) as vault:
        ring = vault.master_key
        assert isinstance(ring, MasterKeyRing) and ring.versions == (1, 2) and ring.version == 2
        assert unwrap_all(engine, ring) == keys
    report = rotate(home)
    assert report.resumed and report.data_keys_rewrapped == 0 and report.home_key_rewrapped
    assert_rotated_to(home, engine, keys, 2, OLD)
    assert [action for _, action, _ in audit_actions(engine)] == [
        "master_key.rotate",
        "master_key.retire",
    ]


def test_a_crash_after_the_home_key_step_is_finished_by_a_rerun(
    home: VaultHome, keys: dict[str, DataKey], engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as patch:
        crash_in(patch, "_write_settings")  # step d fails: b and c are done
        with pytest.raises(CrashError):
            rotate(home, new_passphrase=NEW)
    assert (settings_version(home), home_key_version(home)) == (1, 2)
    assert master_versions(engine) == {2}
    # The old passphrase alone does not open version 2, which the home key now needs.
    error = expect_error(
        HomeError,
        lambda: home.unlock(passphrase=OLD),
        "is wrapped by master key version 2, but the master key open is version 1",
    )
    assert "finish the master-key rotation" in error.diagnostics()
    report = rotate(home, new_passphrase=NEW)
    assert report.resumed and not report.home_key_rewrapped
    assert_rotated_to(home, engine, keys, 2, NEW)


def test_a_crash_before_the_old_key_is_retired_is_finished_by_a_rerun(
    home: VaultHome, keys: dict[str, DataKey], engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as patch:
        crash_in(patch, "_retire")
        with pytest.raises(CrashError):
            rotate(home, new_passphrase=NEW)
    assert settings_version(home) == 2
    assert files(home) == ["master-key.json", "master-key.v2.json"]
    report = rotate(home, new_passphrase=NEW)  # finishes version 2; does not make version 3
    assert (report.previous_version, report.version, report.resumed) == (1, 2, True)
    assert files(home) == ["master-key.json.retired", "master-key.v2.json"]
    assert_rotated_to(home, engine, keys, 2, NEW)


def test_a_failed_database_step_keeps_nothing_of_it(
    home: VaultHome, keys: dict[str, DataKey], engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    def audit_fails(*_args: object, **_kwargs: object) -> str:
        raise CrashError("the audit write failed")

    with monkeypatch.context() as patch:
        patch.setattr(db, "append_audit", audit_fails)
        with pytest.raises(CrashError):
            rotate(home)
    assert master_versions(engine) == {1}  # every row rolled back with the audit entry
    with engine.begin() as conn:
        assert conn.execute(select(vault_meta)).all() == []
    report = rotate(home)
    assert report.resumed and report.data_keys_rewrapped == 3
    assert_rotated_to(home, engine, keys, 2, OLD)


def test_a_rerun_needs_the_new_passphrase_of_the_interrupted_run(
    home: VaultHome, keys: dict[str, DataKey], engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as patch:
        crash_in(patch, "_rewrap_database")
        with pytest.raises(CrashError):
            rotate(home, new_passphrase=NEW)
    expect_error(
        RotationError,
        lambda: rotate(home),
        "master-key.v2.json in",
        "left by an interrupted rotation, opens with neither passphrase given",
    )
    rotate(home, new_passphrase=NEW)
    assert_rotated_to(home, engine, keys, 2, NEW)


def test_a_new_passphrase_given_only_to_the_rerun_still_applies(
    home: VaultHome, keys: dict[str, DataKey], engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as patch:
        crash_in(patch, "_rewrap_database")
        with pytest.raises(CrashError):
            rotate(home)
    rotate(home, new_passphrase=NEW)
    assert_rotated_to(home, engine, keys, 2, NEW)


# --- refusals -------------------------------------------------------------------------------------


def test_a_wrong_passphrase_changes_nothing(home: VaultHome, keys: dict[str, DataKey]) -> None:
    expect_error(MasterKeyError, lambda: rotate(home, passphrase=b"wrong"), "wrong passphrase")
    assert files(home) == ["master-key.json"] and settings_version(home) == 1


def test_a_tampered_row_stops_the_database_step(
    home: VaultHome, keys: dict[str, DataKey], engine: Engine
) -> None:
    with engine.begin() as conn:
        conn.execute(update(models).where(models.c.name == "model-1").values(key_id="other-key"))
    expect_error(
        RotationError,
        lambda: rotate(home),
        "the data key of model model-1 version 2 does not open with master key version 1",
    )
    assert master_versions(engine) == {1}  # nothing rewrapped
    assert settings_version(home) == 1 and home_key_version(home) == 1


def test_a_database_ahead_of_the_home_is_refused(home: VaultHome, engine: Engine) -> None:
    with engine.begin() as conn:
        state = '{"previous":2,"previous_retired":true,"version":3}'
        conn.execute(insert(vault_meta).values(key="master_key", value=state))
    expect_error(
        RotationError,
        lambda: rotate(home),
        "the vault database records master key version 3, but the vault home",
        "another copy of the home rotated the master key",
    )
    assert files(home) == ["master-key.json"]


def test_two_rotations_never_run_at_once(home: VaultHome) -> None:
    fd = os.open(home.path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        expect_error(RotationError, lambda: rotate(home), "another master-key rotation")
    finally:
        os.close(fd)
    assert files(home) == ["master-key.json"]


def test_the_secrets_must_fit_the_master_key(home: VaultHome) -> None:
    expect_error(UsageError, lambda: rotate(home, passphrase=None), "give the passphrase")
    expect_error(UsageError, lambda: rotate(home, pin="1234"), "takes a passphrase, not")


def test_a_stray_master_key_file_is_refused_by_name(home: VaultHome) -> None:
    shutil.copyfile(home.path / "master-key.json", home.path / "master-key.v7.json")
    expect_error(
        HomeError,
        lambda: rotate(home),
        "master-key.v7.json in",
        "holds master key version 1, not 7",
    )


# --- the CLI --------------------------------------------------------------------------------------


def test_cli_rotates_and_says_what_it_did(
    home: VaultHome, keys: dict[str, DataKey], engine: Engine
) -> None:
    env = {"MS_OLD": OLD.decode(), "MS_NEW": NEW.decode()}
    args = ["vault", "rotate-master-key", "--home", str(home.path), "--passphrase-env", "MS_OLD"]
    result = CliRunner(env=env).invoke(
        cli, [*args, "--new-passphrase-env", "MS_NEW"], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert "master key rotated from version 1 to 2" in result.stderr
    assert_rotated_to(home, engine, keys, 2, NEW)
    quiet = CliRunner(env=env).invoke(cli, [*args[:-1], "MS_NEW", "-q"], catch_exceptions=False)
    assert (quiet.exit_code, quiet.stdout, quiet.stderr) == (0, "", "")
    assert settings_version(home) == 3


def test_cli_refuses_a_pin_variable_for_a_software_key(home: VaultHome) -> None:
    result = CliRunner(env={"MS_OLD": OLD.decode()}).invoke(
        cli,
        ["vault", "rotate-master-key", "--home", str(home.path), "--pkcs11-pin-env", "PIN"],
    )
    assert result.exit_code == 1
    assert "--pkcs11-pin-env is for a PKCS#11 master key" in result.stderr


# --- with the service -----------------------------------------------------------------------------


def test_the_service_releases_the_same_key_after_a_rotation(
    vault_home: VaultHome, clock: Clock
) -> None:
    def release_once(passphrase: bytes) -> tuple[DataKey, int]:
        with (
            VaultHome.open(vault_home.path).unlock(passphrase=passphrase) as vault,
            VaultService(vault, clock=clock) as service,
        ):
            device = enroll(service, name=f"edge-{passphrase[:3].decode()}")
            view, token = issue(service)
            request, ephemeral = release_request(service, device, token)
            grant = service.release(device.cert, request)
            key = open_grant(grant, ephemeral, device=device.id, license_id=view.id)
            return key, vault.master_key.version

    before, version = release_once(SEEDED_PASSPHRASE)
    assert version == 1
    report = rotate_master_key(
        vault_home.path, passphrase=SEEDED_PASSPHRASE, new_passphrase=NEW, now=NOW
    )
    assert (report.data_keys_rewrapped, report.vault_keys_rewrapped) == (2, 1)
    assert release_once(NEW) == (before, 2)
    assert verify_audit(vault_home.path).ok
