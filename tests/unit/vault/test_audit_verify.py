"""``vault audit verify`` on SQLite: a clean chain, tampered entries, and signed checkpoints."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import Engine, delete, insert, select, update

from modelseal.cli.main import cli
from modelseal.crypto import SigningKey
from modelseal.vault import db
from modelseal.vault.audit_verify import (
    NO_CHECKPOINTS,
    AuditVerification,
    checkpoint_message,
    verify_audit,
)
from modelseal.vault.db import to_micros
from modelseal.vault.db.schema import audit_checkpoints, audit_log
from modelseal.vault.home import SoftwareMaster, VaultHome, init_vault
from tests.vaultmodels import NOW

PASSPHRASE = b"audit test passphrase"
ENTRIES = 5


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> VaultHome:
    path = tmp_path_factory.mktemp("vault") / "home"
    return init_vault(
        path, database_url=None, master=SoftwareMaster(PASSPHRASE, scrypt_n=2**10), now=NOW
    )


@pytest.fixture(scope="module")
def license_key(pristine: VaultHome) -> SigningKey:
    with pristine.unlock(passphrase=PASSPHRASE) as vault:
        return vault.license_key


@pytest.fixture
def home(pristine: VaultHome, tmp_path: Path) -> VaultHome:
    target = tmp_path / "home"
    shutil.copytree(pristine.path, target)
    return VaultHome.open(target)


@pytest.fixture
def engine(home: VaultHome) -> Iterator[Engine]:
    engine = db.create_vault_engine(home.database_url)
    with engine.begin() as conn:
        for index in range(ENTRIES):
            db.append_audit(
                conn,
                at=NOW,
                actor="admin",
                action="customer.create",
                subject=f"customer-{index}",
                outcome="ok",
                details={"index": index},
            )
    yield engine
    engine.dispose()


def hashes(engine: Engine) -> list[str]:
    with engine.begin() as conn:
        return list(
            conn.execute(select(audit_log.c.entry_hash).order_by(audit_log.c.seq)).scalars()
        )


def add_checkpoint(
    home: VaultHome,
    engine: Engine,
    key: SigningKey,
    seq: int,
    *,
    entry_hash: str | None = None,
    key_id: str | None = None,
) -> None:
    entry_hash = entry_hash or hashes(engine)[seq - 1]
    at = to_micros(NOW)
    message = checkpoint_message(
        vault_id=home.settings.vault_id, seq=seq, at=at, entry_hash=entry_hash
    )
    with engine.begin() as conn:
        conn.execute(
            insert(audit_checkpoints).values(
                seq=seq,
                at=at,
                entry_hash=entry_hash,
                signature=key.sign(message),
                key_id=key_id or home.settings.license_kid,
            )
        )


def verify_cli(home: VaultHome, *extra: str) -> Result:
    args = ["vault", "audit", "verify", "--home", str(home.path), *extra]
    return CliRunner(env={"MODELSEAL_ADMIN": None}).invoke(cli, args, catch_exceptions=False)


def test_a_clean_chain_verifies_without_any_secret(home: VaultHome, engine: Engine) -> None:
    result = verify_audit(home.path)
    assert result == AuditVerification(
        entries=ENTRIES,
        first_bad=None,
        reason=None,
        last_hash=hashes(engine)[-1],
        checkpoints=0,
        checkpoint_note=NO_CHECKPOINTS,
    )
    assert result.ok
    cli_result = verify_cli(home)
    assert cli_result.exit_code == 0
    assert cli_result.stdout == (
        f"audit chain ok: 5 entries, last hash {result.last_hash}; no checkpoints yet\n"
    )


def test_an_empty_log_verifies(home: VaultHome) -> None:
    result = verify_audit(home)
    assert (result.ok, result.entries, result.last_hash) == (True, 0, None)
    assert result.summary() == "audit chain ok: 0 entries; no checkpoints yet"


def test_an_altered_entry_is_named_and_the_cli_exits_1(home: VaultHome, engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(update(audit_log).where(audit_log.c.seq == 3).values(details='{"index":99}'))
    result = verify_audit(home.path)
    assert (result.ok, result.first_bad, result.entries) == (False, 3, ENTRIES)
    assert result.reason == "its content does not match its hash: the entry was altered"
    cli_result = verify_cli(home)
    assert cli_result.exit_code == 1
    assert cli_result.stdout == (
        "audit chain broken at entry 3: its content does not match its hash: the entry was "
        "altered (5 entries)\n"
    )
    as_json = verify_cli(home, "--json")
    assert as_json.exit_code == 1
    assert json.loads(as_json.stdout) == {
        "ok": False,
        "entries": ENTRIES,
        "first_bad": 3,
        "reason": result.reason,
        "last_hash": result.last_hash,
        "checkpoints": 0,
        "checkpoint_note": NO_CHECKPOINTS,
    }


def test_a_deleted_entry_is_named(home: VaultHome, engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(delete(audit_log).where(audit_log.c.seq == 2))
    result = verify_audit(home.path)
    assert (result.first_bad, result.reason) == (2, "the entry is missing (deleted or renumbered)")


def test_a_rewritten_entry_with_a_recomputed_hash_breaks_the_next_link(
    home: VaultHome, engine: Engine
) -> None:
    with engine.begin() as conn:
        row = conn.execute(select(audit_log).where(audit_log.c.seq == 2)).one()
        forged = db.audit_entry_hash(
            seq=2,
            at=row.at,
            actor=row.actor,
            action=row.action,
            subject="someone else",
            outcome=row.outcome,
            details=json.loads(row.details),
            prev_hash=row.prev_hash,
        )
        conn.execute(
            update(audit_log)
            .where(audit_log.c.seq == 2)
            .values(subject="someone else", entry_hash=forged)
        )
    result = verify_audit(home.path)
    assert result.first_bad == 3
    assert result.reason is not None and result.reason.startswith(
        "its prev_hash is not the hash of entry 2"
    )


def test_signed_checkpoints_are_checked(
    home: VaultHome, engine: Engine, license_key: SigningKey
) -> None:
    add_checkpoint(home, engine, license_key, 2)
    add_checkpoint(home, engine, license_key, 4)
    result = verify_audit(home.path)
    assert (result.ok, result.checkpoints, result.checkpoint_note) == (
        True,
        2,
        "2 signed checkpoints verified",
    )


def test_a_forged_checkpoint_signature_is_named(home: VaultHome, engine: Engine) -> None:
    add_checkpoint(home, engine, SigningKey.generate("ed25519"), 4)
    result = verify_audit(home.path)
    assert (result.first_bad, result.checkpoint_note) == (4, "1 checkpoint, not all validly signed")
    assert result.reason == "its checkpoint's signature does not verify: the checkpoint was forged"


def test_a_checkpoint_by_an_unknown_key_is_named(
    home: VaultHome, engine: Engine, license_key: SigningKey
) -> None:
    add_checkpoint(home, engine, license_key, 1, key_id="unknown-kid")
    result = verify_audit(home.path)
    assert result.first_bad == 1
    assert result.reason == (
        "its checkpoint is signed by key 'unknown-kid', which is not in license-keys.json"
    )


def test_an_entry_rewritten_after_its_checkpoint_is_named(
    home: VaultHome, engine: Engine, license_key: SigningKey
) -> None:
    add_checkpoint(home, engine, license_key, 5, entry_hash="ab" * 32)
    result = verify_audit(home.path)
    assert result.first_bad == 5
    assert result.reason == (
        "a signed checkpoint recorded another hash for it: the entry was rewritten"
    )


def test_json_needs_the_home(home: VaultHome) -> None:
    result = CliRunner(env={"MODELSEAL_ADMIN": None}).invoke(
        cli, ["vault", "audit", "verify", "--json"]
    )
    assert result.exit_code == 1 and "--json needs --home" in result.stderr
