"""Tink's streaming AEAD built from a modelseal data key, and an in-memory ciphertext source.

Tink (Google's C++ implementation behind the ``tink`` Python package) is the independent
implementation the streaming format is checked against. The keyset is RAW (no key-id prefix), with
the parameters of ``AES256_GCM_HKDF_1MB``: 1 MiB ciphertext segments, 32-byte derived key,
HKDF-SHA256; its key value is the data key's 32 bytes.
"""

from __future__ import annotations

import io
from typing import Any

import tink
from tink import secret_key_access, streaming_aead
from tink.proto import aes_gcm_hkdf_streaming_pb2, common_pb2, tink_pb2

from modelseal.crypto import DataKey

__all__ = ["MemorySource", "tink_decrypt", "tink_encrypt", "tink_streaming_aead"]

_TYPE_URL = "type.googleapis.com/google.crypto.tink.AesGcmHkdfStreamingKey"
_SEGMENT_SIZE = 1 << 20

streaming_aead.register()


def tink_streaming_aead(key: DataKey) -> Any:
    """A ``tink.streaming_aead.StreamingAead`` whose only key is ``key``."""
    params = aes_gcm_hkdf_streaming_pb2.AesGcmHkdfStreamingParams(
        ciphertext_segment_size=_SEGMENT_SIZE,
        derived_key_size=32,
        hkdf_hash_type=common_pb2.SHA256,
    )
    proto_key = aes_gcm_hkdf_streaming_pb2.AesGcmHkdfStreamingKey(
        version=0, key_value=key._secret_bytes(), params=params
    )
    keyset = tink_pb2.Keyset(
        primary_key_id=1,
        key=[
            tink_pb2.Keyset.Key(
                key_data=tink_pb2.KeyData(
                    type_url=_TYPE_URL,
                    value=proto_key.SerializeToString(),
                    key_material_type=tink_pb2.KeyData.SYMMETRIC,
                ),
                status=tink_pb2.ENABLED,
                key_id=1,
                output_prefix_type=tink_pb2.RAW,
            )
        ],
    )
    handle = tink.proto_keyset_format.parse(keyset.SerializeToString(), secret_key_access.TOKEN)
    return handle.primitive(streaming_aead.StreamingAead)


class _Captured(io.BytesIO):
    """Tink closes the destination when the encrypting stream closes; keep what it wrote."""

    value = b""

    def close(self) -> None:
        if not self.closed:
            self.value = self.getvalue()
        super().close()


def tink_encrypt(key: DataKey, associated_data: bytes, plaintext: bytes) -> bytes:
    """Tink's ciphertext of ``plaintext``."""
    out = _Captured()
    with tink_streaming_aead(key).new_encrypting_stream(out, associated_data) as stream:
        stream.write(plaintext)
    return out.value


def tink_decrypt(key: DataKey, associated_data: bytes, ciphertext: bytes) -> bytes:
    """Tink's plaintext of ``ciphertext``; raises ``tink.TinkError`` if it does not authenticate."""
    primitive = tink_streaming_aead(key)
    with primitive.new_decrypting_stream(io.BytesIO(ciphertext), associated_data) as stream:
        data: bytes = stream.read()
    return data


class MemorySource:
    """A :class:`modelseal.crypto.PositionalSource` over bytes that records every ``pread``."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self.calls: list[tuple[int, int]] = []

    @property
    def size(self) -> int:
        return len(self._data)

    def pread(self, offset: int, length: int) -> bytes:
        self.calls.append((offset, length))
        return self._data[offset : offset + length]
