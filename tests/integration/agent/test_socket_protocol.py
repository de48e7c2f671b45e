"""The agent socket over real Unix sockets, in front of a scripted key source: file mode, stale
sockets, peer credentials (a child process as another user), the protocol's answers to bad,
malformed and oversized messages, and the client's view of grants, refusals and ends."""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import stat
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from modelseal.agent import (
    AgentSocketClient,
    AgentSocketError,
    AgentSocketServer,
    InferenceLimitError,
    LeaseEndedError,
    LeaseStatus,
    ModelKey,
)
from modelseal.agent._wire import MAX_MESSAGE
from modelseal.crypto import DataKey
from modelseal.errors import UsageError
from modelseal.licensing import Refusal, RefusalCode
from modelseal.vault.client import VaultConnectionError, VaultRequestError
from tests.conftest import expect_error
from tests.integration.agent._world import Ending, wait_for

NOBODY = 65534
NOW = datetime(2030, 6, 1, 12, 0, tzinfo=UTC)
STATUS = LeaseStatus(
    state="active",
    license_id="lic-1",
    model_name="iris",
    model_version=1,
    lease_id="lease-1",
    expires_at=NOW + timedelta(seconds=30),
    usable_until=NOW + timedelta(seconds=90),
    heartbeat=timedelta(seconds=10),
    inferences_reported=0,
)


class FakeKey:
    def __init__(self) -> None:
        self.data_key: DataKey | None = DataKey.generate()
        self.state = STATUS
        self.counted = 0
        self.limit = 10
        self.callbacks: list[Callable[[LeaseStatus], None]] = []
        self.closed = threading.Event()

    @property
    def key(self) -> DataKey:
        if self.data_key is None:
            raise LeaseEndedError(self.state)
        return self.data_key

    def status(self) -> LeaseStatus:
        return self.state

    def count_inferences(self, count: int = 1) -> None:
        if self.data_key is None:
            raise LeaseEndedError(self.state)
        if self.counted + count > self.limit:
            raise InferenceLimitError(
                "The license allows 10 inferences per 1m", retry_after=timedelta(seconds=7)
            )
        self.counted += count

    def on_end(self, callback: Callable[[LeaseStatus], None]) -> None:
        self.callbacks.append(callback)

    def end(self, code: str, reason: str) -> None:
        self.data_key = None
        self.state = replace(self.state, state="ended", code=code, reason=reason)
        for callback in self.callbacks:
            callback(self.state)

    def close(self) -> None:
        self.end("CLOSED", "The holder let go of the key")
        self.closed.set()


class FakeSource:
    def __init__(self) -> None:
        self.keys: list[FakeKey] = []
        self.error: Exception | None = None
        self.requests: list[tuple[str, str, int]] = []

    def acquire(self, license_token: str, model_name: str, model_version: int) -> ModelKey:
        self.requests.append((license_token, model_name, model_version))
        if self.error is not None:
            raise self.error
        key = FakeKey()
        self.keys.append(key)
        return key

    def close(self) -> None:
        pass


@pytest.fixture
def folder() -> Iterator[Path]:
    """A short directory (socket paths are limited) that other users may pass through."""
    path = Path(tempfile.mkdtemp(prefix="ms-agent-", dir="/tmp"))
    os.chmod(path, 0o711)  # noqa: S103 - other users pass through, not list
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def source() -> FakeSource:
    return FakeSource()


@pytest.fixture
def server(folder: Path, source: FakeSource) -> Iterator[AgentSocketServer]:
    with AgentSocketServer(source, folder / "agent.sock") as running:
        yield running


