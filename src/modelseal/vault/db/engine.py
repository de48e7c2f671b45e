"""Engines for the vault database: SQLite (embedded default) and PostgreSQL (shared by many vaults).

SQLite (see :mod:`._sqlite`): WAL, ``synchronous=NORMAL``, foreign keys, a 5 s busy timeout, and
``BEGIN IMMEDIATE`` for every write transaction, so concurrent writers queue instead of failing
half-way with "database is locked". Readers that never write may use :func:`read_only` to start
with a deferred ``BEGIN`` and run beside the writer.

PostgreSQL uses psycopg 3, ``READ COMMITTED`` (the counters in :mod:`.ops` rely on its re-check of
a conditional ``UPDATE`` after a concurrent commit), a pool sized for a server and pre-ping, so a
restarted database server costs one failed checkout, not a failed request.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Final

from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

from modelseal.vault.db._sqlite import READ_ONLY_OPTION, sqlite_engine
from modelseal.vault.db.errors import StorageError

__all__ = [
    "DATABASE_FILE",
    "create_vault_engine",
    "default_sqlite_url",
    "read_only",
    "redact_url",
]

DATABASE_FILE: Final = "vault.db"
"""The SQLite file :func:`default_sqlite_url` puts in a vault home."""

POOL_SIZE: Final = 10
MAX_OVERFLOW: Final = 20
CONNECT_TIMEOUT_S: Final = 10

_SQLITE: Final = ("sqlite", "sqlite+pysqlite")
_POSTGRES: Final = ("postgresql", "postgresql+psycopg")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")


def default_sqlite_url(home: Path) -> str:
    """The URL of the SQLite database in a vault home directory (absolute path)."""
    path = (home / DATABASE_FILE).resolve()
    return URL.create("sqlite+pysqlite", database=str(path)).render_as_string()


def redact_url(url: str | URL) -> str:
    """``url`` with its password (if any) replaced by ``***``, for messages and logs."""
    if isinstance(url, URL):
        return url.render_as_string(hide_password=True)
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        # Unparseable: where a password would start is unknowable, so show the scheme alone.
        scheme, separator, _ = url.partition("://")
        return f"{scheme}://…" if separator and _SCHEME.fullmatch(scheme) else "(not shown)"


def create_vault_engine(
    url: str, *, pool_size: int = POOL_SIZE, max_overflow: int = MAX_OVERFLOW
) -> Engine:
    """An engine for the vault database at ``url``, checked by opening one connection.

    Accepted: ``sqlite:///PATH`` (``sqlite+pysqlite``) and ``postgresql://…`` or
    ``postgresql+psycopg://…`` (the psycopg 3 driver is always used). Raises :class:`StorageError`
    naming the URL (password hidden) and the reason when the database cannot be opened.
    """
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as exc:
        raise StorageError(
            f"the vault database URL ({redact_url(url)}) cannot be parsed",
            hint="use sqlite:///PATH or postgresql+psycopg://USER@HOST:PORT/DATABASE",
        ) from exc
    try:
        if parsed.drivername in _SQLITE:
            engine = sqlite_engine(parsed, pool_size=pool_size, max_overflow=max_overflow)
        elif parsed.drivername in _POSTGRES:
            engine = _postgres_engine(parsed, pool_size=pool_size, max_overflow=max_overflow)
        else:
            raise StorageError(
                f"the vault cannot use the database {redact_url(parsed)}: "
                f"{parsed.drivername!r} is not supported",
                hint="use sqlite:///PATH or postgresql+psycopg://USER@HOST:PORT/DATABASE",
            )
    except (ArgumentError, NoSuchModuleError, ImportError, ValueError, TypeError) as exc:
        raise StorageError(
            f"cannot set up the vault database {redact_url(parsed)}: {exc}",
            hint="check the URL; PostgreSQL needs the psycopg package (psycopg[binary])",
        ) from exc
    _probe(engine, parsed)
    return engine


def read_only(engine: Engine) -> Engine:
    """A view of ``engine`` (same pool) whose transactions only read.

    On SQLite they start with a deferred ``BEGIN`` and so do not wait for, or block, the writer.
    Writing through it is a mistake: SQLite may refuse the upgrade with "database is locked".
    """
    return engine.execution_options(**{READ_ONLY_OPTION: True})


def _postgres_engine(url: URL, *, pool_size: int, max_overflow: int) -> Engine:
    return create_engine(
        url.set(drivername="postgresql+psycopg"),
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_pre_ping=True,
        isolation_level="READ COMMITTED",
        connect_args={"connect_timeout": CONNECT_TIMEOUT_S, "application_name": "modelseal-vault"},
    )


def _probe(engine: Engine, url: URL) -> None:
    try:
        with read_only(engine).connect() as conn:
            conn.exec_driver_sql("SELECT 1")
    except SQLAlchemyError as exc:
        engine.dispose()
        raise StorageError(
            f"cannot open the vault database {redact_url(url)}: {_reason(exc)}",
            hint=(
                "check that the directory exists and is writable"
                if url.get_backend_name() == "sqlite"
                else "check that the server is running and the host, port, database and user "
                "in the URL are right"
            ),
        ) from exc


def _reason(exc: SQLAlchemyError) -> str:
    """The driver's own message, on one line."""
    original = getattr(exc, "orig", None)
    text = str(original if original is not None else exc)
    return " ".join(line.strip() for line in text.splitlines() if line.strip())
