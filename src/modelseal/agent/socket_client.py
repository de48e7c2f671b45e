"""The :class:`~modelseal.agent.source.KeySource` of a workload that talks to
``modelseal agent serve`` over its Unix socket: the device key stays with the agent.

Each :meth:`AgentSocketClient.acquire` opens one connection and holds one key on it. A reader
thread per connection takes the agent's answers and its ``ended`` event; when the lease ends (or
the agent goes away) the key is dropped and the ``on_end`` callbacks run once on that thread.
Closing the key closes the connection, which lets go of the lease at the agent.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import socket
import threading
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any, BinaryIO, Final

from modelseal._closing import Closing
from modelseal.agent._wire import (
    BAD_MESSAGE,
    AgentSocketError,
    encode,
    key_from_wire,
    read_message,
    status_from_wire,
)
from modelseal.agent.source import InferenceLimitError, LeaseEndedError, LeaseStatus, ModelKey
from modelseal.crypto import DataKey
from modelseal.errors import UsageError
from modelseal.licensing import Refusal, RefusalCode

__all__ = ["AGENT_GONE", "DEFAULT_TIMEOUT", "AgentSocketClient"]

AGENT_GONE: Final = "AGENT_GONE"
DEFAULT_TIMEOUT: Final = 60.0
"""Seconds to wait for an answer (an acquire makes several requests to the vault)."""
_ANSWERS: Final = frozenset({"granted", "ok", "status", "error"})
log = logging.getLogger(__name__)


class AgentSocketClient(Closing):
    """Keys from the agent listening on the Unix socket ``path``."""

    def __init__(self, path: Path | str, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.path = Path(os.path.abspath(path))
        self._timeout = timeout
        self._lock = threading.Lock()
        self._keys: set[_RemoteKey] = set()

    def acquire(self, license_token: str, model_name: str, model_version: int) -> ModelKey:
        sock = self._connect()
        stream = sock.makefile("rb")
        try:
            with contextlib.suppress(OSError):  # a refused peer's answer is waiting anyway
                sock.sendall(
                    encode(
                        {
                            "op": "acquire",
                            "license": license_token,
                            "model": model_name,
                            "version": model_version,
                        }
                    )
                )
            answer = self._read(stream)
            if answer.get("type") == "error":
                raise _acquire_error(answer)
            if answer.get("type") != "granted":
                raise AgentSocketError(
                    f"the agent at {self.path} answered acquire with a {answer.get('type')!r} "
                    "message; is it the same modelseal version?",
                    code=BAD_MESSAGE,
                )
            key = _RemoteKey(
                self,
                sock,
                stream,
                key_from_wire(answer.get("key")),
                status_from_wire(answer.get("status")),
            )
        except BaseException:
            stream.close()
            sock.close()
            raise
        with self._lock:
            self._keys.add(key)
        key.start()
        return key

    def close(self) -> None:
        """Let go of every key this client holds."""
        with self._lock:
            keys, self._keys = list(self._keys), set()
        for key in keys:
            key.close()

    def __repr__(self) -> str:
        return f"AgentSocketClient({os.fspath(self.path)!r})"

    def _connect(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self._timeout)
        try:
            sock.connect(os.fspath(self.path))
        except OSError as exc:
            sock.close()
            raise AgentSocketError(
                f"cannot reach the agent at {self.path}: {exc.strerror or exc}",
                code="AGENT_UNREACHABLE",
                hint="start it with `modelseal agent serve --home DIR --socket PATH`, and check "
                "that this user may open the socket",
            ) from exc
        return sock

    def _read(self, stream: BinaryIO) -> dict[str, Any]:
        try:
            answer = read_message(stream)
        except TimeoutError:
            raise AgentSocketError(
                f"the agent at {self.path} did not answer within {self._timeout:g} s"
            ) from None
        except OSError:
            answer = None  # reset: nothing more to read
        if answer is None:
            raise AgentSocketError(
                f"the agent at {self.path} closed the connection without an answer",
                code=AGENT_GONE,
            )
        return answer

    def _forget(self, key: _RemoteKey) -> None:
        with self._lock:
            self._keys.discard(key)


class _RemoteKey:
    """A :class:`~modelseal.agent.source.ModelKey` held by the agent for this process."""

    def __init__(
        self,
        client: AgentSocketClient,
        sock: socket.socket,
        stream: BinaryIO,
        key: DataKey,
        status: LeaseStatus,
    ) -> None:
        self._client = client
        self._sock = sock
        self._stream = stream
        self._timeout = client._timeout
        self._key: DataKey | None = key
        self._status = status
        self._lock = threading.Lock()
        self._request_lock = threading.Lock()
        self._answers: queue.SimpleQueue[dict[str, Any] | None] = queue.SimpleQueue()
        self._callbacks: list[Callable[[LeaseStatus], None]] = []
        self._fired = False
        self._thread = threading.Thread(
            target=self._read, name="modelseal-agent-client", daemon=True
        )

    def start(self) -> None:
        self._sock.settimeout(None)  # the reader waits for the agent as long as the key is held
        self._thread.start()

    @property
    def key(self) -> DataKey:
        with self._lock:
            if self._key is None:
                raise LeaseEndedError(self._status)
            return self._key

    def status(self) -> LeaseStatus:
        with self._lock:
            if self._key is None:
                return self._status
        answer = self._request({"op": "status"})
        status = status_from_wire(answer.get("status"))
        with self._lock:
            if self._key is not None:
                self._status = status
            return self._status

    def count_inferences(self, count: int = 1) -> None:
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise UsageError(f"an inference count is a whole number ≥ 0, not {count!r}")
        self._request({"op": "count", "inferences": count})

    def on_end(self, callback: Callable[[LeaseStatus], None]) -> None:
        with self._lock:
            if not self._fired:
                self._callbacks.append(callback)
                return
            status = self._status
        callback(status)

    def close(self) -> None:
        self._end(_replace(self._status, "CLOSED", "The holder let go of the key"))
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)  # the reader sees the end and closes it
        if self._thread.ident is not None:
            self._thread.join(self._timeout)
        else:
            self._disconnect()

    def _request(self, message: dict[str, Any]) -> dict[str, Any]:
        with self._request_lock:
            with self._lock:
                if self._key is None:
                    raise LeaseEndedError(self._status)
            try:
                self._sock.sendall(encode(message))
                answer = self._answers.get(timeout=self._timeout)
            except queue.Empty:
                # A late answer would answer the next request: this connection is done.
                with contextlib.suppress(OSError):
                    self._sock.shutdown(socket.SHUT_RDWR)
                raise AgentSocketError(
                    f"the agent at {self._client.path} did not answer within {self._timeout:g} s; "
                    "the key was dropped"
                ) from None
            except OSError:
                answer = None
        if answer is None:  # the connection ended: the reader has ended the key
            with self._lock:
                raise LeaseEndedError(self._status)
        if answer.get("type") == "error":
            raise self._error(answer)
        return answer

    def _error(self, answer: dict[str, Any]) -> Exception:
        code, message = str(answer.get("code")), str(answer.get("message"))
        if "status" in answer:  # the lease has ended (the "ended" event may still be on its way)
            self._end(status_from_wire(answer["status"]))
            with self._lock:
                return LeaseEndedError(self._status)
        if code == RefusalCode.RATE_LIMITED:
            retry = answer.get("retry_after")
            seconds = retry if isinstance(retry, int) and not isinstance(retry, bool) else 1
            return InferenceLimitError(message, retry_after=timedelta(seconds=seconds))
        return AgentSocketError(f"the agent refused the request: {message}", code=code)

    def _read(self) -> None:
        gone = f"The agent at {self._client.path} closed the connection"
        try:
            while True:
                message = read_message(self._stream)
                if message is None:
                    break
                if message.get("type") == "ended":
                    self._end(status_from_wire(message.get("status")))
                elif message.get("type") in _ANSWERS:
                    self._answers.put(message)
        except (AgentSocketError, OSError, ValueError) as exc:
            gone = f"The connection to the agent at {self._client.path} broke ({exc})"
        self._end(
            _replace(
                self._status,
                AGENT_GONE,
                f"{gone}; check that `modelseal agent serve` runs, then load the model again",
            )
        )
        self._answers.put(None)
        self._disconnect()

    def _disconnect(self) -> None:
        self._stream.close()
        self._sock.close()

    def _end(self, status: LeaseStatus) -> None:
        with self._lock:
            if self._fired:
                return
            self._fired = True
            self._key = None
            self._status = status
            callbacks, self._callbacks = self._callbacks, []
        self._client._forget(self)
        for callback in callbacks:
            try:
                callback(status)
            except Exception:
                log.exception("an on_end callback failed")

    def __repr__(self) -> str:
        status = self._status
        return f"AgentKey({status.model_name} version {status.model_version}, {status.lease_id})"


def _replace(status: LeaseStatus, code: str, reason: str) -> LeaseStatus:
    return replace(status, state="ended", code=code, reason=reason)


def _acquire_error(answer: dict[str, Any]) -> Exception:
    """The exception a direct :class:`~modelseal.agent.keyagent.KeyAgent` would have raised."""
    code, message = str(answer.get("code")), str(answer.get("message"))
    origin = answer.get("origin")
    hint = answer.get("hint") if isinstance(answer.get("hint"), str) else None
    if origin == "vault":
        from modelseal.vault.client import VaultRequestError

        status = answer.get("status")
        retry = answer.get("retry_after")
        return VaultRequestError(
            code,
            message,
            status=status if isinstance(status, int) else 400,
            retry_after=retry if isinstance(retry, int) else None,
            hint=hint,
        )
    if origin == "connection":
        from modelseal.vault.client import VaultConnectionError

        return VaultConnectionError(message, hint=hint)
    if origin == "license" and code in RefusalCode.__members__:
        detail = answer.get("detail")
        return Refusal(RefusalCode(code), detail if isinstance(detail, str) else None)
    return AgentSocketError(message, code=code, hint=hint)
