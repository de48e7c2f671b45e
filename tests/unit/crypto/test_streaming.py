"""The streaming AEAD: round trips, random access, parallel decryption, and tamper detection.

Expected layouts are computed here from the format's constants, independently of the module's own
layout helpers, so a wrong offset in the module cannot agree with itself.
"""

from __future__ import annotations

import hashlib
import io
import mmap
import os
import random
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from multiprocessing.context import BaseContext
from pathlib import Path
from typing import TypeVar

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import modelseal.crypto.streaming as streaming
from modelseal.crypto import DataKey, DecryptionError, FormatError, SegmentReader
from modelseal.crypto.streaming import (
    FIRST_SEGMENT_PLAINTEXT,
    HEADER_SIZE,
    SEGMENT_PLAINTEXT,
    SEGMENT_SIZE,
    TAG_SIZE,
    ciphertext_size,
    encrypt_stream,
    plaintext_size,
)
from tests._tink import MemorySource

E = TypeVar("E", bound=BaseException)
F = FIRST_SEGMENT_PLAINTEXT
P = SEGMENT_PLAINTEXT
AD = b"model=m-1;version=3;path=weights/model.onnx"
SALT_A = bytes(range(32))
SALT_B = bytes(range(1, 33))
PREFIX_A = b"\x10\x11\x12\x13\x14\x15\x16"
PREFIX_B = b"\x10\x11\x12\x13\x14\x15\x17"

# A plaintext of four segments: F, P, P and a short last one.
FOUR_SEGMENTS = F + 2 * P + 12_345


# --- helpers ------------------------------------------------------------------------------------


def _plaintext(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)  # noqa: S311 - test data, not secrets


def _encrypt(
    key: DataKey,
    ad: bytes,
    plaintext: bytes,
    *,
    salt: bytes | None = None,
    prefix: bytes | None = None,
) -> bytes:
    out = io.BytesIO()
    written = encrypt_stream(
        key, ad, io.BytesIO(plaintext), out.write, _salt=salt, _nonce_prefix=prefix
    )
    assert written == len(plaintext)
    return out.getvalue()


def _reader(key: DataKey, ad: bytes, ciphertext: bytes) -> SegmentReader:
    return SegmentReader(key, ad, MemorySource(ciphertext))


def _pt_start(index: int) -> int:
    return 0 if index == 0 else F + (index - 1) * P


