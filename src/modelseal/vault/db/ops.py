"""The concurrency-critical statements of the vault, each exact under any number of writers.

Every function takes a :class:`~sqlalchemy.engine.Connection` inside the caller's transaction and
never commits: the service layer checks, counts, audits and commits as one unit (DESIGN §3.3), so a
refusal or an error rolls every counter back with it.

How each stays exact, on both engines:

* Counters (:func:`take_load`, :func:`take_window`, :func:`claim_enrollment_token`) are one
  conditional ``UPDATE … WHERE used < max``. On PostgreSQL
  (``READ COMMITTED``) a second writer waits for the first's row lock and then re-checks the
  ``WHERE`` against the committed row; on SQLite ``BEGIN IMMEDIATE`` admits one writer at a time.
  N concurrent calls against a limit of K succeed exactly K times.
* :func:`use_nonce` is one ``INSERT … ON CONFLICT DO NOTHING`` on the nonce's primary key: a
  second writer of the same nonce waits for the first's transaction and then inserts nothing.
* :func:`bind_device` counts and then inserts, so on PostgreSQL it locks the license row
  (``SELECT … FOR UPDATE``) first; on SQLite the write lock already serialises it.
* :func:`append_audit` reads the chain's tail and appends after it, so on PostgreSQL it takes a
  transaction-scoped advisory lock; the unique ``seq`` is a second guard against a forked chain.

Lock order, to stay free of deadlocks on PostgreSQL: license rows first, the audit chain last.
Call :func:`append_audit` as the final statement before commit; it serialises every writer from
that point until commit, so keeping that stretch short is also what keeps throughput up.

Audit entry hash: SHA-256 (hex) of the RFC 8785 canonical JSON object
``{"seq", "at", "actor", "action", "subject", "outcome", "details", "prev_hash"}`` where ``at`` is
integer microseconds since the epoch and ``details`` the JSON object itself (not its text). ``seq``
is in the hash and gapless (assigned as last + 1 under the chain lock), so a deleted, moved or
renumbered row breaks verification at that row. Truncating the newest entries is what signed
checkpoints catch: :func:`verify_audit_chain` also checks each checkpoint's ``entry_hash``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

from sqlalchemy import (
    Connection,
    RowMapping,
    bindparam,
    delete,
    func,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from modelseal.crypto import FormatError, canonical_json, parse_canonical_json
from modelseal.vault.db.schema import (
    GENESIS_HASH,
    WINDOW_KINDS,
    audit_checkpoints,
    audit_log,
    enrollment_tokens,
    license_devices,
    licenses,
    nonces,
    to_micros,
    usage_windows,
)

__all__ = [
    "AUDIT_LOCK_KEY",
    "append_audit",
    "audit_entry_hash",
    "audit_entry_intact",
    "bind_device",
    "claim_enrollment_token",
    "sweep_nonces",
    "take_load",
    "take_window",
    "use_nonce",
    "verify_audit_chain",
]

AUDIT_LOCK_KEY: Final = int.from_bytes(
    hashlib.sha256(b"modelseal.vault.audit_log").digest()[:8], "big", signed=True
)
"""The PostgreSQL advisory lock key that serialises appends to the audit chain."""

_VERIFY_BATCH: Final = 1000

# The hot statements are built once, with bound parameters: SQLAlchemy then finds each compiled
# form in its cache by a key computed once, instead of building and hashing a statement per call.
# (Parameter names carry a "p_" prefix: in an UPDATE, a column's own name is reserved.)

# One statement per dialect: INSERT … ON CONFLICT DO NOTHING RETURNING, so a second use of a nonce
# inserts and returns nothing (on PostgreSQL after waiting for the first's transaction). RETURNING,
# because psycopg reports no row count for this statement.
_USE_NONCE: Final = {
    "sqlite": sqlite.insert(nonces)
    .on_conflict_do_nothing(index_elements=[nonces.c.nonce_hash])
    .returning(nonces.c.nonce_hash),
    "postgresql": postgresql.insert(nonces)
    .on_conflict_do_nothing(index_elements=[nonces.c.nonce_hash])
    .returning(nonces.c.nonce_hash),
}
_SWEEP_NONCES: Final = delete(nonces).where(nonces.c.expires_at < bindparam("p_before"))

_CLAIM_TOKEN: Final = (
    update(enrollment_tokens)
    .where(
        enrollment_tokens.c.token_hash == bindparam("p_token"),
        enrollment_tokens.c.used_at.is_(None),
        enrollment_tokens.c.expires_at > bindparam("p_now"),
    )
    .values(used_at=bindparam("p_now"))
    .returning(enrollment_tokens.c.customer_id)
)

_TAKE_LOAD: Final = (
    update(licenses)
    .where(
        licenses.c.id == bindparam("p_license"),
        or_(licenses.c.max_loads.is_(None), licenses.c.loads_used < licenses.c.max_loads),
    )
    .values(
        loads_used=licenses.c.loads_used + 1,
        first_use_at=func.coalesce(licenses.c.first_use_at, bindparam("p_now")),
    )
)

_WINDOW_COUNT = usage_windows.c["count"]
_TAKE_WINDOW: Final = (
    update(usage_windows)
    .where(
        usage_windows.c.license_id == bindparam("p_license"),
        usage_windows.c.kind == bindparam("p_kind"),
        usage_windows.c.period_start == bindparam("p_start"),
        _WINDOW_COUNT + bindparam("p_amount") <= bindparam("p_limit"),
    )
    .values(count=_WINDOW_COUNT + bindparam("p_amount"))
)
_CREATE_WINDOW: Final = {
    "postgresql": postgresql.insert(usage_windows).on_conflict_do_nothing(),
    "sqlite": sqlite.insert(usage_windows).on_conflict_do_nothing(),
}

_IS_BOUND: Final = select(license_devices.c.device_id).where(
    license_devices.c.license_id == bindparam("p_license"),
    license_devices.c.device_id == bindparam("p_device"),
)
_LOCK_LICENSE: Final = (
    select(licenses.c.id).where(licenses.c.id == bindparam("p_license")).with_for_update()
)
_COUNT_BOUND: Final = (
    select(func.count())
    .select_from(license_devices)
    .where(license_devices.c.license_id == bindparam("p_license"))
)
_BIND: Final = insert(license_devices)

_LOCK_CHAIN: Final = text("SELECT pg_advisory_xact_lock(:p_key)")
_CHAIN_TAIL: Final = (
    select(audit_log.c.seq, audit_log.c.entry_hash).order_by(audit_log.c.seq.desc()).limit(1)
)
_APPEND: Final = insert(audit_log)


def use_nonce(
    conn: Connection,
    nonce_hash: str,
    now: datetime,
    *,
    expires_at: datetime,
    device_id: str | None = None,
) -> bool:
    """Record a challenge nonce as used; True only for the one transaction that recorded it first.

    The caller has checked the nonce itself (its MAC, its device, its expiry). The row stays
    until :func:`sweep_nonces` removes it after ``expires_at``, when the nonce is refused anyway.
    """
    params = {
        "nonce_hash": nonce_hash,
        "device_id": device_id,
        "expires_at": to_micros(expires_at),
        "used_at": to_micros(now),
    }
    return conn.execute(_USE_NONCE[conn.dialect.name], params).first() is not None


def sweep_nonces(conn: Connection, now: datetime) -> int:
    """Delete the records of nonces that expired before ``now``; how many went."""
    return conn.execute(_SWEEP_NONCES, {"p_before": to_micros(now)}).rowcount


def claim_enrollment_token(conn: Connection, token_hash: str, now: datetime) -> int | None:
    """Use a one-time enrolment token; its customer id for the one caller that got it, else None.

    None means unknown, expired or already used. The caller records ``device_id`` on the token
    row once the device exists, in the same transaction.
    """
    row = conn.execute(_CLAIM_TOKEN, {"p_token": token_hash, "p_now": to_micros(now)}).first()
    return None if row is None else int(row[0])


def take_load(conn: Connection, license_id: str, now: datetime) -> bool:
    """Count one key release against the license's ``max_loads``; False when none is left.

    Also records the license's first use (for durations that start at first use). False as well
    when the license does not exist; the caller has read it already and knows which.
    """
    params = {"p_license": license_id, "p_now": to_micros(now)}
    return conn.execute(_TAKE_LOAD, params).rowcount == 1


def take_window(
    conn: Connection,
    license_id: str,
    kind: str,
    period_start: datetime,
    limit: int,
    amount: int = 1,
) -> bool:
    """Add ``amount`` to the ``kind`` counter of the period starting at ``period_start``.

    All or nothing: False (and nothing counted) when the total would pass ``limit``.
    """
    if kind not in WINDOW_KINDS:
        raise ValueError(f"unknown usage window kind {kind!r}; expected one of {WINDOW_KINDS}")
    if amount < 1 or limit < 0:
        raise ValueError(f"amount must be positive and limit non-negative, not {amount}, {limit}")
    start = to_micros(period_start)
    params = {
        "p_license": license_id,
        "p_kind": kind,
        "p_start": start,
        "p_amount": amount,
        "p_limit": limit,
    }
    if conn.execute(_TAKE_WINDOW, params).rowcount == 1:
        return True
    # No row yet (or no room). Create the row if missing: ON CONFLICT DO NOTHING waits for a
    # concurrent creator on PostgreSQL instead of failing, then the UPDATE sees its row.
    row = {"license_id": license_id, "kind": kind, "period_start": start, "count": 0}
    conn.execute(_CREATE_WINDOW[conn.dialect.name], row)
    return conn.execute(_TAKE_WINDOW, params).rowcount == 1


def bind_device(
    conn: Connection, license_id: str, device_id: str, max_devices: int | None, now: datetime
) -> bool:
    """Bind a device to a license (idempotent); False when ``max_devices`` others hold it already.

    False as well when the license does not exist.
    """
    pair = {"p_license": license_id, "p_device": device_id}
    if conn.execute(_IS_BOUND, pair).first() is not None:
        return True  # the usual case: no lock taken
    if conn.execute(_LOCK_LICENSE, pair).first() is None:
        return False
    if conn.execute(_IS_BOUND, pair).first() is not None:
        return True  # bound by a concurrent call while we waited for the lock
    if max_devices is not None:
        if conn.execute(_COUNT_BOUND, pair).scalar_one() >= max_devices:
            return False
    row = {"license_id": license_id, "device_id": device_id, "bound_at": to_micros(now)}
    conn.execute(_BIND, row)
    return True


def audit_entry_hash(
    *,
    seq: int,
    at: int,
    actor: str,
    action: str,
    subject: str,
    outcome: str,
    details: Mapping[str, Any],
    prev_hash: str,
) -> str:
    """The hex SHA-256 of an audit entry (see the module docstring for what it covers)."""
    entry = {
        "seq": seq,
        "at": at,
        "actor": actor,
        "action": action,
        "subject": subject,
        "outcome": outcome,
        "details": dict(details),
        "prev_hash": prev_hash,
    }
    return hashlib.sha256(canonical_json(entry)).hexdigest()


def append_audit(
    conn: Connection,
    *,
    at: datetime,
    actor: str,
    action: str,
    subject: str,
    outcome: str,
    details: Mapping[str, Any],
) -> str:
    """Append one entry to the hash chain; returns its ``entry_hash``.

    ``details`` must already have its sensitive values HMACed. Call last before commit.
    """
    if conn.dialect.name == "postgresql":
        conn.execute(_LOCK_CHAIN, {"p_key": AUDIT_LOCK_KEY})
    tail = conn.execute(_CHAIN_TAIL).first()
    seq, prev_hash = (1, GENESIS_HASH) if tail is None else (int(tail[0]) + 1, str(tail[1]))
    fields: dict[str, Any] = {
        "seq": seq,
        "at": to_micros(at),
        "actor": actor,
        "action": action,
        "subject": subject,
        "outcome": outcome,
        "prev_hash": prev_hash,
    }
    entry_hash = audit_entry_hash(details=details, **fields)
    fields["details"] = canonical_json(dict(details)).decode("utf-8")
    fields["entry_hash"] = entry_hash
    conn.execute(_APPEND, fields)
    return entry_hash


def verify_audit_chain(conn: Connection) -> int | None:
    """Recompute the whole chain; the ``seq`` of the first bad entry, or None when it is intact.

    An entry is bad when its ``prev_hash`` is not the previous entry's hash, its ``details`` are
    not canonical JSON, its hash does not match its fields, or a checkpoint recorded another hash
    for it. A missing number (an entry deleted or renumbered) is reported as that number.
    Checkpoint signatures are the caller's to check.
    """
    checkpoints = {
        int(seq): str(entry_hash)
        for seq, entry_hash in conn.execute(
            select(audit_checkpoints.c.seq, audit_checkpoints.c.entry_hash)
        )
    }
    expected_seq, prev_hash = 1, GENESIS_HASH
    rows = conn.execute(
        select(audit_log).order_by(audit_log.c.seq).execution_options(yield_per=_VERIFY_BATCH)
    )
    for row in rows:
        seq = int(row.seq)
        if seq != expected_seq:  # a deleted or renumbered entry: name the number that is missing
            rows.close()
            return expected_seq
        if row.prev_hash != prev_hash or not audit_entry_intact(row._mapping):
            rows.close()
            return seq
        if checkpoints.pop(seq, row.entry_hash) != row.entry_hash:
            rows.close()
            return seq
        expected_seq, prev_hash = seq + 1, str(row.entry_hash)
    # A checkpoint past the end means entries were cut off the tail.
    return min(checkpoints) if checkpoints else None


def audit_entry_intact(row: RowMapping) -> bool:
    """Whether an ``audit_log`` row's content still hashes to its ``entry_hash``."""
    try:
        details = parse_canonical_json(row["details"].encode("utf-8"), what="audit details")
    except (FormatError, UnicodeEncodeError):
        return False
    if not isinstance(details, dict):
        return False
    expected = audit_entry_hash(
        seq=int(row["seq"]),
        at=int(row["at"]),
        actor=row["actor"],
        action=row["action"],
        subject=row["subject"],
        outcome=row["outcome"],
        details=details,
        prev_hash=row["prev_hash"],
    )
    return bool(expected == row["entry_hash"])
