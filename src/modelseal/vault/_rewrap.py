"""The database side of a master-key rotation: rewrapping rows, and the rotation's state row.

``vault_meta["master_key"]`` records the newest rotation as canonical JSON
``{"version": T, "previous": N, "previous_retired": bool}``; a re-run reads it to know which steps
are done (see :mod:`modelseal.vault.rotation`).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import Connection, insert, select, update

from modelseal.crypto import DataKey, DecryptionError, canonical_json
from modelseal.crypto.masterkey import MasterKeyRing, data_key_context
from modelseal.errors import Error
from modelseal.vault.db.schema import models, vault_meta

__all__ = [
    "STATE_META",
    "RotationError",
    "RotationState",
    "read_state",
    "rewrap_rows",
    "unwrap",
    "write_state",
]

STATE_META: Final = "master_key"
"""The ``vault_meta`` row recording the newest rotation (see the module docstring)."""
# vault_meta rows that hold a master-key-wrapped key: their "type" → the context's model id.
_WRAPPED_META: Final[Mapping[str, Callable[[str], str]]] = {
    "modelseal.audit-key": lambda vault_id: f"{vault_id}/audit",
}


class RotationError(Error):
    """The master key cannot be rotated as things are; nothing of the failed step was kept."""

    code = "MASTER_KEY_ROTATION"


@dataclass(frozen=True)
class RotationState:
    """The ``vault_meta`` row of the newest rotation."""

    version: int
    previous: int
    previous_retired: bool


def rewrap_rows(
    conn: Connection, ring: MasterKeyRing, target: int, *, vault_id: str
) -> tuple[int, int]:
    """Rewrap every ``models`` row and ``vault_meta`` key below master version ``target``.

    Each is unwrapped by the version it names (which ``ring`` must hold) and wrapped by
    ``target`` under the context naming ``target``; returns (models rows, vault_meta keys).
    """
    new_key = ring.get(target)
    rows = conn.execute(
        select(models)
        .where(models.c.master_version < target)
        .order_by(models.c.id)
        .with_for_update()
    ).all()
    for row in rows:
        old = data_key_context(
            model_id=row.model_id,
            version=row.version,
            key_id=row.key_id,
            master_version=row.master_version,
        )
        what = f"the data key of model {row.name} version {row.version}"
        key = unwrap(ring, bytes(row.wrapped_key), old, row.key_id, what, row.master_version)
        new = data_key_context(
            model_id=row.model_id, version=row.version, key_id=row.key_id, master_version=target
        )
        conn.execute(
            update(models)
            .where(models.c.id == row.id)
            .values(wrapped_key=new_key.wrap(key, context=new), master_version=target)
        )
    rewrapped_meta = 0
    for name, value in conn.execute(select(vault_meta.c.key, vault_meta.c.value)).all():
        document = _wrapped_document(value)
        if document is None or document["master_version"] >= target:
            continue
        model_id = _WRAPPED_META.get(document.get("type", ""))
        if model_id is None:
            raise RotationError(
                f"vault_meta row {name!r} holds a key of unknown type "
                f"{document.get('type')!r} wrapped by master key version "
                f"{document['master_version']}; rotating would make it unreadable",
                hint="rotate with the modelseal version that wrote it",
            )
        key_id, version = document["key_id"], document["master_version"]
        owner = model_id(vault_id)
        blob = _b64decode(document["wrapped"], f"vault_meta row {name!r}")
        old = _meta_context(owner, key_id, version)
        key = unwrap(ring, blob, old, key_id, f"vault_meta row {name!r}", version)
        wrapped = new_key.wrap(key, context=_meta_context(owner, key_id, target))
        document.update(master_version=target, wrapped=base64.b64encode(wrapped).decode("ascii"))
        conn.execute(
            update(vault_meta)
            .where(vault_meta.c.key == name)
            .values(value=canonical_json(document).decode("utf-8"))
        )
        rewrapped_meta += 1
    return len(rows), rewrapped_meta


def unwrap(
    ring: MasterKeyRing, blob: bytes, context: bytes, key_id: str, what: str, version: int
) -> DataKey:
    try:
        return ring.unwrap(blob, context=context, key_id=key_id)
    except DecryptionError:
        raise RotationError(
            f"{what} does not open with master key version {version}: it was altered, or "
            "belongs to another vault",
            hint="nothing was rewrapped; restore it from a backup and run the rotation again",
        ) from None


def _meta_context(owner: str, key_id: str, master_version: int) -> bytes:
    return data_key_context(model_id=owner, version=0, key_id=key_id, master_version=master_version)


def _wrapped_document(value: str) -> dict[str, Any] | None:
    """A ``vault_meta`` value that is a master-key-wrapped key, or None for any other value."""
    try:
        document = json.loads(value)
    except ValueError:
        return None
    if (
        not isinstance(document, dict)
        or not isinstance(document.get("wrapped"), str)
        or not isinstance(document.get("key_id"), str)
        or not isinstance(document.get("master_version"), int)
    ):
        return None
    return document


def _b64decode(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error:
        raise RotationError(f"{what} is damaged ('wrapped' is not base64)") from None


def read_state(conn: Connection, *, lock: bool = False) -> RotationState | None:
    query = select(vault_meta.c.value).where(vault_meta.c.key == STATE_META)
    value = conn.execute(query.with_for_update() if lock else query).scalar_one_or_none()
    if value is None:
        return None
    try:
        document = json.loads(value)
        return RotationState(
            int(document["version"]),
            int(document["previous"]),
            bool(document["previous_retired"]),
        )
    except (ValueError, KeyError, TypeError):
        raise RotationError(
            f"the vault_meta row {STATE_META!r} is damaged: {value!r}",
            hint="restore the database from a backup",
        ) from None


def write_state(conn: Connection, state: RotationState) -> None:
    value = canonical_json(
        {
            "version": state.version,
            "previous": state.previous,
            "previous_retired": state.previous_retired,
        }
    ).decode("utf-8")
    changed = conn.execute(
        update(vault_meta).where(vault_meta.c.key == STATE_META).values(value=value)
    )
    if changed.rowcount == 0:
        conn.execute(insert(vault_meta).values(key=STATE_META, value=value))
