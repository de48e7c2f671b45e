"""Byte compatibility with Tink's AES256_GCM_HKDF_1MB streaming AEAD, in both directions.

Tink (the ``tink`` package, Google's C++ implementation) is the independent implementation: it
must decrypt what modelseal writes, modelseal must decrypt (with random access) what Tink writes,
and both must agree on what to refuse.
"""

from __future__ import annotations

import io
import random

import pytest
import tink

from modelseal.crypto import DataKey, SegmentReader, ciphertext_size, encrypt_stream
from modelseal.crypto.streaming import (
    FIRST_SEGMENT_PLAINTEXT,
    HEADER_SIZE,
    SEGMENT_PLAINTEXT,
    SEGMENT_SIZE,
)
from tests._tink import MemorySource, tink_decrypt, tink_encrypt

F = FIRST_SEGMENT_PLAINTEXT
P = SEGMENT_PLAINTEXT
AD = b"model=m-1;version=3;path=weights/model.onnx"
SIZES = [0, 1, F - 1, F, F + 1, F + P - 1, F + P, F + P + 1, 3 * 1024 * 1024 + 7]


def _plaintext(size: int) -> bytes:
    return random.Random(size).randbytes(size)  # noqa: S311 - test data, not secrets


def _encrypt(key: DataKey, ad: bytes, plaintext: bytes) -> bytes:
    out = io.BytesIO()
    encrypt_stream(key, ad, io.BytesIO(plaintext), out.write)
    return out.getvalue()


@pytest.fixture(scope="module")
def key() -> DataKey:
    return DataKey.generate()


@pytest.mark.parametrize("ad", [AD, b""], ids=["ad", "empty-ad"])
@pytest.mark.parametrize("size", SIZES)
def test_tink_decrypts_what_we_write(key: DataKey, size: int, ad: bytes) -> None:
    plaintext = _plaintext(size)
    ciphertext = _encrypt(key, ad, plaintext)
    assert tink_decrypt(key, ad, ciphertext) == plaintext


@pytest.mark.parametrize("ad", [AD, b""], ids=["ad", "empty-ad"])
@pytest.mark.parametrize("size", SIZES)
def test_we_decrypt_what_tink_writes(key: DataKey, size: int, ad: bytes) -> None:
    plaintext = _plaintext(size)
    ciphertext = tink_encrypt(key, ad, plaintext)
    assert len(ciphertext) == ciphertext_size(size)  # same segmentation, no key-id prefix
    assert ciphertext[0] == HEADER_SIZE
    reader = SegmentReader(key, ad, MemorySource(ciphertext))
    assert reader.plaintext_size == size
    assert reader.read(0, size + 10) == plaintext
    decrypted = reader.decrypt_all()
    assert decrypted[:] == plaintext

    rng = random.Random(size + 1)  # noqa: S311 - test data, not secrets
    boundaries = [0, F - 1, F, F + P - 1, F + P, size - 1, size]
    offsets = [o for o in boundaries if 0 <= o <= size] + [
        rng.randrange(size + 1) for _ in range(15)
    ]
    for offset in offsets:
        length = rng.choice([1, 17, 4096, P, P + 100])
        assert reader.read(offset, length) == plaintext[offset : offset + length], (offset, length)


def test_tink_refuses_our_ciphertext_under_another_associated_data(key: DataKey) -> None:
    """The associated data must enter HKDF the same way in both implementations."""
    plaintext = _plaintext(F + 10)
    ciphertext = _encrypt(key, AD, plaintext)
    assert tink_decrypt(key, AD, ciphertext) == plaintext  # control: the right AD works
    for wrong in (b"", AD + b"!", AD.replace(b"version=3", b"version=4")):
        with pytest.raises(tink.TinkError):
            tink_decrypt(key, wrong, ciphertext)


def test_tink_refuses_our_ciphertext_under_another_key(key: DataKey) -> None:
    ciphertext = _encrypt(key, AD, b"weights")
    with pytest.raises(tink.TinkError):
        tink_decrypt(DataKey.generate(), AD, ciphertext)


def test_tink_also_refuses_a_dropped_last_segment(key: DataKey) -> None:
    """Both implementations read the last-segment flag the same way."""
    plaintext = _plaintext(F + P + 100)
    ciphertext = _encrypt(key, AD, plaintext)
    assert tink_decrypt(key, AD, ciphertext) == plaintext  # control: the whole ciphertext works
    truncated = ciphertext[: 2 * SEGMENT_SIZE]
    with pytest.raises(tink.TinkError):
        tink_decrypt(key, AD, truncated)
