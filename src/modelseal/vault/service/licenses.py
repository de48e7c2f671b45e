"""Licenses: issue (a JWS signed by the license key, recorded in the database), revoke, show, list.

The database row is authoritative for state and counters; the JWS is what the customer holds and
what a key release presents. ``show`` reports the state as of the service clock:

``revoked``   revoked by the controller (whatever else holds);
``expired``   past its expiry date, or its duration after first use;
``exhausted`` every load of ``max_loads`` is used;
``active``    none of these (it may still be before its start date).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Final

from sqlalchemy import Connection, Row, func, insert, select, update

from modelseal.crypto import canonical_json
from modelseal.errors import UsageError
from modelseal.licensing import Policy, VersionSpec, issue_license
from modelseal.vault.db import from_micros, to_micros
from modelseal.vault.db import schema as s
from modelseal.vault.service._core import Core, optional_time, period_start
from modelseal.vault.service.admin import check_label
from modelseal.vault.service.errors import BadRequest, NotFound
from modelseal.vault.service.views import LicenseState, LicenseView

__all__ = ["Licenses", "license_view"]

_MAX_COLUMN: Final = 2**31 - 1  # max_loads and max_devices are INTEGER columns
_LICENSES: Final = select(
    s.licenses.c.id,
    s.customers.c.name,
    s.licenses.c.model_name,
    s.licenses.c.versions,
    s.licenses.c.policy,
    s.licenses.c.issued_at,
    s.licenses.c.not_before,
    s.licenses.c.first_use_at,
    s.licenses.c.revoked_at,
    s.licenses.c.revoked_reason,
    s.licenses.c.loads_used,
    s.licenses.c.max_loads,
).join(s.customers, s.customers.c.id == s.licenses.c.customer_id)


class Licenses:
    def __init__(self, core: Core) -> None:
        self._core = core

    def issue(
        self,
        actor: str,
        *,
        customer: str,
        model_name: str,
        versions: VersionSpec,
        policy: Policy,
    ) -> tuple[LicenseView, str]:
        if not isinstance(versions, VersionSpec) or not isinstance(policy, Policy):
            raise BadRequest("a license needs a VersionSpec and a Policy")
        for name, value in (("max_loads", policy.max_loads), ("max_devices", policy.max_devices)):
            if value is not None and value > _MAX_COLUMN:
                raise BadRequest(f"{name} must be at most {_MAX_COLUMN}, not {value}")
        core = self._core
        vault = core.vault
        now = core.now()
        with core.engine.begin() as conn:
            customer_id = core.customer_id(conn, customer)
            registered = select(s.models.c.id).where(s.models.c.name == model_name).limit(1)
            if conn.execute(registered).first() is None:
                raise NotFound(
                    f"no model named {model_name!r} is registered",
                    hint="register the sealed model first (`modelseal model register`)",
                )
            _check_devices(conn, policy.devices, customer_id, customer)
            try:
                license_, token = issue_license(
                    key=vault.license_key,
                    kid=vault.license_kid,
                    issuer=core.vault_id,
                    customer=customer,
                    model_name=model_name,
                    versions=versions,
                    policy=policy,
                    vault_urls=vault.settings.public_urls,
                    vault_pins=[core.ca_spki],
                    now=now,
                )
            except UsageError as exc:
                raise BadRequest(exc.message, hint=exc.hint) from None
            conn.execute(
                insert(s.licenses).values(
                    id=license_.id,
                    customer_id=customer_id,
                    model_name=model_name,
                    versions=str(versions),
                    policy=canonical_json(policy.to_claims()).decode("utf-8"),
                    jws=token,
                    issued_at=to_micros(license_.issued_at),
                    not_before=to_micros(license_.not_before),
                    expires_at=None if policy.expires_at is None else to_micros(policy.expires_at),
                    max_loads=policy.max_loads,
                    max_devices=policy.max_devices,
                )
            )
            core.audit.append(
                conn,
                at=now,
                actor=actor,
                action="license.issue",
                subject=license_.id,
                outcome="ok",
                details={
                    "customer": customer,
                    "model": model_name,
                    "versions": str(versions),
                    "policy": policy.to_claims(),
                },
            )
            return license_view(conn, _row(conn, license_.id), now), token

    def revoke(self, actor: str, license_id: str, *, reason: str) -> LicenseView:
        """Revoke a license: its next release or renewal is refused (REVOKED). Idempotent."""
        check_label(reason, "the reason")
        core = self._core
        now = core.now()
        with core.engine.begin() as conn:
            row = _row(conn, license_id)
            if row.revoked_at is not None:
                return license_view(conn, row, now)
            conn.execute(
                update(s.licenses)
                .where(s.licenses.c.id == license_id)
                .values(revoked_at=to_micros(now), revoked_reason=reason)
            )
            core.audit.append(
                conn,
                at=now,
                actor=actor,
                action="license.revoke",
                subject=license_id,
                outcome="ok",
                details={"reason": reason},
            )
            return license_view(conn, _row(conn, license_id), now)

    def show(self, license_id: str) -> LicenseView:
        now = self._core.now()
        with self._core.reader.begin() as conn:
            return license_view(conn, _row(conn, license_id), now)

    def list(self, *, customer: str | None = None) -> list[LicenseView]:
        now = self._core.now()
        query = _LICENSES.order_by(s.licenses.c.issued_at, s.licenses.c.id)
        with self._core.reader.begin() as conn:
            if customer is not None:
                query = query.where(
                    s.licenses.c.customer_id == self._core.customer_id(conn, customer)
                )
            return [license_view(conn, row, now) for row in conn.execute(query).all()]


def _row(conn: Connection, license_id: str) -> Row[*tuple[Any, ...]]:
    row = conn.execute(_LICENSES.where(s.licenses.c.id == license_id)).first()
    if row is None:
        raise NotFound(
            f"there is no license {license_id!r}", hint="list them with `modelseal license list`"
        )
    return row


def _check_devices(
    conn: Connection, devices: tuple[str, ...], customer_id: int, customer: str
) -> None:
    """Node-locked devices must be enrolled devices of the license's customer."""
    if not devices:
        return
    query = select(s.devices.c.id, s.devices.c.customer_id).where(s.devices.c.id.in_(devices))
    found = {device: owner for device, owner in conn.execute(query)}
    for device in devices:
        if device not in found:
            raise BadRequest(f"the license names device {device!r}, which is not enrolled")
        if found[device] != customer_id:
            raise BadRequest(f"device {device!r} belongs to another customer than {customer!r}")


