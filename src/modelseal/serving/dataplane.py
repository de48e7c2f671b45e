"""The protocol-free core behind both adapters: health, metadata, and validated inference.

Adapters decode their wire format into :class:`InferRequest` (tensors as numpy arrays, via
:mod:`modelseal.serving.tensors`), call :class:`DataPlane`, and encode what comes back. Every
check of a request against the model — input names, datatypes, shapes (``-1`` matches any size),
requested outputs — happens here, once, for REST and gRPC alike.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from modelseal import __version__
from modelseal.serving.backends import TensorSpec
from modelseal.serving.errors import InvalidRequestError
from modelseal.serving.metrics import Metrics
from modelseal.serving.models import ModelManager, ModelVersion, State
from modelseal.serving.tensors import Array

__all__ = [
    "EXTENSIONS",
    "SERVER_NAME",
    "DataPlane",
    "InferInput",
    "InferOutput",
    "InferRequest",
    "InferResponse",
    "ModelMetadata",
]

SERVER_NAME = "modelseal"
EXTENSIONS = ("binary_tensor_data",)


@dataclass(frozen=True)
class InferInput:
    name: str
    datatype: str
    shape: tuple[int, ...]
    data: Array


@dataclass(frozen=True)
class InferRequest:
    model_name: str
    model_version: str | None
    inputs: Sequence[InferInput]
    outputs: Sequence[str] | None = None
    """None: every output of the model."""
    id: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class InferOutput:
    name: str
    datatype: str
    shape: tuple[int, ...]
    data: Array


@dataclass(frozen=True)
class InferResponse:
    model_name: str
    model_version: str
    outputs: tuple[InferOutput, ...]
    id: str | None = None


@dataclass(frozen=True)
class ModelMetadata:
    name: str
    versions: tuple[str, ...]
    platform: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]


def _shape_fits(shape: Sequence[int], expected: Sequence[int]) -> bool:
    return len(shape) == len(expected) and all(
        want == -1 or have == want for have, want in zip(shape, expected, strict=True)
    )


def _describe(spec: TensorSpec) -> str:
    return f"{spec.datatype} {list(spec.shape)}"


class DataPlane:
    """What the server answers, independent of the protocol."""

    def __init__(self, models: ModelManager, metrics: Metrics | None = None) -> None:
        self.models = models
        self.metrics = metrics

    # --- health and metadata ----------------------------------------------------------------

    def live(self) -> bool:
        return True

    def ready(self) -> bool:
        """Ready once the first load pass has finished (each model reports its own readiness)."""
        return self.models.loaded

    def server_metadata(self) -> dict[str, Any]:
        return {"name": SERVER_NAME, "version": __version__, "extensions": list(EXTENSIONS)}

    def model_ready(self, name: str, version: str | None) -> bool:
        """Raises :class:`ModelNotFoundError` for an unknown model or version."""
        found = self.models.version(name, version)
        return found.state is State.AVAILABLE and found.backend is not None

    def model_metadata(self, name: str, version: str | None) -> ModelMetadata:
        found, backend = self.models.ready(name, version)
        versions = tuple(
            str(v.version) for v in self.models.model(name).values() if v.state is State.AVAILABLE
        )
        return ModelMetadata(
            name=name,
            versions=versions if not version else (str(found.version),),
            platform=backend.platform,
            inputs=backend.inputs,
            outputs=backend.outputs,
        )

    def ensure_ready(self, name: str, version: str | None) -> ModelVersion:
        """For probes that want the reason: the version, or :class:`ModelUnavailableError`."""
        found = self.models.version(name, version)
        if found.state is not State.AVAILABLE:
            raise found.unavailable()
        return found

    # --- inference --------------------------------------------------------------------------

    def infer(self, request: InferRequest) -> InferResponse:
        found, backend = self.models.ready(request.model_name, request.model_version)
        where = f"model {found.name} version {found.version}"
        outputs = self._check(request, backend.inputs, backend.outputs, where)
        self.models.meter(found)
        started = time.perf_counter()
        results = backend.infer({i.name: i.data for i in request.inputs}, outputs)
        if self.metrics is not None:
            self.metrics.observe_inference(
                found.name, str(found.version), time.perf_counter() - started
            )
        if found.state is not State.AVAILABLE:  # the lease ended while this ran
            raise found.unavailable()
        specs = {spec.name: spec for spec in backend.outputs}
        return InferResponse(
            model_name=found.name,
            model_version=str(found.version),
            id=request.id,
            outputs=tuple(
                InferOutput(name, specs[name].datatype, tuple(results[name].shape), results[name])
                for name in outputs
            ),
        )

    @staticmethod
    def _check(
        request: InferRequest,
        inputs: Sequence[TensorSpec],
        outputs: Sequence[TensorSpec],
        where: str,
    ) -> tuple[str, ...]:
        specs = {spec.name: spec for spec in inputs}
        seen: set[str] = set()
        for tensor in request.inputs:
            spec = specs.get(tensor.name)
            if spec is None:
                raise InvalidRequestError(
                    f"{where} has no input {tensor.name!r}; its inputs are "
                    + ", ".join(f"{s.name!r} ({_describe(s)})" for s in inputs)
                )
            if tensor.name in seen:
                raise InvalidRequestError(f"input {tensor.name!r} is given twice")
            seen.add(tensor.name)
            if tensor.datatype != spec.datatype:
                raise InvalidRequestError(
                    f"input {tensor.name!r} of {where} is {spec.datatype}, not {tensor.datatype}"
                )
            if not _shape_fits(tensor.shape, spec.shape):
                raise InvalidRequestError(
                    f"input {tensor.name!r} of {where} has shape {list(spec.shape)} (-1: any "
                    f"size), not {list(tensor.shape)}"
                )
        missing = [spec for spec in inputs if spec.name not in seen]
        if missing:
            raise InvalidRequestError(
                f"{where} needs input " + ", ".join(f"{s.name!r} ({_describe(s)})" for s in missing)
            )
        served = [spec.name for spec in outputs]
        if request.outputs is None:
            return tuple(served)
        if len(set(request.outputs)) != len(request.outputs):
            raise InvalidRequestError("an output is requested twice")
        unknown = [name for name in request.outputs if name not in served]
        if unknown:
            raise InvalidRequestError(
                f"{where} has no output {unknown[0]!r}; its outputs are "
                + ", ".join(repr(n) for n in served)
            )
        return tuple(request.outputs)
