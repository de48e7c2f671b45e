"""The data keys of registered models, as the key release reads and unwraps them.

Model rows never change while vaults run (a master-key rotation stops them first), so a vault
remembers each row it has read; if one did change, :meth:`ModelKeys.unwrap` drops the remembered
row and reads it again before giving up.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from sqlalchemy import Connection, bindparam, select

from modelseal.crypto import CryptoError, DataKey
from modelseal.crypto.masterkey import data_key_context
from modelseal.vault.db import schema as s
from modelseal.vault.service._core import Core

__all__ = ["ModelKey", "ModelKeys"]

_CACHE_SIZE: Final = 4096
_MODEL: Final = select(
    s.models.c.model_id, s.models.c.key_id, s.models.c.wrapped_key, s.models.c.master_version
).where(s.models.c.name == bindparam("p_name"), s.models.c.version == bindparam("p_version"))


@dataclass(frozen=True)
class ModelKey:
    """A model version's wrapped data key and the context it is wrapped under."""

    model_id: str
    key_id: str
    wrapped: bytes
    context: bytes


class ModelKeys:
    def __init__(self, core: Core) -> None:
        self._core = core
        self._rows: dict[tuple[str, int], ModelKey] = {}

    def find(self, conn: Connection, name: str, version: int) -> ModelKey | None:
        """The model's key row, from the cache when this service has read it before.

        Model rows never change while vaults run (a master-key rotation stops them first); if one
        did, :meth:`unwrap` drops the cached entry and reads the row again.
        """
        cached = self._rows.get((name, version))
        if cached is not None:
            return cached
        row = conn.execute(_MODEL, {"p_name": name, "p_version": version}).first()
        if row is None:
            return None
        model = ModelKey(
            model_id=row.model_id,
            key_id=row.key_id,
            wrapped=bytes(row.wrapped_key),
            context=data_key_context(
                model_id=row.model_id,
                version=version,
                key_id=row.key_id,
                master_version=row.master_version,
            ),
        )
        if len(self._rows) < _CACHE_SIZE:
            self._rows[(name, version)] = model
        return model

    def unwrap(self, conn: Connection, model: ModelKey, name: str, version: int) -> DataKey:
        master = self._core.vault.master_key
        try:
            return master.unwrap(model.wrapped, context=model.context, key_id=model.key_id)
        except CryptoError:
            self._rows.pop((name, version), None)
            fresh = self.find(conn, name, version)  # the cached row may be stale: read again
            if fresh is None or fresh.wrapped == model.wrapped:
                raise
            return master.unwrap(fresh.wrapped, context=fresh.context, key_id=fresh.key_id)
