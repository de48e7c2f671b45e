"""Alembic migrations for the vault database, run from code (no ``alembic.ini``).

The migration scripts ship inside the package (``migrations/``). :func:`upgrade` brings a database
(empty or older) to the newest schema in one transaction; on PostgreSQL it first takes an advisory
lock, so vault processes starting together do not race each other through the same migration.
:func:`check_schema_current` is what a starting vault calls: it refuses a database that is behind
(or ahead of) this modelseal rather than failing later on a missing column.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Final

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import SQLAlchemyError

from modelseal.vault.db.engine import read_only, redact_url
from modelseal.vault.db.errors import SchemaError, StorageError

__all__ = ["check_schema_current", "current_revision", "downgrade", "head_revision", "upgrade"]

MIGRATIONS: Final = Path(__file__).resolve().with_name("migrations")

_MIGRATE_LOCK_KEY: Final = int.from_bytes(
    hashlib.sha256(b"modelseal.vault.migrate").digest()[:8], "big", signed=True
)
_HINT: Final = (
    "run the vault's database migrations with this modelseal (modelseal.vault.db.upgrade, "
    "which `modelseal vault init` runs) before starting the vault"
)


def head_revision() -> str:
    """The newest schema revision this modelseal knows."""
    head = ScriptDirectory.from_config(_config()).get_current_head()
    if head is None:  # pragma: no cover - the package always ships its migrations
        raise StorageError(f"no database migrations found in {MIGRATIONS}")
    return head


def current_revision(engine: Engine) -> str | None:
    """The database's schema revision; None for a database the migrations never touched."""
    try:
        with read_only(engine).connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    except SQLAlchemyError as exc:
        raise _storage_error(engine, "read the schema revision of", exc) from exc


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate the database up to ``revision`` (default: the newest), in one transaction."""
    _run(engine, "upgrade", revision)


def downgrade(engine: Engine, revision: str) -> None:
    """Migrate the database down to ``revision`` (``"base"`` drops every vault table)."""
    _run(engine, "downgrade", revision)


def check_schema_current(engine: Engine) -> None:
    """Raise :class:`SchemaError` unless the database is at exactly this modelseal's schema."""
    head = head_revision()
    try:
        with read_only(engine).connect() as conn:
            current = set(MigrationContext.configure(conn).get_current_heads())
    except SQLAlchemyError as exc:
        raise _storage_error(engine, "read the schema revision of", exc) from exc
    where = redact_url(engine.url)
    if current == {head}:
        return
    if not current:
        raise SchemaError(f"the vault database {where} has no vault schema yet", hint=_HINT)
    scripts = ScriptDirectory.from_config(_config())
    known = {script.revision for script in scripts.walk_revisions()}
    unknown = sorted(current - known)
    if unknown:
        raise SchemaError(
            f"the vault database {where} is at schema revision {', '.join(unknown)}, "
            f"newer than this modelseal knows (its newest is {head})",
            hint="upgrade modelseal to the version that migrated this database",
        )
    raise SchemaError(
        f"the vault database {where} is at schema revision {', '.join(sorted(current))}, "
        f"but this modelseal needs {head}",
        hint=_HINT,
    )


def _config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS).replace("%", "%%"))
    config.attributes["connection"] = connection
    return config


def _run(engine: Engine, direction: str, revision: str) -> None:
    try:
        with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATE_LOCK_KEY})
            config = _config(conn)
            if direction == "upgrade":
                command.upgrade(config, revision)
            else:
                command.downgrade(config, revision)
    except CommandError as exc:
        raise SchemaError(
            f"cannot {direction} the vault database {redact_url(engine.url)} to {revision!r}: {exc}"
        ) from exc
    except SQLAlchemyError as exc:
        raise _storage_error(engine, f"{direction} the schema of", exc) from exc


def _storage_error(engine: Engine, doing: str, exc: SQLAlchemyError) -> StorageError:
    reason = " ".join(str(getattr(exc, "orig", None) or exc).split())
    return StorageError(f"cannot {doing} the vault database {redact_url(engine.url)}: {reason}")
