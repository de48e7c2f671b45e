"""Canonical JSON (RFC 8785, JCS): the only bytes modelseal ever signs or hashes as JSON."""

from __future__ import annotations

import json
from typing import Any

import rfc8785

from modelseal.crypto.errors import FormatError

__all__ = ["canonical_json", "parse_canonical_json"]


def canonical_json(value: Any) -> bytes:
    """Serialise ``value`` per RFC 8785 (sorted keys, no whitespace, ECMAScript numbers)."""
    try:
        return rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, TypeError, ValueError) as exc:
        raise FormatError(f"value cannot be written as canonical JSON: {exc}") from exc


def parse_canonical_json(data: bytes, *, what: str) -> Any:
    """Parse JSON and insist the bytes are already in canonical form.

    Refusing non-canonical input means there is exactly one byte string per signed document, so a
    signature can never cover something other than what was parsed.
    """
    try:
        value = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FormatError(f"{what} is not valid UTF-8 JSON: {exc}") from exc
    if canonical_json(value) != data:
        raise FormatError(
            f"{what} is not in canonical JSON form (RFC 8785); it was edited or re-encoded"
        )
    return value
