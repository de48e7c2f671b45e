"""``modelseal vault serve``: unlock a vault home and serve its REST API over HTTPS with mTLS.

The TLS server key is one of the home's sealed secrets; it is never written to disk in clear.
Python's ``ssl`` reads keys only from files, so the key is re-encrypted under a random one-time
password and handed to OpenSSL through an anonymous in-memory file (``memfd_create``; on systems
without it, a private temporary file that holds only the encrypted key). The file is closed as soon
as the TLS context is built, before the first connection is accepted.

SIGTERM and SIGINT stop the server gracefully: it stops accepting connections, lets requests in
flight finish (up to :data:`GRACEFUL_SHUTDOWN` seconds), then closes the service and the master key,
and :func:`serve` returns normally.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Final

from uvicorn import Config, Server

from modelseal._closing import Closing
from modelseal._files import write_all
from modelseal.crypto import SigningKey
from modelseal.errors import Error
from modelseal.vault import _layout as layout
from modelseal.vault.home import UnlockedVault, VaultHome
from modelseal.vault.tls import build_uvicorn_config

if TYPE_CHECKING:
    from modelseal.attestation import Collateral

__all__ = ["GRACEFUL_SHUTDOWN", "ServeError", "VaultServer", "serve"]

GRACEFUL_SHUTDOWN: Final = 10  # seconds for requests in flight after SIGTERM / SIGINT
_SIGNALS: Final = (signal.SIGINT, signal.SIGTERM)


def serve(
    home: Path,
    *,
    host: str | None = None,
    port: int | None = None,
    passphrase: bytes | None = None,
    pin: str | None = None,
    log_level: str = "warning",
    on_ready: Callable[[str], None] | None = None,
    collateral: Sequence[Collateral] = (),
) -> None:
    """Unlock the vault home at ``home`` and serve it until SIGTERM or SIGINT.

    ``host`` and ``port`` default to the home's settings; ``passphrase`` opens a software master
    key, ``pin`` a PKCS#11 one. ``on_ready`` receives the base URL once the socket is listening.
    """
    vault_home = VaultHome.open(home)
    with vault_home.unlock(passphrase=passphrase, pin=pin) as vault:
        server = VaultServer(
            vault,
            host=host or vault_home.settings.host,
            port=vault_home.settings.port if port is None else port,
            log_level=log_level,
            on_ready=on_ready,
            collateral=collateral,
        )
        with server:
            server.run()


class ServeError(Error):
    """The vault cannot serve (the address cannot be bound)."""

    code = "VAULT_SERVE"


class VaultServer(Closing):
    """The vault app on a uvicorn server with the vault's TLS certificate and client CA.

    Build it, then :meth:`run` (blocks; in the main thread it handles SIGTERM/SIGINT) or
    :meth:`run` in a thread and :meth:`stop`. Closing releases the service (not the vault).
    """

    def __init__(
        self,
        vault: UnlockedVault,
        *,
        host: str,
        port: int,
        log_level: str = "warning",
        metrics: bool = True,
        on_ready: Callable[[str], None] | None = None,
        collateral: Sequence[Collateral] = (),
    ) -> None:
        from modelseal.vault.api import create_app
        from modelseal.vault.service import VaultService

        self.service = VaultService(vault, collateral=collateral)
        try:
            app = create_app(self.service, vault.home, metrics=metrics)
            home = vault.home.path
            with _key_in_memory(vault.tls_key_pem) as (key_file, password):
                config = build_uvicorn_config(
                    app,
                    host=host,
                    port=port,
                    cert_file=home / layout.TLS_CERT,
                    key_file=key_file,
                    client_ca_file=home / layout.CA_CERT,
                    key_password=password,
                    log_level=log_level,
                    timeout_graceful_shutdown=GRACEFUL_SHUTDOWN,
                )
                config.load()  # builds the TLS context now, while the key file exists
        except BaseException:
            self.close()
            raise
        self._server = _Server(config, on_ready)

    @property
    def started(self) -> bool:
        return self._server.started

    def run(self, sockets: list[socket.socket] | None = None) -> None:
        """Serve until stopped (a signal, or :meth:`stop` from another thread), on ``sockets``
        or on a socket bound to the configured host and port."""
        if sockets is not None:
            self._server.run(sockets=sockets)
            return
        with _listen(self._server.config.host, self._server.config.port) as sock:
            self._server.run(sockets=[sock])

    def stop(self) -> None:
        self._server.should_exit = True

    def close(self) -> None:
        self.service.close()


class _Server(Server):
    """uvicorn's server, reporting readiness, and handling signals without re-raising them.

    uvicorn re-raises a captured SIGTERM after its graceful shutdown, which would kill the process
    before the master key and the database connections are closed; here a signal only stops the
    server, and the caller's cleanup runs.
    """

    def __init__(self, config: Config, on_ready: Callable[[str], None] | None) -> None:
        super().__init__(config)
        self._on_ready = on_ready

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started and self._on_ready is not None:
            self._on_ready(_base_url(self))

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.signal(sig, self._stop) for sig in _SIGNALS}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _stop(self, sig: int, _frame: FrameType | None) -> None:
        if self.should_exit and sig == signal.SIGINT:
            self.force_exit = True  # a second Ctrl-C: stop waiting for requests in flight
        self.should_exit = True


def _listen(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port``; a busy port is one clear error, not uvicorn's exit."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ServeError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}",
            hint="is another vault (or another program) using the port? choose one with --port",
        ) from exc
    return sock


def _base_url(server: Server) -> str:
    for listener in server.servers:
        for sock in listener.sockets:
            host, port = sock.getsockname()[:2]
            return f"https://{f'[{host}]' if ':' in host else host}:{port}"
    return f"https://{server.config.host}:{server.config.port}"  # pragma: no cover


@contextlib.contextmanager
def _key_in_memory(key_pem: bytes) -> Iterator[tuple[str, bytes]]:
    """A path OpenSSL can read the TLS key from, with its one-time password; only the encrypted
    key is ever in that file, and the file is gone when the context exits."""
    password = secrets.token_urlsafe(32).encode("ascii")
    encrypted = SigningKey.from_pem(key_pem, None).to_pem(password)
    # Linux only, like the rest of modelseal: an anonymous in-memory file, never on disk.
    fd = os.memfd_create("modelseal-tls-key", os.MFD_CLOEXEC)
    try:
        write_all(fd, encrypted)
        yield f"/proc/self/fd/{fd}", password
    finally:
        os.close(fd)