def _segment_count(pt_size: int) -> int:
    if pt_size <= F:
        return 1
    return 1 + -(-(pt_size - F) // P)


def _ct_span(index: int, ct_size: int) -> tuple[int, int]:
    start = HEADER_SIZE if index == 0 else index * SEGMENT_SIZE
    return start, min((index + 1) * SEGMENT_SIZE, ct_size) - start


def _flip(data: bytes, position: int) -> bytes:
    out = bytearray(data)
    out[position] ^= 0x01
    return bytes(out)


def _as_bytes(plaintext: mmap.mmap | bytes) -> bytes:
    if isinstance(plaintext, mmap.mmap):
        try:
            return plaintext[:]
        finally:
            plaintext.close()
    return plaintext


@contextmanager
def _raises(kind: type[E], match: str | None = None) -> Iterator[pytest.ExceptionInfo[E]]:
    """``pytest.raises`` that insists on exactly ``kind``, not a subclass."""
    with pytest.raises(kind, match=match) as info:
        yield info
    assert info.type is kind, f"expected exactly {kind.__name__}, got {info.type.__name__}"


def _decryption_error_at(reader: SegmentReader, index: int) -> DecryptionError:
    with _raises(DecryptionError) as info:
        reader.segment(index)
    assert info.value.segment == index
    return info.value


@pytest.fixture(scope="module")
def key() -> DataKey:
    return DataKey.generate()


@pytest.fixture(scope="module")
def four(key: DataKey) -> tuple[bytes, bytes]:
    """(plaintext, ciphertext) of four segments."""
    plaintext = _plaintext(FOUR_SEGMENTS, seed=4)
    return plaintext, _encrypt(key, AD, plaintext)


# --- layout -------------------------------------------------------------------------------------


def test_constants_are_tinks_aes256_gcm_hkdf_1mb() -> None:
    assert (SEGMENT_SIZE, HEADER_SIZE, TAG_SIZE) == (1_048_576, 40, 16)
    assert (F, P) == (1_048_520, 1_048_560)


@pytest.mark.parametrize(
    ("pt_size", "ct_size"),
    [
        (0, 56),
        (1, 57),
        (F, SEGMENT_SIZE),
        (F + 1, SEGMENT_SIZE + 1 + TAG_SIZE),
        (F + P, 2 * SEGMENT_SIZE),
        (F + P + 1, 2 * SEGMENT_SIZE + 1 + TAG_SIZE),
    ],
)
def test_ciphertext_size_known_points(pt_size: int, ct_size: int) -> None:
    assert ciphertext_size(pt_size) == ct_size
    assert plaintext_size(ct_size) == pt_size


@given(st.integers(min_value=0, max_value=1 << 42))
@example(F)
@example(F + 1)
@example(F + P - 1)
@example(F + P)
def test_plaintext_size_inverts_ciphertext_size(size: int) -> None:
    ct_size = ciphertext_size(size)
    assert plaintext_size(ct_size) == size
    assert ct_size == size + HEADER_SIZE + TAG_SIZE * _segment_count(size)
    assert ciphertext_size(size + 1) > ct_size


def _impossible(ct_size: int) -> bool:
    if ct_size < HEADER_SIZE + TAG_SIZE:
        return True
    return ct_size > SEGMENT_SIZE and 0 < ct_size % SEGMENT_SIZE <= TAG_SIZE


@given(st.integers(min_value=0, max_value=1 << 42))
@example(0)
@example(55)
@example(56)
@example(SEGMENT_SIZE)
@example(SEGMENT_SIZE + 1)
@example(SEGMENT_SIZE + TAG_SIZE)
@example(SEGMENT_SIZE + TAG_SIZE + 1)
@example(3 * SEGMENT_SIZE + 5)
def test_impossible_ciphertext_sizes_raise_format_error(ct_size: int) -> None:
    if _impossible(ct_size):
        with _raises(FormatError):
            plaintext_size(ct_size)
    else:
        assert ciphertext_size(plaintext_size(ct_size)) == ct_size


@pytest.mark.parametrize(
    "ct_size", [0, 39, 55, SEGMENT_SIZE + 1, SEGMENT_SIZE + 16, 5 * SEGMENT_SIZE + 9]
)
def test_reader_refuses_impossible_sizes_before_decrypting(key: DataKey, ct_size: int) -> None:
    source = MemorySource((bytes([HEADER_SIZE]) + bytes(ct_size))[:ct_size])
    with _raises(FormatError):
        SegmentReader(key, AD, source)


def test_negative_plaintext_size_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="negative"):
        ciphertext_size(-1)


# --- round trips --------------------------------------------------------------------------------

_SIZES = st.one_of(
    st.integers(min_value=0, max_value=300),
    st.sampled_from([F - 1, F, F + 1, F + P - 1, F + P, F + P + 1]),
    st.integers(min_value=0, max_value=F + 2 * P + 100),
)


@settings(max_examples=30, deadline=None)
@given(size=_SIZES, seed=st.integers(min_value=0, max_value=2**32), ad=st.binary(max_size=64))
def test_round_trip(key: DataKey, size: int, seed: int, ad: bytes) -> None:
    plaintext = _plaintext(size, seed)
    seen: list[bytes] = []
    chunks: list[bytes] = []
    out = io.BytesIO()

    def sink(chunk: bytes) -> None:
        chunks.append(chunk)
        out.write(chunk)

    assert encrypt_stream(key, ad, io.BytesIO(plaintext), sink, on_plaintext=seen.append) == size
    ciphertext = out.getvalue()
    count = _segment_count(size)

    assert len(ciphertext) == ciphertext_size(size)
    assert ciphertext[0] == HEADER_SIZE
    assert [len(c) for c in chunks] == [HEADER_SIZE] + [
        _ct_span(i, len(ciphertext))[1] for i in range(count)
    ]
    assert b"".join(seen) == plaintext
    assert [len(s) for s in seen] == [
        min(F if i == 0 else P, size - _pt_start(i)) for i in range(count)
    ]

    reader = _reader(key, ad, ciphertext)
    assert (reader.segment_count, reader.plaintext_size) == (count, size)
    assert reader.read(0, size + 1) == plaintext
    assert b"".join(reader.iter_segments()) == plaintext
    assert _as_bytes(reader.decrypt_all()) == plaintext


def test_fresh_salt_and_prefix_for_every_encryption(key: DataKey) -> None:
    first, second = _encrypt(key, AD, b"same"), _encrypt(key, AD, b"same")
    assert first[1:HEADER_SIZE] != second[1:HEADER_SIZE]
    assert first != second


