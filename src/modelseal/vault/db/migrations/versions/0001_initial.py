"""The initial vault schema: every table of modelseal.vault.db.schema as first released.

Revision ID: 0001
Revises: (none)
Created: 2026-11-22 00:45:40.011970
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "vault_meta",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_vault_meta")),
    )

    op.create_table(
        "models",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column(
            "model_id",
            sa.String(length=36),
            nullable=False,
            comment="UUID from the sealed manifest",
        ),
        sa.Column("key_id", sa.String(length=200), nullable=False),
        sa.Column(
            "wrapped_key",
            sa.LargeBinary(),
            nullable=False,
            comment="data key wrapped by the master key",
        ),
        sa.Column("master_version", sa.Integer(), nullable=False),
        sa.Column(
            "manifest", sa.LargeBinary(), nullable=False, comment="canonical JSON, as signed"
        ),
        sa.Column("owner_cert", sa.LargeBinary(), nullable=False, comment="DER"),
        sa.Column("registered_at", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("master_version >= 1", name=op.f("ck_models_master_version_positive")),
        sa.CheckConstraint("version >= 1", name=op.f("ck_models_version_positive")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_models")),
        sa.UniqueConstraint("name", "version", name=op.f("uq_models_name_version")),
    )
    op.create_index(op.f("ix_models_model_id"), "models", ["model_id"])

    op.create_table(
        "customers",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customers")),
        sa.UniqueConstraint("name", name=op.f("uq_customers_name")),
    )

    op.create_table(
        "devices",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("cert_serial", sa.String(length=200), nullable=False, comment="hex"),
        sa.Column("cert_sha256", sa.String(length=64), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("enrolled_at", sa.BigInteger(), nullable=False),
        sa.Column("revoked_at", sa.BigInteger(), nullable=True),
        sa.Column("revoked_reason", sa.Text(), nullable=True),
        sa.CheckConstraint("length(cert_sha256) = 64", name=op.f("ck_devices_cert_sha256_hex")),
        sa.CheckConstraint(
            "revoked_reason IS NULL OR revoked_at IS NOT NULL",
            name=op.f("ck_devices_reason_needs_time"),
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_devices_customer_id_customers")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_devices")),
        sa.UniqueConstraint("cert_sha256", name=op.f("uq_devices_cert_sha256")),
    )
    op.create_index(op.f("ix_devices_cert_serial"), "devices", ["cert_serial"])
    op.create_index(op.f("ix_devices_customer_id"), "devices", ["customer_id"])

    op.create_table(
        "enrollment_tokens",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False, comment="SHA-256 hex"),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.Column("used_at", sa.BigInteger(), nullable=True),
        sa.Column("device_id", sa.String(length=40), nullable=True),
        sa.CheckConstraint(
            "device_id IS NULL OR used_at IS NOT NULL",
            name=op.f("ck_enrollment_tokens_device_needs_use"),
        ),
        sa.CheckConstraint(
            "length(token_hash) = 64", name=op.f("ck_enrollment_tokens_token_hash_hex")
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_enrollment_tokens_customer_id_customers"),
        ),
        sa.ForeignKeyConstraint(
            ["device_id"], ["devices.id"], name=op.f("fk_enrollment_tokens_device_id_devices")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_enrollment_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_enrollment_tokens_token_hash")),
    )
    op.create_index(op.f("ix_enrollment_tokens_customer_id"), "enrollment_tokens", ["customer_id"])

    op.create_table(
        "licenses",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("model_name", sa.String(length=200), nullable=False),
        sa.Column("versions", sa.String(length=200), nullable=False, comment='"*", "1,2" or "1-3"'),
        sa.Column("policy", sa.Text(), nullable=False, comment="canonical JSON"),
        sa.Column("jws", sa.Text(), nullable=False),
        sa.Column("issued_at", sa.BigInteger(), nullable=False),
        sa.Column("not_before", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=True),
        sa.Column("first_use_at", sa.BigInteger(), nullable=True),
        sa.Column("revoked_at", sa.BigInteger(), nullable=True),
        sa.Column("revoked_reason", sa.Text(), nullable=True),
        sa.Column("loads_used", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("max_loads", sa.Integer(), nullable=True),
        sa.Column("max_devices", sa.Integer(), nullable=True),
        sa.CheckConstraint("loads_used >= 0", name=op.f("ck_licenses_loads_used_nonnegative")),
        sa.CheckConstraint(
            "max_devices IS NULL OR max_devices >= 1", name=op.f("ck_licenses_max_devices_positive")
        ),
        sa.CheckConstraint(
            "max_loads IS NULL OR (max_loads >= 0 AND loads_used <= max_loads)",
            name=op.f("ck_licenses_loads_within_max"),
        ),
        sa.CheckConstraint(
            "revoked_reason IS NULL OR revoked_at IS NOT NULL",
            name=op.f("ck_licenses_reason_needs_time"),
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_licenses_customer_id_customers")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_licenses")),
    )
    op.create_index(op.f("ix_licenses_customer_id"), "licenses", ["customer_id"])
    op.create_index(op.f("ix_licenses_model_name"), "licenses", ["model_name"])

    op.create_table(
        "license_devices",
        sa.Column("license_id", sa.String(length=40), nullable=False),
        sa.Column("device_id", sa.String(length=40), nullable=False),
        sa.Column("bound_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["device_id"], ["devices.id"], name=op.f("fk_license_devices_device_id_devices")
        ),
        sa.ForeignKeyConstraint(
            ["license_id"], ["licenses.id"], name=op.f("fk_license_devices_license_id_licenses")
        ),
        sa.PrimaryKeyConstraint("license_id", "device_id", name=op.f("pk_license_devices")),
    )
    op.create_index(op.f("ix_license_devices_device_id"), "license_devices", ["device_id"])

    op.create_table(
        "usage_windows",
        sa.Column("license_id", sa.String(length=40), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("period_start", sa.BigInteger(), nullable=False),
        sa.Column("count", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.CheckConstraint(
            "kind IN ('loads', 'inferences')", name=op.f("ck_usage_windows_kind_known")
        ),
        sa.CheckConstraint("count >= 0", name=op.f("ck_usage_windows_count_nonnegative")),
        sa.ForeignKeyConstraint(
            ["license_id"], ["licenses.id"], name=op.f("fk_usage_windows_license_id_licenses")
        ),
        sa.PrimaryKeyConstraint(
            "license_id", "kind", "period_start", name=op.f("pk_usage_windows")
        ),
    )

    op.create_table(
        "nonces",
        sa.Column("nonce_hash", sa.String(length=64), nullable=False),
        sa.Column("device_id", sa.String(length=40), nullable=True),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.Column("used_at", sa.BigInteger(), nullable=True),
        sa.CheckConstraint("length(nonce_hash) = 64", name=op.f("ck_nonces_nonce_hash_hex")),
        sa.ForeignKeyConstraint(
            ["device_id"], ["devices.id"], name=op.f("fk_nonces_device_id_devices")
        ),
        sa.PrimaryKeyConstraint("nonce_hash", name=op.f("pk_nonces")),
    )
    op.create_index(op.f("ix_nonces_expires_at"), "nonces", ["expires_at"])

    op.create_table(
        "leases",
        sa.Column("id", sa.String(length=48), nullable=False),
        sa.Column("license_id", sa.String(length=40), nullable=False),
        sa.Column("device_id", sa.String(length=40), nullable=False),
        sa.Column("model_name", sa.String(length=200), nullable=False),
        sa.Column("model_version", sa.Integer(), nullable=False),
        sa.Column("issued_at", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.Column("renewed_at", sa.BigInteger(), nullable=False),
        sa.Column(
            "inferences_reported", sa.BigInteger(), server_default=sa.text("0"), nullable=False
        ),
        sa.Column("ended_at", sa.BigInteger(), nullable=True),
        sa.Column("end_reason", sa.String(length=64), nullable=True),
        sa.CheckConstraint(
            "end_reason IS NULL OR ended_at IS NOT NULL", name=op.f("ck_leases_reason_needs_end")
        ),
        sa.CheckConstraint(
            "inferences_reported >= 0", name=op.f("ck_leases_inferences_nonnegative")
        ),
        sa.ForeignKeyConstraint(
            ["device_id"], ["devices.id"], name=op.f("fk_leases_device_id_devices")
        ),
        sa.ForeignKeyConstraint(
            ["license_id"], ["licenses.id"], name=op.f("fk_leases_license_id_licenses")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_leases")),
    )
    op.create_index(op.f("ix_leases_device_id"), "leases", ["device_id"])
    op.create_index(op.f("ix_leases_license_id"), "leases", ["license_id"])

    op.create_table(
        "audit_log",
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=False,
            nullable=False,
        ),
        sa.Column("at", sa.BigInteger(), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("subject", sa.String(length=200), nullable=False),
        sa.Column(
            "outcome", sa.String(length=64), nullable=False, comment='"ok" or a refusal code'
        ),
        sa.Column(
            "details", sa.Text(), nullable=False, comment="canonical JSON; sensitive values HMACed"
        ),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("entry_hash", sa.String(length=64), nullable=False),
        sa.CheckConstraint("length(entry_hash) = 64", name=op.f("ck_audit_log_entry_hash_hex")),
        sa.CheckConstraint("length(prev_hash) = 64", name=op.f("ck_audit_log_prev_hash_hex")),
        sa.CheckConstraint("seq >= 1", name=op.f("ck_audit_log_seq_positive")),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_audit_log")),
        sa.UniqueConstraint("entry_hash", name=op.f("uq_audit_log_entry_hash")),
    )
    op.create_index(op.f("ix_audit_log_at"), "audit_log", ["at"])
    op.create_index(op.f("ix_audit_log_subject"), "audit_log", ["subject"])

    op.create_table(
        "audit_checkpoints",
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=False,
            nullable=False,
        ),
        sa.Column("at", sa.BigInteger(), nullable=False),
        sa.Column("entry_hash", sa.String(length=64), nullable=False),
        sa.Column("signature", sa.LargeBinary(), nullable=False),
        sa.Column("key_id", sa.String(length=200), nullable=False),
        sa.CheckConstraint(
            "length(entry_hash) = 64", name=op.f("ck_audit_checkpoints_entry_hash_hex")
        ),
        sa.ForeignKeyConstraint(
            ["seq"], ["audit_log.seq"], name=op.f("fk_audit_checkpoints_seq_audit_log")
        ),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_audit_checkpoints")),
    )


def downgrade() -> None:
    # Indexes and constraints go with their tables; children before parents.
    op.drop_table("audit_checkpoints")
    op.drop_table("audit_log")
    op.drop_table("leases")
    op.drop_table("nonces")
    op.drop_table("usage_windows")
    op.drop_table("license_devices")
    op.drop_table("licenses")
    op.drop_table("enrollment_tokens")
    op.drop_table("devices")
    op.drop_table("customers")
    op.drop_table("models")
    op.drop_table("vault_meta")
