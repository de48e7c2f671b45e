"""``modelseal vault audit verify``: recompute the audit hash chain and check its signed checkpoints.

Needs no secret: it reads ``vault.json`` (the database URL) and ``license-keys.json`` (the public
keys checkpoints are signed with) and only reads the database, so an auditor can run it beside a
running vault without the passphrase or PIN.

The chain (:func:`modelseal.vault.db.verify_audit_chain`) names the first entry that is missing,
altered, or not linked to the one before it, and any entry a checkpoint recorded another hash for.
A checkpoint row (``audit_checkpoints``: ``seq``, ``at``, ``entry_hash``, ``signature``,
``key_id``) is the vault's signature over :func:`checkpoint_message` with its license-signing key
(Ed25519, ``key_id`` = the key's RFC 7638 thumbprint, as in ``license-keys.json``); a checkpoint
whose signature does not verify makes its entry the first bad one. Checkpoints are what catch
entries cut off the end of the log.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from sqlalchemy import Connection, Engine, RowMapping, func, select
from sqlalchemy.exc import SQLAlchemyError

from modelseal.crypto import SignatureError, canonical_json
from modelseal.vault.db import (
    StorageError,
    audit_entry_intact,
    check_schema_current,
    create_vault_engine,
    read_only,
    redact_url,
    verify_audit_chain,
)
from modelseal.vault.db.schema import GENESIS_HASH, audit_checkpoints, audit_log
from modelseal.vault.home import VaultHome

__all__ = ["CHECKPOINT_TYPE", "AuditVerification", "checkpoint_message", "verify_audit"]

CHECKPOINT_TYPE: Final = "modelseal.audit-checkpoint"
NO_CHECKPOINTS: Final = "no checkpoints yet"


def checkpoint_message(*, vault_id: str, seq: int, at: int, entry_hash: str) -> bytes:
    """What a checkpoint's signature covers: RFC 8785 JSON of the checkpoint and the vault id.

    ``at`` is the checkpoint row's time in integer microseconds since the epoch.
    """
    return canonical_json(
        {
            "type": CHECKPOINT_TYPE,
            "vault_id": vault_id,
            "seq": seq,
            "at": at,
            "entry_hash": entry_hash,
        }
    )


@dataclass(frozen=True)
class AuditVerification:
    """The outcome of :func:`verify_audit`."""

    entries: int
    first_bad: int | None
    """The ``seq`` of the first bad entry; None when the whole chain verifies."""
    reason: str | None
    """Why that entry is bad, in words (None when the chain verifies)."""
    last_hash: str | None
    """The stored hash of the newest entry (None for an empty log): anchor it elsewhere."""
    checkpoints: int
    """How many signed checkpoints were checked."""
    checkpoint_note: str

    @property
    def ok(self) -> bool:
        return self.first_bad is None

    def summary(self) -> str:
        """One line for a person."""
        count = f"{self.entries} entr{'y' if self.entries == 1 else 'ies'}"
        if self.first_bad is not None:
            return f"audit chain broken at entry {self.first_bad}: {self.reason} ({count})"
        last = f", last hash {self.last_hash}" if self.last_hash else ""
        return f"audit chain ok: {count}{last}; {self.checkpoint_note}"

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "entries": self.entries,
            "first_bad": self.first_bad,
            "reason": self.reason,
            "last_hash": self.last_hash,
            "checkpoints": self.checkpoints,
            "checkpoint_note": self.checkpoint_note,
        }


def verify_audit(home: Path | VaultHome) -> AuditVerification:
    """Verify the audit log of the vault home ``home`` (see the module docstring)."""
    vault_home = home if isinstance(home, VaultHome) else VaultHome.open(Path(home))
    engine = create_vault_engine(vault_home.database_url, pool_size=1, max_overflow=0)
    try:
        check_schema_current(engine)
        return _verify(vault_home, engine)
    except SQLAlchemyError as exc:
        reason = " ".join(str(getattr(exc, "orig", None) or exc).split())
        raise StorageError(
            f"cannot read the audit log of the vault database {redact_url(engine.url)}: {reason}"
        ) from exc
    finally:
        engine.dispose()


def _verify(home: VaultHome, engine: Engine) -> AuditVerification:
    with read_only(engine).begin() as conn:  # one snapshot for the count, chain and checkpoints
        entries = int(conn.execute(select(func.count()).select_from(audit_log)).scalar_one())
        tail = conn.execute(
            select(audit_log.c.entry_hash).order_by(audit_log.c.seq.desc()).limit(1)
        ).scalar_one_or_none()
        first_bad = verify_audit_chain(conn)
        reason = None if first_bad is None else _why(conn, first_bad)
        checkpoints = conn.execute(select(audit_checkpoints).order_by(audit_checkpoints.c.seq))
        count, forged = 0, None
        for row in checkpoints.mappings():
            count += 1
            if forged is None:
                forged = _bad_signature(home, row)
    if forged is not None and (first_bad is None or forged[0] < first_bad):
        first_bad, reason = forged
    if count == 0:
        note = NO_CHECKPOINTS
    elif forged is None:
        note = f"{count} signed checkpoint{'s' if count != 1 else ''} verified"
    else:
        note = f"{count} checkpoint{'s' if count != 1 else ''}, not all validly signed"
    return AuditVerification(
        entries=entries,
        first_bad=first_bad,
        reason=reason,
        last_hash=None if tail is None else str(tail),
        checkpoints=count,
        checkpoint_note=note,
    )


def _why(conn: Connection, seq: int) -> str:
    """Why entry ``seq`` fails verification (verify_audit_chain named it)."""
    rows = {
        int(row["seq"]): row
        for row in conn.execute(
            select(audit_log).where(audit_log.c.seq.in_([seq - 1, seq]))
        ).mappings()
    }
    row = rows.get(seq)
    if row is None:
        newest = conn.execute(select(func.max(audit_log.c.seq))).scalar_one_or_none()
        if newest is None or seq > int(newest):
            return (
                f"a signed checkpoint names entry {seq}, but the log ends before it: entries "
                "were cut off its end"
            )
        return "the entry is missing (deleted or renumbered)"
    previous = rows.get(seq - 1)
    expected_prev = GENESIS_HASH if seq == 1 else (previous and previous["entry_hash"])
    if row["prev_hash"] != expected_prev:
        return (
            f"its prev_hash is not the hash of entry {seq - 1}: an entry before it was "
            "rewritten, or this one was moved"
        )
    if not audit_entry_intact(row):
        return "its content does not match its hash: the entry was altered"
    return "a signed checkpoint recorded another hash for it: the entry was rewritten"


def _bad_signature(home: VaultHome, row: RowMapping) -> tuple[int, str] | None:
    """``(seq, reason)`` when the checkpoint's signature does not verify, else None."""
    seq = int(row["seq"])
    key = home.license_keys.get(str(row["key_id"]))
    if key is None:
        return seq, (
            f"its checkpoint is signed by key {row['key_id']!r}, which is not in license-keys.json"
        )
    message = checkpoint_message(
        vault_id=home.settings.vault_id,
        seq=seq,
        at=int(row["at"]),
        entry_hash=str(row["entry_hash"]),
    )
    try:
        key.verify(bytes(row["signature"]), message)
    except SignatureError:
        return seq, "its checkpoint's signature does not verify: the checkpoint was forged"
    return None