def test_short_reads_from_the_source_give_the_same_ciphertext(key: DataKey) -> None:
    class Trickle(io.BytesIO):
        """Returns at most 77,777 bytes per read, like a pipe or a socket."""

        def read(self, size: int | None = -1, /) -> bytes:
            return super().read(77_777 if size is None or size < 0 else min(size, 77_777))

    plaintext = _plaintext(F + P + 5, seed=9)
    expected = _encrypt(key, AD, plaintext, salt=SALT_A, prefix=PREFIX_A)
    out = io.BytesIO()
    size = encrypt_stream(
        key, AD, Trickle(plaintext), out.write, _salt=SALT_A, _nonce_prefix=PREFIX_A
    )
    assert size == len(plaintext)
    assert out.getvalue() == expected


@pytest.mark.parametrize(("salt", "prefix"), [(b"\x00" * 31, PREFIX_A), (SALT_A, b"\x00" * 8)])
def test_fixed_salt_and_prefix_must_have_the_right_length(
    key: DataKey, salt: bytes, prefix: bytes
) -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        _encrypt(key, AD, b"x", salt=salt, prefix=prefix)


def test_empty_plaintext_is_one_authenticated_segment(key: DataKey) -> None:
    ciphertext = _encrypt(key, AD, b"")
    reader = _reader(key, AD, ciphertext)
    assert (reader.segment_count, reader.plaintext_size) == (1, 0)
    assert reader.read(0, 10) == b""
    assert _as_bytes(reader.decrypt_all()) == b""
    with _raises(DecryptionError):
        _reader(key, AD, _flip(ciphertext, len(ciphertext) - 1)).decrypt_all()
    with _raises(DecryptionError):
        _reader(key, b"other", ciphertext).decrypt_all()


# --- random access ------------------------------------------------------------------------------


def _expected_segments(offset: int, length: int, size: int) -> list[int]:
    end = min(offset + length, size)
    if end <= offset:
        return []
    return [
        i
        for i in range(_segment_count(size))
        if _pt_start(i) < end and offset < _pt_start(i) + (F if i == 0 else P)
    ]


def _check_read(
    key: DataKey, plaintext: bytes, ciphertext: bytes, offset: int, length: int
) -> None:
    source = MemorySource(ciphertext)
    reader = SegmentReader(key, AD, source)
    assert source.calls == [(0, HEADER_SIZE)]
    source.calls.clear()

    assert reader.read(offset, length) == plaintext[offset : offset + length]

    wanted = _expected_segments(offset, length, len(plaintext))
    assert list(reader.segments_for(offset, length)) == wanted
    assert source.calls == [_ct_span(i, len(ciphertext)) for i in wanted]


_BOUNDARY_OFFSETS = [0, 1, F - 1, F, F + 1, F + P - 1, F + P, F + P + 1, 2 * F, FOUR_SEGMENTS - 1]
_PAST_END = [FOUR_SEGMENTS, FOUR_SEGMENTS + 1, FOUR_SEGMENTS + SEGMENT_SIZE]


@pytest.mark.parametrize("offset", _BOUNDARY_OFFSETS + _PAST_END)
def test_read_at_segment_boundaries(key: DataKey, four: tuple[bytes, bytes], offset: int) -> None:
    plaintext, ciphertext = four
    for length in (0, 1, 2, 100, P - 1, P, P + 1, 3 * P, FOUR_SEGMENTS):
        _check_read(key, plaintext, ciphertext, offset, length)


@settings(max_examples=120, deadline=None)
@given(
    offset=st.integers(min_value=0, max_value=FOUR_SEGMENTS + 100),
    length=st.one_of(st.integers(0, 300), st.integers(0, 2 * SEGMENT_SIZE + 100)),
)
def test_read_equals_plaintext_slice(
    key: DataKey, four: tuple[bytes, bytes], offset: int, length: int
) -> None:
    plaintext, ciphertext = four
    _check_read(key, plaintext, ciphertext, offset, length)


def test_read_one_byte_in_the_last_segment_touches_only_that_segment(
    key: DataKey, four: tuple[bytes, bytes]
) -> None:
    plaintext, ciphertext = four
    source = MemorySource(ciphertext)
    reader = SegmentReader(key, AD, source)
    source.calls.clear()
    assert reader.read(FOUR_SEGMENTS - 1, 1) == plaintext[-1:]
    assert source.calls == [(3 * SEGMENT_SIZE, len(ciphertext) - 3 * SEGMENT_SIZE)]


