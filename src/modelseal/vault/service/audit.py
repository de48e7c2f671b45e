"""The service's side of the audit log: the HMAC key for sensitive values, appends, verification.

Sensitive values (nonces, enrolment tokens, device public keys, evidence) go into an entry's
``details`` only as ``hmac-sha256:<hex>`` under the vault's *audit key*: equal values give equal
digests, so entries can be matched, but the log reveals nothing to replay. The audit key is 32
random bytes made at the first start of the vault, stored in ``vault_meta`` wrapped by the master
key (bound to the vault id, like the home key), so every vault process sharing the database uses
the same key and only a holder of the master key can compute digests. A master-key rotation must
rewrap it along with the data keys.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Final

from sqlalchemy import Connection, Engine, func, insert, select
from sqlalchemy.exc import IntegrityError

from modelseal.crypto import CryptoError, DataKey, DecryptionError, FormatError, canonical_json
from modelseal.crypto.mac import MacKey
from modelseal.crypto.masterkey import data_key_context
from modelseal.vault.db import append_audit, read_only, verify_audit_chain
from modelseal.vault.db.schema import audit_log, vault_meta
from modelseal.vault.home import UnlockedVault
from modelseal.vault.service.errors import VaultError
from modelseal.vault.service.views import AuditReport

__all__ = ["AUDIT_KEY_META", "AuditTrail"]

AUDIT_KEY_META: Final = "audit_hmac_key"
"""The ``vault_meta`` row holding the wrapped audit key."""
_TYPE: Final = "modelseal.audit-key"
_MAC_LABEL: Final = "modelseal vault audit"

log = logging.getLogger(__name__)


def _context(vault: UnlockedVault, key_id: str, master_version: int) -> bytes:
    return data_key_context(
        model_id=f"{vault.settings.vault_id}/audit",
        version=0,
        key_id=key_id,
        master_version=master_version,
    )


def _load_or_create_key(vault: UnlockedVault, engine: Engine) -> DataKey:
    """The audit key from ``vault_meta``; made and stored first if no vault process has yet."""
    master = vault.master_key
    read = select(vault_meta.c.value).where(vault_meta.c.key == AUDIT_KEY_META)
    with read_only(engine).begin() as conn:
        stored = conn.execute(read).scalar_one_or_none()
    if stored is None:
        key = DataKey.generate()
        wrapped = master.wrap(key, context=_context(vault, key.key_id, master.version))
        document = {
            "type": _TYPE,
            "key_id": key.key_id,
            "master_version": master.version,
            "wrapped": base64.b64encode(wrapped).decode("ascii"),
        }
        row = {"key": AUDIT_KEY_META, "value": canonical_json(document).decode("ascii")}
        try:
            with engine.begin() as conn:
                conn.execute(insert(vault_meta).values(row))
            return key
        except IntegrityError:  # another vault process stored one first: use that one
            with read_only(engine).begin() as conn:
                stored = conn.execute(read).scalar_one()
    return _unwrap(vault, str(stored))


def _unwrap(vault: UnlockedVault, stored: str) -> DataKey:
    """Open the stored audit key with the master-key version it names (during a rotation the
    vault holds both versions; the rotation rewraps this key with the data keys)."""
    problem = "the audit key in the vault database"
    try:
        document = _parse(stored)
        key_id, version = document["key_id"], document["master_version"]
        wrapped = base64.b64decode(document["wrapped"], validate=True)
        context = _context(vault, key_id, version)
        return vault.master_key.unwrap(wrapped, context=context, key_id=key_id)
    except (FormatError, binascii.Error, KeyError, TypeError, ValueError):
        raise VaultError(f"{problem} is damaged", hint="restore the database") from None
    except DecryptionError:
        raise VaultError(
            f"{problem} does not open with this vault's master key: the database belongs to "
            "another vault, or was altered",
            hint="check the database URL in vault.json",
        ) from None
    except CryptoError as exc:  # MasterKeyError: a version this vault does not hold
        raise VaultError(f"{problem} cannot be opened: {exc.message}", hint=exc.hint) from None


def _parse(stored: str) -> dict[str, Any]:
    document = json.loads(stored)
    if not isinstance(document, dict) or document.get("type") != _TYPE:
        raise FormatError("not an audit key record")
    return document


class AuditTrail:
    """Appends to the hash-chained audit log and HMACs the sensitive values of entries."""

    def __init__(self, vault: UnlockedVault, engine: Engine, clock: Callable[[], datetime]) -> None:
        self._engine = engine
        self._clock = clock
        self._key = _load_or_create_key(vault, engine)
        self._mac = MacKey.derive(self._key, label=_MAC_LABEL)

    def mac_key(self, label: str) -> MacKey:
        """A MAC key for another purpose of the service, from the same vault secret (every
        process of one vault derives the same key; rotation rewraps the secret, never changes
        it)."""
        return MacKey.derive(self._key, label=label)

    def secret(self, field: str, value: bytes | str) -> str:
        """``hmac-sha256:<hex>`` of ``value`` for the details field ``field``."""
        data = value.encode("utf-8") if isinstance(value, str) else value
        return "hmac-sha256:" + self._mac.hexdigest(field.encode("ascii") + b"\x00" + data)

    def append(
        self,
        conn: Connection,
        *,
        at: datetime,
        actor: str,
        action: str,
        subject: str,
        outcome: str,
        details: Mapping[str, Any],
    ) -> str:
        """Append in the caller's transaction (its last statement before commit)."""
        return append_audit(
            conn,
            at=at,
            actor=_short(actor),
            action=action,
            subject=_short(subject),
            outcome=outcome,
            details=details,
        )

    def append_alone(
        self,
        *,
        at: datetime | None = None,
        actor: str,
        action: str,
        subject: str,
        outcome: str,
        details: Mapping[str, Any],
        also: Callable[[Connection], object] | None = None,
    ) -> bool:
        """Append in a transaction of its own (after the caller's rolled back); False on failure.

        ``at`` defaults to the service clock's now. ``also`` runs first in the same transaction (a
        state change the entry records). A failure is logged, never raised: the caller is refusing
        anyway and its refusal must reach the client.
        """
        try:
            with self._engine.begin() as conn:
                if also is not None:
                    also(conn)
                self.append(
                    conn,
                    at=self._clock() if at is None else at,
                    actor=actor,
                    action=action,
                    subject=subject,
                    outcome=outcome,
                    details=details,
                )
        except Exception:
            log.exception(
                "could not write the audit entry for %s %s (%s)", action, subject, outcome
            )
            return False
        return True

    def verify(self) -> AuditReport:
        """Recompute the chain (see :func:`modelseal.vault.db.verify_audit_chain`)."""
        with read_only(self._engine).begin() as conn:
            entries = conn.execute(select(func.count()).select_from(audit_log)).scalar_one()
            first_bad = verify_audit_chain(conn)
        return AuditReport(entries=int(entries), first_bad=first_bad)


def _short(text: str) -> str:
    """Actor and subject columns hold 200 characters; longer texts keep their start."""
    return text if len(text) <= 200 else text[:199] + "…"