class Raw:
    """A bare connection speaking the protocol by hand."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(5)
        self.sock.connect(os.fspath(path))
        self.stream = self.sock.makefile("rb")

    def send(self, data: bytes | dict[str, Any]) -> None:
        self.sock.sendall(data if isinstance(data, bytes) else json.dumps(data).encode() + b"\n")

    def receive(self) -> dict[str, Any]:
        line = self.stream.readline()
        assert line.endswith(b"\n"), f"no message, got {line!r}"
        message: dict[str, Any] = json.loads(line)
        return message

    def ask(self, data: bytes | dict[str, Any]) -> dict[str, Any]:
        self.send(data)
        return self.receive()

    def close(self) -> None:
        self.stream.close()
        self.sock.close()

    def __enter__(self) -> Raw:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def ask_once(path: Path, data: bytes | dict[str, Any]) -> dict[str, Any]:
    with Raw(path) as raw:
        return raw.ask(data)


def connect_as(uid: int, path: Path, payload: bytes) -> str:
    """Connect to ``path`` from a child process running as ``uid`` (no groups), send
    ``payload`` and return the first line it receives (or the exception it got)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: only socket and os calls, then _exit
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(5)
            sock.connect(os.fspath(path))
            sock.sendall(payload)
            data = b""
            while not data.endswith(b"\n"):
                chunk = sock.recv(4096)
                if not chunk:
                    break
                data += chunk
            os.write(write_end, data)
        except BaseException as exc:
            os.write(write_end, f"child error: {exc!r}".encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as answer:
        text = answer.read().decode()
    os.waitpid(pid, 0)
    return text


# --- the socket file -----------------------------------------------------------------------------


def test_the_socket_is_private_by_default(server: AgentSocketServer, folder: Path) -> None:
    mode = os.stat(folder / "agent.sock").st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600
    assert server.allowed_uids == {os.geteuid(), 0}
    assert [p.name for p in folder.iterdir()] == ["agent.sock"]  # no temporary left behind


def test_allowed_uids_open_the_socket_to_its_group(folder: Path, source: FakeSource) -> None:
    with AgentSocketServer(source, folder / "agent.sock", allow_uids=[NOBODY]) as server:
        assert stat.S_IMODE(os.stat(server.path).st_mode) == 0o660
        assert server.allowed_uids == {os.geteuid(), 0, NOBODY}


def test_close_removes_the_socket(folder: Path, source: FakeSource) -> None:
    server = AgentSocketServer(source, folder / "agent.sock")
    server.start()
    server.close()
    assert list(folder.iterdir()) == []
    server.close()


def test_a_stale_socket_is_replaced(folder: Path, source: FakeSource) -> None:
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(os.fspath(folder / "agent.sock"))
    stale.close()  # the file stays, nothing listens
    with AgentSocketServer(source, folder / "agent.sock"):
        assert ask_once(folder / "agent.sock", {"op": "status"})["code"] == "BAD_MESSAGE"


def test_a_live_socket_is_left_alone(server: AgentSocketServer, source: FakeSource) -> None:
    second = AgentSocketServer(source, server.path)
    error = expect_error(
        AgentSocketError, second.start, f"another agent is listening on {server.path}"
    )
    assert error.hint == "stop it first, or choose another --socket"
    assert ask_once(server.path, {"op": "status"})["code"] == "BAD_MESSAGE"  # still serving


def test_something_else_at_the_path_is_left_alone(folder: Path, source: FakeSource) -> None:
    (folder / "agent.sock").write_text("precious")
    expect_error(
        AgentSocketError,
        AgentSocketServer(source, folder / "agent.sock").start,
        f"{folder / 'agent.sock'} exists and is not a socket; the agent replaces only a stale "
        "socket",
    )
    assert (folder / "agent.sock").read_text() == "precious"


def test_a_socket_path_too_long_is_refused(folder: Path, source: FakeSource) -> None:
    expect_error(
        AgentSocketError,
        AgentSocketServer(source, folder / ("s" * 100)).start,
        "is too long for a Unix socket",
    )


# --- peers ---------------------------------------------------------------------------------------


def test_another_uid_is_refused_and_logged(
    server: AgentSocketServer, caplog: pytest.LogCaptureFixture
) -> None:
    os.chmod(server.path, 0o666)  # noqa: S103 - a wrong mode: the peer check still holds
    caplog.set_level(logging.WARNING, "modelseal.agent.socket_server")
    answer = connect_as(NOBODY, server.path, b'{"op": "status"}\n')
    assert json.loads(answer) == {
        "type": "error",
        "code": "PEER_NOT_ALLOWED",
        "message": f"uid {NOBODY} may not use the agent at {server.path}; ask its administrator "
        "to run it with --allow-uid for this user",
    }
    assert f"refused a connection to {server.path} from pid" in caplog.text
    assert f"uid {NOBODY}: only uids 0 may use this agent" in caplog.text


def test_the_file_mode_keeps_other_users_out_first(server: AgentSocketServer) -> None:
    assert "PermissionError" in connect_as(NOBODY, server.path, b"{}\n")


def test_an_allowed_uid_is_served(folder: Path, source: FakeSource) -> None:
    with AgentSocketServer(source, folder / "agent.sock", allow_uids=[NOBODY]) as server:
        os.chmod(server.path, 0o666)  # noqa: S103 - nobody is not in the socket's group
        answer = json.loads(connect_as(NOBODY, server.path, b'{"op": "status"}\n'))
    assert answer["code"] == "BAD_MESSAGE"
    assert answer["message"] == "this connection holds no key; send acquire first"


# --- bad messages --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "answer"),
    [
        (b"hello\n", "a message is not JSON; send one JSON object per line"),
        (b"[]\n", "a message must be a JSON object, not another JSON value"),
        (b"{}\n", "unknown op None: send acquire, count or status (see docs/agent.md)"),
        (
            b'{"op": "steal"}\n',
            "unknown op 'steal': send acquire, count or status (see docs/agent.md)",
        ),
        (
            b'{"op": "acquire", "license": 7, "model": "iris", "version": 1}\n',
            'acquire needs "license" and "model" as text',
        ),
        (
            b'{"op": "acquire", "license": "L", "model": "iris", "version": 0}\n',
            'acquire needs "version", a whole number from 1',
        ),
        (
            b'{"op": "acquire", "license": "L", "model": "iris", "version": true}\n',
            'acquire needs "version", a whole number from 1',
        ),
        (b'{"op": "count", "inferences": 1}\n', "this connection holds no key; send acquire first"),
        (b'{"op": "status"}\n', "this connection holds no key; send acquire first"),
    ],
)
def test_a_bad_message_gets_a_clear_error_and_the_connection_goes_on(
    server: AgentSocketServer, source: FakeSource, message: bytes, answer: str
) -> None:
    with Raw(server.path) as raw:
        assert raw.ask(message) == {"type": "error", "code": "BAD_MESSAGE", "message": answer}
        granted = raw.ask({"op": "acquire", "license": "L", "model": "iris", "version": 1})
    assert granted["type"] == "granted"
    assert source.requests == [("L", "iris", 1)]


