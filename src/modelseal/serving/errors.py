"""What can go wrong with a request, and the one table that says how each adapter answers it.

Every error a client can cause or meet is a :class:`ServingError` with a stable ``code`` and one
sentence. :data:`STATUS` maps each code to an HTTP status and a gRPC status code name; the REST and
gRPC adapters look errors up there and nowhere else. Anything that is not a ``ServingError`` is a
bug: the adapters answer it with 500 / ``INTERNAL`` and a request id, and log the traceback under
that id (:func:`internal_error`), so no exception text reaches a client.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from typing import Final

from modelseal.errors import Error

__all__ = [
    "STATUS",
    "ConfigError",
    "InternalServerError",
    "InvalidRequestError",
    "ModelNotFoundError",
    "ModelUnavailableError",
    "PayloadTooLargeError",
    "ServingError",
    "Status",
    "TooManyInferencesError",
    "internal_error",
]

_log = logging.getLogger("modelseal.serving")


@dataclass(frozen=True)
class Status:
    """How an adapter answers one kind of error."""

    http: int
    grpc: str
    """A ``grpc.StatusCode`` member name (kept as text so this module does not import grpc)."""


STATUS: Final[dict[str, Status]] = {
    "INVALID_REQUEST": Status(400, "INVALID_ARGUMENT"),
    "MODEL_NOT_FOUND": Status(404, "NOT_FOUND"),
    "PAYLOAD_TOO_LARGE": Status(413, "RESOURCE_EXHAUSTED"),
    "INFERENCE_LIMIT": Status(429, "RESOURCE_EXHAUSTED"),
    "INTERNAL": Status(500, "INTERNAL"),
    "MODEL_UNAVAILABLE": Status(503, "UNAVAILABLE"),
}
"""Error code → answer. The single source of truth for both adapters (see docs/serving.md)."""


class ServingError(Error):
    """An error answered to the client: ``code`` selects the status in :data:`STATUS`."""

    code = "INTERNAL"

    @property
    def status(self) -> Status:
        return STATUS[self.code]


class InvalidRequestError(ServingError):
    """The request is malformed or does not fit the model (names, shapes, datatypes, sizes)."""

    code = "INVALID_REQUEST"


class ModelNotFoundError(ServingError):
    """No model or version of that name is configured."""

    code = "MODEL_NOT_FOUND"


class ModelUnavailableError(ServingError):
    """The model is configured but not loaded now: its license, lease or load failed."""

    code = "MODEL_UNAVAILABLE"

    def __init__(self, message: str, *, reason_code: str | None = None) -> None:
        super().__init__(message)
        self.reason_code = reason_code


class TooManyInferencesError(ServingError):
    """The license's inferences per period are used up on this device."""

    code = "INFERENCE_LIMIT"

    def __init__(self, message: str, *, retry_after_seconds: int) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds


class PayloadTooLargeError(ServingError):
    """The request body is larger than the server accepts."""

    code = "PAYLOAD_TOO_LARGE"


class InternalServerError(ServingError):
    """A bug or an unexpected failure; the message names only the request id for the log."""

    code = "INTERNAL"


class ConfigError(Error):
    """The server's configuration or model repository cannot be used (raised at start-up)."""

    code = "SERVE_CONFIG"


def internal_error(exc: BaseException, where: str) -> InternalServerError:
    """Log ``exc`` with its traceback under a fresh request id; return the error to answer."""
    request_id = secrets.token_hex(8)
    _log.error("request %s failed in %s", request_id, where, exc_info=exc)
    return InternalServerError(
        f"the server failed to handle the request (request id {request_id}: the server log has the details)"
    )
