"""The error answers each route documents in the OpenAPI schema (all share :class:`ErrorBody`)."""

from __future__ import annotations

from typing import Any, Final

from modelseal.vault.api.schemas import ErrorBody

__all__ = ["ADMIN_ERRORS", "COMMON_ERRORS", "DEVICE_ERRORS", "errors"]

_DESCRIPTIONS: Final = {
    400: "The request cannot be carried out as given (BAD_REQUEST).",
    401: "No acceptable credential: CLIENT_CERT_REQUIRED, UNAUTHORIZED (enrolment token), or a "
    "refusal such as LICENSE_INVALID, NONCE_INVALID, DEVICE_UNKNOWN, DEVICE_REVOKED.",
    403: "The credential does not allow it: WRONG_ROLE, or a refusal such as EXPIRED, REVOKED, "
    "USAGE_EXHAUSTED, MODEL_NOT_LICENSED.",
    404: "No such customer, model, device, license or lease (NOT_FOUND, MODEL_UNKNOWN, "
    "LEASE_UNKNOWN).",
    409: "It exists already, or all seats are taken (CONFLICT, TOO_MANY_DEVICES).",
    410: "The lease has expired (LEASE_EXPIRED).",
    422: "The body or a parameter is malformed (BAD_REQUEST).",
    429: "A per-period limit is reached (RATE_LIMITED, with Retry-After).",
    500: "The vault failed (INTERNAL, with a request id for its log).",
}
ADMIN_ERRORS: Final = (401, 403)
DEVICE_ERRORS: Final = (401, 403)
COMMON_ERRORS: Final = (422, 500)


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route or router: each status documented with the error body."""
    return {
        status: {"model": ErrorBody, "description": _DESCRIPTIONS[status]} for status in statuses
    }
