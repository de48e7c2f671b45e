"""SHA-256 computed on a background thread, so hashing overlaps encryption.

``hashlib`` releases the GIL while it hashes large buffers; the bounded queue keeps memory flat.
"""

from __future__ import annotations

import hashlib
import queue
import threading

from modelseal._closing import Closing

__all__ = ["BackgroundSha256"]


class BackgroundSha256(Closing):
    def __init__(self, depth: int = 4) -> None:
        self._hash = hashlib.sha256()
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=depth)
        self._thread = threading.Thread(target=self._run, name="sha256", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (data := self._queue.get()) is not None:
            self._hash.update(data)

    def update(self, data: bytes) -> None:
        if data:
            self._queue.put(data)

    def hexdigest(self) -> str:
        self.close()
        return self._hash.hexdigest()

    def close(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
