"""ONNX Runtime from memory: ``InferenceSession(bytes)``, external data handed over in memory."""

from __future__ import annotations

import logging
import posixpath
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import onnxruntime as ort

from modelseal.serving._memory import wipe
from modelseal.serving.backends import LoadOptions, TensorSpec
from modelseal.serving.errors import ConfigError, InvalidRequestError
from modelseal.serving.tensors import Array

__all__ = ["OnnxRuntimeBackend"]

_log = logging.getLogger(__name__)

_TYPES = {
    "tensor(bool)": "BOOL",
    "tensor(uint8)": "UINT8",
    "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
    "tensor(int8)": "INT8",
    "tensor(int16)": "INT16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(float16)": "FP16",
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
    "tensor(bfloat16)": "BF16",
    "tensor(string)": "BYTES",
}
_SESSION_OPTIONS = {"intra_op_num_threads": int, "inter_op_num_threads": int}


def _spec(arg: Any) -> TensorSpec | None:
    datatype = _TYPES.get(arg.type)
    if datatype is None:
        return None
    shape = tuple(dim if isinstance(dim, int) and dim >= 0 else -1 for dim in arg.shape)
    return TensorSpec(arg.name, datatype, shape)


def _session_options(options: LoadOptions) -> Any:
    if options.target_device.upper() != "CPU":
        raise ConfigError(
            f"target_device {options.target_device!r} is not available with ONNX Runtime here; "
            "use CPU, or the openvino backend"
        )
    session = ort.SessionOptions()
    session.log_severity_level = 3
    for key, value in (options.plugin_config or {}).items():
        kind = _SESSION_OPTIONS.get(key)
        if kind is None:
            raise ConfigError(
                f"plugin_config key {key!r} is not an ONNX Runtime setting; use "
                f"{' or '.join(_SESSION_OPTIONS)}"
            )
        setattr(session, key, kind(value))
    return session


class OnnxRuntimeBackend:
    """One ONNX model in an ONNX Runtime session on the CPU."""

    platform = "onnxruntime_onnx"

    def __init__(self, session: Any) -> None:
        self._session = session
        specs = [_spec(arg) for arg in session.get_inputs()]
        missing = [
            arg.name for arg, s in zip(session.get_inputs(), specs, strict=True) if s is None
        ]
        if missing:
            raise ConfigError(f"the model has inputs that are not tensors: {', '.join(missing)}")
        self.inputs = tuple(s for s in specs if s is not None)
        outputs = [(arg, _spec(arg)) for arg in session.get_outputs()]
        skipped = [arg.name for arg, s in outputs if s is None]
        if skipped:
            _log.info("not serving outputs that are not tensors: %s", ", ".join(skipped))
        self.outputs = tuple(s for _, s in outputs if s is not None)
        self._bytes_inputs = {s.name for s in self.inputs if s.datatype == "BYTES"}

    @classmethod
    def load(
        cls,
        model_format: Literal["onnx", "openvino"],
        files: Mapping[str, bytes | memoryview],
        model_file: str,
        options: LoadOptions,
    ) -> OnnxRuntimeBackend:
        if model_format != "onnx":
            raise ConfigError(
                "ONNX Runtime loads ONNX models only; serve OpenVINO IR with backend openvino"
            )
        session_options = _session_options(options)
        base = posixpath.dirname(model_file)
        external = {
            posixpath.relpath(path, base) if base else path: data
            for path, data in files.items()
            if path != model_file
        }
        if external:
            buffers = [np.frombuffer(data, dtype=np.uint8) for data in external.values()]
            session_options.add_external_initializers_from_files_in_memory(
                list(external), buffers, [len(b) for b in buffers]
            )
        model = bytes(memoryview(files[model_file]))  # our own copy: ONNX Runtime takes only bytes
        try:
            session = ort.InferenceSession(
                model, sess_options=session_options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:
            raise ConfigError(f"ONNX Runtime could not load {model_file}: {exc}") from None
        finally:
            wipe(model)
        session.disable_fallback()
        session._model_bytes = None  # the session keeps the bytes for a fallback we never use
        return cls(session)

    def infer(self, inputs: Mapping[str, Array], outputs: tuple[str, ...]) -> dict[str, Array]:
        feed = {
            name: _as_strings(array) if name in self._bytes_inputs else array
            for name, array in inputs.items()
        }
        try:
            results = self._session.run(list(outputs), feed)
        except Exception as exc:
            _log.warning("ONNX Runtime refused an inference: %s", exc)
            raise InvalidRequestError(
                "the model could not run on these inputs (their values or dimensions do not fit "
                "it; the server log has the details)"
            ) from None
        return {name: np.asarray(value) for name, value in zip(outputs, results, strict=True)}

    def close(self) -> None:
        """Nothing to do: the session is freed with the last reference (in-flight requests
        finish first)."""


def _as_strings(array: Array) -> Array:
    out = np.empty(array.shape, dtype=object)
    flat = out.reshape(-1)
    for index, item in enumerate(array.reshape(-1)):
        try:
            flat[index] = item.decode("utf-8") if isinstance(item, bytes) else str(item)
        except UnicodeDecodeError:
            raise InvalidRequestError("a BYTES input of this model must be UTF-8 text") from None
    return out
