"""The vault's tables, as SQLAlchemy Core ``Table`` objects on one ``MetaData``.

Core, not the ORM: the key-release path runs a handful of single-row statements per request and
must stay cheap. The migrations under ``migrations/`` create exactly these tables; a unit test
compares the two.

Conventions, the same in every table:

* **Time** is an integer count of microseconds since the Unix epoch, UTC (``BIGINT``). It sorts,
  compares and indexes the same way on SQLite and PostgreSQL, needs no time-zone handling in the
  driver, and is exact. Convert with :func:`to_micros` / :func:`from_micros`; naive datetimes are
  refused.
* **Hashes** are lower-case hex SHA-256 (64 characters), checked by a ``CHECK`` constraint.
* **Ids** the vault shows to people are strings with a kind prefix (``dev-<uuid>``,
  ``lic-<uuid>``, ``lease-<uuid>``); rows nobody names get an integer key.
* Counters carry ``CHECK`` constraints as a second line of defence: even a buggy caller cannot
  push ``loads_used`` past ``max_loads`` or a window count below zero.
* Constraint and index names follow :data:`NAMING_CONVENTION`, so future migrations (including
  SQLite's copy-and-move batch mode) can address them by name.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Final

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

__all__ = [
    "GENESIS_HASH",
    "NAMING_CONVENTION",
    "WINDOW_KINDS",
    "audit_checkpoints",
    "audit_log",
    "customers",
    "devices",
    "enrollment_tokens",
    "from_micros",
    "leases",
    "license_devices",
    "licenses",
    "metadata",
    "models",
    "nonces",
    "to_micros",
    "usage_windows",
    "vault_meta",
]

NAMING_CONVENTION: Final = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

WINDOW_KINDS: Final = ("loads", "inferences")
"""The kinds of per-period counters in ``usage_windows``."""

GENESIS_HASH: Final = "0" * 64
"""The ``prev_hash`` of the first audit entry."""

_ID = 40  # "dev-" / "lic-" + a 36-character UUID; "lease-" ids fit as well (42 would be exact)
_NAME = 200
_HEX = 64
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND: Final = timedelta(microseconds=1)

metadata = MetaData(naming_convention=NAMING_CONVENTION)

# SQLite only auto-increments (and aliases the rowid) for a column typed exactly INTEGER.
_BigId = BigInteger().with_variant(Integer(), "sqlite")


def _micros(name: str, *, nullable: bool = False) -> Column[int]:
    return Column(name, BigInteger, nullable=nullable)


def _hex(column: str) -> str:
    return f"length({column}) = 64"


def to_micros(moment: datetime) -> int:
    """``moment`` (time-zone aware) as integer microseconds since the Unix epoch."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"naive datetime {moment!r}; pass a time-zone aware datetime")
    return (moment - _EPOCH) // _MICROSECOND


def from_micros(micros: int) -> datetime:
    """The UTC datetime for integer microseconds since the Unix epoch."""
    return _EPOCH + micros * _MICROSECOND


vault_meta = Table(
    "vault_meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

models = Table(
    "models",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(_NAME), nullable=False),
    Column("version", Integer, nullable=False),
    Column("model_id", String(36), nullable=False, comment="UUID from the sealed manifest"),
    Column("key_id", String(_NAME), nullable=False),
    Column(
        "wrapped_key", LargeBinary, nullable=False, comment="data key wrapped by the master key"
    ),
    Column("master_version", Integer, nullable=False),
    Column("manifest", LargeBinary, nullable=False, comment="canonical JSON, as signed"),
    Column("owner_cert", LargeBinary, nullable=False, comment="DER"),
    _micros("registered_at"),
    UniqueConstraint("name", "version"),
    CheckConstraint("version >= 1", name="version_positive"),
    CheckConstraint("master_version >= 1", name="master_version_positive"),
    Index(None, "model_id"),
)

customers = Table(
    "customers",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(_NAME), nullable=False, unique=True),
    _micros("created_at"),
)

devices = Table(
    "devices",
    metadata,
    Column("id", String(_ID), primary_key=True),
    Column("customer_id", Integer, ForeignKey("customers.id"), nullable=False),
    Column("cert_serial", String(_NAME), nullable=False, comment="hex"),
    Column("cert_sha256", String(_HEX), nullable=False, unique=True),
    Column("subject", Text, nullable=False),
    _micros("enrolled_at"),
    _micros("revoked_at", nullable=True),
    Column("revoked_reason", Text),
    CheckConstraint(_hex("cert_sha256"), name="cert_sha256_hex"),
    CheckConstraint("revoked_reason IS NULL OR revoked_at IS NOT NULL", name="reason_needs_time"),
    Index(None, "customer_id"),
    Index(None, "cert_serial"),
)

enrollment_tokens = Table(
    "enrollment_tokens",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("token_hash", String(_HEX), nullable=False, unique=True, comment="SHA-256 hex"),
    Column("customer_id", Integer, ForeignKey("customers.id"), nullable=False),
    _micros("created_at"),
    _micros("expires_at"),
    _micros("used_at", nullable=True),
    Column("device_id", String(_ID), ForeignKey("devices.id")),
    CheckConstraint(_hex("token_hash"), name="token_hash_hex"),
    CheckConstraint("device_id IS NULL OR used_at IS NOT NULL", name="device_needs_use"),
    Index(None, "customer_id"),
)

