"""The KServe v2 REST adapter (Starlette): routes translate HTTP to the data plane and back.

Errors answer ``{"error": "<sentence>"}`` with the status of :data:`~modelseal.serving.errors.STATUS`.
Inference work (decoding, running, encoding) runs in a worker thread so the event loop only
moves bytes.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from modelseal.serving.dataplane import DataPlane, ModelMetadata
from modelseal.serving.errors import (
    PayloadTooLargeError,
    ServingError,
    TooManyInferencesError,
    internal_error,
)
from modelseal.serving.metrics import CONTENT_TYPE, Metrics, RequestTracker
from modelseal.serving.restcodec import HEADER_LENGTH, decode_request, encode_response

__all__ = ["create_app"]

Handler = Callable[[Request], Awaitable[Response]]


def _json(doc: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps(doc, separators=(",", ":")).encode("utf-8")
    return Response(body, status, headers, media_type="application/json")


def error_response(error: ServingError) -> Response:
    headers = None
    if isinstance(error, TooManyInferencesError):
        headers = {"Retry-After": str(error.retry_after_seconds)}
    return _json({"error": error.message}, error.status.http, headers)


def _metadata(meta: ModelMetadata) -> dict[str, Any]:
    def tensors(specs: Any) -> list[dict[str, Any]]:
        return [{"name": s.name, "datatype": s.datatype, "shape": list(s.shape)} for s in specs]

    return {
        "name": meta.name,
        "versions": list(meta.versions),
        "platform": meta.platform,
        "inputs": tensors(meta.inputs),
        "outputs": tensors(meta.outputs),
    }


async def _read_body(request: Request, limit: int) -> bytes:
    too_large = PayloadTooLargeError(
        f"the request body is larger than this server accepts ({limit} bytes)"
    )
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(plane: DataPlane, metrics: Metrics | None, *, max_body_size: int) -> Starlette:
    """The ASGI application of one server."""

    def endpoint(method: str, handler: Handler) -> Handler:
        async def run(request: Request) -> Response:
            if metrics is None:
                return await _answer(handler, request, RequestTracker())
            name = request.path_params.get("name", "")
            version = request.path_params.get("version", "")
            with metrics.track("REST", method, name, version) as tracker:
                return await _answer(handler, request, tracker)

        return run

    async def _answer(handler: Handler, request: Request, tracker: RequestTracker) -> Response:
        try:
            response = await handler(request)
        except ServingError as exc:
            tracker.failed = True
            return error_response(exc)
        except Exception as exc:
            tracker.failed = True
            return error_response(internal_error(exc, request.url.path))
        tracker.failed = response.status_code >= 400
        return response

    def version_of(request: Request) -> str | None:
        return request.path_params.get("version") or None

    async def live(request: Request) -> Response:
        return _json({"live": plane.live()})

    async def ready(request: Request) -> Response:
        if plane.ready():
            return _json({"ready": True})
        return _json({"error": "the server is still loading its models"}, 503)

    async def server_metadata(request: Request) -> Response:
        return _json(plane.server_metadata())

    async def model_metadata(request: Request) -> Response:
        meta = plane.model_metadata(request.path_params["name"], version_of(request))
        return _json(_metadata(meta))

    async def model_ready(request: Request) -> Response:
        found = plane.ensure_ready(request.path_params["name"], version_of(request))
        return _json({"name": found.name, "version": str(found.version), "ready": True})

    async def infer(request: Request) -> Response:
        body = await _read_body(request, max_body_size)
        header_length = request.headers.get(HEADER_LENGTH)
        name, version = request.path_params["name"], version_of(request)

        def work() -> Response:
            decoded, plan = decode_request(body, header_length, name, version)
            encoded = encode_response(plane.infer(decoded), plan)
            if encoded.header_length is None:
                return Response(encoded.body, media_type="application/json")
            return Response(
                encoded.body,
                headers={HEADER_LENGTH: str(encoded.header_length)},
                media_type="application/octet-stream",
            )

        return await run_in_threadpool(work)

    async def scrape(request: Request) -> Response:
        body = metrics.render() if metrics is not None else b""
        return Response(body, media_type=CONTENT_TYPE)

    model = "/v2/models/{name}"
    versioned = "/v2/models/{name}/versions/{version}"
    routes = [
        Route("/v2/health/live", endpoint("ServerLive", live), methods=["GET"]),
        Route("/v2/health/ready", endpoint("ServerReady", ready), methods=["GET"]),
        Route("/v2", endpoint("ServerMetadata", server_metadata), methods=["GET"]),
    ]
    for path in (model, versioned):
        routes += [
            Route(path, endpoint("ModelMetadata", model_metadata), methods=["GET"]),
            Route(f"{path}/ready", endpoint("ModelReady", model_ready), methods=["GET"]),
            Route(f"{path}/infer", endpoint("ModelInfer", infer), methods=["POST"]),
        ]
    if metrics is not None:
        routes.append(Route("/metrics", scrape, methods=["GET"]))

    async def http_error(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        message = {404: "there is no such endpoint", 405: "this endpoint does not take that method"}
        return _json({"error": message.get(status, "the request cannot be handled")}, status)

    return Starlette(routes=routes, exception_handlers={HTTPException: http_error})