def test_an_oversized_message_closes_only_its_connection(
    server: AgentSocketServer, source: FakeSource
) -> None:
    with Raw(server.path) as holder, Raw(server.path) as raw:
        granted = holder.ask({"op": "acquire", "license": "L", "model": "iris", "version": 1})
        assert granted["type"] == "granted"
        raw.send(b"{" + b" " * MAX_MESSAGE)
        assert raw.receive() == {
            "type": "error",
            "code": "MESSAGE_TOO_LARGE",
            "message": f"a message is longer than {MAX_MESSAGE} bytes; the connection is closed",
        }
        try:
            assert raw.stream.read() == b""  # the agent closed it
        except ConnectionResetError:
            pass  # the same, when the agent left bytes unread
        assert holder.ask({"op": "count", "inferences": 2}) == {"type": "ok"}  # others go on
    assert source.keys[0].counted == 2
    assert ask_once(server.path, {"op": "status"})["code"] == "BAD_MESSAGE"  # and new ones


def test_a_second_acquire_on_one_connection_is_refused(server: AgentSocketServer) -> None:
    with Raw(server.path) as raw:
        raw.ask({"op": "acquire", "license": "L", "model": "iris", "version": 1})
        assert raw.ask({"op": "acquire", "license": "L", "model": "iris", "version": 1}) == {
            "type": "error",
            "code": "BAD_MESSAGE",
            "message": "this connection already holds a key; open another connection",
        }


# --- the client ----------------------------------------------------------------------------------


def test_the_client_holds_the_key_the_agent_holds(
    server: AgentSocketServer, source: FakeSource
) -> None:
    with AgentSocketClient(server.path) as client:
        key = client.acquire("L", "iris", 1)
        held = source.keys[0]
        assert key.key == held.data_key
        assert key.status() == STATUS
        key.count_inferences(4)
        assert held.counted == 4
        error = expect_error(
            InferenceLimitError,
            lambda: key.count_inferences(7),
            "The license allows 10 inferences per 1m",
        )
        assert error.retry_after == timedelta(seconds=7) and held.counted == 4
        ending = Ending(key)
        held.end("REVOKED", "License lic-1 was revoked")  # as the renewal thread would
        status = ending.wait()
        assert (status.state, status.code, status.reason) == (
            "ended",
            "REVOKED",
            "License lic-1 was revoked",
        )
        assert expect_error(LeaseEndedError, lambda: key.key, "was revoked").code == "REVOKED"
        assert expect_error(LeaseEndedError, lambda: key.count_inferences(1)).code == "REVOKED"
        assert key.status().code == "REVOKED"
        key.close()
        assert len(ending.seen) == 1


def test_closing_the_client_key_lets_go_at_the_agent(
    server: AgentSocketServer, source: FakeSource
) -> None:
    client = AgentSocketClient(server.path)
    key = client.acquire("L", "iris", 1)
    seen: list[LeaseStatus] = []
    key.on_end(seen.append)
    client.close()
    assert source.keys[0].closed.wait(5)
    assert [(s.code, s.reason) for s in seen] == [("CLOSED", "The holder let go of the key")]
    assert expect_error(LeaseEndedError, lambda: key.key).code == "CLOSED"


def test_the_agent_going_away_ends_the_key(folder: Path, source: FakeSource) -> None:
    server = AgentSocketServer(source, folder / "agent.sock")
    server.start()
    key = AgentSocketClient(server.path).acquire("L", "iris", 1)
    ending = Ending(key)
    server.close()
    assert ending.wait().code == "AGENT_GONE"
    error = expect_error(LeaseEndedError, lambda: key.key, f"The agent at {server.path} closed")
    assert error.code == "AGENT_GONE"
    wait_for(lambda: source.keys[0].closed.is_set(), "the agent to let go")


