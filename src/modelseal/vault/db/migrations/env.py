"""Alembic environment of the vault database.

Run only through :mod:`modelseal.vault.db.migrate`, which hands over a connection already inside
its transaction (``config.attributes["connection"]``). Batch mode lets later migrations alter
tables on SQLite, which has little ``ALTER TABLE``.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from modelseal.vault.db.schema import metadata


def run_migrations() -> None:
    connection = context.config.attributes.get("connection")
    if context.is_offline_mode() or not isinstance(connection, Connection):
        raise RuntimeError(
            "the vault's migrations run through modelseal.vault.db.migrate, on a live connection"
        )
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


run_migrations()
