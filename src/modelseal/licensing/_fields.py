"""Shared checks for license fields: typed claim reading and value validation, naming the field."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, TypeGuard

from modelseal.errors import UsageError

MAX_COUNT = 2**53 - 1  # the largest integer every JSON reader keeps exactly
_YEAR_10000 = 253402300800


def is_int(value: object) -> TypeGuard[int]:
    """An ``int`` that is not a ``bool`` (JSON ``true`` must never pass for ``1``)."""
    return isinstance(value, int) and not isinstance(value, bool)


def instant(value: datetime, name: str, *, floor: bool = True) -> datetime:
    """An aware time as UTC, by default floored to whole seconds (claims carry whole seconds)."""
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise UsageError(f"{name} must be a time with a time zone, not {value!r}")
    value = value.astimezone(UTC)
    return value.replace(microsecond=0) if floor else value


def string_tuple(values: Iterable[str], name: str) -> tuple[str, ...]:
    """``values`` as a tuple; a lone string is refused rather than split into characters."""
    if isinstance(values, str | bytes):
        raise UsageError(f"{name} must be a list of strings, not the single string {values!r}")
    return tuple(values)


def no_duplicates(values: tuple[str, ...], name: str) -> None:
    seen: set[str] = set()
    for value in values:
        if value in seen:
            raise UsageError(f"{name} lists {value!r} twice")
        seen.add(value)


def label(value: object, name: str) -> None:
    """A short human name: 1 to 200 printable characters without surrounding spaces."""
    if (
        not isinstance(value, str)
        or not value
        or len(value) > 200
        or not value.isprintable()
        or value != value.strip()
    ):
        raise UsageError(
            f"{name} must be 1 to 200 printable characters without surrounding spaces, "
            f"not {value!r}"
        )


class ClaimReader:
    """Typed access to the fields of one JSON object; errors name ``where.field``."""

    def __init__(self, claims: Mapping[str, Any], where: str = "") -> None:
        self.claims = claims
        self.where = where

    def name(self, field: str) -> str:
        return f"{self.where}.{field}" if self.where else field

    def _fail(self, field: str, kind: str) -> UsageError:
        return UsageError(f"{self.name(field)} must be {kind}, not {self.claims.get(field)!r}")

    def object(self, field: str, fields: set[str]) -> ClaimReader:
        value = self.claims.get(field)
        if not isinstance(value, Mapping) or set(value) != fields:
            raise UsageError(
                f"{self.name(field)} must be an object with exactly {', '.join(sorted(fields))}"
            )
        return ClaimReader(value, self.name(field))

    def string(self, field: str) -> str:
        value = self.claims.get(field)
        if not isinstance(value, str):
            raise self._fail(field, "a string")
        return value

    def strings(self, field: str) -> tuple[str, ...]:
        value = self.claims.get(field)
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise self._fail(field, "a list of strings")
        return tuple(value)

    def optional_int(self, field: str) -> int | None:
        value = self.claims.get(field)
        if value is None:
            return None
        if not is_int(value):
            raise self._fail(field, "a whole number or null")
        return value

    def seconds(self, field: str) -> timedelta:
        value = self.claims.get(field)
        if not is_int(value) or value < 0:
            raise self._fail(field, "whole seconds")
        return timedelta(seconds=value)

    def optional_seconds(self, field: str) -> timedelta | None:
        return None if self.claims.get(field) is None else self.seconds(field)

    def rate(self, field: str) -> tuple[timedelta, int] | None:
        value = self.claims.get(field)
        if value is None:
            return None
        if (
            not isinstance(value, Mapping)
            or set(value) != {"period", "count"}
            or not is_int(value["period"])
            or not is_int(value["count"])
            or value["period"] < 0
        ):
            raise self._fail(field, 'null or {"period": seconds, "count": N}')
        return (timedelta(seconds=value["period"]), value["count"])

    def time(self, field: str) -> datetime:
        value = self.optional_time(field)
        if value is None:
            raise UsageError(f"{self.name(field)} is missing")
        return value

    def optional_time(self, field: str) -> datetime | None:
        """Seconds since the epoch; absent is ``None``, but an explicit ``null`` is an error."""
        if field not in self.claims:
            return None
        value = self.claims[field]
        if not is_int(value) or not 0 <= value < _YEAR_10000:
            raise self._fail(field, "whole seconds since 1970 (before year 10000)")
        return datetime.fromtimestamp(value, UTC)
