"""Inference backends: a model's bytes in memory in, a callable model out.

A backend never reads model files itself: the repository hands it the files of one version as
buffers (plaintext of a sealed package lives only in anonymous memory), so the same code serves
plain and sealed models. ONNX Runtime is the default; OpenVINO is imported only when a model asks
for it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    from modelseal.serving.tensors import Array

__all__ = ["BACKENDS", "Backend", "BackendName", "LoadOptions", "TensorSpec", "load_backend"]

BackendName = Literal["onnxruntime", "openvino"]
BACKENDS: tuple[BackendName, ...] = ("onnxruntime", "openvino")


@dataclass(frozen=True)
class TensorSpec:
    """One input or output of a model: ``-1`` marks a dimension of any size."""

    name: str
    datatype: str
    shape: tuple[int, ...]


@dataclass(frozen=True)
class LoadOptions:
    """How to load: from the model's ``config`` entry."""

    target_device: str = "CPU"
    nireq: int | None = None
    plugin_config: Mapping[str, Any] | None = None
    allow_cache: bool = False
    """OpenVINO only: let ``plugin_config`` name a ``CACHE_DIR`` (never for sealed models)."""


class Backend(Protocol):
    """A loaded model. ``infer`` may be called from many threads at once."""

    platform: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    def infer(self, inputs: Mapping[str, Array], outputs: tuple[str, ...]) -> dict[str, Array]: ...

    def close(self) -> None: ...


def load_backend(
    name: BackendName,
    model_format: Literal["onnx", "openvino"],
    files: Mapping[str, bytes | memoryview],
    model_file: str,
    options: LoadOptions,
) -> Backend:
    """Load ``model_file`` (a key of ``files``; the other files are its weights or external data)."""
    if name == "openvino":
        from modelseal.serving.backends.openvino import OpenVINOBackend

        return OpenVINOBackend.load(model_format, files, model_file, options)
    from modelseal.serving.backends.onnxruntime import OnnxRuntimeBackend

    return OnnxRuntimeBackend.load(model_format, files, model_file, options)
