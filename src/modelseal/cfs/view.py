"""The protocol-free core of a mount: paths, sizes and plaintext byte ranges of a sealed package.

The FUSE adapter only translates calls into this class and its exceptions into errno values.
A read decrypts just the segments it touches, through a small :class:`SegmentCache`; a reader
moving forward through a file can have the next segments decrypted ahead of it.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor

from modelseal.agent.source import LeaseStatus
from modelseal.cfs._tree import Node, Tree
from modelseal.cfs.cache import DEFAULT_CACHE_SEGMENTS, SegmentCache
from modelseal.cfs.lease import LeaseGuard
from modelseal.crypto import DataKey
from modelseal.crypto.streaming import FIRST_SEGMENT_PLAINTEXT, SEGMENT_PLAINTEXT
from modelseal.package import FileReader, SealedPackage

__all__ = ["DEFAULT_READAHEAD", "PlaintextView"]

DEFAULT_READAHEAD = 0
"""Segments decrypted ahead of a sequential reader. AES-GCM in ``cryptography`` holds the GIL,
so decrypting ahead in another thread gains nothing measurable (see docs/cfs.md)."""

log = logging.getLogger(__name__)


def _segment_start(index: int) -> int:
    return 0 if index == 0 else FIRST_SEGMENT_PLAINTEXT + (index - 1) * SEGMENT_PLAINTEXT


class PlaintextView:
    """Read-only plaintext of an open package, decrypted with the key ``guard`` hands out.

    Raises :class:`~modelseal.agent.source.LeaseEndedError` once the lease has ended and
    :class:`~modelseal.package.IntegrityError` when a segment fails authentication.
    """

    def __init__(
        self,
        package: SealedPackage,
        guard: LeaseGuard,
        *,
        cache_segments: int = DEFAULT_CACHE_SEGMENTS,
        readahead: int = DEFAULT_READAHEAD,
    ) -> None:
        if readahead < 0:
            raise ValueError("readahead must not be negative")
        self.package = package
        self.guard = guard
        self.tree = Tree(package.manifest)
        self.cache = SegmentCache(cache_segments)
        self._readahead = readahead
        self._lock = threading.Lock()
        self._readers: dict[int, FileReader] = {}
        self._reader_key: DataKey | None = None
        self._last_segment: dict[int, int] = {}
        self._pool = (
            ThreadPoolExecutor(readahead, thread_name_prefix="cfs-readahead") if readahead else None
        )
        guard.on_end(self._lease_ended)

    @property
    def model(self) -> str:
        info = self.package.manifest.model
        return f"{info.name} version {info.version}"

    def node(self, path: str) -> Node | None:
        """The file or directory at mount path ``path`` (``/``, ``/a/b.onnx``), or None."""
        return self.tree.get(path)

    def _reader(self, index: int) -> FileReader:
        key = self.guard.key()  # raises once the lease has ended
        with self._lock:
            if key is not self._reader_key:  # first use, or the agent handed out a new key object
                self._readers.clear()
                self._reader_key = key
            reader = self._readers.get(index)
            if reader is None:
                entry = self.tree.files[index]
                reader = self._readers[index] = self.package.reader(entry.path, key)
            return reader

    def _segment(self, index: int, segment: int) -> bytes:
        return self.cache.get((index, segment), lambda: self._reader(index).segment(segment))

    def read(self, index: int, offset: int, size: int) -> bytes:
        """Plaintext bytes [offset, offset + size) of file ``index``; short at the end, empty past it."""
        reader = self._reader(index)
        wanted = _segments_for(reader.size, offset, size)
        if not wanted:
            return b""
        self._read_ahead(index, wanted[-1], reader.segment_count)
        end = min(offset + size, reader.size)
        parts: list[memoryview] = []
        for segment in wanted:
            start = _segment_start(segment)
            data = memoryview(self._segment(index, segment))
            parts.append(data[max(0, offset - start) : end - start])
        return bytes(parts[0]) if len(parts) == 1 else b"".join(parts)

    def _read_ahead(self, index: int, last: int, count: int) -> None:
        if self._pool is None:
            return
        with self._lock:
            previous = self._last_segment.get(index)
            self._last_segment[index] = last
        if previous is None or not previous <= last <= previous + 1:
            return  # not a forward sequential reader
        for segment in range(last + 1, min(last + 1 + self._readahead, count)):
            if (index, segment) not in self.cache:
                self._pool.submit(self._prefetch, index, segment)

    def _prefetch(self, index: int, segment: int) -> None:
        try:
            self._segment(index, segment)
        except Exception:  # the reader that needs the segment sees the error itself
            log.debug("read-ahead of file %d segment %d failed", index, segment, exc_info=True)

    def _lease_ended(self, status: LeaseStatus) -> None:
        self.drop_key()

    def drop_key(self) -> None:
        """Forget every reader (each holds a key derived from the data key) and every segment."""
        with self._lock:
            self._readers.clear()
            self._reader_key = None
        self.cache.clear()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        self.drop_key()


def _segments_for(size: int, offset: int, length: int) -> range:
    end = min(offset + length, size)
    if length <= 0 or offset < 0 or offset >= end:
        return range(0)
    return range(_segment_of(offset), _segment_of(end - 1) + 1)


def _segment_of(offset: int) -> int:
    if offset < FIRST_SEGMENT_PLAINTEXT:
        return 0
    return 1 + (offset - FIRST_SEGMENT_PLAINTEXT) // SEGMENT_PLAINTEXT
