"""The vault's REST API (v1): FastAPI routes that only translate HTTP to the service layer.

:func:`create_app` builds the app; :mod:`~modelseal.vault.api.errors` is the one error table,
:mod:`~modelseal.vault.api.schemas` the JSON models (shared with the client). Importing this
package is light: the web framework is imported when an app is created.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from fastapi import FastAPI

    from modelseal.vault.home import VaultHome
    from modelseal.vault.service import VaultService

__all__ = ["MAX_BODY_SIZE", "create_app"]

MAX_BODY_SIZE: Final = 16 << 20  # a manifest of many files is the largest body


def create_app(service: VaultService, home: VaultHome, *, metrics: bool = True) -> FastAPI:
    """The vault app over ``service``; ``home`` gives its public material (CA certificate, import
    key, vault id). With ``metrics``, ``GET /metrics`` serves Prometheus metrics of this app."""
    from fastapi import FastAPI

    from modelseal import __version__
    from modelseal.vault.api._responses import COMMON_ERRORS, errors
    from modelseal.vault.api.errors import add_error_handlers
    from modelseal.vault.api.metrics import MetricsMiddleware, VaultMetrics, metrics_router
    from modelseal.vault.api.routes_admin import admin_router
    from modelseal.vault.api.routes_device import device_router
    from modelseal.vault.api.routes_public import public_router

    app = FastAPI(
        title="modelseal vault",
        version=__version__,
        summary="Model keys, licenses, device enrolment and key release.",
        description="Device routes need a device client certificate from the vault CA, admin "
        "routes the admin certificate; the TLS handshake verifies both. Every error is "
        '`{"code", "message"}` with a stable code.',
        responses=errors(*COMMON_ERRORS),
        max_body_size=MAX_BODY_SIZE,
        docs_url=None,
        redoc_url=None,
    )
    add_error_handlers(app)
    counters = VaultMetrics() if metrics else None
    app.include_router(public_router(service, home))
    app.include_router(admin_router(service))
    app.include_router(device_router(service, counters))
    if counters is not None:
        app.include_router(metrics_router(counters))
        app.add_middleware(MetricsMiddleware, metrics=counters)  # outermost: times everything
    return app
