"""What each storage operation does, one caller at a time, on SQLite.

Concurrency (N writers against a limit of K) is in ``tests/integration/vault``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
from sqlalchemy import Connection, Engine, insert, select, update

from modelseal.crypto import canonical_json
from modelseal.vault.db import (
    append_audit,
    audit_entry_hash,
    bind_device,
    claim_enrollment_token,
    default_sqlite_url,
    sweep_nonces,
    take_load,
    take_window,
    to_micros,
    use_nonce,
    verify_audit_chain,
)
from modelseal.vault.db import schema as s
from tests.vaultdb import (
    NOW,
    add_customer,
    add_device,
    add_license,
    add_token,
    migrated_engine,
    new_nonce,
)

DAY = timedelta(days=1)
T = TypeVar("T")


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = migrated_engine(default_sqlite_url(tmp_path))
    yield engine
    engine.dispose()


@pytest.fixture
def customer(engine: Engine) -> int:
    with engine.begin() as conn:
        return add_customer(conn)


def run(engine: Engine, operation: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``operation(conn, *args, **kwargs)`` in a transaction of its own."""
    with engine.begin() as conn:
        return operation(conn, *args, **kwargs)


def license_row(engine: Engine, license_id: str) -> Any:
    with engine.connect() as conn:
        return conn.execute(select(s.licenses).where(s.licenses.c.id == license_id)).one()


# --- loads ---------------------------------------------------------------------------------------


def test_take_load_counts_up_to_max(engine: Engine, customer: int) -> None:
    lic = run(engine, add_license, customer, max_loads=2)
    results = [run(engine, take_load, lic, NOW + i * DAY) for i in range(4)]
    assert results == [True, True, False, False]
    row = license_row(engine, lic)
    assert row.loads_used == 2
    assert row.first_use_at == to_micros(NOW)  # the first use, not the last


def test_take_load_without_max_is_unlimited(engine: Engine, customer: int) -> None:
    lic = run(engine, add_license, customer)
    assert all(run(engine, take_load, lic, NOW) for _ in range(5))
    assert license_row(engine, lic).loads_used == 5


def test_take_load_zero_and_unknown(engine: Engine, customer: int) -> None:
    lic = run(engine, add_license, customer, max_loads=0)
    assert run(engine, take_load, lic, NOW) is False
    assert run(engine, take_load, "lic-unknown", NOW) is False


def test_a_rolled_back_load_is_not_counted(engine: Engine, customer: int) -> None:
    lic = run(engine, add_license, customer, max_loads=1)
    with engine.connect() as conn, conn.begin() as transaction:
        assert take_load(conn, lic, NOW)
        transaction.rollback()  # e.g. the audit write failed
    assert license_row(engine, lic).loads_used == 0
    assert run(engine, take_load, lic, NOW)


def test_the_database_refuses_loads_past_max(engine: Engine, customer: int) -> None:
    """The CHECK constraint backs the conditional UPDATE up."""
    from sqlalchemy.exc import IntegrityError

    lic = run(engine, add_license, customer, max_loads=1)
    too_many = update(s.licenses).where(s.licenses.c.id == lic).values(loads_used=2)
    with pytest.raises(IntegrityError, match="ck_licenses_loads_within_max"):
        run(engine, Connection.execute, too_many)


# --- windows -------------------------------------------------------------------------------------


def test_take_window_per_period(engine: Engine, customer: int) -> None:
    lic = run(engine, add_license, customer)
    today, tomorrow = NOW, NOW + DAY
    assert [run(engine, take_window, lic, "loads", today, 2) for _ in range(3)] == [
        True,
        True,
        False,
    ]
    assert run(engine, take_window, lic, "loads", tomorrow, 2)
    assert run(engine, take_window, lic, "inferences", today, 2)


def test_take_window_is_all_or_nothing(engine: Engine, customer: int) -> None:
    lic = run(engine, add_license, customer)
    assert run(engine, take_window, lic, "inferences", NOW, 100, amount=60)
    assert not run(engine, take_window, lic, "inferences", NOW, 100, amount=41)
    assert run(engine, take_window, lic, "inferences", NOW, 100, amount=40)
    assert not run(engine, take_window, lic, "inferences", NOW, 100, amount=1)
    with engine.connect() as conn:
        assert conn.execute(select(s.usage_windows.c["count"])).scalar_one() == 100


def test_take_window_limit_zero(engine: Engine, customer: int) -> None:
    lic = run(engine, add_license, customer)
    assert not run(engine, take_window, lic, "loads", NOW, 0)


