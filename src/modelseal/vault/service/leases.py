"""Leases: the signed lease a release returns, and renewal by heartbeat.

A lease is a compact JWS (``typ`` ``modelseal-lease+jwt``) signed by the license key, claims::

    jti      the lease id, "lease-<uuid>"      sub      the device id
    lic      the license id                    model    the model name
    version  the model version                 exp      expiry, seconds since the epoch
    hb       heartbeat: renew every hb seconds grace    offline grace after exp, seconds

A renewal reports the inferences run since the last one (counted against
``max_inferences_per``; renewals are not loads) and gets a new expiry and a fresh lease. A lease
whose license or device was revoked, whose license expired, or that is past its expiry plus the
offline grace is ended with the refusal, and stays ended: the runtime must request the key again.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import Connection, bindparam, select, update

from modelseal.crypto import Certificate, sign_jws
from modelseal.licensing import License, Refusal, RefusalCode, check_time_window
from modelseal.licensing.durations import format_datetime, format_duration
from modelseal.vault.db import from_micros, take_window, to_micros
from modelseal.vault.db import schema as s
from modelseal.vault.service._core import (
    Attempt,
    Core,
    device_row,
    optional_time,
    period_start,
    seconds,
)
from modelseal.vault.service.errors import BadRequest
from modelseal.vault.service.views import LeaseGrant

__all__ = ["LEASE_TYP", "Leases", "lease_end", "rate_limited", "sign_lease"]

LEASE_TYP: Final = "modelseal-lease+jwt"
_MAX_REPORT: Final = 2**53 - 1
_LEASE: Final = (
    select(
        s.leases.c.device_id,
        s.leases.c.license_id,
        s.leases.c.model_name,
        s.leases.c.model_version,
        s.leases.c.expires_at,
        s.leases.c.ended_at,
        s.leases.c.end_reason,
        s.licenses.c.jws,
        s.licenses.c.revoked_at,
        s.licenses.c.first_use_at,
    )
    .join(s.licenses, s.licenses.c.id == s.leases.c.license_id)
    .where(s.leases.c.id == bindparam("p_lease"))
    .with_for_update(of=s.leases)
)
_RENEW: Final = (
    update(s.leases)
    .where(s.leases.c.id == bindparam("p_lease"))
    .values(
        renewed_at=bindparam("p_now"),
        expires_at=bindparam("p_expires"),
        inferences_reported=s.leases.c.inferences_reported + bindparam("p_inferences"),
    )
)
_END: Final = (
    update(s.leases)
    .where(s.leases.c.id == bindparam("p_lease"), s.leases.c.ended_at.is_(None))
    .values(ended_at=bindparam("p_now"), end_reason=bindparam("p_reason"))
)


def lease_end(now: datetime, license_: License, first_use_at: datetime | None) -> int:
    """A new lease's expiry in whole seconds: now + the lease length, never past the license."""
    end = (now + license_.policy.lease).timestamp()
    license_end = license_.end(first_use_at or now)
    if license_end is not None:
        end = min(end, license_end.timestamp())
    return math.floor(end)


def rate_limited(what: str, count: int, period: timedelta, now: datetime) -> Refusal:
    """RATE_LIMITED with ``retry_after`` = whole seconds until the next period starts."""
    next_start = period_start(now, period) + period
    wait = max(1, math.ceil((next_start - now).total_seconds()))
    return Refusal(
        RefusalCode.RATE_LIMITED,
        f"The license allows {count} {what} per {format_duration(period)}, and they are used "
        f"up until {format_datetime(next_start)}",
        retry_after=wait,
    )


def sign_lease(
    core: Core,
    *,
    lease_id: str,
    device_id: str,
    license_: License,
    model: str,
    version: int,
    expires: int,
) -> str:
    policy = license_.policy
    claims: dict[str, Any] = {
        "jti": lease_id,
        "sub": device_id,
        "lic": license_.id,
        "model": model,
        "version": version,
        "exp": expires,
        "hb": seconds(policy.heartbeat),
        "grace": seconds(policy.offline_grace),
    }
    vault = core.vault
    return sign_jws(claims, vault.license_key, kid=vault.license_kid, typ=LEASE_TYP)


