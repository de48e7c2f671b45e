"""Model rows with master-key-wrapped data keys, written straight into a vault's database.

For the master-key rotation tests: :func:`register_models` stores a few rows as the service would
(data key wrapped under the context naming the master version), :func:`unwrap_all` opens every
row again with an unlocked vault's master key.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import Engine, insert, select

from modelseal.crypto import DataKey
from modelseal.crypto.masterkey import MasterKey, data_key_context
from modelseal.vault.db import to_micros
from modelseal.vault.db.schema import models

NOW = datetime(2030, 6, 1, 12, 0, tzinfo=UTC)

__all__ = ["NOW", "master_versions", "register_models", "unwrap_all"]


def register_models(engine: Engine, master: MasterKey, count: int = 3) -> dict[str, DataKey]:
    """``count`` model rows (``model-0`` …, version 1 and 2 alternating); name:version → key."""
    keys: dict[str, DataKey] = {}
    with engine.begin() as conn:
        for index in range(count):
            name, version = f"model-{index}", 1 + index % 2
            key, model_id = DataKey.generate(), str(uuid.uuid4())
            context = data_key_context(
                model_id=model_id,
                version=version,
                key_id=key.key_id,
                master_version=master.version,
            )
            conn.execute(
                insert(models).values(
                    name=name,
                    version=version,
                    model_id=model_id,
                    key_id=key.key_id,
                    wrapped_key=master.wrap(key, context=context),
                    master_version=master.version,
                    manifest=b"{}",
                    owner_cert=b"\x30\x00",
                    registered_at=to_micros(NOW),
                )
            )
            keys[f"{name}:{version}"] = key
    return keys


def unwrap_all(engine: Engine, master: MasterKey) -> dict[str, DataKey]:
    """Every row's data key, unwrapped under the context its row names."""
    with engine.begin() as conn:
        rows = conn.execute(select(models)).all()
    return {
        f"{row.name}:{row.version}": master.unwrap(
            bytes(row.wrapped_key),
            context=data_key_context(
                model_id=row.model_id,
                version=row.version,
                key_id=row.key_id,
                master_version=row.master_version,
            ),
            key_id=row.key_id,
        )
        for row in rows
    }


def master_versions(engine: Engine) -> set[int]:
    """The master versions the model rows name."""
    with engine.begin() as conn:
        return {int(v) for v in conn.execute(select(models.c.master_version)).scalars()}
