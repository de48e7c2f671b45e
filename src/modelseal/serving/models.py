"""Model lifecycle: load every configured version, serve it, unload it when its lease ends.

Plain versions load once and stay. A sealed version loads only with a key from the
:class:`~modelseal.agent.source.KeySource`: the package is opened, the key acquired with the
version's license, every file decrypted into anonymous memory, handed to the backend and wiped.
While it serves, each inference is metered on the key (the license's per-period limit answers
429). When the lease ends (revoked, exhausted, expired, offline grace used up) the version is
unloaded, its key dropped, and the reason kept: requests then get 503 naming it. A license file
that changes (content or modification time; ``touch`` forces a retry) is tried again by a
background poller, so a new license brings the version back without a restart.

States follow OVMS: START → LOADING → AVAILABLE → UNLOADING → END.
"""

from __future__ import annotations

import enum
import hashlib
import logging
import math
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from modelseal._closing import Closing
from modelseal.agent.source import (
    InferenceLimitError,
    KeySource,
    LeaseEndedError,
    LeaseStatus,
    ModelKey,
)
from modelseal.errors import Error
from modelseal.package import SealedPackage
from modelseal.serving._memory import wipe
from modelseal.serving.backends import Backend, BackendName, LoadOptions, load_backend
from modelseal.serving.config import ModelConfig, ServerConfig
from modelseal.serving.errors import (
    ConfigError,
    InvalidRequestError,
    ModelNotFoundError,
    ModelUnavailableError,
    TooManyInferencesError,
)
from modelseal.serving.repository import (
    LICENSE_NAME,
    ModelFormat,
    VersionSource,
    find_model_file,
    scan,
)

__all__ = ["ModelManager", "ModelVersion", "Reason", "State"]

_log = logging.getLogger("modelseal.serving")
_RETRY_CODES = frozenset({"VAULT_UNREACHABLE"})
_LOAD_FAILED = (
    "the model failed to load; the server log has the details"  # backend text stays in the log
)


class State(enum.Enum):
    START = "START"
    LOADING = "LOADING"
    AVAILABLE = "AVAILABLE"
    UNLOADING = "UNLOADING"
    END = "END"


@dataclass(frozen=True)
class Reason:
    """Why a version is not available: a stable code and a sentence a person can act on."""

    code: str
    message: str


class ModelVersion:
    """One version of one model and everything the server knows about it."""

    def __init__(self, config: ModelConfig, source: VersionSource) -> None:
        self.config = config
        self.source = source
        self.state = State.START
        self.backend: Backend | None = None
        self.key: ModelKey | None = None
        self.reason: Reason | None = None
        self.metered = 0
        self.generation = 0
        self.license_stamp: tuple[int, str] | None = None

    @property
    def name(self) -> str:
        return self.source.name

    @property
    def version(self) -> int:
        return self.source.version

    def lease(self) -> LeaseStatus | None:
        key = self.key
        return key.status() if key is not None else None

    def unavailable(self) -> ModelUnavailableError:
        reason = self.reason or Reason("LOADING", "it is still loading")
        return ModelUnavailableError(
            f"model {self.name} version {self.version} is not available: {reason.message} "
            f"({reason.code})",
            reason_code=reason.code,
        )


def _license_stamp(path: Path | None) -> tuple[int, str] | None:
    if path is None:
        return None
    try:
        stat = path.stat()
        return stat.st_mtime_ns, hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


