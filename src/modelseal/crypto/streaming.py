"""Streaming AEAD byte-compatible with Tink's ``AES256_GCM_HKDF_1MB``.

Ciphertext = header ‖ segment 0 ‖ segment 1 ‖ …, where the header is one length byte (40), a
32-byte random salt and a 7-byte random nonce prefix. The segment key is
HKDF-SHA256(ikm = data key, salt = salt, info = associated data); each segment is AES-256-GCM with
nonce = prefix ‖ u32be(index) ‖ (1 if last else 0) and empty GCM associated data. Every ciphertext
segment is 1 MiB (the first one shares its MiB with the header) except the last.

The layout is fixed by the plaintext size, so any byte range can be decrypted by touching only the
segments it covers, and a whole file can be decrypted by several processes at once.
"""

from __future__ import annotations

import mmap
import os
import secrets
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from typing import BinaryIO, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from modelseal.crypto.datakey import DataKey
from modelseal.crypto.errors import DecryptionError, FormatError

__all__ = [
    "FIRST_SEGMENT_PLAINTEXT",
    "HEADER_SIZE",
    "SEGMENT_PLAINTEXT",
    "SEGMENT_SIZE",
    "SUITE",
    "TAG_SIZE",
    "PositionalSource",
    "SegmentReader",
    "ciphertext_size",
    "encrypt_stream",
    "plaintext_size",
]

SUITE = "AES256_GCM_HKDF_1MB"
SEGMENT_SIZE = 1 << 20
SALT_SIZE = 32
NONCE_PREFIX_SIZE = 7
HEADER_SIZE = 1 + SALT_SIZE + NONCE_PREFIX_SIZE
TAG_SIZE = 16
FIRST_SEGMENT_PLAINTEXT = SEGMENT_SIZE - HEADER_SIZE - TAG_SIZE
SEGMENT_PLAINTEXT = SEGMENT_SIZE - TAG_SIZE
_PARALLEL_CHUNK = 8  # segments per task handed to a worker process


# --- layout -------------------------------------------------------------------------------------


