"""The vault schema and its migrations, the SQLite engine, and the storage errors."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Engine, inspect

from modelseal.vault.db import (
    SchemaError,
    StorageError,
    check_schema_current,
    create_vault_engine,
    current_revision,
    default_sqlite_url,
    downgrade,
    from_micros,
    head_revision,
    metadata,
    read_only,
    redact_url,
    to_micros,
    upgrade,
)
from modelseal.vault.db.migrate import MIGRATIONS
from tests.conftest import expect_error

TABLES = {
    "vault_meta",
    "models",
    "customers",
    "enrollment_tokens",
    "devices",
    "licenses",
    "license_devices",
    "usage_windows",
    "nonces",
    "leases",
    "audit_log",
    "audit_checkpoints",
}


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    """An engine on an empty SQLite file (no schema)."""
    engine = create_vault_engine(default_sqlite_url(tmp_path))
    yield engine
    engine.dispose()


def schema_diff(engine: Engine) -> list[object]:
    with engine.connect() as conn:
        return list(compare_metadata(MigrationContext.configure(conn), metadata))


# --- schema and migrations -----------------------------------------------------------------------


def test_tables_are_the_designed_ones() -> None:
    assert set(metadata.tables) == TABLES


def test_migrations_ship_with_the_package() -> None:
    assert (MIGRATIONS / "env.py").is_file()
    assert (MIGRATIONS / "script.py.mako").is_file()
    assert (MIGRATIONS / "versions" / "0001_initial.py").is_file()
    assert head_revision() == "0001"


def test_upgrade_empty_file_to_head(engine: Engine) -> None:
    assert current_revision(engine) is None
    upgrade(engine)
    assert current_revision(engine) == head_revision()
    check_schema_current(engine)
    assert set(inspect(engine).get_table_names()) == TABLES | {"alembic_version"}
    assert schema_diff(engine) == []


def test_upgrade_twice_is_a_no_op(engine: Engine) -> None:
    upgrade(engine)
    upgrade(engine)
    check_schema_current(engine)


def test_downgrade_and_upgrade_round_trip(engine: Engine) -> None:
    upgrade(engine)
    downgrade(engine, "base")
    assert current_revision(engine) is None
    assert set(inspect(engine).get_table_names()) == {"alembic_version"}
    upgrade(engine)
    check_schema_current(engine)
    assert schema_diff(engine) == []


def test_empty_database_is_refused(engine: Engine) -> None:
    error = expect_error(SchemaError, lambda: check_schema_current(engine), "has no vault schema")
    assert "migrations" in error.diagnostics()
    assert error.code == "SCHEMA"


def test_database_from_a_newer_modelseal_is_refused(engine: Engine) -> None:
    upgrade(engine)
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '9999'")
    error = expect_error(
        SchemaError, lambda: check_schema_current(engine), "9999", "newer than this modelseal"
    )
    assert "upgrade modelseal" in error.diagnostics()


def test_unknown_target_revision_is_a_schema_error(engine: Engine) -> None:
    expect_error(SchemaError, lambda: upgrade(engine, "nope"), "cannot upgrade", "'nope'")


# --- the SQLite engine ---------------------------------------------------------------------------


def test_sqlite_pragmas(engine: Engine) -> None:
    with engine.connect() as conn:
        pragma = {
            name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()
            for name in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")
        }
    assert pragma == {
        "journal_mode": "wal",
        "synchronous": 1,
        "foreign_keys": 1,
        "busy_timeout": 5000,
    }


def test_write_transactions_take_the_write_lock_at_begin(engine: Engine, tmp_path: Path) -> None:
    with engine.begin():
        # Nothing executed yet, but BEGIN IMMEDIATE already holds the write lock.
        other = sqlite3.connect(tmp_path / "vault.db", timeout=0, isolation_level=None)
        try:
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                other.execute("BEGIN IMMEDIATE")
        finally:
            other.close()


def test_read_only_transactions_run_beside_the_writer(engine: Engine) -> None:
    upgrade(engine)
    read: list[object] = []
    with engine.begin() as writer:
        writer.exec_driver_sql("INSERT INTO vault_meta (key, value) VALUES ('k', 'v')")

        def reader() -> None:
            with read_only(engine).begin() as conn:
                read.append(conn.exec_driver_sql("SELECT count(*) FROM vault_meta").scalar())

        thread = threading.Thread(target=reader)
        thread.start()
        thread.join(timeout=10)
    assert read == [0]  # did not wait for the writer, and saw the state before its commit


def test_every_way_a_write_transaction_ends_lets_the_next_writer_in(engine: Engine) -> None:
    with pytest.raises(RuntimeError), engine.begin():
        raise RuntimeError("the release failed")
    conn = engine.connect()
    conn.begin()
    conn.close()  # returned to the pool mid-transaction
    conn = engine.connect()
    conn.begin()
    conn.invalidate()  # connection thrown away
    conn.close()
    with engine.connect() as conn, conn.begin():
        conn.exec_driver_sql("SELECT 1")  # committed
    finished = threading.Event()

    def writer() -> None:
        with engine.begin() as conn:
            conn.exec_driver_sql("SELECT 1")
        finished.set()

    thread = threading.Thread(target=writer)
    thread.start()
    thread.join(timeout=3)
    assert finished.is_set(), "a writer is still waiting: some ending kept the writer queue"


def test_writers_are_served_in_arrival_order() -> None:
    from modelseal.vault.db._sqlite import _FifoLock

    lock = _FifoLock()
    assert lock.acquire(timeout=1)
    order: list[int] = []
    arrived = threading.Semaphore(0)

    def waiter(index: int) -> None:
        arrived.release()
        assert lock.acquire(timeout=5)
        order.append(index)
        lock.release()

    threads = []
    for index in range(5):
        thread = threading.Thread(target=waiter, args=(index,))
        thread.start()
        arrived.acquire()
        while len(lock._waiters) < index + 1:  # wait until it queues
            threading.Event().wait(0.001)
        threads.append(thread)
    assert not lock.acquire(timeout=0.01)  # held: a late comer times out and leaves the queue
    lock.release()
    for thread in threads:
        thread.join(timeout=5)
    assert order == [0, 1, 2, 3, 4]
    assert lock.acquire(timeout=0)


def test_default_sqlite_url_is_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    url = default_sqlite_url(Path("home"))
    assert url == f"sqlite+pysqlite:///{tmp_path.resolve()}/home/vault.db"


# --- storage errors ------------------------------------------------------------------------------


def test_missing_directory(tmp_path: Path) -> None:
    url = default_sqlite_url(tmp_path / "absent")
    error = expect_error(
        StorageError, lambda: create_vault_engine(url), "cannot open the vault database", url
    )
    assert "unable to open database file" in error.message
    assert error.code == "STORAGE"
    assert "directory exists" in error.diagnostics()


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("mysql://alice:s3cret@db/vault", "'mysql' is not supported"),
        ("postgresql+psycopg2://alice:s3cret@db/vault", "is not supported"),
        ("sqlite+aiosqlite:///x.db", "is not supported"),
        ("nonsense://alice:s3cret@", "'nonsense' is not supported"),
        ("sqlite:////tmp/x.db?timeout=soon", "cannot set up the vault database"),
        ("postgresql://alice:s3cret@db:port/vault", "cannot be parsed"),
        ("no url at all alice:s3cret@", "cannot be parsed"),
    ],
)
def test_unusable_urls(url: str, fragment: str) -> None:
    error = expect_error(StorageError, lambda: create_vault_engine(url), fragment)
    assert "s3cret" not in error.diagnostics()


def test_unreachable_postgres_names_url_without_password() -> None:
    port = _closed_port()
    url = f"postgresql://alice:s3cret@127.0.0.1:{port}/vault"
    error = expect_error(
        StorageError,
        lambda: create_vault_engine(url),
        f"postgresql://alice:***@127.0.0.1:{port}/vault",
        "Connection refused",
    )
    assert "s3cret" not in error.diagnostics()
    assert "server is running" in error.diagnostics()


def test_redact_url() -> None:
    assert redact_url("postgresql+psycopg://u:p@h/d") == "postgresql+psycopg://u:***@h/d"
    assert redact_url("sqlite:////x/y.db") == "sqlite:////x/y.db"
    assert redact_url("postgresql://u:p@h:port/d") == "postgresql://…"
    assert redact_url("u:p@h") == "(not shown)"


def _closed_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])  # closed again when this returns


# --- time ----------------------------------------------------------------------------------------


@given(st.datetimes(timezones=st.just(UTC)))
def test_micros_round_trip(moment: datetime) -> None:
    assert from_micros(to_micros(moment)) == moment


def test_micros_of_other_time_zones_and_naive() -> None:
    moment = datetime(2030, 1, 2, 3, 4, 5, 6, tzinfo=timezone(timedelta(hours=5)))
    assert from_micros(to_micros(moment)) == moment
    assert to_micros(datetime(1970, 1, 1, 0, 0, 1, tzinfo=UTC)) == 1_000_000
    with pytest.raises(ValueError, match="naive datetime"):
        to_micros(datetime(2030, 1, 1))


def test_vault_package_does_not_pull_in_sqlalchemy() -> None:
    code = "import sys, modelseal.vault; print('sqlalchemy' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"
