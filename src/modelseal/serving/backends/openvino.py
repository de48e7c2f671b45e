"""OpenVINO from memory: IR (``.xml`` + ``.bin``) or ONNX, compiled without a model cache.

``openvino`` is imported here only, so it loads when a model asks for this backend. Infer
requests come from a pool of ``nireq`` (default: the device's optimal number), each used by one
thread at a time.
"""

from __future__ import annotations

import logging
import queue
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import openvino as ov

from modelseal.serving._memory import wipe
from modelseal.serving.backends import LoadOptions, TensorSpec
from modelseal.serving.errors import ConfigError, InvalidRequestError
from modelseal.serving.tensors import Array, datatype_of

__all__ = ["OpenVINOBackend"]

_log = logging.getLogger(__name__)
_CACHE_KEYS = ("CACHE_DIR", "CACHE_MODE")


def _spec(port: Any) -> TensorSpec:
    dims = tuple(dim.get_length() if dim.is_static else -1 for dim in port.get_partial_shape())
    datatype = datatype_of(np.dtype(port.get_element_type().to_dtype()))
    return TensorSpec(port.get_any_name(), datatype, dims)


def _read_model(
    core: Any,
    model_format: Literal["onnx", "openvino"],
    files: Mapping[str, bytes | memoryview],
    model_file: str,
) -> Any:
    if model_format == "onnx":
        if len(files) > 1:
            raise ConfigError(
                "OpenVINO reads an ONNX model from memory only when it has no external data files; "
                "use the onnxruntime backend for this model"
            )
        weights = np.empty(0, dtype=np.uint8)
    else:
        weights_file = model_file[: -len(".xml")] + ".bin"
        if weights_file not in files:
            raise ConfigError(f"the OpenVINO IR {model_file} has no weights file {weights_file}")
        weights = np.frombuffer(files[weights_file], dtype=np.uint8)
    model = bytes(memoryview(files[model_file]))  # our own copy: read_model copies it again
    try:
        return core.read_model(model, ov.Tensor(weights))
    finally:
        wipe(model)


class OpenVINOBackend:
    """One model compiled by OpenVINO for ``target_device``."""

    platform = "openvino"

    def __init__(self, compiled: Any, nireq: int) -> None:
        self._compiled = compiled
        self.inputs = tuple(_spec(port) for port in compiled.inputs)
        self.outputs = tuple(_spec(port) for port in compiled.outputs)
        self._requests: queue.Queue[Any] = queue.Queue()
        for _ in range(nireq):
            self._requests.put(compiled.create_infer_request())

    @classmethod
    def load(
        cls,
        model_format: Literal["onnx", "openvino"],
        files: Mapping[str, bytes | memoryview],
        model_file: str,
        options: LoadOptions,
    ) -> OpenVINOBackend:
        config = {str(k): v for k, v in (options.plugin_config or {}).items()}
        cached = [key for key in _CACHE_KEYS if key in config]
        if cached and not options.allow_cache:
            raise ConfigError(
                f"plugin_config sets {', '.join(cached)}: a compiled-model cache would write the "
                "model to disk, which is never allowed for a sealed model"
            )
        core = ov.Core()
        try:
            model = _read_model(core, model_format, files, model_file)
            compiled = core.compile_model(model, options.target_device, config)
        except ConfigError:
            raise
        except Exception as exc:
            raise ConfigError(f"OpenVINO could not load {model_file}: {exc}") from None
        del model  # the compiled model holds its own copy of the weights
        nireq = options.nireq or int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        return cls(compiled, max(1, nireq))

    def infer(self, inputs: Mapping[str, Array], outputs: tuple[str, ...]) -> dict[str, Array]:
        request = self._requests.get()
        try:
            result = request.infer(dict(inputs))
            return {name: np.array(result[name], copy=True) for name in outputs}
        except Exception as exc:
            _log.warning("OpenVINO refused an inference: %s", exc)
            raise InvalidRequestError(
                "the model could not run on these inputs (their values or dimensions do not fit "
                "it; the server log has the details)"
            ) from None
        finally:
            self._requests.put(request)

    def close(self) -> None:
        """Nothing to do: the compiled model is freed with the last reference."""
