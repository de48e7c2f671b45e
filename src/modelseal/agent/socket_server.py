"""``modelseal agent serve``: model keys for local workloads over a Unix socket.

The workload never sees the device key: it connects to the socket, asks for one model's key
with its license, and holds the key as long as it keeps the connection open; the agent renews the
lease and pushes the end of the lease down the same connection. One connection holds one key.

Who may connect: the socket file is mode 0600 (0660 when other uids are allowed, so that group
members can reach it), and every connection's peer is checked with ``SO_PEERCRED``: only the
agent's own uid, root, and the uids given in ``allow_uids`` are served. Others get a
``PEER_NOT_ALLOWED`` error and are logged. The protocol is in ``docs/agent.md``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import socket
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Final, Self

from modelseal._closing import Closing
from modelseal.agent._unixsocket import Peer, bind_socket, peer_of, remove_socket
from modelseal.agent._wire import (
    BAD_MESSAGE,
    MESSAGE_TOO_LARGE,
    AgentSocketError,
    encode,
    error_message,
    key_to_wire,
    read_message,
    status_to_wire,
)
from modelseal.agent.source import (
    InferenceLimitError,
    KeySource,
    LeaseEndedError,
    LeaseStatus,
    ModelKey,
)
from modelseal.errors import Error
from modelseal.licensing import Refusal

__all__ = ["PEER_NOT_ALLOWED", "AgentSocketServer"]

PEER_NOT_ALLOWED: Final = "PEER_NOT_ALLOWED"
_FLUSH: Final = 2.0  # seconds to send what is queued when the server closes
_INTERNAL: Final = "the agent failed unexpectedly; its log has the details"
log = logging.getLogger(__name__)


class AgentSocketServer(Closing):
    """Serves keys from ``source`` on the Unix socket ``path``; :meth:`start`, then :meth:`close`."""

    def __init__(self, source: KeySource, path: Path, *, allow_uids: Iterable[int] = ()) -> None:
        self._source = source
        self.path = Path(os.path.abspath(path))
        self.allowed_uids = frozenset({os.geteuid(), 0, *allow_uids})
        self._lock = threading.Lock()
        self._connections: set[_Connection] = set()
        self._listener: socket.socket | None = None
        self._identity: os.stat_result | None = None
        self._thread: threading.Thread | None = None
        self._closed = False

    def start(self) -> None:
        mode = 0o660 if self.allowed_uids - {os.geteuid(), 0} else 0o600
        self._listener, self._identity = bind_socket(self.path, mode)
        self._thread = threading.Thread(
            target=self._accept, name="modelseal-agent-accept", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        """Stop accepting, send what is queued, close every connection (which lets go of its
        key) and remove the socket file."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            connections = list(self._connections)
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
        if self._identity is not None:
            remove_socket(self.path, self._identity)
        if self._thread is not None:
            self._thread.join(_FLUSH)
        for connection in connections:
            connection.stop()

    def __enter__(self) -> Self:  # listening from here on; Closing closes on the way out
        self.start()
        return self

    def _accept(self) -> None:
        assert self._listener is not None  # noqa: S101 - start() set it
        while True:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return  # closed
            connection = _Connection(self, sock)
            with self._lock:
                if self._closed:
                    sock.close()
                    return
                self._connections.add(connection)
            threading.Thread(
                target=connection.run, name="modelseal-agent-connection", daemon=True
            ).start()

    def _forget(self, connection: _Connection) -> None:
        with self._lock:
            self._connections.discard(connection)