def test_negative_offset_or_length_is_a_value_error(
    key: DataKey, four: tuple[bytes, bytes]
) -> None:
    reader = _reader(key, AD, four[1])
    with pytest.raises(ValueError, match="negative"):
        reader.read(-1, 5)
    with pytest.raises(ValueError, match="negative"):
        reader.read(0, -5)


@pytest.mark.parametrize("index", [-1, 4, 100])
def test_segment_index_out_of_range(key: DataKey, four: tuple[bytes, bytes], index: int) -> None:
    with pytest.raises(IndexError):
        _reader(key, AD, four[1]).segment(index)


def test_a_source_that_shrinks_while_reading_is_a_format_error(
    key: DataKey, four: tuple[bytes, bytes]
) -> None:
    class Shrinking(MemorySource):
        def pread(self, offset: int, length: int) -> bytes:
            data = super().pread(offset, length)
            return data if offset == 0 else data[:-1]

    reader = SegmentReader(key, AD, Shrinking(four[1]))
    with _raises(FormatError, match="segment 2"):
        reader.segment(2)


# --- parallel decryption ------------------------------------------------------------------------

# More than two chunks of segments, so workers=2 really runs two processes.
MANY_SEGMENTS = 2 * streaming._PARALLEL_CHUNK + 1
MANY = F + (MANY_SEGMENTS - 2) * P + 999


@pytest.fixture(scope="module")
def many(key: DataKey) -> tuple[bytes, bytes]:
    plaintext = _plaintext(MANY, seed=17)
    return plaintext, _encrypt(key, AD, plaintext)


