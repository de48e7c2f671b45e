"""A real vault over HTTPS on a fixed loopback port that tests can stop and start again, with a
sealed model, a customer and an enrolled agent home; and small waiting helpers."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from modelseal.agent import AgentHome, LeaseStatus, ModelKey
from modelseal.crypto import DataKey
from modelseal.licensing import Policy
from modelseal.vault.api.schemas import LicenseRequest, PolicyTerms
from modelseal.vault.client import VaultClient
from modelseal.vault.home import VaultHome
from modelseal.vault.server import VaultServer
from tests.integration.vault._server import PASSPHRASE, free_port

HEARTBEAT = timedelta(seconds=1)


class VaultControl:
    """``vault serve`` (the real server) in a thread on one fixed port, stoppable and restartable."""

    def __init__(self, home: VaultHome) -> None:
        self.home = home
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self.server: VaultServer | None = None
        self._stack: ExitStack | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        assert self.server is None, "the vault is running already"
        stack = ExitStack()
        vault = stack.enter_context(self.home.unlock(passphrase=PASSPHRASE.encode()))
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        stack.callback(sock.close)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        server = stack.enter_context(VaultServer(vault, host="127.0.0.1", port=self.port))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        deadline = time.monotonic() + 15
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "the vault did not start"
            time.sleep(0.01)
        self.server, self._stack, self._thread = server, stack, thread

    def stop(self) -> None:
        assert self.server is not None and self._stack is not None and self._thread is not None
        self.server.stop()
        self._thread.join(timeout=15)
        assert not self._thread.is_alive(), "the vault did not stop"
        self._stack.close()
        self.server = self._stack = self._thread = None


@dataclass(frozen=True)
class World:
    vault: VaultControl
    device: AgentHome
    data_key: DataKey
    tmp: Path

    @property
    def url(self) -> str:
        return self.vault.url

    def admin(self) -> VaultClient:
        return VaultClient.admin(self.url, self.vault.home.path / "admin")

    def issue(self, **terms: Any) -> tuple[str, str]:
        """A license for iris version 1 with ``terms`` (heartbeat 1 s unless given):
        (its id, its JWS)."""
        terms.setdefault("heartbeat", HEARTBEAT)
        request = LicenseRequest(
            customer="acme", model="iris", versions="1", policy=PolicyTerms.of(Policy(**terms))
        )
        with self.admin() as admin:
            issued = admin.issue_license(request)
        return issued.license.id, issued.token


class OffsetClock:
    """The real clock plus an offset the test moves (the vault keeps the real time)."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset


class Ending:
    """Records the ``on_end`` calls of a key."""

    def __init__(self, key: ModelKey) -> None:
        self.seen: list[LeaseStatus] = []
        self.done = threading.Event()
        key.on_end(self)

    def __call__(self, status: LeaseStatus) -> None:
        self.seen.append(status)
        self.done.set()

    def wait(self, timeout: float = 5.0) -> LeaseStatus:
        assert self.done.wait(timeout), "the lease did not end"
        assert len(self.seen) == 1, self.seen
        return self.seen[0]


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 8.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)
