"""The agent socket file: created race-free with its mode, stale ones removed safely, and the
credentials of the process at the other end (``SO_PEERCRED``)."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import secrets
import socket
import stat
import struct
from pathlib import Path
from typing import Final, NamedTuple

from modelseal.agent._wire import AgentSocketError

__all__ = ["Peer", "bind_socket", "peer_of", "remove_socket"]

_MAX_PATH: Final = 107  # sun_path holds 108 bytes with the terminating NUL
_CRED: Final = struct.Struct("3i")  # struct ucred: pid, uid, gid
_BACKLOG: Final = 16
log = logging.getLogger(__name__)


class Peer(NamedTuple):
    pid: int
    uid: int
    gid: int


def peer_of(sock: socket.socket) -> Peer:
    """Who is at the other end of the connected Unix socket ``sock`` (as of its ``connect``)."""
    return Peer(*_CRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _CRED.size)))


def bind_socket(path: Path, mode: int) -> tuple[socket.socket, os.stat_result]:
    """A listening socket at ``path`` with file mode ``mode`` from the first moment it has that
    name (bound under a random name beside it, given its mode, then renamed into place), and the
    identity of its file (to remove only this one later).

    A stale socket at ``path`` (nothing accepts on it) is replaced; a live one, or anything
    that is not a socket, is an :class:`AgentSocketError`.
    """
    if not hasattr(socket, "SO_PEERCRED"):
        raise AgentSocketError("the agent socket needs SO_PEERCRED, which only Linux has")
    path = Path(os.path.abspath(path))
    temporary = path.parent / f".{path.name}.{secrets.token_hex(6)}"
    if len(os.fsencode(temporary)) > _MAX_PATH:
        raise AgentSocketError(
            f"the socket path {path} is too long for a Unix socket; choose a shorter one "
            f"(at most {_MAX_PATH - 14} bytes)"
        )
    if not path.parent.is_dir():
        raise AgentSocketError(f"the directory {path.parent} does not exist; create it first")
    _remove_stale(path)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(os.fspath(temporary))
        os.chmod(temporary, mode)
        listener.listen(_BACKLOG)
        os.rename(temporary, path)
        identity = os.lstat(path)
    except OSError as exc:
        listener.close()
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise AgentSocketError(f"cannot create the socket {path}: {exc.strerror}") from exc
    return listener, identity


def remove_socket(path: Path, identity: os.stat_result) -> None:
    """Remove ``path`` if it is still the socket this agent created."""
    with contextlib.suppress(OSError):
        current = os.lstat(path)
        if (current.st_dev, current.st_ino) == (identity.st_dev, identity.st_ino):
            os.unlink(path)


def _remove_stale(path: Path) -> None:
    try:
        found = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(found.st_mode):
        raise AgentSocketError(
            f"{path} exists and is not a socket; the agent replaces only a stale socket",
            hint="remove it yourself, or choose another --socket",
        )
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(2)
    try:
        probe.connect(os.fspath(path))
    except OSError as exc:
        if exc.errno != errno.ECONNREFUSED:
            raise AgentSocketError(
                f"cannot check the socket {path}: {exc.strerror or exc}"
            ) from exc
        os.unlink(path)
        log.info("removed the stale socket %s", path)
        return
    finally:
        probe.close()
    raise AgentSocketError(
        f"another agent is listening on {path}",
        hint="stop it first, or choose another --socket",
    )
