"""Errors of the vault's storage layer."""

from __future__ import annotations

from modelseal.errors import Error

__all__ = ["SchemaError", "StorageError"]


class StorageError(Error):
    """The vault database cannot be reached or used (bad URL, server down, file not writable)."""

    code = "STORAGE"


class SchemaError(StorageError):
    """The database schema is not the one this modelseal expects (migrations not run, or newer)."""

    code = "SCHEMA"
