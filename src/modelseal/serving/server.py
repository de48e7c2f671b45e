"""One process, two ports: the REST adapter under uvicorn and the gRPC adapter, one data plane.

:meth:`ModelServer.run` serves until SIGTERM or SIGINT (uvicorn catches them in the main
thread), then stops taking requests, lets those in flight finish, stops gRPC with a grace
period, unloads every model and drops every key. :meth:`start` and :meth:`stop` do the same from
a background thread (tests, embedding).
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import time
from pathlib import Path
from types import FrameType

import grpc
import uvicorn

from modelseal.agent.source import KeySource
from modelseal.serving.config import ServerConfig
from modelseal.serving.dataplane import DataPlane
from modelseal.serving.errors import ConfigError
from modelseal.serving.grpc_server import create_grpc_server
from modelseal.serving.metrics import Metrics
from modelseal.serving.models import ModelManager
from modelseal.serving.rest import create_app
from modelseal.serving.settings import ServeSettings

__all__ = ["ModelServer"]

_log = logging.getLogger("modelseal.serving")
_GRACE = 5.0


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"the {what} {path} cannot be read: {exc.strerror}") from None


class _Uvicorn(uvicorn.Server):
    """uvicorn re-raises a caught SIGTERM/SIGINT once it has stopped, which would end the process
    before the models are unloaded and the keys dropped; the model server exits by itself."""

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        self._captured_signals.clear()


class ModelServer:
    """The model server of one repository configuration."""

    def __init__(
        self, settings: ServeSettings, config: ServerConfig, key_source: KeySource | None
    ) -> None:
        self.settings = settings
        self.models = ModelManager(
            config, key_source, license_poll_interval=settings.license_poll_interval
        )
        self._key_source = key_source
        enabled = settings.metrics if config.metrics_enabled is None else config.metrics_enabled
        self.metrics = Metrics(self.models) if enabled else None
        self.plane = DataPlane(self.models, self.metrics)
        self._rest_socket = self._bind(settings.rest_host, settings.rest_port)
        self.rest_port: int = self._rest_socket.getsockname()[1]
        self._grpc = create_grpc_server(
            self.plane,
            self.metrics,
            max_message_size=settings.max_body_size,
            workers=settings.grpc_workers,
        )
        address = f"{settings.grpc_host}:{settings.grpc_port}"
        credentials = self._grpc_credentials()
        try:
            if credentials is None:
                self.grpc_port = self._grpc.add_insecure_port(address)
            else:
                self.grpc_port = self._grpc.add_secure_port(address, credentials)
        except RuntimeError:
            self.grpc_port = 0
        if not self.grpc_port:
            self._rest_socket.close()
            raise ConfigError(f"the gRPC port cannot listen on {address} (in use?)")
        self._uvicorn = _Uvicorn(self._uvicorn_config())
        self._thread: threading.Thread | None = None

    @staticmethod
    def _bind(host: str, port: int) -> socket.socket:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            sock.close()
            raise ConfigError(
                f"the REST port cannot listen on {host}:{port}: {exc.strerror}"
            ) from None
        sock.listen(1024)
        sock.set_inheritable(True)
        return sock

    def _grpc_credentials(self) -> grpc.ServerCredentials | None:
        settings = self.settings
        if settings.tls_cert is None or settings.tls_key is None:
            return None
        ca = settings.tls_client_ca
        return grpc.ssl_server_credentials(
            [(_read(settings.tls_key, "TLS key"), _read(settings.tls_cert, "TLS certificate"))],
            root_certificates=_read(ca, "client CA file") if ca else None,
            require_client_auth=ca is not None,
        )

    def _uvicorn_config(self) -> uvicorn.Config:
        settings = self.settings
        app = create_app(self.plane, self.metrics, max_body_size=settings.max_body_size)
        tls: dict[str, object] = {}
        if settings.tls_cert is not None and settings.tls_key is not None:
            tls = {"ssl_certfile": str(settings.tls_cert), "ssl_keyfile": str(settings.tls_key)}
            if settings.tls_client_ca is not None:
                tls |= {
                    "ssl_ca_certs": str(settings.tls_client_ca),
                    "ssl_cert_reqs": ssl.CERT_REQUIRED,
                }
        config = uvicorn.Config(
            app,
            lifespan="off",
            log_level="warning",
            access_log=False,
            server_header=False,
            timeout_graceful_shutdown=int(_GRACE),
            **tls,  # type: ignore[arg-type]
        )
        try:
            config.load()
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"TLS cannot be set up: {exc}") from None
        return config

    # --- lifecycle ----------------------------------------------------------------------------

    def _load_and_listen(self) -> None:
        self.models.start()
        self._grpc.start()
        scheme = "https" if self.settings.tls_cert else "http"
        _log.info(
            "serving KServe v2: REST %s://%s:%d, gRPC %s:%d",
            scheme,
            self.settings.rest_host,
            self.rest_port,
            self.settings.grpc_host,
            self.grpc_port,
        )

    def _shutdown(self) -> None:
        self._grpc.stop(_GRACE).wait()
        self.models.close()
        if self._key_source is not None:
            self._key_source.close()
        self._rest_socket.close()
        _log.info("stopped")

    def run(self) -> None:
        """Serve until SIGTERM/SIGINT (call from the main thread)."""
        try:
            self._load_and_listen()
            self._uvicorn.run(sockets=[self._rest_socket])
        finally:
            self._shutdown()

    def start(self) -> None:
        """Load the models and serve from a background thread; returns once both ports answer."""
        self._load_and_listen()
        self._thread = threading.Thread(
            target=self._uvicorn.run,
            kwargs={"sockets": [self._rest_socket]},
            name="modelseal-rest",
            daemon=True,
        )
        self._thread.start()
        while not self._uvicorn.started:
            if not self._thread.is_alive():
                raise ConfigError("the REST server failed to start; the log has the details")
            time.sleep(0.01)

    def stop(self) -> None:
        self._uvicorn.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=_GRACE + 5)
        self._shutdown()