class Leases:
    def __init__(self, core: Core) -> None:
        self._core = core

    def renew(self, device: Certificate, lease_id: str, *, inferences: int) -> LeaseGrant:
        if isinstance(inferences, bool) or not isinstance(inferences, int):
            raise BadRequest(f"inferences must be a whole number, not {inferences!r}")
        if not 0 <= inferences <= _MAX_REPORT:
            raise BadRequest(f"inferences must be from 0 to 2^53-1, not {inferences}")
        core = self._core
        now = core.now()
        attempt = Attempt(
            actor=f"certificate sha256:{device.fingerprint}", details={"inferences": inferences}
        )
        try:
            with core.engine.begin() as conn:
                return self._renew(conn, device.fingerprint, lease_id, inferences, now, attempt)
        except Refusal as refusal:
            details = dict(attempt.details, message=refusal.message)
            ending = {"p_lease": lease_id, "p_now": to_micros(now), "p_reason": refusal.code.value}

            def end(conn: Connection) -> None:
                conn.execute(_END, ending)

            core.audit.append_alone(
                at=now,
                actor=attempt.actor,
                action="lease.renew",
                subject=lease_id,
                outcome=refusal.code.value,
                details=details,
                also=end if attempt.end_lease else None,
            )
            raise

    def _renew(
        self,
        conn: Connection,
        fingerprint: str,
        lease_id: str,
        inferences: int,
        now: datetime,
        attempt: Attempt,
    ) -> LeaseGrant:
        core = self._core
        device = device_row(conn, fingerprint)
        lease = conn.execute(_LEASE, {"p_lease": lease_id}).first()
        if lease is None or device is None or lease.device_id != device.id:
            raise Refusal(RefusalCode.LEASE_UNKNOWN, f"This device holds no lease {lease_id!r}")
        device_id, device_revoked = device.id, device.revoked_at
        attempt.actor = device_id
        attempt.details.update(
            license=lease.license_id, model=lease.model_name, version=lease.model_version
        )
        if lease.ended_at is not None:
            code = _code(lease.end_reason)
            raise Refusal(
                code,
                f"The lease ended at {format_datetime(from_micros(lease.ended_at))}: "
                f"{code.summary[0].lower()}{code.summary[1:]}",
            )
        license_ = core.license(lease.jws)
        policy = license_.policy
        expires = from_micros(lease.expires_at)
        if now > expires + policy.offline_grace:
            raise attempt.ending(
                Refusal(
                    RefusalCode.LEASE_EXPIRED,
                    f"The lease expired at {format_datetime(expires)} and was not renewed "
                    "within its grace period",
                )
            )
        if lease.revoked_at is not None:
            raise attempt.ending(
                Refusal(
                    RefusalCode.REVOKED,
                    f"License {license_.id} was revoked at "
                    f"{format_datetime(from_micros(lease.revoked_at))}",
                )
            )
        if device_revoked is not None:
            raise attempt.ending(
                Refusal(
                    RefusalCode.DEVICE_REVOKED,
                    f"Device {device_id} was revoked at "
                    f"{format_datetime(from_micros(device_revoked))}",
                )
            )
        first_use = optional_time(lease.first_use_at)
        try:
            check_time_window(license_, now, first_use)
        except Refusal as refusal:
            raise attempt.ending(refusal) from None
        limit = policy.max_inferences_per
        if inferences and limit is not None:
            period, count = limit
            if inferences > count:
                raise Refusal(
                    RefusalCode.USAGE_EXHAUSTED,
                    f"The runtime reports {inferences} inferences, more than the {count} per "
                    f"{format_duration(period)} the license allows",
                )
            start = period_start(now, period)
            if not take_window(conn, license_.id, "inferences", start, count, inferences):
                raise rate_limited("inferences", count, period, now)
        new_expires = lease_end(now, license_, first_use)
        conn.execute(
            _RENEW,
            {
                "p_lease": lease_id,
                "p_now": to_micros(now),
                "p_expires": new_expires * 1_000_000,
                "p_inferences": inferences,
            },
        )
        token = sign_lease(
            core,
            lease_id=lease_id,
            device_id=device_id,
            license_=license_,
            model=lease.model_name,
            version=lease.model_version,
            expires=new_expires,
        )
        core.audit.append(
            conn,
            at=now,
            actor=device_id,
            action="lease.renew",
            subject=lease_id,
            outcome="ok",
            details=dict(attempt.details, lease_expires=new_expires),
        )
        return LeaseGrant(
            lease_id=lease_id,
            expires_at=from_micros(new_expires * 1_000_000),
            lease=token,
            heartbeat=policy.heartbeat,
            offline_grace=policy.offline_grace,
        )


def _code(reason: str | None) -> RefusalCode:
    try:
        return RefusalCode(reason or "")
    except ValueError:
        return RefusalCode.LEASE_EXPIRED
