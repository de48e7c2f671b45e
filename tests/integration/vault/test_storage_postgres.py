"""The vault's storage on a real PostgreSQL server (and on a SQLite file in WAL mode, side by side).

Every limit must be exact under concurrency: N transactions racing for a limit of K get exactly K,
each in its own thread, connection and transaction, released together by a barrier.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, Engine, func, inspect, select, update

from modelseal.vault.db import (
    StorageError,
    append_audit,
    bind_device,
    check_schema_current,
    create_vault_engine,
    current_revision,
    default_sqlite_url,
    downgrade,
    head_revision,
    metadata,
    take_load,
    take_window,
    upgrade,
    use_nonce,
    verify_audit_chain,
)
from modelseal.vault.db import schema as s
from tests.conftest import expect_error
from tests.postgres import PostgresServer
from tests.vaultdb import (
    NOW,
    add_customer,
    add_device,
    add_license,
    migrated_engine,
    new_nonce,
)

T = TypeVar("T")
WRITERS = 50


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A migrated engine with a connection for each of ``WRITERS`` threads."""
    if request.param == "sqlite":
        url = default_sqlite_url(tmp_path)
    else:
        url = request.getfixturevalue("postgres_url")
    engine = migrated_engine(url, pool_size=WRITERS)
    yield engine
    engine.dispose()


def together(calls: Sequence[Callable[[], T]]) -> list[T]:
    """Run every call at once, each in its own thread, released by a barrier; results in order."""
    barrier = threading.Barrier(len(calls))

    def run(call: Callable[[], T]) -> T:
        barrier.wait(timeout=30)
        return call()

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(run, calls))


def race(engine: Engine, operations: Sequence[Callable[[Connection], T]]) -> list[T]:
    """Every operation at once, each in its own thread, connection and transaction."""
    return together([partial(once, engine, operation) for operation in operations])


def once(engine: Engine, operation: Callable[[Connection], T]) -> T:
    with engine.begin() as conn:
        return operation(conn)


def scalar(engine: Engine, statement: Any) -> Any:
    with engine.connect() as conn:
        return conn.execute(statement).scalar_one()


# --- migrations ----------------------------------------------------------------------------------


def test_migrations_on_an_empty_postgres_database(postgres_url: str) -> None:
    engine = create_vault_engine(postgres_url)
    try:
        assert current_revision(engine) is None
        upgrade(engine)
        check_schema_current(engine)
        assert current_revision(engine) == head_revision()
        with engine.connect() as conn:
            assert list(compare_metadata(MigrationContext.configure(conn), metadata)) == []
        downgrade(engine, "base")
        assert set(inspect(engine).get_table_names()) == {"alembic_version"}
        upgrade(engine)
        check_schema_current(engine)
    finally:
        engine.dispose()


def test_vaults_starting_together_migrate_once(postgres_url: str) -> None:
    engines = [create_vault_engine(postgres_url) for _ in range(4)]
    try:
        together([partial(upgrade, engine) for engine in engines])
        for engine in engines:
            check_schema_current(engine)
    finally:
        for engine in engines:
            engine.dispose()


def test_missing_postgres_database(postgres_server: PostgresServer) -> None:
    url = postgres_server.url("no_such_database")
    error = expect_error(
        StorageError, lambda: create_vault_engine(url), url, 'database "no_such_database"'
    )
    assert error.code == "STORAGE"


# --- exact counters ------------------------------------------------------------------------------


def test_loads_are_exact(engine: Engine) -> None:
    lic = once(engine, lambda c: add_license(c, add_customer(c), max_loads=20))
    results = race(engine, [partial(take_load, license_id=lic, now=NOW)] * WRITERS)
    assert results.count(True) == 20
    assert scalar(engine, select(s.licenses.c.loads_used)) == 20


def test_windows_are_exact(engine: Engine) -> None:
    """The window's row does not exist yet: the racers also race to create it."""
    lic = once(engine, lambda c: add_license(c, add_customer(c)))
    window = partial(take_window, license_id=lic, kind="loads", period_start=NOW, limit=7)
    results = race(engine, [window] * WRITERS)
    assert results.count(True) == 7
    assert scalar(engine, select(s.usage_windows.c["count"])) == 7
    assert scalar(engine, select(func.count()).select_from(s.usage_windows)) == 1


def test_inference_windows_with_amounts_are_exact(engine: Engine) -> None:
    lic = once(engine, lambda c: add_license(c, add_customer(c)))
    window = partial(
        take_window, license_id=lic, kind="inferences", period_start=NOW, limit=100, amount=9
    )
    assert race(engine, [window] * 20).count(True) == 11  # 11 * 9 = 99; a twelfth would make 108
    assert scalar(engine, select(s.usage_windows.c["count"])) == 99