@pytest.mark.parametrize(
    ("error", "kind", "code"),
    [
        (
            VaultRequestError("REVOKED", "License lic-1 was revoked at X; ask.", status=403),
            VaultRequestError,
            "REVOKED",
        ),
        (
            VaultRequestError("RATE_LIMITED", "used up", status=429, retry_after=30),
            VaultRequestError,
            "RATE_LIMITED",
        ),
        (
            VaultConnectionError("no vault is listening at https://v"),
            VaultConnectionError,
            "VAULT_UNREACHABLE",
        ),
        (
            Refusal(RefusalCode.LICENSE_INVALID, "The license signature does not verify"),
            Refusal,
            "LICENSE_INVALID",
        ),
        (
            UsageError("the license covers several versions of iris; say which one"),
            AgentSocketError,
            "USAGE",
        ),
        (RuntimeError("bug"), AgentSocketError, "INTERNAL"),
    ],
)
def test_a_refusal_reaches_the_client_as_the_agent_raised_it(
    server: AgentSocketServer,
    source: FakeSource,
    error: Exception,
    kind: type[Exception],
    code: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    source.error = error
    raised = expect_error(kind, lambda: AgentSocketClient(server.path).acquire("L", "iris", 1))
    assert getattr(raised, "code") == code or getattr(raised, "code").value == code  # noqa: B009
    if isinstance(error, RuntimeError):
        assert str(raised) == "the agent failed unexpectedly; its log has the details"
        assert "acquire failed unexpectedly" in caplog.text
    else:
        assert str(raised) == str(error)
    if isinstance(error, VaultRequestError):
        assert isinstance(raised, VaultRequestError)
        assert (raised.status, raised.retry_after) == (error.status, error.retry_after)


def test_no_agent_listening(folder: Path) -> None:
    error = expect_error(
        AgentSocketError,
        lambda: AgentSocketClient(folder / "none.sock").acquire("L", "iris", 1),
        f"cannot reach the agent at {folder / 'none.sock'}: No such file or directory",
    )
    assert error.code == "AGENT_UNREACHABLE"


def test_a_refused_peer_sees_the_agents_sentence(server: AgentSocketServer) -> None:
    server.allowed_uids = frozenset()  # as if this process were another user
    error = expect_error(
        AgentSocketError,
        lambda: AgentSocketClient(server.path).acquire("L", "iris", 1),
        f"uid {os.geteuid()} may not use the agent at {server.path}",
    )
    assert error.code == "PEER_NOT_ALLOWED"


def test_a_bad_count_is_refused_before_it_is_sent(server: AgentSocketServer) -> None:
    with AgentSocketClient(server.path) as client:
        key = client.acquire("L", "iris", 1)
        expect_error(
            UsageError,
            lambda: key.count_inferences(-2),
            "an inference count is a whole number ≥ 0, not -2",
        )


class SlowKey(FakeKey):
    """A key whose status hangs while ``hang`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.hang = threading.Event()
        self.go = threading.Event()

    def status(self) -> LeaseStatus:
        if self.hang.is_set():
            self.go.wait(5)
        return self.state


def test_an_agent_that_does_not_answer_in_time(
    server: AgentSocketServer, source: FakeSource
) -> None:
    slow = SlowKey()
    source.acquire = lambda *_: slow  # type: ignore[method-assign]
    client = AgentSocketClient(server.path, timeout=0.3)
    try:
        key = client.acquire("L", "iris", 1)
        slow.hang.set()
        error = expect_error(
            AgentSocketError,
            key.status,
            f"the agent at {server.path} did not answer within 0.3 s; the key was dropped",
        )
        assert error.code == "AGENT_SOCKET"
        wait_for(lambda: not _holds(key), "the key to be dropped")
    finally:
        slow.go.set()
        client.close()


def _holds(key: ModelKey) -> bool:
    try:
        return key.key is not None
    except LeaseEndedError:
        return False


def test_an_unexpected_failure_answers_internal_and_goes_on(
    server: AgentSocketServer, source: FakeSource, caplog: pytest.LogCaptureFixture
) -> None:
    with Raw(server.path) as raw:
        raw.ask({"op": "acquire", "license": "L", "model": "iris", "version": 1})

        def broken() -> LeaseStatus:
            raise RuntimeError("bug")

        source.keys[0].status = broken  # type: ignore[method-assign]
        assert raw.ask({"op": "status"}) == {
            "type": "error",
            "code": "INTERNAL",
            "message": "the agent failed unexpectedly; its log has the details",
        }
        assert raw.ask({"op": "count", "inferences": 1}) == {"type": "ok"}
    assert "an agent request failed unexpectedly" in caplog.text
