"""Canonical JSON (RFC 8785, JCS): the only bytes modelseal ever signs or hashes as JSON."""

from __future__ import annotations

import json
from typing import Any

import rfc8785

from modelseal.crypto.errors import FormatError

__all__ = ["canonical_json", "parse_canonical_json"]

# The fast path: for values made only of exact str, int (in the I-JSON safe range), bool, None,
# list, tuple and dict with ASCII keys, RFC 8785 output is exactly what the C JSON encoder writes
# with sorted keys, no whitespace and no ASCII escaping — the same escapes (\" \\ \b \f \n \r
# \t, \u00xx for other controls, nothing else), and ASCII keys sort the same by code point as
# by UTF-16 unit. Anything else (floats, large integers, non-ASCII keys, subclasses such as
# StrEnum, lone surrogates) goes to rfc8785. tests/unit/crypto/test_canonical.py compares both.
_SAFE_INT = 2**53 - 1
_FAST = json.JSONEncoder(ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def _plain(value: Any) -> bool:
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return True
    if kind is int:
        return bool(-_SAFE_INT <= value <= _SAFE_INT)
    if kind is dict:
        return all(type(k) is str and k.isascii() and _plain(v) for k, v in value.items())
    if kind is list or kind is tuple:
        return all(_plain(item) for item in value)
    return False


def canonical_json(value: Any) -> bytes:
    """Serialise ``value`` per RFC 8785 (sorted keys, no whitespace, ECMAScript numbers)."""
    try:
        if _plain(value):
            return _FAST.encode(value).encode("utf-8")
    except (UnicodeEncodeError, RecursionError):
        pass  # a lone surrogate, or nesting too deep: rfc8785 gives the verdict
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
