"""What every part of the service shares: the unlocked vault, the engine, the clock, the audit
trail, and the lookups several parts make."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, NamedTuple

from sqlalchemy import Connection, Engine, bindparam, select

from modelseal.crypto import VerifyingKey, spki_sha256
from modelseal.licensing import License, Refusal, RefusalCode, parse_license
from modelseal.licensing.periods import period_start
from modelseal.vault.db import from_micros, read_only
from modelseal.vault.db import schema as s
from modelseal.vault.home import UnlockedVault
from modelseal.vault.service.audit import AuditTrail
from modelseal.vault.service.errors import NotFound

if TYPE_CHECKING:
    from modelseal.attestation import Collateral

__all__ = ["Attempt", "Core", "device_row", "optional_time", "period_start", "seconds", "utc_now"]

_LICENSE_CACHE: Final = 4096

_CUSTOMER_BY_NAME: Final = select(s.customers.c.id).where(s.customers.c.name == bindparam("p_name"))


def utc_now() -> datetime:
    """The current time, aware UTC (the service's default clock)."""
    return datetime.now(UTC)


def optional_time(micros: int | None) -> datetime | None:
    return None if micros is None else from_micros(micros)


def seconds(value: timedelta) -> int:
    return value // timedelta(seconds=1)


class Core:
    """The state the service's parts share. Thread-safe: the engine pools connections, the rest
    is read-only after construction (the license cache is an ``lru_cache``)."""

    def __init__(
        self,
        vault: UnlockedVault,
        engine: Engine,
        *,
        clock: Callable[[], datetime],
        nonce_ttl: timedelta,
        collateral: Sequence[Collateral] = (),
    ) -> None:
        if nonce_ttl <= timedelta(0):
            raise ValueError(f"nonce_ttl must be positive, not {nonce_ttl}")
        self.vault = vault
        self.engine = engine
        self.reader = read_only(engine)
        self.clock = clock
        self.nonce_ttl = nonce_ttl
        self.collateral = tuple(collateral)
        """Intel DCAP collateral (TCB info, QE identity, CRLs) for verifying sgx/tdx evidence."""
        self.vault_id = vault.settings.vault_id
        self.license_keys: dict[str, VerifyingKey] = dict(vault.home.license_keys)
        self.ca_spki = spki_sha256(vault.ca.certificate)
        self.audit = AuditTrail(vault, engine, clock)
        self._parse_license = functools.lru_cache(maxsize=_LICENSE_CACHE)(self._parse_uncached)

    def now(self) -> datetime:
        """The clock's time as aware UTC, to the microsecond the database keeps."""
        moment = self.clock()
        if moment.tzinfo is None or moment.utcoffset() is None:
            raise ValueError(f"the service clock returned a naive time {moment!r}")
        return moment.astimezone(UTC)

    def license(self, token: str) -> License:
        """The license in ``token``, signature and shape checked (not its time window).

        A :class:`Refusal` ``LICENSE_INVALID`` when it is not a license of this vault. Verified
        tokens are remembered (the same bytes verify the same way under the same keys).
        """
        if not isinstance(token, str):
            raise Refusal(RefusalCode.LICENSE_INVALID, "The license must be the JWS text")
        return self._parse_license(token.strip())

    def _parse_uncached(self, token: str) -> License:
        license_ = parse_license(token, self.license_keys, now=None)
        if license_.issuer != self.vault_id:
            raise Refusal(
                RefusalCode.LICENSE_INVALID,
                f"The license was issued by {license_.issuer}, not by this vault ({self.vault_id})",
            )
        return license_

    def customer_id(self, conn: Connection, name: str) -> int:
        """The id of the customer ``name``; :class:`NotFound` when there is none."""
        found = conn.execute(_CUSTOMER_BY_NAME, {"p_name": name}).scalar_one_or_none()
        if found is None:
            raise NotFound(
                f"there is no customer {name!r}",
                hint="list them with `modelseal customer list`, or create it first",
            )
        return int(found)


_DEVICE_BY_CERT: Final = (
    select(s.devices.c.id, s.devices.c.customer_id, s.devices.c.revoked_at, s.customers.c.name)
    .join(s.customers, s.customers.c.id == s.devices.c.customer_id)
    .where(s.devices.c.cert_sha256 == bindparam("p_cert"))
)


class DeviceRow(NamedTuple):
    id: str
    customer_id: int
    revoked_at: int | None
    customer: str


def device_row(conn: Connection, fingerprint: str) -> DeviceRow | None:
    """The device holding the certificate whose SHA-256 is ``fingerprint``, or None."""
    row = conn.execute(_DEVICE_BY_CERT, {"p_cert": fingerprint}).first()
    return None if row is None else DeviceRow(*row)


@dataclass
class Attempt:
    """What a device request has established so far, for its audit entry if it is refused."""

    actor: str
    details: dict[str, Any] = field(default_factory=dict)
    end_lease: bool = False
    """For renewals: the refusal also ends the lease (recorded with the audit entry)."""
    on_commit: list[Callable[[], None]] = field(default_factory=list)
    """What to do once the transaction committed (remember what it established)."""

    def ending(self, refusal: Refusal) -> Refusal:
        self.end_lease = True
        return refusal
