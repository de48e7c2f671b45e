"""The one error table of the REST API: every error kind → HTTP status and a JSON body.

Every error body is ``{"code": <stable code>, "message": <one sentence>}``, plus ``hint`` (a next
step) when the error has one:

=====================================  ======================  =====================================
raised                                 status                  code
=====================================  ======================  =====================================
:class:`~modelseal.licensing.Refusal`  the code's status       the refusal code (+ ``retry_after``
                                                               and a ``Retry-After`` header)
``NotFound`` / ``Conflict`` /          404 / 409 / 400 / 401   the error's code
``BadRequest`` / ``Unauthorized``
other ``VaultError`` (said on purpose)  500                     ``VAULT``
client certificate missing / wrong     401 / 403               ``CLIENT_CERT_REQUIRED`` /
role (:mod:`modelseal.vault.auth`)                             ``WRONG_ROLE``
:class:`~modelseal.errors.UsageError`  400                     ``BAD_REQUEST`` (a request the
                                                               service cannot express, e.g. a policy)
request body or parameters invalid     422                     ``BAD_REQUEST``
no such route / method, body too big   404 / 405 / 413         ``NOT_FOUND`` / ``METHOD_NOT_ALLOWED``
                                                               / ``PAYLOAD_TOO_LARGE``
anything else                          500                     ``INTERNAL``, with a ``request_id``
=====================================  ======================  =====================================

An unexpected exception is logged with its traceback and the request id; its text never reaches
the client (it may hold paths, SQL or worse). Only the adapters use this table.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping
from typing import Any, Final

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from modelseal.errors import UsageError
from modelseal.licensing import Refusal
from modelseal.vault.auth import HTTP_STATUS as AUTH_STATUS
from modelseal.vault.auth import ClientAuthError
from modelseal.vault.service import BadRequest, Conflict, NotFound, Unauthorized, VaultError

__all__ = [
    "BAD_REQUEST",
    "ERROR_STATUS",
    "INTERNAL",
    "CatchAllMiddleware",
    "add_error_handlers",
    "error_body",
    "error_response",
    "internal_error",
]

log = logging.getLogger("modelseal.vault.api")

BAD_REQUEST: Final = "BAD_REQUEST"
INTERNAL: Final = "INTERNAL"
INTERNAL_MESSAGE: Final = "internal error"

#: Service-layer errors by class (the first matching base wins).
ERROR_STATUS: Final[Mapping[type[VaultError], int]] = {
    NotFound: 404,
    Conflict: 409,
    BadRequest: 400,
    Unauthorized: 401,
    VaultError: 500,  # the vault cannot do it (a data key that does not unwrap): said on purpose
}
_HTTP_CODES: Final = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED", 413: "PAYLOAD_TOO_LARGE"}


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"code": code, "message": message, **extra}


def _with_hint(code: str, exc: VaultError | UsageError) -> dict[str, Any]:
    return error_body(code, exc.message, **({"hint": exc.hint} if exc.hint else {}))


def error_response(exc: Exception) -> JSONResponse:
    """The response for a known error kind; anything else is a 500 (see :func:`internal_error`)."""
    if isinstance(exc, Refusal):
        headers = None if exc.retry_after is None else {"Retry-After": str(exc.retry_after)}
        return JSONResponse(exc.as_dict(), status_code=exc.http_status, headers=headers)
    if isinstance(exc, ClientAuthError):
        return JSONResponse(error_body(exc.code, exc.message), status_code=AUTH_STATUS[exc.code])
    if isinstance(exc, VaultError):
        for kind, status in ERROR_STATUS.items():
            if isinstance(exc, kind):
                return JSONResponse(_with_hint(exc.code, exc), status_code=status)
    if isinstance(exc, UsageError):
        return JSONResponse(_with_hint(BAD_REQUEST, exc), status_code=400)
    if isinstance(exc, RequestValidationError):
        return JSONResponse(error_body(BAD_REQUEST, _validation_message(exc)), status_code=422)
    if isinstance(exc, StarletteHTTPException):
        code = _HTTP_CODES.get(exc.status_code, f"HTTP_{exc.status_code}")
        return JSONResponse(
            error_body(code, _sentence(str(exc.detail))),
            status_code=exc.status_code,
            headers=exc.headers,
        )
    return internal_error(exc)


def internal_error(exc: BaseException) -> JSONResponse:
    """500 with a fresh request id; the traceback goes to the log under that id, not the client."""
    request_id = secrets.token_hex(8)
    log.error("request %s failed", request_id, exc_info=exc)
    return JSONResponse(
        error_body(INTERNAL, INTERNAL_MESSAGE, request_id=request_id),
        status_code=500,
        headers={"X-Request-ID": request_id},
    )


def _validation_message(exc: RequestValidationError) -> str:
    problems = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error.get("loc", ()) if part != "body")
        what = error.get("msg", "is not valid")
        if error.get("type") == "json_invalid":
            where, what = "", "the body is not valid JSON"
        problems.append(f"{where}: {what}" if where else what)
    return _sentence("the request is not valid: " + "; ".join(problems or ["unknown problem"]))


def _sentence(text: str) -> str:
    text = text.strip()
    return text if text.endswith(".") else f"{text}."


def add_error_handlers(app: FastAPI) -> None:
    """Route every known error kind through :func:`error_response`, and catch the rest."""

    async def handler(_request: Request, exc: Exception) -> JSONResponse:
        return error_response(exc)

    for kind in (
        Refusal,
        ClientAuthError,
        VaultError,
        UsageError,
        RequestValidationError,
        StarletteHTTPException,
    ):
        app.add_exception_handler(kind, handler)
    app.add_middleware(CatchAllMiddleware)


class CatchAllMiddleware:
    """Answers any exception no handler took with :func:`internal_error` (ASGI, no buffering).

    Starlette's own last-resort handler re-raises after answering, which logs the error a second
    time; this one answers and stops. If the response had already started, the connection is
    closed (the error is still logged).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            if started:
                log.error("request failed after its response started", exc_info=exc)
                return
            await internal_error(exc)(scope, receive, send)
