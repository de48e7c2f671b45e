"""The settings of ``modelseal serve``: one class, built once at the entry point.

Every field can also come from the environment with the prefix ``MODELSEAL_SERVE_`` (for example
``MODELSEAL_SERVE_REST_PORT=8001``); command-line options win.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["DEFAULT_MAX_BODY_SIZE", "ServeSettings"]

DEFAULT_MAX_BODY_SIZE = 64 << 20


class ServeSettings(BaseSettings):
    """Where the models come from, where the server listens, and how it protects itself."""

    model_config = SettingsConfigDict(
        env_prefix="MODELSEAL_SERVE_", extra="forbid", frozen=True, use_attribute_docstrings=True
    )

    config: Path | None = None
    """The OVMS-style config.json listing the models (or use model_name + model_path)."""
    model_name: str | None = None
    """Single-model mode: the name the model is served under."""
    model_path: Path | None = None
    """Single-model mode: the base path holding the version directories 1, 2, …"""
    license: Path | None = None
    """Single-model mode: the license file of a sealed model (default: license.jws beside it)."""
    backend: Literal["onnxruntime", "openvino"] | None = None
    """Single-model mode: the backend (default: ONNX Runtime for ONNX, OpenVINO for IR)."""
    rest_host: str = "127.0.0.1"
    """Address the REST (HTTP) port listens on."""
    rest_port: int = Field(default=8000, ge=0, le=65535)
    """The REST port (0: any free port)."""
    grpc_host: str = "127.0.0.1"
    """Address the gRPC port listens on."""
    grpc_port: int = Field(default=9000, ge=0, le=65535)
    """The gRPC port (0: any free port)."""
    agent_home: Path | None = None
    """Run the key agent in this process with the device identity in this agent home."""
    agent_socket: Path | None = None
    """Get keys from `modelseal agent serve` over this Unix socket."""
    tls_cert: Path | None = None
    """PEM certificate (chain) of both ports; enables TLS."""
    tls_key: Path | None = None
    """PEM private key of tls_cert."""
    tls_client_ca: Path | None = None
    """PEM CA certificates; when set, clients must present a certificate issued by one."""
    max_body_size: int = Field(default=DEFAULT_MAX_BODY_SIZE, ge=1024)
    """Largest request accepted, in bytes (REST body or gRPC message); larger gets 413."""
    license_poll_interval: float = Field(default=5.0, gt=0)
    """Seconds between checks of the license files of sealed models that are not loaded."""
    grpc_workers: int = Field(default=16, ge=1)
    """Threads serving gRPC calls."""
    metrics: bool = True
    """Serve Prometheus /metrics on the REST port (config.json's monitoring.metrics.enable wins)."""

    @model_validator(mode="after")
    def _consistent(self) -> ServeSettings:
        single = self.model_name is not None or self.model_path is not None
        if self.config is not None and single:
            raise ValueError("give either a config file or a model name and path, not both")
        if self.config is None and (self.model_name is None or self.model_path is None):
            raise ValueError("give a config file, or both a model name and a model path")
        if self.config is not None and (self.license is not None or self.backend is not None):
            raise ValueError("license and backend are per model in the config file")
        if self.agent_home is not None and self.agent_socket is not None:
            raise ValueError("give an agent home or an agent socket, not both")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("TLS needs both a certificate and its key")
        if self.tls_client_ca is not None and self.tls_cert is None:
            raise ValueError("client certificate authentication needs TLS (a certificate and key)")
        return self
