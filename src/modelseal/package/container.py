"""Read-only access to the entries of a sealed package, stored as a directory or as one archive.

Both forms hold the same entries (``manifest.json``, ``manifest.sig``, ``payload/<path>``). The
archive is an uncompressed POSIX tar; its members are read in place at their offsets, never
extracted. Anything that is not a plain file with a safe relative name is refused: absolute
paths, ``..``, symlinks, hard links, devices and duplicate names.
"""

from __future__ import annotations

import os
import stat
import tarfile
from dataclasses import dataclass
from pathlib import Path

from modelseal._closing import Closing
from modelseal.package.errors import PackageError
from modelseal.package.manifest import validate_relative_path

__all__ = ["Container", "FileSource", "open_container"]

_SMALL_LIMIT = 16 << 20  # manifest and signature files are far smaller


@dataclass(frozen=True)
class FileSource:
    """Bytes [base, base + size) of an open file, read with ``pread`` (safe across threads/forks)."""

    fd: int
    base: int
    size: int

    def pread(self, offset: int, length: int) -> bytes:
        length = max(0, min(length, self.size - offset))
        return os.pread(self.fd, length, self.base + offset) if length else b""

    def pread_into(self, buffer: memoryview, offset: int) -> int:
        """Fill ``buffer`` from ``offset`` (fewer bytes at the end); return the count."""
        length = max(0, min(len(buffer), self.size - offset))
        done = 0
        while done < length:
            got = os.preadv(self.fd, [buffer[done:length]], self.base + offset + done)
            if got == 0:
                break
            done += got
        return done


class Container(Closing):
    """The entries of one package; use as a context manager to release the file descriptors."""

    def __init__(
        self, path: Path, entries: dict[str, FileSource], fds: list[int], kind: str
    ) -> None:
        self.path = path
        self.kind = kind
        self._entries = entries
        self._fds = fds

    def names(self) -> list[str]:
        return sorted(self._entries)

    def has(self, name: str) -> bool:
        return name in self._entries

    def source(self, name: str) -> FileSource:
        try:
            return self._entries[name]
        except KeyError:
            raise PackageError(f"{self.path}: {name} is missing") from None

    def read(self, name: str) -> bytes:
        src = self.source(name)
        if src.size > _SMALL_LIMIT:
            raise PackageError(
                f"{self.path}: {name} is {src.size} bytes, far larger than it can be"
            )
        return src.pread(0, src.size)

    def close(self) -> None:
        for fd in self._fds:
            os.close(fd)
        self._fds.clear()


def open_container(path: Path) -> Container:
    """Open a sealed package directory or archive file."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise PackageError(f"{path} does not exist") from None
    if stat.S_ISDIR(mode):
        return _open_directory(path)
    if stat.S_ISREG(mode):
        return _open_archive(path)
    raise PackageError(f"{path} is neither a directory nor a file")


def _open_directory(root: Path) -> Container:
    entries: dict[str, FileSource] = {}
    fds: list[int] = []
    try:
        for dirpath, dirnames, filenames in os.walk(root):
            for name in [*dirnames, *filenames]:
                full = Path(dirpath, name)
                rel = full.relative_to(root).as_posix()
                info = os.lstat(full)
                if stat.S_ISLNK(info.st_mode):
                    raise PackageError(
                        f"{root}: {rel} is a symbolic link; sealed packages hold only plain files"
                    )
                if stat.S_ISDIR(info.st_mode):
                    continue
                if not stat.S_ISREG(info.st_mode):
                    raise PackageError(f"{root}: {rel} is not a regular file")
                fd = os.open(full, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
                fds.append(fd)
                entries[validate_relative_path(rel)] = FileSource(fd, 0, os.fstat(fd).st_size)
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    return Container(root, entries, fds, "directory")


def _open_archive(path: Path) -> Container:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        entries = _index_archive(path, fd)
    except BaseException:
        os.close(fd)
        raise
    return Container(path, entries, [fd], "archive")


def _index_archive(path: Path, fd: int) -> dict[str, FileSource]:
    entries: dict[str, FileSource] = {}
    with os.fdopen(os.dup(fd), "rb") as raw:
        try:
            tar = tarfile.open(fileobj=raw, mode="r:")  # uncompressed only; no extraction ever
        except tarfile.TarError as exc:
            raise PackageError(
                f"{path} is not a sealed package (neither a directory nor a tar archive)"
            ) from exc
        with tar:
            try:
                members = tar.getmembers()
            except tarfile.TarError as exc:
                raise PackageError(f"{path}: the archive is damaged or truncated ({exc})") from exc
            for member in members:
                name = (
                    member.name.removeprefix("./").rstrip("/")
                    if member.isdir()
                    else member.name.removeprefix("./")
                )
                if member.name.startswith("/") or ".." in member.name.split("/"):
                    raise PackageError(
                        f"{path}: archive entry {member.name!r} has an absolute or '..' path"
                    )
                if member.issym() or member.islnk():
                    raise PackageError(
                        f"{path}: archive entry {member.name!r} is a link; only plain files are allowed"
                    )
                if member.isdir():
                    continue
                if not member.isreg():
                    raise PackageError(f"{path}: archive entry {member.name!r} is not a plain file")
                validate_relative_path(name)
                if name in entries:
                    raise PackageError(f"{path}: archive entry {name!r} appears twice")
                entries[name] = FileSource(fd, member.offset_data, member.size)
    end = os.fstat(fd).st_size
    if end % tarfile.BLOCKSIZE:  # a cut inside a header block reads as a clean end of archive
        raise PackageError(
            f"{path}: the archive is damaged or truncated (not a whole number of "
            f"{tarfile.BLOCKSIZE}-byte blocks)"
        )
    for name, src in entries.items():
        if src.base + src.size > end:
            raise PackageError(
                f"{path}: archive entry {name!r} is cut off: the archive is truncated"
            )
    return entries
