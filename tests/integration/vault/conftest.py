"""Fixtures of the vault's integration tests: a real PostgreSQL server (see ``tests/postgres.py``)."""

from __future__ import annotations

from tests.postgres import postgres_database, postgres_server, postgres_url

__all__ = ["postgres_database", "postgres_server", "postgres_url"]
