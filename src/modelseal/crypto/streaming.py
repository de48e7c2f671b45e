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

    def decrypt_into(self, index: int, last: bool, ciphertext: memoryview, out: memoryview) -> None:
        try:
            self._aead.decrypt_into(self._nonce(index, last), ciphertext, None, out)
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
    """Ciphertext readable at any offset (a file, an archive member, a buffer).

    A source may also offer ``pread_into(buffer, offset) -> int``; bulk decryption then reads
    into one reused buffer instead of allocating a new one per segment.
    """

    @property
    def size(self) -> int: ...

    def pread(self, offset: int, length: int) -> bytes: ...


class _Sink:
    """Where whole-file decryption puts each plaintext segment: anonymous memory or a file."""

    def __init__(self, *, memory: memoryview | None = None, fd: int | None = None) -> None:
        self._memory = memory
        self._fd = fd
        self._scratch: memoryview | None = None

    def buffer(self, offset: int, length: int) -> memoryview:
        if self._memory is not None:
            return self._memory[offset : offset + length]  # decrypt straight into place
        if self._scratch is None:
            self._scratch = memoryview(bytearray(SEGMENT_SIZE))
        return self._scratch[:length]

    def commit(self, offset: int, data: memoryview) -> None:
        if self._fd is not None:
            written = os.pwrite(self._fd, data, offset)
            while written < len(data):  # short writes are rare on regular files, not impossible
                written += os.pwrite(self._fd, data[written:], offset + written)


_job_lock = threading.Lock()
_job: tuple[SegmentReader, _Sink] | None = None


def _decrypt_chunk(start: int, stop: int) -> int | None:
    """Runs in a forked worker: decrypt segments [start, stop); return the failing index."""
    assert _job is not None  # noqa: S101 - set by the parent before forking
    reader, sink = _job
    try:
        reader._decrypt_range(start, stop, sink)
    except DecryptionError as exc:
        return exc.segment
    return None


class SegmentReader:
    """Random-access decryption of one ciphertext.

    ``read(offset, length)`` decrypts only the segments the range touches. ``decrypt_all`` and
    ``decrypt_to_fd`` decrypt a whole file, across several processes when asked, reusing buffers
    (and decrypting straight into the destination memory where there is one).
    """

    def __init__(self, key: DataKey, associated_data: bytes, source: PositionalSource) -> None:
        self._source = source
        self._ct_size = source.size
        self.segment_count = _segment_count(self._ct_size)
        self.plaintext_size = self._ct_size - HEADER_SIZE - self.segment_count * TAG_SIZE
        self._cipher = _SegmentCipher(key, source.pread(0, HEADER_SIZE), associated_data)

    def _ciphertext(self, index: int) -> tuple[int, int]:
        if not 0 <= index < self.segment_count:
            raise IndexError(f"segment {index} out of range 0..{self.segment_count - 1}")
        return _segment_span(index, self.segment_count, self._ct_size)

    def segment(self, index: int) -> bytes:
        """The plaintext of segment ``index`` (authenticated)."""
        offset, length = self._ciphertext(index)
        data = self._source.pread(offset, length)
        if len(data) != length:
            raise FormatError(f"ciphertext shrank while reading segment {index}")
        return self._cipher.decrypt(index, index == self.segment_count - 1, data)

    def _decrypt_range(self, start: int, stop: int, sink: _Sink) -> None:
        read_into = getattr(self._source, "pread_into", None)
        scratch = memoryview(bytearray(SEGMENT_SIZE))
        for index in range(start, stop):
            offset, length = self._ciphertext(index)
            if read_into is not None:
                got = read_into(scratch[:length], offset)
            else:
                data = self._source.pread(offset, length)
                got = len(data)
                scratch[:got] = data
            if got != length:
                raise FormatError(f"ciphertext shrank while reading segment {index}")
            target = _plaintext_offset(index)
            out = sink.buffer(target, length - TAG_SIZE)
            self._cipher.decrypt_into(index, index == self.segment_count - 1, scratch[:length], out)
            sink.commit(target, out)

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
        self._run(_Sink(memory=memoryview(out)), workers)  # on failure, `out` is simply dropped
        return out

    def decrypt_to_fd(
        self, fd: int, *, workers: int = 1, progress: Callable[[int], object] | None = None
    ) -> None:
        """Write the whole plaintext into ``fd`` at its natural offsets (positional writes)."""
        os.ftruncate(fd, self.plaintext_size)
        self._run(_Sink(fd=fd), workers, progress)

    def _chunks(self) -> list[tuple[int, int]]:
        return [
            (start, min(start + _PARALLEL_CHUNK, self.segment_count))
            for start in range(0, self.segment_count, _PARALLEL_CHUNK)
        ]

    def _chunk_bytes(self, start: int, stop: int) -> int:
        return min(_plaintext_offset(stop), self.plaintext_size) - _plaintext_offset(start)

    def _run(
        self, sink: _Sink, workers: int, progress: Callable[[int], object] | None = None
    ) -> None:
        chunks = self._chunks()
        if min(workers, len(chunks)) <= 1:
            for start, stop in chunks:
                self._decrypt_range(start, stop, sink)
                if progress is not None:
                    progress(self._chunk_bytes(start, stop))
            return
        self._run_parallel(sink, chunks, min(workers, len(chunks)), progress)

    def _run_parallel(
        self,
        sink: _Sink,
        chunks: list[tuple[int, int]],
        workers: int,
        progress: Callable[[int], object] | None,
    ) -> None:
        global _job
        with _job_lock:
            _job = (self, sink)
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
                            progress(self._chunk_bytes(start, stop))
            finally:
                _job = None
