"""Device seats on a license: the node-locked list and ``max_devices``.

A device takes a seat (a ``license_devices`` row, through :func:`~modelseal.vault.db.bind_device`)
at its first release. Seats float: when all ``max_devices`` are taken, the seats of devices that
hold no live lease on the license (ended, or past expiry plus the offline grace) are freed and the
binding is tried once more. Without a seat limit a binding is never undone, so a vault remembers
the bindings it has committed and skips the lookup next time.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final

from sqlalchemy import Connection, bindparam, delete, select

from modelseal.licensing import License, Refusal, RefusalCode
from modelseal.vault.db import bind_device, to_micros
from modelseal.vault.db import schema as s
from modelseal.vault.service._core import Attempt

__all__ = ["Seats"]

_CACHE_SIZE: Final = 65536
_LIVE_LEASES: Final = select(s.leases.c.device_id).where(
    s.leases.c.license_id == bindparam("p_license"),
    s.leases.c.ended_at.is_(None),
    s.leases.c.expires_at > bindparam("p_cutoff"),
)
_FREE_SEATS: Final = delete(s.license_devices).where(
    s.license_devices.c.license_id == bindparam("p_license"),
    s.license_devices.c.device_id.not_in(_LIVE_LEASES.scalar_subquery()),
)


class Seats:
    def __init__(self) -> None:
        self._bound: set[tuple[str, str]] = set()

    def _remember(self, pair: tuple[str, str]) -> None:
        if len(self._bound) >= _CACHE_SIZE:
            self._bound.clear()
        self._bound.add(pair)

    def bind(
        self, conn: Connection, license_: License, device_id: str, now: datetime, attempt: Attempt
    ) -> None:
        policy = license_.policy
        if policy.devices and device_id not in policy.devices:
            raise Refusal(
                RefusalCode.DEVICE_NOT_ALLOWED,
                f"License {license_.id} is locked to {len(policy.devices)} device(s), and "
                f"{device_id} is not one of them",
            )
        maximum = policy.max_devices
        pair = (license_.id, device_id)
        if maximum is None and pair in self._bound:
            return  # bound before, and without a seat limit a binding is never undone
        if bind_device(conn, license_.id, device_id, maximum, now):
            if maximum is None:
                attempt.on_commit.append(lambda: self._remember(pair))
            return
        # Full: free the seats of devices that hold no live lease (bind_device holds the
        # license's row lock now, so this cannot race another binder), then try once more.
        cutoff = to_micros(now - policy.offline_grace)
        conn.execute(_FREE_SEATS, {"p_license": license_.id, "p_cutoff": cutoff})
        if not bind_device(conn, license_.id, device_id, maximum, now):
            raise Refusal(
                RefusalCode.TOO_MANY_DEVICES,
                f"License {license_.id} is in use on {maximum} device(s), as many as it allows",
            )
