"""The vault's storage: tables, engines, migrations and the statements that must stay exact.

Importing this package imports SQLAlchemy; the rest of modelseal (packages, keys, the CLI's
start-up) does not, and must not, import it.
"""

from modelseal.vault.db.engine import (
    create_vault_engine,
    default_sqlite_url,
    read_only,
    redact_url,
)
from modelseal.vault.db.errors import SchemaError, StorageError
from modelseal.vault.db.migrate import (
    check_schema_current,
    current_revision,
    downgrade,
    head_revision,
    upgrade,
)
from modelseal.vault.db.ops import (
    append_audit,
    audit_entry_hash,
    audit_entry_intact,
    bind_device,
    claim_enrollment_token,
    sweep_nonces,
    take_load,
    take_window,
    use_nonce,
    verify_audit_chain,
)
from modelseal.vault.db.schema import from_micros, metadata, to_micros

__all__ = [
    "SchemaError",
    "StorageError",
    "append_audit",
    "audit_entry_hash",
    "audit_entry_intact",
    "bind_device",
    "check_schema_current",
    "claim_enrollment_token",
    "create_vault_engine",
    "current_revision",
    "default_sqlite_url",
    "downgrade",
    "from_micros",
    "head_revision",
    "metadata",
    "read_only",
    "redact_url",
    "sweep_nonces",
    "take_load",
    "take_window",
    "to_micros",
    "upgrade",
    "use_nonce",
    "verify_audit_chain",
]