def ciphertext_size(plaintext_size: int) -> int:
    """Size of the ciphertext of ``plaintext_size`` bytes."""
    if plaintext_size < 0:
        raise ValueError("plaintext size is negative")
    if plaintext_size <= FIRST_SEGMENT_PLAINTEXT:
        return HEADER_SIZE + plaintext_size + TAG_SIZE
    rest = plaintext_size - FIRST_SEGMENT_PLAINTEXT
    more = -(-rest // SEGMENT_PLAINTEXT)
    return SEGMENT_SIZE + rest + more * TAG_SIZE


def _segment_count(ct_size: int) -> int:
    if ct_size < HEADER_SIZE + TAG_SIZE:
        raise FormatError(
            f"ciphertext of {ct_size} bytes is too short to hold a header and a segment"
        )
    if ct_size <= SEGMENT_SIZE:
        return 1
    count = -(-ct_size // SEGMENT_SIZE)
    last = ct_size - (count - 1) * SEGMENT_SIZE
    if last <= TAG_SIZE:
        raise FormatError(
            f"ciphertext of {ct_size} bytes ends inside a segment tag: it is truncated or extended"
        )
    return count


def plaintext_size(ct_size: int) -> int:
    """Size of the plaintext inside a ciphertext of ``ct_size`` bytes (raises if impossible)."""
    return ct_size - HEADER_SIZE - _segment_count(ct_size) * TAG_SIZE


def _segment_span(index: int, count: int, ct_size: int) -> tuple[int, int]:
    """(offset, length) of ciphertext segment ``index``."""
    start = HEADER_SIZE if index == 0 else index * SEGMENT_SIZE
    end = ct_size if index == count - 1 else (index + 1) * SEGMENT_SIZE
    return start, end - start


def _plaintext_offset(index: int) -> int:
    return 0 if index == 0 else FIRST_SEGMENT_PLAINTEXT + (index - 1) * SEGMENT_PLAINTEXT


def _segment_of(offset: int) -> int:
    if offset < FIRST_SEGMENT_PLAINTEXT:
        return 0
    return 1 + (offset - FIRST_SEGMENT_PLAINTEXT) // SEGMENT_PLAINTEXT


# --- per-segment cipher -------------------------------------------------------------------------


class _SegmentCipher:
    __slots__ = ("_aead", "_prefix", "header")

    def __init__(self, key: DataKey, header: bytes, associated_data: bytes) -> None:
        if len(header) != HEADER_SIZE or header[0] != HEADER_SIZE:
            raise FormatError(
                "not a streaming AEAD ciphertext: the header length byte is not 40 "
                "(wrong file, or the header was damaged)"
            )
        salt = header[1 : 1 + SALT_SIZE]
        self._prefix = header[1 + SALT_SIZE :]
        self.header = header
        derived = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=salt, info=associated_data
        ).derive(key._secret_bytes())
        self._aead = AESGCM(derived)

    @classmethod
    def fresh(
        cls,
        key: DataKey,
        associated_data: bytes,
        *,
        salt: bytes | None = None,
        nonce_prefix: bytes | None = None,
    ) -> _SegmentCipher:
        salt = secrets.token_bytes(SALT_SIZE) if salt is None else salt
        prefix = secrets.token_bytes(NONCE_PREFIX_SIZE) if nonce_prefix is None else nonce_prefix
        if len(salt) != SALT_SIZE or len(prefix) != NONCE_PREFIX_SIZE:
            raise ValueError("salt must be 32 bytes and nonce prefix 7 bytes")
        return cls(key, bytes([HEADER_SIZE]) + salt + prefix, associated_data)

    def _nonce(self, index: int, last: bool) -> bytes:
        if index >= 1 << 32:
            raise FormatError("too many segments for one ciphertext")
        return self._prefix + index.to_bytes(4, "big") + (b"\x01" if last else b"\x00")

    def encrypt(self, index: int, last: bool, plaintext: bytes) -> bytes:
        return self._aead.encrypt(self._nonce(index, last), plaintext, None)

    def decrypt(self, index: int, last: bool, ciphertext: bytes) -> bytes:
        try:
            return self._aead.decrypt(self._nonce(index, last), ciphertext, None)
        except InvalidTag:
            raise DecryptionError(segment=index) from None


# --- writing ------------------------------------------------------------------------------------


def _read_up_to(src: BinaryIO, size: int) -> bytes:
    data = src.read(size)
    if len(data) == size or not data:
        return data
    parts = [data]
    got = len(data)
    while got < size:
        more = src.read(size - got)
        if not more:
            break
        parts.append(more)
        got += len(more)
    return b"".join(parts)


def encrypt_stream(
    key: DataKey,
    associated_data: bytes,
    src: BinaryIO,
    sink: Callable[[bytes], object],
    *,
    on_plaintext: Callable[[bytes], object] | None = None,
    _salt: bytes | None = None,
    _nonce_prefix: bytes | None = None,
) -> int:
    """Encrypt everything ``src`` yields into ``sink``, one segment in memory at a time.

    ``sink`` receives the header, then each ciphertext segment; ``on_plaintext`` sees each
    plaintext segment (for digests and progress). Returns the number of plaintext bytes.
    """
    cipher = _SegmentCipher.fresh(key, associated_data, salt=_salt, nonce_prefix=_nonce_prefix)
    sink(cipher.header)
    index, total = 0, 0
    current = _read_up_to(src, FIRST_SEGMENT_PLAINTEXT)
    while True:
        following = (
            _read_up_to(src, SEGMENT_PLAINTEXT)
            if len(current) == (FIRST_SEGMENT_PLAINTEXT if index == 0 else SEGMENT_PLAINTEXT)
            else b""
        )
        last = not following
        if on_plaintext is not None:
            on_plaintext(current)
        sink(cipher.encrypt(index, last, current))
        total += len(current)
        if last:
            return total
        current, index = following, index + 1


# --- reading ------------------------------------------------------------------------------------


class PositionalSource(Protocol):
    """Ciphertext readable at any offset (a file, an archive member, a buffer)."""

    @property
    def size(self) -> int: ...

    def pread(self, offset: int, length: int) -> bytes: ...


@dataclass(frozen=True)
class _ParallelJob:
    reader: SegmentReader
    write: Callable[[int, bytes], object]


_job_lock = threading.Lock()
_job: _ParallelJob | None = None


def _decrypt_chunk(start: int, stop: int) -> int | None:
    """Runs in a forked worker: decrypt segments [start, stop) into the shared sink."""
    job = _job
    assert job is not None  # noqa: S101 - set by the parent before forking
    for index in range(start, stop):
        try:
            job.write(_plaintext_offset(index), job.reader.segment(index))
        except DecryptionError:
            return index
    return None


class SegmentReader:
    """Random-access decryption of one ciphertext.

    ``read(offset, length)`` decrypts only the segments the range touches. ``decrypt_all`` and
    ``decrypt_to_fd`` decrypt a whole file, across several processes when asked.
    """

    def __init__(self, key: DataKey, associated_data: bytes, source: PositionalSource) -> None:
        self._source = source
        self._ct_size = source.size
        self.segment_count = _segment_count(self._ct_size)
        self.plaintext_size = self._ct_size - HEADER_SIZE - self.segment_count * TAG_SIZE
        self._cipher = _SegmentCipher(key, source.pread(0, HEADER_SIZE), associated_data)

    def segment(self, index: int) -> bytes:
        """The plaintext of segment ``index`` (authenticated)."""
        if not 0 <= index < self.segment_count:
            raise IndexError(f"segment {index} out of range 0..{self.segment_count - 1}")
        offset, length = _segment_span(index, self.segment_count, self._ct_size)
        data = self._source.pread(offset, length)
        if len(data) != length:
            raise FormatError(f"ciphertext shrank while reading segment {index}")
        return self._cipher.decrypt(index, index == self.segment_count - 1, data)

    def segments_for(self, offset: int, length: int) -> range:
        """Indices of the segments that hold plaintext bytes [offset, offset + length)."""
        end = min(offset + length, self.plaintext_size)
        if length <= 0 or offset >= end:
            return range(0)
        return range(_segment_of(offset), _segment_of(end - 1) + 1)

    def read(self, offset: int, length: int) -> bytes:
        """Plaintext bytes [offset, offset + length), shorter at end of file, empty past it."""
        if offset < 0 or length < 0:
            raise ValueError("offset and length must not be negative")
        wanted = self.segments_for(offset, length)
        if not wanted:
            return b""
        data = b"".join(self.segment(i) for i in wanted)
        skip = offset - _plaintext_offset(wanted[0])
        return data[skip : skip + min(length, self.plaintext_size - offset)]

    def iter_segments(self) -> Iterator[bytes]:
        """Every plaintext segment in order."""
        for index in range(self.segment_count):
            yield self.segment(index)

    def decrypt_all(self, *, workers: int = 1) -> mmap.mmap | bytes:
        """The whole plaintext in anonymous memory (never a file)."""
        if self.plaintext_size == 0:
            self.segment(0)  # still authenticate the empty ciphertext
            return b""
        out = mmap.mmap(-1, self.plaintext_size)

        def write(offset: int, data: bytes) -> None:
            out[offset : offset + len(data)] = data

        self._run(write, workers)
        return out

    def decrypt_to_fd(
        self, fd: int, *, workers: int = 1, progress: Callable[[int], object] | None = None
    ) -> None:
        """Write the whole plaintext into ``fd`` at its natural offsets (positional writes)."""
        os.ftruncate(fd, self.plaintext_size)

        def write(offset: int, data: bytes) -> None:
            os.pwrite(fd, data, offset)

        self._run(write, workers, progress)

    def _run(
        self,
        write: Callable[[int, bytes], object],
        workers: int,
        progress: Callable[[int], object] | None = None,
    ) -> None:
        workers = max(1, min(workers, -(-self.segment_count // _PARALLEL_CHUNK)))
        if workers == 1:
            for index in range(self.segment_count):
                data = self.segment(index)
                write(_plaintext_offset(index), data)
                if progress is not None:
                    progress(len(data))
            return
        self._run_parallel(write, workers, progress)

    def _run_parallel(
        self,
        write: Callable[[int, bytes], object],
        workers: int,
        progress: Callable[[int], object] | None,
    ) -> None:
        global _job
        chunks = [
            (start, min(start + _PARALLEL_CHUNK, self.segment_count))
            for start in range(0, self.segment_count, _PARALLEL_CHUNK)
        ]
        with _job_lock:
            _job = _ParallelJob(self, write)
            try:
                # fork: workers inherit the derived key and the sink; nothing secret is pickled.
                with ProcessPoolExecutor(workers, mp_context=get_context("fork")) as pool:
                    futures = [pool.submit(_decrypt_chunk, start, stop) for start, stop in chunks]
                    for (start, stop), future in zip(chunks, futures, strict=True):
                        failed = future.result()
                        if failed is not None:
                            for pending in futures:
                                pending.cancel()
                            raise DecryptionError(segment=failed)
                        if progress is not None:
                            progress(
                                min(_plaintext_offset(stop), self.plaintext_size)
                                - _plaintext_offset(start)
                            )
            finally:
                _job = None
