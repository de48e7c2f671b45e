"""Customers and devices, as the model controller manages them."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Row, insert, select, update
from sqlalchemy.exc import IntegrityError

from modelseal.vault.db import from_micros, to_micros
from modelseal.vault.db import schema as s
from modelseal.vault.service._core import Core, optional_time
from modelseal.vault.service.errors import BadRequest, Conflict, NotFound
from modelseal.vault.service.views import CustomerView, DeviceView

__all__ = ["Customers", "Devices", "check_label"]

_MAX_LABEL = 200
_DEVICE_COLUMNS = (
    s.devices.c.id,
    s.customers.c.name,
    s.devices.c.subject,
    s.devices.c.cert_sha256,
    s.devices.c.enrolled_at,
    s.devices.c.revoked_at,
    s.devices.c.revoked_reason,
)
_DEVICES = select(*_DEVICE_COLUMNS).join(s.customers, s.customers.c.id == s.devices.c.customer_id)


def check_label(value: object, what: str) -> str:
    """A name or reason: 1 to 200 printable characters without surrounding spaces."""
    if (
        not isinstance(value, str)
        or not value
        or len(value) > _MAX_LABEL
        or not value.isprintable()
        or value != value.strip()
    ):
        raise BadRequest(
            f"{what} must be 1 to {_MAX_LABEL} printable characters without surrounding "
            f"spaces, not {value!r}"
        )
    return value


class Customers:
    def __init__(self, core: Core) -> None:
        self._core = core

    def create(self, actor: str, name: str) -> CustomerView:
        check_label(name, "a customer name")
        now = self._core.now()
        exists = select(s.customers.c.id).where(s.customers.c.name == name)
        try:
            with self._core.engine.begin() as conn:
                if conn.execute(exists).first() is not None:
                    raise _customer_exists(name)
                conn.execute(insert(s.customers).values(name=name, created_at=to_micros(now)))
                self._core.audit.append(
                    conn,
                    at=now,
                    actor=actor,
                    action="customer.create",
                    subject=name,
                    outcome="ok",
                    details={},
                )
        except IntegrityError:  # created by another vault process between check and insert
            raise _customer_exists(name) from None
        return CustomerView(name=name, created_at=from_micros(to_micros(now)))

    def list(self) -> list[CustomerView]:
        query = select(s.customers.c.name, s.customers.c.created_at).order_by(s.customers.c.name)
        with self._core.reader.begin() as conn:
            return [
                CustomerView(name=name, created_at=from_micros(created))
                for name, created in conn.execute(query)
            ]


class Devices:
    def __init__(self, core: Core) -> None:
        self._core = core

    def list(self, *, customer: str | None = None) -> list[DeviceView]:
        query = _DEVICES.order_by(s.devices.c.enrolled_at, s.devices.c.id)
        with self._core.reader.begin() as conn:
            if customer is not None:
                query = query.where(
                    s.devices.c.customer_id == self._core.customer_id(conn, customer)
                )
            return [_device_view(row) for row in conn.execute(query)]

    def revoke(self, actor: str, device_id: str, *, reason: str) -> DeviceView:
        """Revoke a device; its next key release or lease renewal is refused (DEVICE_REVOKED).

        Revoking a revoked device changes nothing (the first reason stays).
        """
        check_label(reason, "the reason")
        now = self._core.now()
        with self._core.engine.begin() as conn:
            before = _device(conn, device_id)
            if before.revoked:
                return before
            conn.execute(
                update(s.devices)
                .where(s.devices.c.id == device_id)
                .values(revoked_at=to_micros(now), revoked_reason=reason)
            )
            self._core.audit.append(
                conn,
                at=now,
                actor=actor,
                action="device.revoke",
                subject=device_id,
                outcome="ok",
                details={"reason": reason},
            )
            return _device(conn, device_id)


def _device(conn: Connection, device_id: str) -> DeviceView:
    row = conn.execute(_DEVICES.where(s.devices.c.id == device_id)).first()
    if row is None:
        raise NotFound(
            f"there is no device {device_id!r}", hint="list them with `modelseal device list`"
        )
    return _device_view(row)


def _device_view(row: Row[*tuple[Any, ...]]) -> DeviceView:
    device_id, customer, subject, fingerprint, enrolled, revoked, reason = row
    return DeviceView(
        id=device_id,
        customer=customer,
        subject=subject,
        fingerprint=fingerprint,
        enrolled_at=from_micros(enrolled),
        revoked_at=optional_time(revoked),
        revoked_reason=reason,
    )


def _customer_exists(name: str) -> Conflict:
    return Conflict(f"customer {name!r} exists already")
