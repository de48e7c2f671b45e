"""Who is calling: the verified client certificate of the connection, and role checks for routes.

The TLS handshake already checked that the certificate chains to the vault CA and allows client
authentication (see :mod:`modelseal.vault.tls`); here a route only asks for the role the CA wrote
into it. Whether a device is revoked is a database question the service layer answers in its own
transaction.

Refusals raise :class:`ClientCertRequiredError` (401) or :class:`WrongRoleError` (403);
:func:`add_auth_error_handler` turns them into ``{"code": …, "message": …}`` responses, and
:data:`HTTP_STATUS` gives their statuses to an API-wide error table.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from modelseal.crypto import ROLES, Certificate, Role, certificate_role, load_certificates
from modelseal.errors import Error

__all__ = [
    "HTTP_STATUS",
    "ClientAuthError",
    "ClientCertRequiredError",
    "WrongRoleError",
    "add_auth_error_handler",
    "client_certificate",
    "require_role",
]


class ClientAuthError(Error):
    """The connection's client certificate does not allow this request."""


class ClientCertRequiredError(ClientAuthError):
    code = "CLIENT_CERT_REQUIRED"


class WrongRoleError(ClientAuthError):
    code = "WRONG_ROLE"


HTTP_STATUS = {ClientCertRequiredError.code: 401, WrongRoleError.code: 403}


def client_certificate(request: Request) -> Certificate | None:
    """The client certificate the TLS handshake verified, or ``None`` when none was sent."""
    tls: dict[str, Any] | None = request.scope.get("extensions", {}).get("tls")
    chain = tls.get("client_cert_chain") if tls else None
    if not chain:
        return None
    return _parse(next(iter(chain)))


@functools.lru_cache(maxsize=1024)
def _parse(pem: str) -> Certificate:
    """Parsed once per certificate, not per request (the PEM string is the same per connection)."""
    return load_certificates(pem.encode("ascii"), what="the client certificate")[0]


def require_role(role: Role) -> Callable[[Request], Awaitable[Certificate]]:
    """A FastAPI dependency returning the caller's certificate, which must carry ``role``.

    It is a coroutine only so FastAPI runs it on the event loop, not in its thread pool.
    """
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; choose one of {', '.join(ROLES)}")

    async def dependency(request: Request) -> Certificate:
        cert = client_certificate(request)
        if cert is None:
            raise ClientCertRequiredError(
                f"This endpoint needs {_a(role)} client certificate issued by the vault CA; "
                "connect with it (for example curl --cert FILE --key FILE)."
            )
        actual = certificate_role(cert)
        if actual != role:
            held = f"{_a(actual)} certificate" if actual else "a certificate without a known role"
            raise WrongRoleError(
                f"This endpoint needs {_a(role)} certificate, "
                f"but the client certificate {cert.subject!r} is {held}."
            )
        return cert

    dependency.__name__ = f"require_{role}"
    return dependency


def _a(role: str) -> str:
    return f"an {role}" if role[0] in "aeiou" else f"a {role}"


def add_auth_error_handler(app: FastAPI) -> None:
    """Answer :class:`ClientAuthError` with its status and ``{"code", "message"}``."""

    async def handler(_request: Request, exc: Exception) -> JSONResponse:
        if not isinstance(exc, ClientAuthError):  # registered for this class only
            raise exc
        return JSONResponse(
            {"code": exc.code, "message": exc.message}, status_code=HTTP_STATUS[exc.code]
        )

    app.add_exception_handler(ClientAuthError, handler)
