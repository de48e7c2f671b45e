"""The KServe v2 gRPC adapter: ``inference.GRPCInferenceService`` over the data plane.

Tensors arrive in ``raw_input_contents`` (tritonclient's way) or in typed ``contents``; outputs
always go back in ``raw_output_contents``, which every KServe v2 client reads. Errors abort the
call with the gRPC code of :data:`~modelseal.serving.errors.STATUS` and the error's sentence.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final, TypeVar

import grpc

from modelseal._generated import kserve_v2_pb2 as pb
from modelseal.serving.dataplane import DataPlane, InferInput, InferRequest
from modelseal.serving.errors import (
    InvalidRequestError,
    ModelNotFoundError,
    ServingError,
    internal_error,
)
from modelseal.serving.metrics import Metrics, RequestTracker
from modelseal.serving.tensors import CONTENTS_FIELDS, from_contents, from_raw, to_raw

__all__ = ["InferenceServicer", "create_grpc_server"]

T = TypeVar("T")


def _parameter(value: Any) -> Any:
    kind = value.WhichOneof("parameter_choice")
    return getattr(value, kind) if kind else None


def _decode(request: Any) -> InferRequest:
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise InvalidRequestError(
            f"raw_input_contents has {len(raw)} entries for {len(request.inputs)} inputs; "
            "give one per input, or none"
        )
    inputs: list[InferInput] = []
    for index, tensor in enumerate(request.inputs):
        label = f"input {tensor.name!r}"
        shape = tuple(tensor.shape)
        if raw:
            if tensor.HasField("contents"):
                raise InvalidRequestError(f"{label} has both contents and raw_input_contents")
            data = from_raw(tensor.datatype, shape, raw[index], label)
        else:
            field = CONTENTS_FIELDS.get(tensor.datatype)
            values = getattr(tensor.contents, field) if field else []
            data = from_contents(tensor.datatype, shape, values, label)
        inputs.append(InferInput(tensor.name, tensor.datatype, shape, data))
    return InferRequest(
        model_name=request.model_name,
        model_version=request.model_version or None,
        inputs=inputs,
        outputs=[o.name for o in request.outputs] or None,
        id=request.id or None,
        parameters={k: _parameter(v) for k, v in request.parameters.items()},
    )


class InferenceServicer:
    """Each method translates and delegates; errors become gRPC statuses."""

    def __init__(self, plane: DataPlane, metrics: Metrics | None) -> None:
        self._plane = plane
        self._metrics = metrics

    def _call(self, context: Any, method: str, name: str, version: str, work: Callable[[], T]) -> T:
        tracker = RequestTracker()
        if self._metrics is None:
            result = self._attempt(method, work, tracker)
        else:
            with self._metrics.track("gRPC", method, name, version) as tracker:
                result = self._attempt(method, work, tracker)
        if not isinstance(result, ServingError):
            return result
        context.abort(grpc.StatusCode[result.status.grpc], result.message)
        raise AssertionError("abort returns only by raising")  # pragma: no cover

    @staticmethod
    def _attempt(method: str, work: Callable[[], T], tracker: RequestTracker) -> T | ServingError:
        try:
            return work()
        except ServingError as exc:
            tracker.failed = True
            return exc
        except Exception as exc:
            tracker.failed = True
            return internal_error(exc, method)

    def ServerLive(self, request: Any, context: Any) -> Any:  # noqa: N802 - the RPC's name
        return self._call(
            context, "ServerLive", "", "", lambda: pb.ServerLiveResponse(live=self._plane.live())
        )

    def ServerReady(self, request: Any, context: Any) -> Any:  # noqa: N802
        return self._call(
            context,
            "ServerReady",
            "",
            "",
            lambda: pb.ServerReadyResponse(ready=self._plane.ready()),
        )

    def ModelReady(self, request: Any, context: Any) -> Any:  # noqa: N802
        def work() -> Any:
            ready = self._plane.model_ready(request.name, request.version or None)
            return pb.ModelReadyResponse(ready=ready)

        return self._call(context, "ModelReady", request.name, request.version, work)

    def ServerMetadata(self, request: Any, context: Any) -> Any:  # noqa: N802
        return self._call(
            context,
            "ServerMetadata",
            "",
            "",
            lambda: pb.ServerMetadataResponse(**self._plane.server_metadata()),
        )

    def ModelMetadata(self, request: Any, context: Any) -> Any:  # noqa: N802
        def work() -> Any:
            meta = self._plane.model_metadata(request.name, request.version or None)
            tensor = pb.ModelMetadataResponse.TensorMetadata
            return pb.ModelMetadataResponse(
                name=meta.name,
                versions=list(meta.versions),
                platform=meta.platform,
                inputs=[
                    tensor(name=s.name, datatype=s.datatype, shape=s.shape) for s in meta.inputs
                ],
                outputs=[
                    tensor(name=s.name, datatype=s.datatype, shape=s.shape) for s in meta.outputs
                ],
            )

        return self._call(context, "ModelMetadata", request.name, request.version, work)

    def ModelInfer(self, request: Any, context: Any) -> Any:  # noqa: N802
        def work() -> Any:
            if not request.model_name:
                raise ModelNotFoundError("the request names no model")
            result = self._plane.infer(_decode(request))
            out = pb.ModelInferResponse(
                model_name=result.model_name, model_version=result.model_version, id=result.id or ""
            )
            for output in result.outputs:
                out.outputs.add(name=output.name, datatype=output.datatype, shape=output.shape)
                out.raw_output_contents.append(to_raw(output.data))
            return out

        return self._call(context, "ModelInfer", request.model_name, request.model_version, work)


def create_grpc_server(
    plane: DataPlane,
    metrics: Metrics | None,
    *,
    max_message_size: int,
    workers: int,
) -> grpc.Server:
    """A gRPC server with the inference service added; the caller adds ports and starts it."""
    server = grpc.server(
        ThreadPoolExecutor(max_workers=workers, thread_name_prefix="grpc"),
        options=[
            ("grpc.max_receive_message_length", max_message_size),
            ("grpc.max_send_message_length", -1),
            ("grpc.so_reuseport", 0),
        ],
    )
    add_inference_service(InferenceServicer(plane, metrics), server)
    return server


SERVICE: Final = "inference.GRPCInferenceService"
"""The service's name on the wire: clients call ``/inference.GRPCInferenceService/<method>``."""

METHODS: Final[dict[str, tuple[Any, Any]]] = {
    "ServerLive": (pb.ServerLiveRequest, pb.ServerLiveResponse),
    "ServerReady": (pb.ServerReadyRequest, pb.ServerReadyResponse),
    "ModelReady": (pb.ModelReadyRequest, pb.ModelReadyResponse),
    "ServerMetadata": (pb.ServerMetadataRequest, pb.ServerMetadataResponse),
    "ModelMetadata": (pb.ModelMetadataRequest, pb.ModelMetadataResponse),
    "ModelInfer": (pb.ModelInferRequest, pb.ModelInferResponse),
}
"""Each RPC's request and response messages."""


def add_inference_service(servicer: Any, server: grpc.Server) -> None:
    """Serve ``servicer`` (an object with one method per name in :data:`METHODS`) as
    :data:`SERVICE`. Written out rather than generated: our messages live in a package of their
    own (see kserve_v2.proto), the service keeps the name clients call."""
    handlers = {
        name: grpc.unary_unary_rpc_method_handler(
            getattr(servicer, name),
            request_deserializer=request.FromString,
            response_serializer=response.SerializeToString,
        )
        for name, (request, response) in METHODS.items()
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    server.add_registered_method_handlers(SERVICE, handlers)