@pytest.mark.parametrize(
    ("kind", "limit", "amount", "message"),
    [
        ("bananas", 1, 1, "unknown usage window kind 'bananas'"),
        ("loads", 1, 0, "amount must be positive"),
        ("loads", -1, 1, "limit non-negative"),
    ],
)
def test_take_window_bad_arguments(
    engine: Engine, kind: str, limit: int, amount: int, message: str
) -> None:
    with engine.begin() as conn, pytest.raises(ValueError, match=message):
        take_window(conn, "lic-x", kind, NOW, limit, amount)


# --- nonces and enrolment tokens -----------------------------------------------------------------


def test_nonce_is_single_use(engine: Engine) -> None:
    nonce = new_nonce()
    assert run(engine, use_nonce, nonce, NOW, expires_at=NOW + timedelta(minutes=1))
    assert not run(engine, use_nonce, nonce, NOW, expires_at=NOW + timedelta(minutes=1))
    assert run(engine, use_nonce, new_nonce(), NOW, expires_at=NOW + timedelta(minutes=1))


def test_a_used_nonce_is_remembered_until_it_expires(engine: Engine, customer: int) -> None:
    device = run(engine, add_device, customer)
    kept, gone = new_nonce(), new_nonce()
    assert run(engine, use_nonce, kept, NOW, expires_at=NOW + timedelta(seconds=30))
    assert run(engine, use_nonce, gone, NOW, expires_at=NOW + timedelta(seconds=10))
    assert run(
        engine,
        use_nonce,
        new_nonce(),
        NOW,
        expires_at=NOW + timedelta(seconds=10),
        device_id=device,
    )
    assert run(engine, sweep_nonces, NOW + timedelta(seconds=20)) == 2
    assert not run(engine, use_nonce, kept, NOW, expires_at=NOW + timedelta(seconds=30))
    assert run(engine, use_nonce, gone, NOW, expires_at=NOW + timedelta(seconds=10))


def test_a_refused_release_leaves_its_nonce_unused(engine: Engine) -> None:
    nonce = new_nonce()
    with pytest.raises(RuntimeError), engine.begin() as conn:
        assert use_nonce(conn, nonce, NOW, expires_at=NOW + timedelta(minutes=1))
        raise RuntimeError("refused")
    assert run(engine, use_nonce, nonce, NOW, expires_at=NOW + timedelta(minutes=1))


def test_enrollment_token_is_single_use_and_expires(engine: Engine, customer: int) -> None:
    token = run(engine, add_token, customer)
    late = run(engine, add_token, customer, ttl=timedelta(seconds=1))
    assert run(engine, claim_enrollment_token, token, NOW) == customer
    assert run(engine, claim_enrollment_token, token, NOW) is None
    later = NOW + timedelta(seconds=1)
    assert run(engine, claim_enrollment_token, late, later) is None
    assert run(engine, claim_enrollment_token, "f" * 64, NOW) is None


# --- devices -------------------------------------------------------------------------------------


def test_bind_device_up_to_max(engine: Engine, customer: int) -> None:
    lic = run(engine, add_license, customer, max_devices=2)
    a, b, c_ = (run(engine, add_device, customer) for _ in range(3))
    assert run(engine, bind_device, lic, a, 2, NOW)
    assert run(engine, bind_device, lic, a, 2, NOW)  # idempotent
    assert run(engine, bind_device, lic, b, 2, NOW)
    assert not run(engine, bind_device, lic, c_, 2, NOW)
    assert run(engine, bind_device, lic, b, 2, NOW)  # bound ones still pass
    with engine.connect() as conn:
        bound = conn.execute(select(s.license_devices.c.device_id)).scalars().all()
    assert sorted(bound) == sorted([a, b])


def test_bind_device_unlimited_and_unknown_license(engine: Engine, customer: int) -> None:
    lic = run(engine, add_license, customer)
    devices = [run(engine, add_device, customer) for _ in range(4)]
    assert all(run(engine, bind_device, lic, d, None, NOW) for d in devices)
    assert not run(engine, bind_device, "lic-unknown", devices[0], None, NOW)


# --- audit chain ---------------------------------------------------------------------------------


def append(engine: Engine, count: int) -> list[str]:
    """``count`` entries, one transaction each; their hashes."""
    return [
        run(
            engine,
            append_audit,
            at=NOW + timedelta(seconds=i),
            actor="dev-1",
            action="key.release",
            subject="lic-1",
            outcome="ok" if i % 3 else "USAGE_EXHAUSTED",
            details={"i": i, "model": "iris:1", "device_hmac": "ab" * 16},
        )
        for i in range(count)
    ]


def test_empty_chain_verifies(engine: Engine) -> None:
    assert run(engine, verify_audit_chain) is None


