"""Canonical JSON: the fast path writes exactly what rfc8785 writes, and refuses what it refuses."""

from __future__ import annotations

from typing import Any

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from modelseal.crypto import FormatError, canonical_json
from modelseal.crypto.canonical import _plain

SAFE = 2**53 - 1
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-SAFE, max_value=SAFE)
    | st.integers(min_value=-(2**60), max_value=2**60)
    | st.text()
    | st.text(alphabet=st.characters(max_codepoint=0x7F))
)
keys = st.text() | st.text(alphabet=st.characters(max_codepoint=0x7F))
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.lists(inner, max_size=3).map(tuple)
        | st.dictionaries(keys, inner, max_size=4)
    ),
    max_leaves=20,
)


def reference(value: Any) -> bytes | None:
    try:
        return rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, TypeError, ValueError):
        return None


@settings(max_examples=500)
@given(values)
def test_same_bytes_as_rfc8785(value: Any) -> None:
    expected = reference(value)
    if expected is None:
        with pytest.raises(FormatError):
            canonical_json(value)
    else:
        assert canonical_json(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        {"b": 1, "a": [True, None, 'x\u2028\x7f\x00\x1f"\\/\b\f\n\r\t']},
        {"\u00e9": 1, "e": 2},  # non-ASCII key: rfc8785
        {"\U0001f600": 1, "\ufb33": 2},  # UTF-16 order differs from code point order
        [1.5, 2**53],  # float, and an integer past the safe range
        "\ud800",  # a lone surrogate
    ],
)
def test_edges(value: Any) -> None:
    expected = reference(value)
    if expected is None:
        with pytest.raises(FormatError):
            canonical_json(value)
    else:
        assert canonical_json(value) == expected


def test_the_fast_path_is_taken_for_plain_values_only() -> None:
    assert _plain({"a": [1, "é", None, True, ("x",)]})
    assert not _plain({"é": 1})
    assert not _plain([1.0])
    assert not _plain(2**53)
