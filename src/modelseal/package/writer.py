"""Writing a package's entries to a directory or a tar archive, atomically.

Entries go to a hidden temporary path beside the destination; :meth:`commit` renames it into place
only when everything was written, and :meth:`abort` removes every byte written so far. The archive
is written as a stream (each ciphertext size is known before its bytes), so sealing into an archive
costs no extra pass.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from modelseal.package.errors import PackageError

__all__ = ["PackageWriter", "open_writer"]

_BLOCK = 512


class PackageWriter(Protocol):
    def begin(self, name: str, size: int) -> Callable[[bytes], object]: ...

    def end(self) -> None: ...

    def add(self, name: str, data: bytes) -> None: ...

    def commit(self) -> None: ...

    def abort(self) -> None: ...


def _temporary_beside(dest: Path) -> Path:
    return dest.with_name(f".{dest.name}.partial-{secrets.token_hex(4)}")


def _claim(dest: Path, tmp: Path) -> None:
    if dest.exists() or dest.is_symlink():
        raise PackageError(
            f"{dest} appeared while sealing; nothing was written", hint="choose another --out"
        )
    os.rename(tmp, dest)


class _DirectoryWriter:
    def __init__(self, dest: Path, mtime: int) -> None:
        self._dest = dest
        self._tmp = _temporary_beside(dest)
        self._tmp.mkdir(mode=0o755)
        self._file: int | None = None
        self._expected = 0
        self._written = 0

    def begin(self, name: str, size: int) -> Callable[[bytes], object]:
        path = self._tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        self._expected, self._written = size, 0
        return self._write

    def _write(self, data: bytes) -> None:
        assert self._file is not None  # noqa: S101
        view = memoryview(data)
        while view:
            view = view[os.write(self._file, view) :]
        self._written += len(data)

    def end(self) -> None:
        assert self._file is not None  # noqa: S101
        os.close(self._file)
        self._file = None
        if self._written != self._expected:
            raise PackageError(f"internal: wrote {self._written} bytes, expected {self._expected}")

    def add(self, name: str, data: bytes) -> None:
        self.begin(name, len(data))(data)
        self.end()

    def commit(self) -> None:
        _claim(self._dest, self._tmp)

    def abort(self) -> None:
        if self._file is not None:
            os.close(self._file)
            self._file = None
        shutil.rmtree(self._tmp, ignore_errors=True)


class _ArchiveWriter:
    """A POSIX (pax) tar written as a stream: header, data, zero padding to 512, two zero blocks."""

    def __init__(self, dest: Path, mtime: int) -> None:
        self._dest = dest
        self._tmp = _temporary_beside(dest)
        self._fd = os.open(self._tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        self._out = os.fdopen(self._fd, "wb", buffering=1 << 20)
        self._mtime = mtime
        self._expected = 0
        self._written = 0

    def begin(self, name: str, size: int) -> Callable[[bytes], object]:
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime, info.type = size, 0o644, self._mtime, tarfile.REGTYPE
        info.uname = info.gname = ""
        self._out.write(info.tobuf(tarfile.PAX_FORMAT, "utf-8", "strict"))
        self._expected, self._written = size, 0
        return self._write

    def _write(self, data: bytes) -> None:
        self._out.write(data)
        self._written += len(data)

    def end(self) -> None:
        if self._written != self._expected:
            raise PackageError(f"internal: wrote {self._written} bytes, expected {self._expected}")
        self._out.write(b"\0" * (-self._written % _BLOCK))

    def add(self, name: str, data: bytes) -> None:
        self.begin(name, len(data))(data)
        self.end()

    def commit(self) -> None:
        self._out.write(b"\0" * (2 * _BLOCK))
        self._out.flush()
        os.fsync(self._out.fileno())
        self._out.close()
        _claim(self._dest, self._tmp)

    def abort(self) -> None:
        if not self._out.closed:
            self._out.close()
        self._tmp.unlink(missing_ok=True)


def open_writer(dest: Path, *, archive: bool, mtime: int) -> PackageWriter:
    """A writer for a new package at ``dest`` (which must not exist yet)."""
    if dest.exists() or dest.is_symlink():
        raise PackageError(
            f"{dest} already exists; nothing was written", hint="choose a new --out path"
        )
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise PackageError(f"{dest.parent} is not a directory") from None
    return _ArchiveWriter(dest, mtime) if archive else _DirectoryWriter(dest, mtime)
