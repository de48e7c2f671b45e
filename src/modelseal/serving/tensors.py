"""Tensors on the wire: KServe v2 datatypes ↔ numpy, from and to JSON, raw bytes and gRPC contents.

Raw layout (binary tensor extension, ``raw_input_contents``/``raw_output_contents``): elements in
row-major order, little-endian; a BYTES element is its length as a 4-byte little-endian unsigned
integer followed by its bytes. BYTES tensors are numpy ``object`` arrays of ``bytes``. BF16 needs
the ``ml_dtypes`` package (installed with onnx); without it BF16 tensors are refused clearly.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from modelseal.serving.errors import InvalidRequestError

__all__ = [
    "CONTENTS_FIELDS",
    "DATATYPES",
    "Array",
    "datatype_of",
    "decode_bytes_elements",
    "dtype_of",
    "element_count",
    "encode_bytes_elements",
    "from_contents",
    "from_json",
    "from_raw",
    "to_contents",
    "to_json",
    "to_raw",
]

Array = npt.NDArray[Any]

_FIXED: Final[dict[str, str]] = {
    "BOOL": "?",
    "UINT8": "<u1",
    "UINT16": "<u2",
    "UINT32": "<u4",
    "UINT64": "<u8",
    "INT8": "<i1",
    "INT16": "<i2",
    "INT32": "<i4",
    "INT64": "<i8",
    "FP16": "<f2",
    "FP32": "<f4",
    "FP64": "<f8",
}
DATATYPES: Final = (*_FIXED, "BF16", "BYTES")
"""Every KServe v2 datatype this server knows."""

CONTENTS_FIELDS: Final[dict[str, str]] = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}
"""The ``InferTensorContents`` field of each datatype; FP16 and BF16 travel only raw."""

_LENGTH = struct.Struct("<I")


def _bf16() -> np.dtype[Any]:
    try:
        import ml_dtypes
    except ImportError:  # pragma: no cover - ml_dtypes comes with onnx
        raise InvalidRequestError(
            "BF16 tensors need the ml_dtypes package, which is not installed on this server"
        ) from None
    dtype: np.dtype[Any] = np.dtype(ml_dtypes.bfloat16)
    return dtype


def dtype_of(datatype: str) -> np.dtype[Any]:
    """The numpy dtype of a KServe datatype; an unknown datatype is an :class:`InvalidRequestError`."""
    if datatype in _FIXED:
        return np.dtype(_FIXED[datatype])
    if datatype == "BYTES":
        return np.dtype(object)
    if datatype == "BF16":
        return _bf16()
    raise InvalidRequestError(f"unknown datatype {datatype!r}; use one of {', '.join(DATATYPES)}")


def datatype_of(dtype: np.dtype[Any]) -> str:
    """The KServe datatype of a numpy dtype (``object`` and strings are BYTES)."""
    if dtype.kind in "OSU":
        return "BYTES"
    if dtype.name == "bfloat16":
        return "BF16"
    for name, code in _FIXED.items():
        if np.dtype(code) == dtype.newbyteorder("<") or np.dtype(code) == dtype:
            return name
    raise InvalidRequestError(f"numpy dtype {dtype} has no KServe v2 datatype")


def element_count(shape: Sequence[int]) -> int:
    return math.prod(shape)


def _check_shape(shape: Sequence[int], what: str) -> tuple[int, ...]:
    if any(not isinstance(dim, int) or isinstance(dim, bool) or dim < 0 for dim in shape):
        raise InvalidRequestError(f"{what}: shape {list(shape)} must hold integers ≥ 0")
    return tuple(shape)


# --- BYTES elements ------------------------------------------------------------------------------


def encode_bytes_elements(array: Array) -> bytes:
    """Length-prefixed BYTES elements (str elements are UTF-8 encoded)."""
    parts: list[bytes] = []
    for item in array.ravel(order="C"):
        data = item.encode("utf-8") if isinstance(item, str) else bytes(item)
        parts.append(_LENGTH.pack(len(data)))
        parts.append(data)
    return b"".join(parts)


def decode_bytes_elements(raw: bytes | memoryview, count: int, what: str) -> Array:
    """``count`` length-prefixed elements that fill ``raw`` exactly, as an object array."""
    view = memoryview(raw)
    out = np.empty(count, dtype=object)
    offset = 0
    for index in range(count):
        if offset + 4 > len(view):
            raise InvalidRequestError(
                f"{what}: the BYTES data ends inside element {index} of {count}"
            )
        (length,) = _LENGTH.unpack_from(view, offset)
        offset += 4
        if offset + length > len(view):
            raise InvalidRequestError(
                f"{what}: BYTES element {index} runs past the end of the data"
            )
        out[index] = bytes(view[offset : offset + length])
        offset += length
    if offset != len(view):
        raise InvalidRequestError(
            f"{what}: {len(view) - offset} bytes are left over after {count} BYTES elements"
        )
    return out


# --- raw bytes -----------------------------------------------------------------------------------


def from_raw(datatype: str, shape: Sequence[int], raw: bytes | memoryview, what: str) -> Array:
    """A tensor from its raw bytes; the size must match the shape exactly."""
    shape = _check_shape(shape, what)
    dtype = dtype_of(datatype)
    count = element_count(shape)
    if datatype == "BYTES":
        return decode_bytes_elements(raw, count, what).reshape(shape)
    expected = count * dtype.itemsize
    if len(raw) != expected:
        raise InvalidRequestError(
            f"{what}: {len(raw)} bytes of data, but shape {list(shape)} of {datatype} needs {expected}"
        )
    array = np.frombuffer(raw, dtype=dtype).reshape(shape)
    if datatype == "BOOL" and array.view(np.uint8).max(initial=0) > 1:
        raise InvalidRequestError(f"{what}: BOOL elements must be bytes 0 or 1")
    return array


def to_raw(array: Array) -> bytes:
    """The raw bytes of a tensor (little-endian, row-major)."""
    if array.dtype.kind in "OSU":
        return encode_bytes_elements(array)
    dtype = array.dtype if array.dtype.byteorder in "=|<" else array.dtype.newbyteorder("<")
    return np.ascontiguousarray(array, dtype=dtype).tobytes()


# --- JSON ----------------------------------------------------------------------------------------


def _flatten(data: Any) -> list[Any]:
    if not isinstance(data, list):
        return [data]
    flat: list[Any] = []
    stack = [iter(data)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            flat.append(item)
        else:
            stack.pop()
    return flat


def _json_kind_ok(datatype: str, item: Any) -> bool:
    if datatype == "BOOL":
        return isinstance(item, bool)
    if datatype.startswith(("INT", "UINT")):
        return isinstance(item, int) and not isinstance(item, bool)
    if datatype.startswith(("FP", "BF")):
        return isinstance(item, (int, float)) and not isinstance(item, bool)
    return isinstance(item, str)  # BYTES


def from_json(datatype: str, shape: Sequence[int], data: Any, what: str) -> Array:
    """A tensor from the JSON ``data`` (flat or nested, row-major) of a KServe v2 request."""
    shape = _check_shape(shape, what)
    dtype = dtype_of(datatype)
    flat = _flatten(data)
    count = element_count(shape)
    if len(flat) != count:
        raise InvalidRequestError(
            f"{what}: {len(flat)} elements of data, but shape {list(shape)} holds {count}"
        )
    for item in flat:
        if not _json_kind_ok(datatype, item):
            raise InvalidRequestError(f"{what}: element {item!r} is not a valid {datatype} value")
    if datatype == "BYTES":
        out = np.empty(count, dtype=object)
        out[:] = [item.encode("utf-8") for item in flat]
        return out.reshape(shape)
    try:
        return np.asarray(flat, dtype=dtype).reshape(shape)
    except OverflowError:
        raise InvalidRequestError(f"{what}: an element is out of range for {datatype}") from None


def to_json(array: Array, what: str) -> list[Any]:
    """The flat JSON ``data`` of a tensor; BYTES elements must be UTF-8 text."""
    if array.dtype.kind in "OSU":
        out: list[Any] = []
        for item in array.ravel(order="C"):
            if isinstance(item, str):
                out.append(item)
                continue
            try:
                out.append(bytes(item).decode("utf-8"))
            except UnicodeDecodeError:
                raise InvalidRequestError(
                    f"{what}: a BYTES element is not UTF-8 text, so it cannot be sent as JSON; "
                    "ask for this output as binary data"
                ) from None
        return out
    if array.dtype.name == "bfloat16":
        array = array.astype(np.float32)
    flat: list[Any] = array.ravel(order="C").tolist()
    return flat


# --- gRPC typed contents -------------------------------------------------------------------------


def from_contents(datatype: str, shape: Sequence[int], values: Sequence[Any], what: str) -> Array:
    """A tensor from the values of its ``InferTensorContents`` field."""
    shape = _check_shape(shape, what)
    dtype = dtype_of(datatype)
    if datatype not in CONTENTS_FIELDS:
        raise InvalidRequestError(f"{what}: {datatype} tensors must be sent as raw_input_contents")
    count = element_count(shape)
    if len(values) != count:
        raise InvalidRequestError(
            f"{what}: {len(values)} elements in contents, but shape {list(shape)} holds {count}"
        )
    if datatype == "BYTES":
        out = np.empty(count, dtype=object)
        out[:] = [bytes(v) for v in values]
        return out.reshape(shape)
    try:
        return np.asarray(values, dtype=dtype).reshape(shape)
    except OverflowError:
        raise InvalidRequestError(f"{what}: an element is out of range for {datatype}") from None


def to_contents(array: Array) -> list[Any]:
    """The values for the ``InferTensorContents`` field of a tensor's datatype."""
    if array.dtype.kind in "OSU":
        return [i.encode("utf-8") if isinstance(i, str) else bytes(i) for i in array.ravel()]
    flat: list[Any] = array.ravel(order="C").tolist()
    return flat