licenses = Table(
    "licenses",
    metadata,
    Column("id", String(_ID), primary_key=True),
    Column("customer_id", Integer, ForeignKey("customers.id"), nullable=False),
    Column("model_name", String(_NAME), nullable=False),
    Column("versions", String(_NAME), nullable=False, comment='"*", "1,2" or "1-3"'),
    Column("policy", Text, nullable=False, comment="canonical JSON"),
    Column("jws", Text, nullable=False),
    _micros("issued_at"),
    _micros("not_before"),
    _micros("expires_at", nullable=True),
    _micros("first_use_at", nullable=True),
    _micros("revoked_at", nullable=True),
    Column("revoked_reason", Text),
    Column("loads_used", Integer, nullable=False, server_default=text("0")),
    Column("max_loads", Integer),
    Column("max_devices", Integer),
    CheckConstraint("loads_used >= 0", name="loads_used_nonnegative"),
    CheckConstraint(
        "max_loads IS NULL OR (max_loads >= 0 AND loads_used <= max_loads)", name="loads_within_max"
    ),
    CheckConstraint("max_devices IS NULL OR max_devices >= 1", name="max_devices_positive"),
    CheckConstraint("revoked_reason IS NULL OR revoked_at IS NOT NULL", name="reason_needs_time"),
    Index(None, "customer_id"),
    Index(None, "model_name"),
)

license_devices = Table(
    "license_devices",
    metadata,
    Column("license_id", String(_ID), ForeignKey("licenses.id"), nullable=False),
    Column("device_id", String(_ID), ForeignKey("devices.id"), nullable=False),
    _micros("bound_at"),
    PrimaryKeyConstraint("license_id", "device_id"),
    Index(None, "device_id"),
)

usage_windows = Table(
    "usage_windows",
    metadata,
    Column("license_id", String(_ID), ForeignKey("licenses.id"), nullable=False),
    Column("kind", String(16), nullable=False),
    _micros("period_start"),
    Column("count", BigInteger, nullable=False, server_default=text("0")),
    PrimaryKeyConstraint("license_id", "kind", "period_start"),
    CheckConstraint("kind IN ('loads', 'inferences')", name="kind_known"),
    CheckConstraint("count >= 0", name="count_nonnegative"),
)

nonces = Table(
    "nonces",
    metadata,
    Column("nonce_hash", String(_HEX), primary_key=True),
    Column("device_id", String(_ID), ForeignKey("devices.id")),
    _micros("expires_at"),
    _micros("used_at", nullable=True),
    CheckConstraint(_hex("nonce_hash"), name="nonce_hash_hex"),
    Index(None, "expires_at"),
)

leases = Table(
    "leases",
    metadata,
    Column("id", String(48), primary_key=True),
    Column("license_id", String(_ID), ForeignKey("licenses.id"), nullable=False),
    Column("device_id", String(_ID), ForeignKey("devices.id"), nullable=False),
    Column("model_name", String(_NAME), nullable=False),
    Column("model_version", Integer, nullable=False),
    _micros("issued_at"),
    _micros("expires_at"),
    _micros("renewed_at"),
    Column("inferences_reported", BigInteger, nullable=False, server_default=text("0")),
    _micros("ended_at", nullable=True),
    Column("end_reason", String(64)),
    CheckConstraint("inferences_reported >= 0", name="inferences_nonnegative"),
    CheckConstraint("end_reason IS NULL OR ended_at IS NOT NULL", name="reason_needs_end"),
    Index(None, "license_id"),
    Index(None, "device_id"),
)

audit_log = Table(
    "audit_log",
    metadata,
    # Assigned by ops.append_audit as last seq + 1 under the chain lock, never by the database:
    # the sequence is gapless and part of each entry's hash.
    Column("seq", _BigId, primary_key=True, autoincrement=False),
    _micros("at"),
    Column("actor", String(_NAME), nullable=False),
    Column("action", String(64), nullable=False),
    Column("subject", String(_NAME), nullable=False),
    Column("outcome", String(64), nullable=False, comment='"ok" or a refusal code'),
    Column("details", Text, nullable=False, comment="canonical JSON; sensitive values HMACed"),
    Column("prev_hash", String(_HEX), nullable=False),
    Column("entry_hash", String(_HEX), nullable=False, unique=True),
    CheckConstraint("seq >= 1", name="seq_positive"),
    CheckConstraint(_hex("prev_hash"), name="prev_hash_hex"),
    CheckConstraint(_hex("entry_hash"), name="entry_hash_hex"),
    Index(None, "subject"),
    Index(None, "at"),
)

audit_checkpoints = Table(
    "audit_checkpoints",
    metadata,
    Column("seq", _BigId, ForeignKey("audit_log.seq"), primary_key=True, autoincrement=False),
    _micros("at"),
    Column("entry_hash", String(_HEX), nullable=False),
    Column("signature", LargeBinary, nullable=False),
    Column("key_id", String(_NAME), nullable=False),
    CheckConstraint(_hex("entry_hash"), name="entry_hash_hex"),
)