class ModelManager(Closing):
    """Every configured model version; thread-safe; use as a context manager or call close()."""

    def __init__(
        self,
        config: ServerConfig,
        key_source: KeySource | None = None,
        *,
        license_poll_interval: float = 5.0,
    ) -> None:
        self._key_source = key_source
        self._poll_interval = license_poll_interval
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None
        self._models: dict[str, dict[int, ModelVersion]] = {}
        self.loaded = False
        for model in config.models:
            self._models[model.name] = {
                source.version: ModelVersion(model, source) for source in scan(model)
            }

    # --- start and stop ---------------------------------------------------------------------

    @property
    def needs_keys(self) -> bool:
        return any(v.source.sealed is not None for v in self.versions())

    def start(self) -> None:
        """Load every version once (failures are kept as reasons), then start the poller."""
        for version in self.versions():
            self._load(version)
        self.loaded = True
        if self.needs_keys and self._poller is None:
            self._poller = threading.Thread(
                target=self._poll, name="modelseal-license-poller", daemon=True
            )
            self._poller.start()

    def close(self) -> None:
        self._stop.set()
        if self._poller is not None:
            self._poller.join(timeout=10)
        for version in self.versions():
            with self._lock:
                key, version.key, version.backend = version.key, None, None
                version.generation += 1
                version.state = State.END
                version.reason = Reason("SHUTDOWN", "the server is shutting down")
            if key is not None:
                key.close()

    # --- lookup -----------------------------------------------------------------------------

    def versions(self) -> Iterator[ModelVersion]:
        for versions in self._models.values():
            yield from versions.values()

    def names(self) -> list[str]:
        return list(self._models)

    def model(self, name: str) -> dict[int, ModelVersion]:
        try:
            return self._models[name]
        except KeyError:
            raise ModelNotFoundError(f"there is no model {name!r} on this server") from None

    def version(self, name: str, version: str | None) -> ModelVersion:
        """The version asked for, or the latest available one when ``version`` is empty."""
        versions = self.model(name)
        if not version:
            ready = [v for v in versions.values() if v.state is State.AVAILABLE]
            return max(ready or versions.values(), key=lambda v: v.version)
        if not version.isdigit():
            raise InvalidRequestError(f"model version {version!r} is not a positive integer")
        try:
            return versions[int(version)]
        except KeyError:
            served = ", ".join(str(v) for v in sorted(versions))
            raise ModelNotFoundError(
                f"model {name!r} has no version {version} on this server (served: {served})"
            ) from None

    def ready(self, name: str, version: str | None) -> tuple[ModelVersion, Backend]:
        """A version that can serve now and its backend; else :class:`ModelUnavailableError`."""
        found = self.version(name, version)
        backend = found.backend
        if found.state is not State.AVAILABLE or backend is None:
            raise found.unavailable()
        return found, backend

    def meter(self, version: ModelVersion) -> None:
        """Count one inference on a sealed version's key (before it runs)."""
        key = version.key
        if key is None:
            if version.source.sealed is not None:
                raise version.unavailable()
            return
        try:
            key.count_inferences(1)
        except InferenceLimitError as exc:
            raise TooManyInferencesError(
                exc.message, retry_after_seconds=max(1, math.ceil(exc.retry_after.total_seconds()))
            ) from None
        except LeaseEndedError as exc:
            self._lease_ended(version, version.generation, exc.status)
            raise version.unavailable() from None
        version.metered += 1

    # --- loading ----------------------------------------------------------------------------

    def _load(self, version: ModelVersion) -> None:
        with self._lock:
            if self._stop.is_set():
                return
            version.state = State.LOADING
            version.license_stamp = _license_stamp(version.source.license)
        where = f"model {version.name} version {version.version}"
        sealed = version.source.sealed
        try:
            if sealed is None:
                backend, key = self._load_plain(version), None
            else:
                backend, key = self._load_sealed(version, sealed)
        except Error as exc:
            _log.error("%s did not load: %s", where, exc.message)
            self._set_failed(version, Reason(exc.code, exc.message))
            return
        except Exception:
            _log.exception("%s did not load", where)
            self._set_failed(version, Reason("LOAD_FAILED", _LOAD_FAILED))
            return
        with self._lock:
            version.generation += 1
            generation = version.generation
            version.backend, version.key = backend, key
            version.state, version.reason = State.AVAILABLE, None
        if key is not None:
            key.on_end(lambda status: self._lease_ended(version, generation, status))
        _log.info(
            "loaded %s (%s, %s) from %s",
            where,
            "sealed" if key is not None else "plain",
            backend.platform,
            version.source.sealed or version.source.path,
        )

    def _set_failed(self, version: ModelVersion, reason: Reason) -> None:
        with self._lock:
            version.state, version.reason = State.END, reason

    def _load_plain(self, version: ModelVersion) -> Backend:
        root = version.source.path
        paths = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
        model_file, model_format = find_model_file(paths, str(root))
        files = {p: (root / p).read_bytes() for p in paths if p != LICENSE_NAME}
        return _backend(version.config, model_format, files, model_file, sealed=False)

    def _load_sealed(self, version: ModelVersion, sealed: Path) -> tuple[Backend, ModelKey]:
        source = version.source
        if self._key_source is None:
            raise ConfigError(
                "a sealed model needs a key agent; start the server with --agent-home or --agent-socket"
            )
        if source.license is None or not source.license.is_file():
            raise _NoLicenseError(
                f"no license: put the license file at {source.license} (or name it in the "
                "model's license field)"
            )
        token = source.license.read_text(encoding="utf-8").strip()
        with SealedPackage.open(sealed) as package:
            manifest = package.manifest
            if manifest.model.version != source.version:
                _log.warning(
                    "model %s version %d holds a package sealed as %s version %d",
                    source.name,
                    source.version,
                    manifest.model.name,
                    manifest.model.version,
                )
            paths = [entry.path for entry in manifest.files]
            model_file, model_format = find_model_file(paths, str(sealed))
            key = self._key_source.acquire(token, manifest.model.name, manifest.model.version)
            buffers: dict[str, bytes | memoryview] = {}
            try:
                for path in paths:
                    buffers[path] = package.reader(path, key.key).read_all()
                backend = _backend(version.config, model_format, buffers, model_file, sealed=True)
            except BaseException:
                key.close()
                raise
            finally:
                for buffer in buffers.values():
                    wipe(buffer)
        return backend, key

    # --- leases and licenses ----------------------------------------------------------------

    def _lease_ended(self, version: ModelVersion, generation: int, status: LeaseStatus) -> None:
        """Runs on the agent's thread: unload without blocking."""
        with self._lock:
            if version.generation != generation or version.state is not State.AVAILABLE:
                return
            version.state = State.UNLOADING
            version.backend, version.key = None, None
            version.reason = Reason(
                status.code or "LEASE_ENDED", status.reason or "the key's lease has ended"
            )
            version.state = State.END
        _log.warning(
            "unloaded model %s version %d and dropped its key: %s (%s)",
            version.name,
            version.version,
            version.reason.message,
            version.reason.code,
        )

    def _poll(self) -> None:
        while not self._stop.wait(self._poll_interval):
            for version in list(self.versions()):
                if version.source.sealed is None or version.state is State.AVAILABLE:
                    continue
                if version.state is State.LOADING:
                    continue
                stamp = _license_stamp(version.source.license)
                retry = version.reason is not None and version.reason.code in _RETRY_CODES
                if stamp is not None and (stamp != version.license_stamp or retry):
                    _log.info(
                        "trying model %s version %d again with %s",
                        version.name,
                        version.version,
                        version.source.license,
                    )
                    self._load(version)


class _NoLicenseError(Error):
    code = "LICENSE_MISSING"


class _LoadFailedError(Error):
    code = "LOAD_FAILED"


def _backend(
    config: ModelConfig,
    model_format: ModelFormat,
    files: Mapping[str, bytes | memoryview],
    model_file: str,
    *,
    sealed: bool,
) -> Backend:
    """Load a backend; its own error text (which may describe the model) goes to the log only."""
    name: BackendName = config.backend or (
        "openvino" if model_format == "openvino" else "onnxruntime"
    )
    options = LoadOptions(
        target_device=config.target_device,
        nireq=config.nireq,
        plugin_config=config.plugin_config,
        allow_cache=not sealed,
    )
    try:
        return load_backend(name, model_format, files, model_file, options)
    except Exception as exc:
        _log.error("the backend failed to load %s: %s", model_file, exc)
        raise _LoadFailedError(_LOAD_FAILED) from None
