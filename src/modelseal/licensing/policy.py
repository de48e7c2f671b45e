"""The terms of a license: time, usage and device limits, leases, and required evidence.

Every field is optional, and an empty :class:`Policy` is explicit: it is written into the license
with every field present (``null`` or empty), so "unlimited" is something the issuer chose and
a reader can see, never a field that went missing. A reader refuses a policy with an unknown or
missing field: a limit it cannot read is a limit it cannot enforce.

Semantics the vault and the agent share:

- ``expires_at`` / ``duration_from_first_use``: when the license stops (never both);
- ``max_loads``: key releases in total; ``loads_per``: key releases per period (``(period, N)``);
- ``devices``: node-locked device ids (only these may load); ``max_devices``: how many devices may
  hold a lease at once (floating; with ``devices``, at most that many of them);
- ``lease``: how long a released key may be used before renewal; ``heartbeat``: how often the
  runtime renews (default a third of the lease); ``offline_grace``: how long past the lease a
  runtime that cannot reach the vault may keep the model loaded (default none);
- ``max_inferences_per``: inferences per period, metered by the runtime and reported on renewal;
- ``require_evidence`` / ``allowed_measurements``: the attestation a device must present; an empty
  measurement list adds no list of its own.

In claims, times are integer seconds since the epoch, durations integer seconds, and rates
``{"period": seconds, "count": N}``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from modelseal.errors import UsageError
from modelseal.licensing._fields import (
    MAX_COUNT,
    ClaimReader,
    instant,
    is_int,
    no_duplicates,
    string_tuple,
)
from modelseal.licensing.durations import format_datetime, format_duration

__all__ = [
    "DEFAULT_LEASE",
    "EVIDENCE_TYPES",
    "MAX_LEASE",
    "MAX_OFFLINE_GRACE",
    "MIN_LEASE",
    "Policy",
    "Rate",
]

Rate = tuple[timedelta, int]
EVIDENCE_TYPES: Final = ("none", "software", "sgx", "tdx", "sev-snp")
MIN_LEASE: Final = timedelta(seconds=30)
MAX_LEASE: Final = timedelta(days=1)
DEFAULT_LEASE: Final = timedelta(minutes=10)
MAX_OFFLINE_GRACE: Final = timedelta(days=30)
_MAX_PERIOD = timedelta(days=366)
_MAX_DURATION = timedelta(days=100 * 365)
_DEVICE_ID = re.compile(r"[\x21-\x7e]{1,200}", re.ASCII)  # printable ASCII, no spaces
_MEASUREMENT = re.compile(r"(?:[0-9a-f]{2}){16,64}", re.ASCII)
_FIELDS = (
    "expires_at",
    "duration_from_first_use",
    "max_loads",
    "loads_per",
    "max_devices",
    "devices",
    "lease",
    "heartbeat",
    "offline_grace",
    "max_inferences_per",
    "require_evidence",
    "allowed_measurements",
)


@dataclass(frozen=True, init=False)
class Policy:
    """License terms; construction validates them (:class:`UsageError` naming the field)."""

    expires_at: datetime | None
    duration_from_first_use: timedelta | None
    max_loads: int | None
    loads_per: Rate | None
    max_devices: int | None
    devices: tuple[str, ...]
    lease: timedelta
    heartbeat: timedelta
    offline_grace: timedelta
    max_inferences_per: Rate | None
    require_evidence: str
    allowed_measurements: tuple[str, ...]

    def __init__(
        self,
        *,
        expires_at: datetime | None = None,
        duration_from_first_use: timedelta | None = None,
        max_loads: int | None = None,
        loads_per: Rate | None = None,
        max_devices: int | None = None,
        devices: Iterable[str] = (),
        lease: timedelta = DEFAULT_LEASE,
        heartbeat: timedelta | None = None,
        offline_grace: timedelta = timedelta(0),
        max_inferences_per: Rate | None = None,
        require_evidence: str = "none",
        allowed_measurements: Iterable[str] = (),
    ) -> None:
        if expires_at is not None and duration_from_first_use is not None:
            raise UsageError(
                "expires_at and duration_from_first_use cannot both be set: "
                "a license expires on a date or a time after its first use, not both"
            )
        lease = _duration(lease, "lease", minimum=MIN_LEASE, maximum=MAX_LEASE)
        if heartbeat is None:
            heartbeat = timedelta(seconds=_seconds(lease) // 3)
        heartbeat = _duration(heartbeat, "heartbeat", minimum=timedelta(seconds=1), maximum=lease)
        if heartbeat >= lease:
            raise UsageError(
                f"heartbeat ({format_duration(heartbeat)}) must be shorter than the lease "
                f"({format_duration(lease)}), or the lease ends before it is renewed"
            )
        devices = string_tuple(devices, "devices")
        for device in devices:
            if not isinstance(device, str) or not _DEVICE_ID.fullmatch(device):
                raise UsageError(
                    f"device id {device!r} is not 1 to 200 printable characters without spaces"
                )
        no_duplicates(devices, "devices")
        max_devices = _count(max_devices, "max_devices")
        if max_devices is not None and devices and max_devices > len(devices):
            raise UsageError(
                f"max_devices ({max_devices}) is more than the {len(devices)} node-locked "
                "device(s); add devices or lower max_devices"
            )
        if require_evidence not in EVIDENCE_TYPES:
            raise UsageError(
                f"require_evidence {require_evidence!r} is not one of {', '.join(EVIDENCE_TYPES)}"
            )
        measurements = tuple(
            m.lower() if isinstance(m, str) else m
            for m in string_tuple(allowed_measurements, "allowed_measurements")
        )
        for measurement in measurements:
            if not isinstance(measurement, str) or not _MEASUREMENT.fullmatch(measurement):
                raise UsageError(
                    f"measurement {measurement!r} is not 16 to 64 bytes written as hex"
                )
        no_duplicates(measurements, "allowed_measurements")
        if measurements and require_evidence == "none":
            raise UsageError(
                "allowed_measurements need evidence to check them against; set require_evidence too"
            )
        values = {
            "expires_at": None if expires_at is None else instant(expires_at, "expires_at"),
            "duration_from_first_use": None
            if duration_from_first_use is None
            else _duration(
                duration_from_first_use,
                "duration_from_first_use",
                minimum=timedelta(seconds=1),
                maximum=_MAX_DURATION,
            ),
            "max_loads": _count(max_loads, "max_loads"),
            "loads_per": _rate(loads_per, "loads_per"),
            "max_devices": max_devices,
            "devices": devices,
            "lease": lease,
            "heartbeat": heartbeat,
            "offline_grace": _duration(
                offline_grace, "offline_grace", minimum=timedelta(0), maximum=MAX_OFFLINE_GRACE
            ),
            "max_inferences_per": _rate(max_inferences_per, "max_inferences_per"),
            "require_evidence": require_evidence,
            "allowed_measurements": measurements,
        }
        for name, value in values.items():
            object.__setattr__(self, name, value)

    @property
    def is_unlimited(self) -> bool:
        """No time, usage, device or evidence limit (leases still apply)."""
        return (
            self.expires_at is None
            and self.duration_from_first_use is None
            and self.max_loads is None
            and self.loads_per is None
            and self.max_devices is None
            and not self.devices
            and self.max_inferences_per is None
            and self.require_evidence == "none"
        )

    def to_claims(self) -> dict[str, Any]:
        """JSON-able claims: every field present, times and durations as integer seconds."""
        return {
            "expires_at": None if self.expires_at is None else int(self.expires_at.timestamp()),
            "duration_from_first_use": _seconds_or_none(self.duration_from_first_use),
            "max_loads": self.max_loads,
            "loads_per": _rate_claim(self.loads_per),
            "max_devices": self.max_devices,
            "devices": list(self.devices),
            "lease": _seconds(self.lease),
            "heartbeat": _seconds(self.heartbeat),
            "offline_grace": _seconds(self.offline_grace),
            "max_inferences_per": _rate_claim(self.max_inferences_per),
            "require_evidence": self.require_evidence,
            "allowed_measurements": list(self.allowed_measurements),
        }

    @classmethod
    def from_claims(cls, claims: object) -> Policy:
        """The inverse of :meth:`to_claims`; any other shape is a :class:`UsageError`."""
        if not isinstance(claims, Mapping):
            raise UsageError("policy: must be an object")
        unknown = sorted(set(claims) - set(_FIELDS))
        if unknown:
            raise UsageError(
                f"policy: unknown field(s) {', '.join(map(repr, unknown))}; "
                "this modelseal cannot enforce them (upgrade it)"
            )
        missing = [name for name in _FIELDS if name not in claims]
        if missing:
            raise UsageError(f"policy: missing field(s) {', '.join(map(repr, missing))}")
        read = ClaimReader(claims)
        try:
            expires = read.optional_int("expires_at")
            return cls(
                expires_at=None if expires is None else datetime.fromtimestamp(expires, UTC),
                duration_from_first_use=read.optional_seconds("duration_from_first_use"),
                max_loads=read.optional_int("max_loads"),
                loads_per=read.rate("loads_per"),
                max_devices=read.optional_int("max_devices"),
                devices=read.strings("devices"),
                lease=read.seconds("lease"),
                heartbeat=read.seconds("heartbeat"),
                offline_grace=read.seconds("offline_grace"),
                max_inferences_per=read.rate("max_inferences_per"),
                require_evidence=read.string("require_evidence"),
                allowed_measurements=read.strings("allowed_measurements"),
            )
        except (OverflowError, OSError, ValueError):
            raise UsageError("policy: a time or duration is out of range") from None
        except UsageError as exc:
            raise UsageError(f"policy: {exc.message}") from None

    def describe(self) -> list[str]:
        """One line per term, for people (``license show``)."""
        lines: list[str] = []
        if self.expires_at is not None:
            lines.append(f"expires at {format_datetime(self.expires_at)}")
        if self.duration_from_first_use is not None:
            lines.append(f"expires {format_duration(self.duration_from_first_use)} after first use")
        if self.max_loads is not None:
            lines.append(f"at most {self.max_loads} loads in total")
        if self.loads_per is not None:
            lines.append(
                f"at most {self.loads_per[1]} loads per {format_duration(self.loads_per[0])}"
            )
        if self.devices:
            lines.append(f"locked to device(s) {', '.join(self.devices)}")
        if self.max_devices is not None:
            lines.append(f"at most {self.max_devices} device(s) at once")
        if self.max_inferences_per is not None:
            period, count = self.max_inferences_per
            lines.append(f"at most {count} inferences per {format_duration(period)}")
        if self.require_evidence != "none":
            lines.append(f"requires {self.require_evidence} evidence")
        if self.allowed_measurements:
            lines.append(f"allowed measurements: {', '.join(self.allowed_measurements)}")
        lines.append(
            f"lease {format_duration(self.lease)}, heartbeat {format_duration(self.heartbeat)}, "
            f"offline grace {format_duration(self.offline_grace)}"
        )
        return lines


# --- validation helpers ---------------------------------------------------------------------------


def _count(value: int | None, name: str) -> int | None:
    if value is None:
        return None
    if not is_int(value) or not 1 <= value <= MAX_COUNT:
        raise UsageError(f"{name} must be a whole number from 1 to 2^53-1, not {value!r}")
    return value


def _duration(value: timedelta, name: str, *, minimum: timedelta, maximum: timedelta) -> timedelta:
    if not isinstance(value, timedelta) or value.microseconds:
        raise UsageError(f"{name} must be a whole number of seconds, not {value!r}")
    if not minimum <= value <= maximum:
        raise UsageError(
            f"{name} is {format_duration(value) if value >= timedelta(0) else value}; "
            f"it must be from {format_duration(minimum)} to {format_duration(maximum)}"
        )
    return value


def _rate(value: Rate | None, name: str) -> Rate | None:
    if value is None:
        return None
    if not isinstance(value, tuple) or len(value) != 2:
        raise UsageError(f"{name} must be a (period, count) pair, not {value!r}")
    period = _duration(
        value[0], f"{name} period", minimum=timedelta(seconds=1), maximum=_MAX_PERIOD
    )
    count = _count(value[1], f"{name} count")
    assert count is not None  # noqa: S101 - _count returns None only for None
    return (period, count)


def _seconds(value: timedelta) -> int:
    return value // timedelta(seconds=1)


def _seconds_or_none(value: timedelta | None) -> int | None:
    return None if value is None else _seconds(value)


def _rate_claim(value: Rate | None) -> dict[str, int] | None:
    return None if value is None else {"period": _seconds(value[0]), "count": value[1]}
