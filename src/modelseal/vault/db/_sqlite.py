"""SQLite as the vault's embedded database: WAL, ``BEGIN IMMEDIATE``, writers queued in-process.

* On connect: WAL journal, ``synchronous=NORMAL`` (a commit survives a crash of the process; a power
  cut may lose the last commits since the previous checkpoint, never corrupt the file), foreign
  keys on, a busy timeout.
* Transaction control is SQLAlchemy's documented pysqlite recipe: the driver's own ``BEGIN``
  handling is switched off on connect and the ``begin`` event emits ours. Write transactions use
  ``BEGIN IMMEDIATE``: the write lock is taken up front, so two writers never both read, then fail
  to upgrade with "database is locked" half-way through. Reads through
  :func:`~modelseal.vault.db.engine.read_only` use a deferred ``BEGIN`` and run beside the writer.
* Writers of one engine also queue, first come first served, on an in-process lock before
  ``BEGIN IMMEDIATE``. SQLite's busy handler polls with sleeps of up to 100 ms, which under many
  threads turns into long and unfair waits (p99 several times p50); the queue hands over as soon
  as the writer commits. Other processes on the same file still meet at SQLite's own lock and
  busy timeout.
"""

from __future__ import annotations

import sqlite3
import threading
from collections import deque
from typing import Any, Final

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL

__all__ = ["BUSY_TIMEOUT_MS", "READ_ONLY_OPTION", "sqlite_engine"]

BUSY_TIMEOUT_MS: Final = 5000
READ_ONLY_OPTION: Final = "modelseal_read_only"


class _FifoLock:
    """A lock handed to its waiters in arrival order, so no writer waits behind later ones."""

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._waiters: deque[threading.Lock] = deque()
        self._held = False

    def acquire(self, timeout: float) -> bool:
        with self._mutex:
            if not self._held:
                self._held = True
                return True
            ticket = threading.Lock()
            ticket.acquire()
            self._waiters.append(ticket)
        if ticket.acquire(timeout=timeout):
            return True  # release() handed the lock to us
        with self._mutex:
            try:
                self._waiters.remove(ticket)
            except ValueError:
                return True  # handed to us just as we gave up: ours all the same
            return False

    def release(self) -> None:
        with self._mutex:
            if self._waiters:
                self._waiters.popleft().release()  # ownership passes straight on
            else:
                self._held = False


class _QueuedConnection(sqlite3.Connection):
    """A sqlite3 connection that holds its engine's writer lock from ``BEGIN IMMEDIATE`` to the end.

    The lock is released by whatever ends the transaction: commit, rollback (including the pool's
    reset when a connection is returned mid-transaction) or close.
    """

    writer_lock: _FifoLock | None = None
    holds_writer_lock = False

    def take_writer_lock(self) -> None:
        lock = self.writer_lock
        # Past the busy timeout, go on without it and let SQLite's own lock decide (and report).
        if lock is not None and lock.acquire(timeout=BUSY_TIMEOUT_MS / 1000):
            self.holds_writer_lock = True

    def release_writer_lock(self) -> None:
        if self.holds_writer_lock and self.writer_lock is not None:
            self.holds_writer_lock = False
            self.writer_lock.release()

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            self.release_writer_lock()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            self.release_writer_lock()

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.release_writer_lock()


def sqlite_engine(url: URL, *, pool_size: int, max_overflow: int) -> Engine:
    """An engine for the SQLite database at ``url`` set up as described in the module docstring."""
    options: dict[str, Any] = {}
    if url.database not in (None, "", ":memory:") and url.query.get("mode") != "memory":
        options = {"pool_size": pool_size, "max_overflow": max_overflow}
    engine = create_engine(url, connect_args={"factory": _QueuedConnection}, **options)
    writer_lock = _FifoLock()

    def on_connect(dbapi_connection: Any, _record: object) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves, in on_begin
        if isinstance(dbapi_connection, _QueuedConnection):
            dbapi_connection.writer_lock = writer_lock
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    def on_begin(conn: Connection) -> None:
        if conn.get_execution_options().get(READ_ONLY_OPTION, False):
            conn.exec_driver_sql("BEGIN")
            return
        dbapi_connection = conn.connection.dbapi_connection
        if isinstance(dbapi_connection, _QueuedConnection):
            dbapi_connection.take_writer_lock()
        try:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        except BaseException:
            if isinstance(dbapi_connection, _QueuedConnection):
                dbapi_connection.release_writer_lock()
            raise

    event.listen(engine, "connect", on_connect)
    event.listen(engine, "begin", on_begin)
    return engine