@pytest.fixture
def pools(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Counts the worker processes each parallel run asks for."""
    created: list[int] = []

    class Recording(ProcessPoolExecutor):
        def __init__(self, workers: int, *, mp_context: BaseContext | None = None) -> None:
            created.append(workers)
            super().__init__(workers, mp_context=mp_context)

    monkeypatch.setattr(streaming, "ProcessPoolExecutor", Recording)
    yield created


def test_decrypt_all_parallel_equals_serial(
    key: DataKey, many: tuple[bytes, bytes], pools: list[int]
) -> None:
    plaintext, ciphertext = many
    reader = _reader(key, AD, ciphertext)
    assert reader.segment_count == MANY_SEGMENTS
    serial = _as_bytes(reader.decrypt_all())
    assert pools == []
    parallel = _as_bytes(reader.decrypt_all(workers=2))
    assert pools == [2]
    assert hashlib.sha256(parallel).digest() == hashlib.sha256(serial).digest()
    assert parallel == plaintext


@pytest.mark.parametrize("workers", [1, 2])
def test_decrypt_to_fd_writes_the_plaintext_and_reports_progress(
    key: DataKey, many: tuple[bytes, bytes], pools: list[int], tmp_path: Path, workers: int
) -> None:
    plaintext, ciphertext = many
    target = tmp_path / "plain.bin"
    target.write_bytes(b"\xff" * (MANY + 4096))  # longer than the plaintext: must be cut
    progress: list[int] = []
    fd = os.open(target, os.O_RDWR)
    try:
        _reader(key, AD, ciphertext).decrypt_to_fd(fd, workers=workers, progress=progress.append)
    finally:
        os.close(fd)
    assert target.read_bytes() == plaintext
    assert sum(progress) == MANY
    assert pools == ([] if workers == 1 else [2])


def test_small_files_stay_in_process_even_when_workers_are_asked(
    key: DataKey, four: tuple[bytes, bytes], pools: list[int]
) -> None:
    plaintext, ciphertext = four
    assert _as_bytes(_reader(key, AD, ciphertext).decrypt_all(workers=4)) == plaintext
    assert pools == []


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("bad", [[12], [3, 12], [MANY_SEGMENTS - 1]])
def test_decrypt_all_reports_the_first_tampered_segment(
    key: DataKey, many: tuple[bytes, bytes], workers: int, bad: list[int]
) -> None:
    ciphertext = many[1]
    for index in bad:
        start, length = _ct_span(index, len(ciphertext))
        ciphertext = _flip(ciphertext, start + length // 2)
    with _raises(DecryptionError) as info:
        _reader(key, AD, ciphertext).decrypt_all(workers=workers)
    assert info.value.segment == bad[0]


def test_decrypt_to_fd_parallel_refuses_a_wrong_context(
    key: DataKey, many: tuple[bytes, bytes], tmp_path: Path
) -> None:
    fd = os.open(tmp_path / "out", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        with _raises(DecryptionError) as info:
            _reader(key, b"another file", many[1]).decrypt_to_fd(fd, workers=2)
    finally:
        os.close(fd)
    assert info.value.segment == 0


# --- tamper detection ---------------------------------------------------------------------------


def test_dropping_the_last_segment_is_detected_at_the_new_last_segment(
    key: DataKey, four: tuple[bytes, bytes]
) -> None:
    plaintext, ciphertext = four
    truncated = ciphertext[: 3 * SEGMENT_SIZE]  # a whole number of segments: the size is plausible
    reader = _reader(key, AD, truncated)
    assert reader.segment_count == 3
    assert reader.segment(1) == plaintext[F : F + P]  # untouched segments still authenticate
    _decryption_error_at(reader, 2)  # sealed as "not last", now read as last
    with _raises(DecryptionError) as info:
        reader.decrypt_all()
    assert info.value.segment == 2


@pytest.mark.parametrize(
    ("keep", "last"),
    [
        (-1, 3),  # inside the last segment
        (3 * SEGMENT_SIZE + TAG_SIZE + 1, 3),  # one plaintext byte left in the last segment
        (SEGMENT_SIZE + 1000, 1),  # inside a middle segment
        (SEGMENT_SIZE - 1, 0),  # inside the first segment
    ],
)
def test_cutting_inside_a_segment_is_detected(
    key: DataKey, four: tuple[bytes, bytes], keep: int, last: int
) -> None:
    reader = _reader(key, AD, four[1][:keep])
    assert reader.segment_count == last + 1
    _decryption_error_at(reader, last)


def test_cutting_into_a_tag_is_a_format_error(key: DataKey, four: tuple[bytes, bytes]) -> None:
    ciphertext = four[1]
    for cut in (3 * SEGMENT_SIZE + TAG_SIZE, 3 * SEGMENT_SIZE + 1, 2 * SEGMENT_SIZE + 7):
        with _raises(FormatError):
            _reader(key, AD, ciphertext[:cut])
    with _raises(FormatError):
        _reader(key, AD, ciphertext[: HEADER_SIZE + TAG_SIZE - 1])


def test_appending_bytes_is_detected(key: DataKey, four: tuple[bytes, bytes]) -> None:
    ciphertext = four[1]
    reader = _reader(key, AD, ciphertext + b"\x00" * 5)  # the last segment grows
    _decryption_error_at(reader, 3)
    small = _encrypt(key, AD, b"hello")
    _decryption_error_at(_reader(key, AD, small + b"!"), 0)


def test_appending_a_segment_is_detected(key: DataKey) -> None:
    plaintext = _plaintext(F + P, seed=5)  # two full segments: the ciphertext ends on a boundary
    ciphertext = _encrypt(key, AD, plaintext)
    assert len(ciphertext) == 2 * SEGMENT_SIZE
    extra = _encrypt(key, AD, _plaintext(F + P + 300, seed=6))[2 * SEGMENT_SIZE :]
    for tail in (extra, ciphertext[SEGMENT_SIZE:]):
        reader = _reader(key, AD, ciphertext + tail)
        assert reader.segment(0) == plaintext[:F]
        _decryption_error_at(reader, 1)  # sealed as last, now read as not last
        _decryption_error_at(reader, 2)
    with _raises(FormatError):  # a tag's worth or less: refused by size alone
        _reader(key, AD, ciphertext + b"\x00" * TAG_SIZE)


def test_reordering_segments_is_detected(key: DataKey, four: tuple[bytes, bytes]) -> None:
    ciphertext = four[1]
    one = ciphertext[SEGMENT_SIZE : 2 * SEGMENT_SIZE]
    two = ciphertext[2 * SEGMENT_SIZE : 3 * SEGMENT_SIZE]
    swapped = ciphertext[:SEGMENT_SIZE] + two + one + ciphertext[3 * SEGMENT_SIZE :]
    assert len(swapped) == len(ciphertext)
    reader = _reader(key, AD, swapped)
    _decryption_error_at(reader, 1)
    _decryption_error_at(reader, 2)
    assert reader.segment(3) == four[0][F + 2 * P :]
    with _raises(DecryptionError) as info:
        reader.decrypt_all()
    assert info.value.segment == 1


def _splice_segment_1(into: bytes, source: bytes) -> bytes:
    return into[:SEGMENT_SIZE] + source[SEGMENT_SIZE : 2 * SEGMENT_SIZE] + into[2 * SEGMENT_SIZE :]


@pytest.mark.parametrize(
    ("ad_b", "salt_b", "prefix_b"),
    [
        (b"model=m-1;version=3;path=weights/other.bin", SALT_A, PREFIX_A),  # another file
        (AD, SALT_B, PREFIX_A),  # same file name, another encryption (salt)
        (AD, SALT_A, PREFIX_B),  # same file name, another encryption (nonce prefix)
    ],
)
def test_a_segment_from_another_ciphertext_is_detected(
    key: DataKey, ad_b: bytes, salt_b: bytes, prefix_b: bytes
) -> None:
    size = F + P + 50
    pt_a, pt_b = _plaintext(size, seed=1), _plaintext(size, seed=2)
    ct_a = _encrypt(key, AD, pt_a, salt=SALT_A, prefix=PREFIX_A)
    ct_b = _encrypt(key, ad_b, pt_b, salt=salt_b, prefix=prefix_b)
    reader = _reader(key, AD, _splice_segment_1(ct_a, ct_b))
    assert reader.segment(0) == pt_a[:F]
    _decryption_error_at(reader, 1)


def test_splice_control_same_context_would_pass(key: DataKey) -> None:
    """Control for the test above: with salt, prefix and AD all equal the splice goes unseen.

    So what the test above catches is exactly the one difference in each case (which is why the
    format insists on a fresh random salt and prefix per encryption).
    """
    size = F + P + 50
    pt_a, pt_b = _plaintext(size, seed=1), _plaintext(size, seed=2)
    ct_a = _encrypt(key, AD, pt_a, salt=SALT_A, prefix=PREFIX_A)
    ct_b = _encrypt(key, AD, pt_b, salt=SALT_A, prefix=PREFIX_A)
    reader = _reader(key, AD, _splice_segment_1(ct_a, ct_b))
    assert reader.segment(1) == pt_b[F : F + P]


def test_wrong_associated_data_is_detected(key: DataKey, four: tuple[bytes, bytes]) -> None:
    ciphertext = four[1]
    for ad in (b"", AD + b"x", AD[:-1], b"model=m-1;version=4;path=weights/model.onnx"):
        reader = _reader(key, ad, ciphertext)
        for index in range(4):
            _decryption_error_at(reader, index)


def test_wrong_key_is_detected_and_the_message_holds_no_key(
    key: DataKey, four: tuple[bytes, bytes]
) -> None:
    other = DataKey.generate()
    error = _decryption_error_at(_reader(other, AD, four[1]), 0)
    text = str(error) + repr(error) + error.diagnostics()
    for secret in (key._secret_bytes(), other._secret_bytes()):
        assert secret.hex() not in text
        assert secret.hex().upper() not in text
    assert "segment 0" in text


@pytest.mark.parametrize("position", [1, 16, 32, 33, 39])  # salt: 1..32, nonce prefix: 33..39
def test_flipped_salt_or_prefix_byte_fails_authentication(
    key: DataKey, four: tuple[bytes, bytes], position: int
) -> None:
    reader = _reader(key, AD, _flip(four[1], position))
    for index in range(4):
        _decryption_error_at(reader, index)


@pytest.mark.parametrize("length_byte", [0x00, 0x27, 0x29, 0xFF])
def test_a_wrong_header_length_byte_is_a_format_error(
    key: DataKey, four: tuple[bytes, bytes], length_byte: int
) -> None:
    damaged = bytes([length_byte]) + four[1][1:]
    with _raises(FormatError, match="length byte"):
        _reader(key, AD, damaged)


@pytest.mark.parametrize("index", [0, 1, 2, 3])
@pytest.mark.parametrize("where", ["first", "middle", "tag"])
def test_a_flipped_byte_in_a_segment_is_detected_there_only(
    key: DataKey, four: tuple[bytes, bytes], index: int, where: str
) -> None:
    plaintext, ciphertext = four
    start, length = _ct_span(index, len(ciphertext))
    position = {"first": start, "middle": start + length // 2, "tag": start + length - 1}[where]
    reader = _reader(key, AD, _flip(ciphertext, position))
    _decryption_error_at(reader, index)
    for other in set(range(4)) - {index}:
        begin = _pt_start(other)
        assert reader.segment(other) == plaintext[begin : begin + (F if other == 0 else P)]
