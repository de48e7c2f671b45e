"""Version specs: ``*`` or ``1,2,5-7``; canonical text, membership, and exact errors."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelseal.errors import UsageError
from modelseal.licensing import MAX_VERSION, VersionSpec
from tests.conftest import expect_error

FORMS = "'*' for every version, or versions and ranges separated by commas: 1,2,5-7"


@pytest.mark.parametrize(
    ("text", "canonical", "inside", "outside"),
    [
        ("*", "*", [1, 2, MAX_VERSION], [0, -1, MAX_VERSION + 1]),
        (" * ", "*", [1], [0]),
        ("1", "1", [1], [0, 2]),
        ("1,2,5-7", "1,2,5-7", [1, 2, 5, 6, 7], [0, 3, 4, 8]),
        ("5-7, 1 ,2", "1,2,5-7", [1, 2, 5, 7], [3, 8]),
        ("1-3,2-6", "1-6", [1, 4, 6], [7]),
        ("1,2,3", "1-3", [1, 2, 3], [4]),
        ("3,3,3", "3", [3], [2, 4]),
        ("4-4", "4", [4], [3, 5]),
        ("007", "7", [7], [6]),
        (f"1-{MAX_VERSION}", "*", [1, MAX_VERSION], [0]),
    ],
)
def test_parse(text: str, canonical: str, inside: list[int], outside: list[int]) -> None:
    spec = VersionSpec.parse(text)
    assert str(spec) == canonical
    assert VersionSpec.parse(canonical) == spec
    assert all(spec.allows(v) for v in inside)
    assert not any(spec.allows(v) for v in outside)


def test_allows_only_integers() -> None:
    spec = VersionSpec.all()
    assert spec.is_all
    assert not spec.allows(True)
    assert not spec.allows("1")  # type: ignore[arg-type]
    assert not spec.allows(1.0)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "item"),
    [
        ("", ""),
        ("1,,2", ""),
        ("1,", ""),
        ("a", "a"),
        ("1-", "1-"),
        ("-3", "-3"),
        ("1-2-3", "1-2-3"),
        ("*,1", "*"),
        ("1.5", "1.5"),
        ("v1", "v1"),
        ("\uff11", "\uff11"),
        ("12345678901234567", "12345678901234567"),
    ],
)
def test_malformed_items(text: str, item: str) -> None:
    error = expect_error(UsageError, lambda: VersionSpec.parse(text))
    assert str(error) == (
        f"{text!r} is not a version spec: {item!r} is not a version or range; write {FORMS}"
    )


@pytest.mark.parametrize(("text", "item"), [("0", "0"), ("7-5", "7-5"), ("1,0-2", "0-2")])
def test_out_of_order_or_zero(text: str, item: str) -> None:
    error = expect_error(UsageError, lambda: VersionSpec.parse(text))
    assert str(error) == (
        f"{text!r} is not a version spec: in {item!r} versions start at 1 and a range goes "
        "from low to high"
    )


def test_too_large() -> None:
    text = str(MAX_VERSION + 1)
    error = expect_error(UsageError, lambda: VersionSpec.parse(text))
    assert "versions start at 1" in str(error)


def test_direct_construction_is_validated() -> None:
    cases = {
        (): f"a version spec needs at least one version; write {FORMS}",
        ((1, 2), (3, 4)): "version ranges must be sorted, disjoint and not adjacent",
        ((5, 6), (1, 2)): "version ranges must be sorted, disjoint and not adjacent",
        ((0, 2),): "version range 0-2 is not 1 ≤ start ≤ end ≤ 2^53-1",
        ((3, 2),): "version range 3-2 is not 1 ≤ start ≤ end ≤ 2^53-1",
        ((True, True),): "version range True-True is not 1 ≤ start ≤ end ≤ 2^53-1",
    }
    for ranges, message in cases.items():
        assert str(expect_error(UsageError, lambda r=ranges: VersionSpec(r))) == message  # type: ignore[misc]
    assert str(expect_error(UsageError, lambda: VersionSpec.of([0]))) == (
        "model versions are whole numbers from 1 to 2^53-1, not 0"
    )
    assert str(expect_error(UsageError, lambda: VersionSpec.of([]))) == (
        f"a version spec needs at least one version; write {FORMS}"
    )


versions = st.sets(st.integers(1, 60), min_size=1, max_size=30)


@given(versions)
def test_of_and_text_round_trip_preserve_membership(chosen: set[int]) -> None:
    spec = VersionSpec.of(chosen)
    assert VersionSpec.parse(str(spec)) == spec
    assert {v for v in range(0, 62) if spec.allows(v)} == chosen


@given(st.lists(st.tuples(st.integers(1, 100), st.integers(0, 20)), min_size=1, max_size=8))
def test_ranges_text_matches_a_set_model(pairs: list[tuple[int, int]]) -> None:
    text = ",".join(
        f"{start}-{start + length}" if length else str(start) for start, length in pairs
    )
    spec = VersionSpec.parse(text)
    model = {v for start, length in pairs for v in range(start, start + length + 1)}
    assert {v for v in range(0, 122) if spec.allows(v)} == model
    assert VersionSpec.parse(str(spec)) == spec == VersionSpec.of(model)


@given(st.text(alphabet="0123456789,-* ", max_size=10))
def test_any_text_parses_or_raises_usage_error(text: str) -> None:
    try:
        spec = VersionSpec.parse(text)
    except UsageError:
        return
    assert VersionSpec.parse(str(spec)) == spec
