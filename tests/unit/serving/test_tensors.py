"""Tensor codecs: every datatype round-trips through raw bytes, JSON and gRPC contents."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from modelseal.serving.errors import InvalidRequestError
from modelseal.serving.tensors import (
    CONTENTS_FIELDS,
    datatype_of,
    dtype_of,
    from_contents,
    from_json,
    from_raw,
    to_contents,
    to_json,
    to_raw,
)
from tests.conftest import expect_error

NUMERIC = ["BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
           "FP16", "FP32", "FP64"]  # fmt: skip
shapes = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4)


@st.composite
def tensors(draw: st.DrawFn) -> tuple[str, np.ndarray]:
    datatype = draw(st.sampled_from([*NUMERIC, "BYTES", "BF16"]))
    shape = draw(shapes)
    if datatype == "BYTES":
        items = draw(st.lists(st.binary(max_size=12), min_size=int(np.prod(shape)),
                              max_size=int(np.prod(shape))))  # fmt: skip
        array = np.empty(len(items), dtype=object)
        array[:] = items
        return datatype, array.reshape(shape)
    dtype = dtype_of(datatype)
    elements = None
    if datatype in ("FP16", "FP32", "FP64", "BF16"):
        elements = st.floats(width=16 if datatype in ("FP16",) else 32, allow_nan=False)
    if datatype == "BF16":
        values = draw(hnp.arrays(np.float32, shape, elements=elements))
        return datatype, values.astype(dtype)
    return datatype, draw(hnp.arrays(dtype, shape, elements=elements))


def _same(a: np.ndarray, b: np.ndarray) -> None:
    assert a.shape == b.shape
    if a.dtype == object:
        assert [bytes(x) for x in a.ravel()] == [bytes(x) for x in b.ravel()]
    else:
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a.astype(np.float64) if a.dtype.name == "bfloat16" else a,
                                      b.astype(np.float64) if b.dtype.name == "bfloat16" else b)  # fmt: skip


@given(tensors())
def test_raw_round_trip(case: tuple[str, np.ndarray]) -> None:
    datatype, array = case
    assert datatype_of(array.dtype) == datatype
    _same(from_raw(datatype, array.shape, to_raw(array), "t"), array)


@given(tensors())
def test_json_round_trip(case: tuple[str, np.ndarray]) -> None:
    datatype, array = case
    if datatype == "BYTES":
        array = np.vectorize(lambda b: b.hex().encode(), otypes=[object])(array)
    data: Any = to_json(array, "t")
    _same(from_json(datatype, array.shape, data, "t"), array)


@given(tensors())
def test_contents_round_trip(case: tuple[str, np.ndarray]) -> None:
    datatype, array = case
    if datatype not in CONTENTS_FIELDS:
        expect_error(InvalidRequestError, lambda: from_contents(datatype, array.shape, [], "t"),
                     "must be sent as raw_input_contents")  # fmt: skip
        return
    _same(from_contents(datatype, array.shape, to_contents(array), "t"), array)


def test_nested_json_is_read_row_major() -> None:
    array = from_json("INT32", [2, 2], [[1, 2], [3, 4]], "t")
    np.testing.assert_array_equal(array, np.array([[1, 2], [3, 4]], dtype=np.int32))


@pytest.mark.parametrize(
    ("datatype", "shape", "raw", "message"),
    [
        ("FP32", [2], b"\0" * 7, "t: 7 bytes of data, but shape [2] of FP32 needs 8"),
        ("BYTES", [1], b"\5\0\0\0ab", "t: BYTES element 0 runs past the end of the data"),
        ("BYTES", [1], b"\1\0\0\0ab", "t: 1 bytes are left over after 1 BYTES elements"),
        ("BYTES", [2], b"\1\0\0\0a", "t: the BYTES data ends inside element 1 of 2"),
        ("BOOL", [1], b"\2", "t: BOOL elements must be bytes 0 or 1"),
        ("FP32", [-1], b"", "t: shape [-1] must hold integers ≥ 0"),
    ],
)
def test_bad_raw_data(datatype: str, shape: list[int], raw: bytes, message: str) -> None:
    error = expect_error(InvalidRequestError, lambda: from_raw(datatype, shape, raw, "t"))
    assert error.message == message


@pytest.mark.parametrize(
    ("datatype", "data", "message"),
    [
        ("INT8", [300], "t: an element is out of range for INT8"),
        ("INT32", [1.5], "t: element 1.5 is not a valid INT32 value"),
        ("BOOL", [1], "t: element 1 is not a valid BOOL value"),
        ("FP32", [True], "t: element True is not a valid FP32 value"),
        ("FP32", [None], "t: element None is not a valid FP32 value"),
    ],
)
def test_bad_json_data(datatype: str, data: list[Any], message: str) -> None:
    error = expect_error(InvalidRequestError, lambda: from_json(datatype, [1], data, "t"))
    assert error.message == message


def test_bytes_that_are_not_text_cannot_be_json() -> None:
    array = np.array([b"\xff"], dtype=object)
    expect_error(
        InvalidRequestError, lambda: to_json(array, "output 'o'"), "ask for this output as binary"
    )
