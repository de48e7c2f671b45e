"""Best-effort wiping of plaintext model buffers once a backend has its own copy.

Python gives no guarantee that a buffer's bytes are not copied elsewhere (the backends copy them
into their own structures, which is the point), so this only shortens how long the plaintext we
hold ourselves stays readable in this process. It never writes to disk.
"""

from __future__ import annotations

import ctypes
import logging
import sys

__all__ = ["wipe"]

_log = logging.getLogger(__name__)
_BYTES_HEADER = sys.getsizeof(b"") - 1  # offset of a bytes object's data (CPython)


def wipe(buffer: bytes | bytearray | memoryview) -> None:
    """Overwrite ``buffer`` with zeros in place; for ``bytes`` only on CPython (see module doc)."""
    try:
        if isinstance(buffer, memoryview):
            if not buffer.readonly and buffer.nbytes:
                flat = buffer.cast("B") if buffer.format != "B" or buffer.ndim != 1 else buffer
                flat[:] = bytes(len(flat))
            return
        if isinstance(buffer, bytearray):
            buffer[:] = bytes(len(buffer))
            return
        if sys.implementation.name == "cpython" and len(buffer) > 1:
            # The only reference to this bytes object is ours (a backend took a copy of it).
            ctypes.memset(id(buffer) + _BYTES_HEADER, 0, len(buffer))
    except (TypeError, ValueError):  # pragma: no cover - a buffer we cannot write
        _log.debug("could not wipe a %s buffer", type(buffer).__name__)
