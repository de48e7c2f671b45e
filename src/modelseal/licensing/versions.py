"""Which model versions a license covers: ``*``, or a list of versions and ranges ``1,2,5-7``."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from modelseal.errors import UsageError
from modelseal.licensing._fields import MAX_COUNT, is_int

__all__ = ["MAX_VERSION", "VersionSpec"]

MAX_VERSION = MAX_COUNT  # model versions are positive integers that JSON keeps exactly
_ITEM = re.compile(r"([0-9]{1,16})(?:-([0-9]{1,16}))?", re.ASCII)
_FORMS = "'*' for every version, or versions and ranges separated by commas: 1,2,5-7"


@dataclass(frozen=True)
class VersionSpec:
    """A set of model versions as sorted, disjoint, non-adjacent inclusive ranges.

    ``str(spec)`` is the canonical text (ranges merged, ``*`` for all versions), and
    ``VersionSpec.parse(str(spec)) == spec``.
    """

    ranges: tuple[tuple[int, int], ...]

    def __post_init__(self) -> None:
        previous_end = -1
        for start, end in self.ranges:
            if not (is_int(start) and is_int(end) and 1 <= start <= end <= MAX_VERSION):
                raise UsageError(f"version range {start}-{end} is not 1 ≤ start ≤ end ≤ 2^53-1")
            if start <= previous_end + 1:
                raise UsageError("version ranges must be sorted, disjoint and not adjacent")
            previous_end = end
        if not self.ranges:
            raise UsageError(f"a version spec needs at least one version; write {_FORMS}")

    @classmethod
    def all(cls) -> VersionSpec:
        return cls(((1, MAX_VERSION),))

    @classmethod
    def of(cls, versions: Iterable[int]) -> VersionSpec:
        """The spec covering exactly ``versions`` (each ≥ 1)."""
        return cls._merge((version, version) for version in versions)

    @classmethod
    def parse(cls, text: str) -> VersionSpec:
        """``*`` or ``1,2,5-7`` (spaces around items allowed; overlaps are merged)."""
        if not isinstance(text, str):
            raise UsageError(f"{text!r} is not a version spec; write {_FORMS}")
        if text.strip() == "*":
            return cls.all()
        ranges: list[tuple[int, int]] = []
        for item in text.split(","):
            match = _ITEM.fullmatch(item.strip())
            if match is None:
                raise UsageError(
                    f"{text!r} is not a version spec: {item.strip()!r} is not a version "
                    f"or range; write {_FORMS}"
                )
            start = int(match[1])
            end = int(match[2]) if match[2] is not None else start
            if not 1 <= start <= end <= MAX_VERSION:
                raise UsageError(
                    f"{text!r} is not a version spec: in {item.strip()!r} versions start at 1 "
                    "and a range goes from low to high"
                )
            ranges.append((start, end))
        return cls._merge(ranges)

    @classmethod
    def _merge(cls, ranges: Iterable[tuple[int, int]]) -> VersionSpec:
        merged: list[tuple[int, int]] = []
        for start, end in sorted(ranges):
            if not (is_int(start) and is_int(end) and 1 <= start <= end <= MAX_VERSION):
                raise UsageError(
                    f"model versions are whole numbers from 1 to 2^53-1, not {start!r}"
                )
            if merged and start <= merged[-1][1] + 1:
                merged[-1] = (merged[-1][0], max(merged[-1][1], end))
            else:
                merged.append((start, end))
        return cls(tuple(merged))

    @property
    def is_all(self) -> bool:
        return self.ranges == ((1, MAX_VERSION),)

    def allows(self, version: int) -> bool:
        if not is_int(version):
            return False
        return any(start <= version <= end for start, end in self.ranges)

    def __str__(self) -> str:
        if self.is_all:
            return "*"
        return ",".join(
            str(start)
            if start == end
            else f"{start},{end}"
            if end == start + 1
            else f"{start}-{end}"
            for start, end in self.ranges
        )