def test_chain_links_and_hashes(engine: Engine) -> None:
    hashes = append(engine, 5)
    with engine.connect() as conn:
        rows = conn.execute(select(s.audit_log).order_by(s.audit_log.c.seq)).all()
    assert [row.seq for row in rows] == [1, 2, 3, 4, 5]
    assert [row.entry_hash for row in rows] == hashes
    assert rows[0].prev_hash == s.GENESIS_HASH
    assert all(rows[i].prev_hash == rows[i - 1].entry_hash for i in range(1, 5))
    first = rows[0]
    details = {"i": 0, "model": "iris:1", "device_hmac": "ab" * 16}
    assert first.details == canonical_json(details).decode()
    assert first.entry_hash == audit_entry_hash(
        seq=1,
        at=to_micros(NOW),
        actor="dev-1",
        action="key.release",
        subject="lic-1",
        outcome="USAGE_EXHAUSTED",
        details={"device_hmac": "ab" * 16, "model": "iris:1", "i": 0},
        prev_hash=s.GENESIS_HASH,
    )
    assert run(engine, verify_audit_chain) is None


TAMPERING: dict[str, Any] = {
    "at": s.audit_log.c.at + 1,
    "actor": "admin",
    "action": "license.revoke",
    "subject": "lic-2",
    "outcome": "ok!",
    "details": '{"i":99,"model":"iris:1"}',
    "prev_hash": "1" * 64,
    "entry_hash": "2" * 64,
}


@pytest.mark.parametrize("column", sorted(TAMPERING))
def test_tampering_with_any_field_names_the_entry(engine: Engine, column: str) -> None:
    append(engine, 10)
    tamper = update(s.audit_log).where(s.audit_log.c.seq == 6).values({column: TAMPERING[column]})
    run(engine, Connection.execute, tamper)
    assert run(engine, verify_audit_chain) == 6


def test_re_encoded_details_are_caught(engine: Engine) -> None:
    """Same JSON value, other bytes: the stored text must be the canonical form."""
    append(engine, 3)
    with engine.begin() as conn:
        details = conn.execute(select(s.audit_log.c.details).where(s.audit_log.c.seq == 2))
        spaced = details.scalar_one().replace(",", ", ")
        conn.execute(update(s.audit_log).where(s.audit_log.c.seq == 2).values(details=spaced))
    assert run(engine, verify_audit_chain) == 2


@pytest.mark.parametrize(("seq", "new_seq", "reported"), [(4, 40, 4), (10, 11, 10)])
def test_renumbered_or_deleted_entries_are_caught(
    engine: Engine, seq: int, new_seq: int, reported: int
) -> None:
    append(engine, 10)
    with engine.begin() as conn:
        conn.execute(update(s.audit_log).where(s.audit_log.c.seq == seq).values(seq=new_seq))
    assert run(engine, verify_audit_chain) == reported
    with engine.begin() as conn:
        conn.execute(s.audit_log.delete().where(s.audit_log.c.seq == new_seq))
    assert run(engine, verify_audit_chain) == (reported if seq < 10 else None)


def test_checkpoint_disagreeing_with_the_chain_is_caught(engine: Engine) -> None:
    hashes = append(engine, 5)
    with engine.begin() as conn:
        for seq, entry_hash in ((2, hashes[1]), (4, "3" * 64)):
            conn.execute(
                insert(s.audit_checkpoints).values(
                    seq=seq, at=0, entry_hash=entry_hash, signature=b"sig", key_id="k"
                )
            )
    assert run(engine, verify_audit_chain) == 4


def test_consistently_rewritten_entries_are_caught_by_a_checkpoint(engine: Engine) -> None:
    """Entries 3..5 rewritten with correct hashes and links: only the checkpoint at 4 knows."""
    hashes = append(engine, 5)
    with engine.begin() as conn:
        conn.execute(
            insert(s.audit_checkpoints).values(
                seq=4, at=0, entry_hash=hashes[3], signature=b"sig", key_id="k"
            )
        )
        prev_hash = hashes[1]
        for seq in (3, 4, 5):
            fields: dict[str, Any] = {
                "seq": seq,
                "at": 0,
                "actor": "x",
                "action": "y",
                "subject": "z",
                "outcome": "ok",
                "prev_hash": prev_hash,
            }
            entry_hash = audit_entry_hash(details={}, **fields)
            conn.execute(
                update(s.audit_log)
                .where(s.audit_log.c.seq == seq)
                .values(details="{}", entry_hash=entry_hash, **fields)
            )
            prev_hash = entry_hash
        conn.execute(s.audit_checkpoints.delete().where(s.audit_checkpoints.c.seq != 4))
    assert run(engine, verify_audit_chain) == 4
    with engine.begin() as conn:
        conn.execute(s.audit_checkpoints.delete())
    assert run(engine, verify_audit_chain) is None  # without checkpoints, undetectable
