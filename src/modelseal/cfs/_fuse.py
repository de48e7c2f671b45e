"""The FUSE adapter: mfusepy operations that translate to :class:`PlaintextView` and back.

Only this module imports mfusepy (and so loads libfuse3); it is imported when a mount starts.
Every operation is read-only; errors become errno values: a path that does not exist is ENOENT,
a write is EROFS, and a read after the lease ended or of a segment that fails authentication is
EIO (the reason goes to the log, never to the reader).
"""

from __future__ import annotations

import errno
import logging
import os
import stat
import threading
from collections.abc import Callable
from typing import Any

import mfusepy  # type: ignore[import-untyped]

from modelseal.agent.source import LeaseEndedError
from modelseal.cfs._tree import Node
from modelseal.cfs.view import PlaintextView
from modelseal.errors import Error

__all__ = ["serve"]

log = logging.getLogger("modelseal.cfs")

_NS = 1_000_000_000
_BLOCK = 4096
MAX_READ = 1 << 20


class _Operations(mfusepy.Operations):  # type: ignore[misc]
    use_ns = True
    flag_nopath = True  # reads use the file handle; libfuse need not rebuild paths
    flag_nullpath_ok = True

    def __init__(
        self, view: PlaintextView, on_ready: Callable[[], None], *, readable_by_all: bool
    ) -> None:
        self._view = view
        self._on_ready = on_ready
        self._uid, self._gid = os.getuid(), os.getgid()
        self._file_mode = 0o444 if readable_by_all else 0o400
        self._dir_mode = 0o555 if readable_by_all else 0o500
        self._mtime = int(view.tree.mtime * _NS)
        self._lock = threading.Lock()
        self._dirs: list[Node] = []  # readdir's handle is an index here; one entry per directory
        self._dir_handles: dict[str, int] = {}

    def init_with_config(self, conn: Any, config: Any) -> None:
        if conn is not None:
            conn.max_read = conn.max_readahead = MAX_READ
        if config is not None:  # the tree never changes: let the kernel cache names and sizes
            config.entry_timeout = config.attr_timeout = 3600.0
            config.negative_timeout = 3600.0
        self._on_ready()

    def getattr(self, path: str | None, fh: int | None = None) -> dict[str, Any]:
        if path is None and fh is not None:  # fgetattr on an open file
            return self._attrs(False, self._view.tree.files[fh].size)
        found = self._view.node(path or "")
        if found is None:
            raise mfusepy.FuseOSError(errno.ENOENT)
        return self._attrs(found.is_dir, found.size, len(found.children))

    def _attrs(self, is_dir: bool, size: int, children: int = 0) -> dict[str, Any]:
        return {
            "st_mode": (stat.S_IFDIR | self._dir_mode)
            if is_dir
            else (stat.S_IFREG | self._file_mode),
            "st_nlink": 2 + children if is_dir else 1,
            "st_size": size,
            "st_blocks": -(-size // 512),
            "st_blksize": MAX_READ,
            "st_uid": self._uid,
            "st_gid": self._gid,
            "st_mtime": self._mtime,
            "st_ctime": self._mtime,
            "st_atime": self._mtime,
        }

    def opendir(self, path: str) -> int:
        node = self._view.node(path)
        if node is None:
            raise mfusepy.FuseOSError(errno.ENOENT)
        if not node.is_dir:
            raise mfusepy.FuseOSError(errno.ENOTDIR)
        with self._lock:  # readdir gets no path (nopath mode): remember the node by handle
            handle = self._dir_handles.get(node.path)
            if handle is None:
                handle = self._dir_handles[node.path] = len(self._dirs)
                self._dirs.append(node)
            return handle

    def readdir(self, path: str | None, fh: int) -> list[str]:
        return [".", "..", *self._dirs[fh].children]

    def releasedir(self, path: str | None, fh: int) -> int:
        return 0

    def open(self, path: str, flags: int) -> int:
        if flags & os.O_ACCMODE != os.O_RDONLY or flags & os.O_TRUNC:
            raise mfusepy.FuseOSError(errno.EROFS)
        node = self._view.node(path)
        if node is None:
            raise mfusepy.FuseOSError(errno.ENOENT)
        if node.is_dir:
            raise mfusepy.FuseOSError(errno.EISDIR)
        return node.index

    def read(self, path: str | None, size: int, offset: int, fh: int) -> bytes:
        try:
            return self._view.read(fh, offset, size)
        except LeaseEndedError:
            raise mfusepy.FuseOSError(errno.EIO) from None
        except Error as exc:
            log.error("read of %s failed: %s", self._view.tree.files[fh].path, exc.message)
            raise mfusepy.FuseOSError(errno.EIO) from None

    def release(self, path: str | None, fh: int) -> int:
        return 0

    def statfs(self, path: str) -> dict[str, int]:
        files = self._view.tree.files
        blocks = sum(-(-entry.size // _BLOCK) for entry in files)
        return {
            "f_bsize": _BLOCK,
            "f_frsize": _BLOCK,
            "f_blocks": blocks,
            "f_bfree": 0,
            "f_bavail": 0,
            "f_files": len(files) + self._view.tree.directories(),
            "f_ffree": 0,
            "f_favail": 0,
            "f_namemax": 255,
        }


def serve(
    view: PlaintextView,
    mountpoint: str,
    on_ready: Callable[[], None],
    *,
    allow_other: bool,
    threads: int,
) -> None:
    """Mount and serve until unmounted (blocks the calling thread)."""
    options: dict[str, Any] = {
        "fsname": f"modelseal:{view.package.manifest.model.name}",
        "subtype": "modelseal",
        "ro": True,
        "default_permissions": True,  # the kernel checks the modes above
        "max_read": MAX_READ,
        "max_threads": threads,
        "max_idle_threads": threads,
        "auto_unmount": True,  # fusermount3 unmounts if this process dies
    }
    if allow_other:
        options["allow_other"] = True
    operations = _Operations(view, on_ready, readable_by_all=allow_other)
    mfusepy.FUSE(operations, mountpoint, foreground=True, **options)
