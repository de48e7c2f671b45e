"""Rows for the vault storage tests: a migrated engine and a customer, devices, licenses, nonces."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, Engine, insert

from modelseal.vault.db import create_vault_engine, to_micros, upgrade
from modelseal.vault.db import schema as s

NOW = datetime(2030, 6, 1, 12, 0, tzinfo=UTC)


def migrated_engine(url: str, *, pool_size: int = 10) -> Engine:
    """An engine on ``url`` with the schema at head."""
    engine = create_vault_engine(url, pool_size=pool_size)
    upgrade(engine)
    return engine


def add_customer(conn: Connection, name: str | None = None) -> int:
    result = conn.execute(
        insert(s.customers).values(
            name=name or f"customer-{secrets.token_hex(4)}", created_at=to_micros(NOW)
        )
    )
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0])


def add_device(conn: Connection, customer_id: int) -> str:
    device_id = f"dev-{uuid.uuid4()}"
    conn.execute(
        insert(s.devices).values(
            id=device_id,
            customer_id=customer_id,
            cert_serial=secrets.token_hex(16),
            cert_sha256=secrets.token_hex(32),
            subject=f"CN={device_id}",
            enrolled_at=to_micros(NOW),
        )
    )
    return device_id


def add_license(
    conn: Connection,
    customer_id: int,
    *,
    max_loads: int | None = None,
    max_devices: int | None = None,
) -> str:
    license_id = f"lic-{uuid.uuid4()}"
    conn.execute(
        insert(s.licenses).values(
            id=license_id,
            customer_id=customer_id,
            model_name="iris",
            versions="*",
            policy="{}",
            jws="header.claims.signature",
            issued_at=to_micros(NOW),
            not_before=to_micros(NOW),
            max_loads=max_loads,
            max_devices=max_devices,
        )
    )
    return license_id


def new_nonce() -> str:
    """The hash of a fresh nonce, as the release records it with ``use_nonce``."""
    return hashlib.sha256(secrets.token_bytes(40)).hexdigest()


def add_token(conn: Connection, customer_id: int, *, ttl: timedelta = timedelta(hours=1)) -> str:
    token_hash = hashlib.sha256(secrets.token_bytes(32)).hexdigest()
    conn.execute(
        insert(s.enrollment_tokens).values(
            token_hash=token_hash,
            customer_id=customer_id,
            created_at=to_micros(NOW),
            expires_at=to_micros(NOW + ttl),
        )
    )
    return token_hash