def license_view(conn: Connection, row: Row[*tuple[Any, ...]], now: datetime) -> LicenseView:
    """The view of the license in ``row`` (a ``_LICENSES`` row) at ``now``."""
    policy = Policy.from_claims(json.loads(row.policy))
    first_use = optional_time(row.first_use_at)
    ends = policy.expires_at
    if ends is None and policy.duration_from_first_use is not None and first_use is not None:
        ends = first_use + policy.duration_from_first_use
    state: LicenseState = "active"
    if row.revoked_at is not None:
        state = "revoked"
    elif ends is not None and now >= ends:
        state = "expired"
    elif row.max_loads is not None and row.loads_used >= row.max_loads:
        state = "exhausted"
    bound = (
        select(s.license_devices.c.device_id)
        .where(s.license_devices.c.license_id == row.id)
        .order_by(s.license_devices.c.bound_at, s.license_devices.c.device_id)
    )
    active = (
        select(func.count())
        .select_from(s.leases)
        .where(
            s.leases.c.license_id == row.id,
            s.leases.c.ended_at.is_(None),
            s.leases.c.expires_at > to_micros(now),
        )
    )
    return LicenseView(
        id=row.id,
        customer=row.name,
        model_name=row.model_name,
        versions=VersionSpec.parse(row.versions),
        policy=policy,
        state=state,
        issued_at=from_micros(row.issued_at),
        not_before=from_micros(row.not_before),
        ends_at=ends,
        first_use_at=first_use,
        revoked_at=optional_time(row.revoked_at),
        revoked_reason=row.revoked_reason,
        loads_used=int(row.loads_used),
        max_loads=row.max_loads,
        period_loads=_window(conn, row.id, "loads", policy.loads_per, now),
        period_inferences=_window(conn, row.id, "inferences", policy.max_inferences_per, now),
        devices=tuple(conn.execute(bound).scalars().all()),
        active_leases=int(conn.execute(active).scalar_one()),
    )


def _window(
    conn: Connection, license_id: str, kind: str, rate: tuple[Any, int] | None, now: datetime
) -> int | None:
    if rate is None:
        return None
    count = conn.execute(
        select(s.usage_windows.c["count"]).where(
            s.usage_windows.c.license_id == license_id,
            s.usage_windows.c.kind == kind,
            s.usage_windows.c.period_start == to_micros(period_start(now, rate[0])),
        )
    ).scalar_one_or_none()
    return int(count or 0)