def test_device_binding_is_exact(engine: Engine) -> None:
    def setup(conn: Connection) -> tuple[str, list[str]]:
        customer = add_customer(conn)
        return add_license(conn, customer, max_devices=3), [
            add_device(conn, customer) for _ in range(10)
        ]

    lic, devices = once(engine, setup)
    results = race(
        engine,
        [
            partial(bind_device, license_id=lic, device_id=d, max_devices=3, now=NOW)
            for d in devices
        ],
    )
    assert results.count(True) == 3
    bound = {d for d, ok in zip(devices, results, strict=True) if ok}
    with engine.connect() as conn:
        rows = conn.execute(select(s.license_devices.c.device_id)).scalars().all()
    assert set(rows) == bound


def test_a_device_racing_itself_is_bound_once(engine: Engine) -> None:
    def setup(conn: Connection) -> tuple[str, str]:
        customer = add_customer(conn)
        return add_license(conn, customer, max_devices=1), add_device(conn, customer)

    lic, device = once(engine, setup)
    bind = partial(bind_device, license_id=lic, device_id=device, max_devices=1, now=NOW)
    assert race(engine, [bind] * 10) == [True] * 10
    assert scalar(engine, select(func.count()).select_from(s.license_devices)) == 1


def test_a_nonce_is_used_once(engine: Engine) -> None:
    nonce = new_nonce()
    consume = partial(use_nonce, nonce_hash=nonce, now=NOW, expires_at=NOW + timedelta(minutes=1))
    assert race(engine, [consume] * 20).count(True) == 1


# --- audit chain ---------------------------------------------------------------------------------


def audit(n: int) -> Callable[[Connection], str]:
    return lambda c: append_audit(
        c,
        at=NOW + timedelta(microseconds=n),
        actor=f"dev-{n % 7}",
        action="key.release",
        subject="lic-1",
        outcome="ok",
        details={"n": n},
    )


def test_concurrent_appends_make_one_linear_chain(engine: Engine) -> None:
    hashes = race(engine, [audit(n) for n in range(100)])
    assert len(set(hashes)) == 100
    with engine.connect() as conn:
        rows = conn.execute(select(s.audit_log).order_by(s.audit_log.c.seq)).all()
    assert [row.seq for row in rows] == list(range(1, 101))
    assert [row.prev_hash for row in rows[1:]] == [row.entry_hash for row in rows[:-1]]
    assert once(engine, verify_audit_chain) is None


def test_tampering_on_postgres(postgres_url: str) -> None:
    engine = migrated_engine(postgres_url)
    try:
        for n in range(12):
            once(engine, audit(n))
        edits: dict[str, Any] = {
            "at": s.audit_log.c.at - 1,
            "actor": "root",
            "action": "license.issue",
            "subject": "lic-2",
            "outcome": "REVOKED",
            "details": '{"n":1000}',
            "prev_hash": "a" * 64,
            "entry_hash": "b" * 64,
        }
        for column, value in edits.items():
            seventh = s.audit_log.c.seq == 7
            original = scalar(engine, select(s.audit_log.c[column]).where(seventh))
            with engine.begin() as conn:
                conn.execute(update(s.audit_log).where(seventh).values({column: value}))
            assert once(engine, verify_audit_chain) == 7, column
            with engine.begin() as conn:
                conn.execute(update(s.audit_log).where(seventh).values({column: original}))
            assert once(engine, verify_audit_chain) is None
    finally:
        engine.dispose()


# --- a release-shaped transaction ----------------------------------------------------------------


def test_counters_match_the_audit_log(engine: Engine) -> None:
    """Nonce, load and audit in one transaction from 8 threads: granted == counted == audited."""
    lic = once(engine, lambda c: add_license(c, add_customer(c), max_loads=150))
    nonces = [new_nonce() for _ in range(200)]

    def release(nonce: str) -> Callable[[Connection], bool]:
        def call(conn: Connection) -> bool:
            fresh = use_nonce(conn, nonce, NOW, expires_at=NOW + timedelta(minutes=1))
            granted = fresh and take_load(conn, lic, NOW)
            append_audit(
                conn,
                at=NOW,
                actor="dev-1",
                action="key.release",
                subject=lic,
                outcome="ok" if granted else "USAGE_EXHAUSTED",
                details={"nonce": nonce[:16]},
            )
            return granted

        return call

    barrier = threading.Barrier(8)

    def worker(part: list[str]) -> int:
        barrier.wait(timeout=30)
        return sum(once(engine, release(nonce)) for nonce in part)

    with ThreadPoolExecutor(max_workers=8) as pool:
        granted = sum(pool.map(worker, [nonces[i::8] for i in range(8)]))
    assert granted == 150
    assert scalar(engine, select(s.licenses.c.loads_used)) == 150
    ok = select(func.count()).select_from(s.audit_log).where(s.audit_log.c.outcome == "ok")
    assert scalar(engine, ok) == 150
    assert scalar(engine, select(func.count()).select_from(s.audit_log)) == 200
    assert once(engine, verify_audit_chain) is None