class _Connection:
    """One client: its peer check, its requests, and at most one held key."""

    def __init__(self, server: AgentSocketServer, sock: socket.socket) -> None:
        self._server = server
        self._sock = sock
        self._out: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._writer = threading.Thread(
            target=self._write, name="modelseal-agent-writer", daemon=True
        )
        self._key: ModelKey | None = None
        self._closing = False

    def run(self) -> None:
        self._writer.start()
        try:
            peer = peer_of(self._sock)
            if peer.uid not in self._server.allowed_uids:
                self._refuse(peer)
                return
            self._serve()
        except Exception:
            log.exception("an agent connection failed")
        finally:
            self._closing = True
            if self._key is not None:
                self._key.close()
            self._out.put(None)
            self._writer.join(_FLUSH)
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)
            self._sock.close()
            self._server._forget(self)

    def stop(self) -> None:
        """Flush what is queued, then end the connection (its reader sees the end)."""
        self._out.put(None)
        self._writer.join(_FLUSH)
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)

    def _refuse(self, peer: Peer) -> None:
        log.warning(
            "refused a connection to %s from pid %d uid %d: only uids %s may use this agent",
            self._server.path,
            peer.pid,
            peer.uid,
            ", ".join(map(str, sorted(self._server.allowed_uids))),
        )
        self._send(
            error_message(
                PEER_NOT_ALLOWED,
                f"uid {peer.uid} may not use the agent at {self._server.path}; ask its "
                "administrator to run it with --allow-uid for this user",
            )
        )

    def _serve(self) -> None:
        with self._sock.makefile("rb") as stream:
            while True:
                try:
                    message = read_message(stream)
                except AgentSocketError as exc:
                    log.warning("a bad message on %s: %s", self._server.path, exc.code)
                    self._send(error_message(exc.code, exc.message))
                    if exc.code == MESSAGE_TOO_LARGE:
                        return
                    continue
                if message is None:
                    return
                try:
                    answer = self._answer(message)
                except Exception:
                    log.exception("an agent request failed unexpectedly")
                    answer = error_message("INTERNAL", _INTERNAL)
                if answer is not None:
                    self._send(answer)

    def _answer(self, message: dict[str, Any]) -> dict[str, Any] | None:
        """The one answer to ``message`` (None when it was sent already)."""
        op = message.get("op")
        try:
            if op == "acquire":
                return self._acquire(message)
            if op == "count":
                return self._count(message)
            if op == "status":
                return {"type": "status", "status": status_to_wire(self._held().status())}
        except _BadRequestError as exc:
            return error_message(BAD_MESSAGE, str(exc))
        except LeaseEndedError as exc:
            return error_message(exc.code, exc.message, status=status_to_wire(exc.status))
        return error_message(
            BAD_MESSAGE, f"unknown op {op!r}: send acquire, count or status (see docs/agent.md)"
        )

    def _acquire(self, message: dict[str, Any]) -> dict[str, Any] | None:
        if self._key is not None:
            raise _BadRequestError("this connection already holds a key; open another connection")
        license_token = message.get("license")
        model, version = message.get("model"), message.get("version")
        if not isinstance(license_token, str) or not isinstance(model, str):
            raise _BadRequestError('acquire needs "license" and "model" as text')
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise _BadRequestError('acquire needs "version", a whole number from 1')
        try:
            key = self._server._source.acquire(license_token, model, version)
        except Exception as exc:  # every refusal goes back to the workload
            return _refusal(exc)
        self._key = key
        try:
            answer = {"type": "granted", "key": key_to_wire(key.key)}
            answer["status"] = status_to_wire(key.status())
        except LeaseEndedError as exc:
            return error_message(exc.code, exc.message, status=status_to_wire(exc.status))
        self._send(answer)
        key.on_end(self._ended)  # after "granted" in the queue, so the client sees it first
        return None

    def _count(self, message: dict[str, Any]) -> dict[str, Any]:
        count = message.get("inferences")
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise _BadRequestError('count needs "inferences", a whole number ≥ 0')
        try:
            self._held().count_inferences(count)
        except InferenceLimitError as exc:
            seconds = int(exc.retry_after.total_seconds())
            return error_message(exc.code, exc.message, retry_after=seconds)
        return {"type": "ok"}

    def _held(self) -> ModelKey:
        if self._key is None:
            raise _BadRequestError("this connection holds no key; send acquire first")
        return self._key

    def _ended(self, status: LeaseStatus) -> None:
        """``on_end`` callback (on the renewal thread): queue the event, never block."""
        if not self._closing:
            self._send({"type": "ended", "status": status_to_wire(status)})

    def _send(self, message: dict[str, Any]) -> None:
        self._out.put(encode(message))

    def _write(self) -> None:
        while (data := self._out.get()) is not None:
            try:
                self._sock.sendall(data)
            except OSError:
                return


class _BadRequestError(Exception):
    """A request this connection cannot act on; answered with ``BAD_MESSAGE``."""


def _refusal(exc: Exception) -> dict[str, Any]:
    """The ``error`` answer to a failed acquire, saying where the failure came from."""
    from modelseal.vault.client import VaultConnectionError, VaultRequestError

    if isinstance(exc, VaultRequestError):
        return error_message(
            exc.code, exc.reason, origin="vault", status=exc.status, retry_after=exc.retry_after
        )
    if isinstance(exc, VaultConnectionError):
        return error_message(exc.code, exc.message, origin="connection", hint=exc.hint)
    if isinstance(exc, Refusal):
        return error_message(
            exc.code.value,
            exc.message,
            origin="license",
            detail=exc.detail,
            retry_after=exc.retry_after,
        )
    if isinstance(exc, Error):
        return error_message(exc.code, exc.message, origin="agent", hint=exc.hint)
    log.error("acquire failed unexpectedly", exc_info=exc)
    return error_message("INTERNAL", _INTERNAL)
