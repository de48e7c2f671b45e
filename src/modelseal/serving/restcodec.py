"""The KServe v2 REST body, JSON and with the binary tensor data extension.

A binary request carries ``Inference-Header-Content-Length: N``: the first N bytes are the JSON
header, the rest are the raw tensors, in the order of the inputs that say
``parameters.binary_data_size``. Outputs go back binary when the output asks
``parameters.binary_data: true``, or, for outputs that do not say, when the request asks
``parameters.binary_data_output: true`` (tritonclient's default).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from modelseal.serving.dataplane import InferInput, InferRequest, InferResponse
from modelseal.serving.errors import InvalidRequestError
from modelseal.serving.tensors import from_json, from_raw, to_json, to_raw

__all__ = ["HEADER_LENGTH", "EncodedResponse", "decode_request", "encode_response"]

HEADER_LENGTH = "Inference-Header-Content-Length"


@dataclass(frozen=True)
class EncodedResponse:
    body: bytes
    header_length: int | None
    """Set when the body carries binary tensors after a JSON header of this many bytes."""


@dataclass(frozen=True)
class _Plan:
    """Which outputs go back binary."""

    default: bool
    explicit: dict[str, bool]

    def binary(self, name: str) -> bool:
        return self.explicit.get(name, self.default)


def _object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidRequestError(f"{what} must be a JSON object")
    return value


def _string(doc: dict[str, Any], key: str, what: str) -> str:
    value = doc.get(key)
    if not isinstance(value, str) or not value:
        raise InvalidRequestError(f"{what}.{key} must be a non-empty string")
    return value


def _parameters(doc: dict[str, Any], what: str) -> dict[str, Any]:
    return _object(doc.get("parameters", {}), f"{what}.parameters")


def _flag(params: dict[str, Any], key: str, what: str) -> bool | None:
    value = params.get(key)
    if value is not None and not isinstance(value, bool):
        raise InvalidRequestError(f"{what}.parameters.{key} must be true or false")
    return value


def _shape(doc: dict[str, Any], what: str) -> tuple[int, ...]:
    shape = doc.get("shape")
    if not isinstance(shape, list) or any(
        not isinstance(d, int) or isinstance(d, bool) or d < 0 for d in shape
    ):
        raise InvalidRequestError(f"{what}.shape must be a list of integers ≥ 0")
    return tuple(shape)


def _split(body: bytes, header_length: str | None) -> tuple[bytes, memoryview]:
    if header_length is None:
        return body, memoryview(b"")
    if not header_length.isdigit() or int(header_length) > len(body):
        raise InvalidRequestError(
            f"{HEADER_LENGTH} is {header_length!r}, but it must be a byte count no larger than "
            f"the body ({len(body)} bytes)"
        )
    size = int(header_length)
    return body[:size], memoryview(body)[size:]


def decode_request(
    body: bytes, header_length: str | None, model_name: str, model_version: str | None
) -> tuple[InferRequest, _Plan]:
    """The inference request of a REST body, and which outputs the client wants binary."""
    header, binary = _split(body, header_length)
    try:
        doc = json.loads(header)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        detail = (
            f" (line {exc.lineno}, column {exc.colno}: {exc.msg})"
            if isinstance(exc, json.JSONDecodeError)
            else ""
        )
        raise InvalidRequestError(f"the request body is not valid JSON{detail}") from None
    doc = _object(doc, "the request")
    request_id = doc.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise InvalidRequestError("the request id must be a string")
    params = _parameters(doc, "the request")
    raw_inputs = doc.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise InvalidRequestError("the request must have a non-empty list of inputs")
    inputs: list[InferInput] = []
    offset = 0
    for index, item in enumerate(raw_inputs):
        what = f"inputs[{index}]"
        tensor = _object(item, what)
        name = _string(tensor, "name", what)
        datatype = _string(tensor, "datatype", what)
        shape = _shape(tensor, what)
        size = _parameters(tensor, what).get("binary_data_size")
        label = f"input {name!r}"
        if size is not None:
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise InvalidRequestError(
                    f"{what}.parameters.binary_data_size must be an integer ≥ 0"
                )
            if "data" in tensor:
                raise InvalidRequestError(f"{label} has both data and binary_data_size")
            if offset + size > len(binary):
                raise InvalidRequestError(
                    f"{label} says binary_data_size {size}, but only {len(binary) - offset} bytes "
                    "of binary data are left in the body"
                )
            data = from_raw(datatype, shape, binary[offset : offset + size], label)
            offset += size
        elif "data" in tensor:
            data = from_json(datatype, shape, tensor["data"], label)
        else:
            raise InvalidRequestError(f"{label} has neither data nor parameters.binary_data_size")
        inputs.append(InferInput(name, datatype, shape, data))
    if offset != len(binary):
        raise InvalidRequestError(
            f"the body has {len(binary) - offset} bytes of binary data that no input claims"
        )
    default = bool(_flag(params, "binary_data_output", "the request"))
    outputs: list[str] | None = None
    explicit: dict[str, bool] = {}
    if "outputs" in doc:
        if not isinstance(doc["outputs"], list):
            raise InvalidRequestError("the request's outputs must be a list")
        outputs = []
        for index, item in enumerate(doc["outputs"]):
            what = f"outputs[{index}]"
            name = _string(_object(item, what), "name", what)
            out_params = _parameters(item, what)
            if "classification" in out_params:
                raise InvalidRequestError("the classification extension is not supported")
            flag = _flag(out_params, "binary_data", what)
            if flag is not None:
                explicit[name] = flag
            outputs.append(name)
    request = InferRequest(
        model_name=model_name,
        model_version=model_version,
        inputs=inputs,
        outputs=outputs,
        id=request_id,
        parameters=params,
    )
    return request, _Plan(default, explicit)


def encode_response(response: InferResponse, plan: _Plan) -> EncodedResponse:
    outputs: list[dict[str, Any]] = []
    chunks: list[bytes] = []
    for output in response.outputs:
        item: dict[str, Any] = {
            "name": output.name,
            "datatype": output.datatype,
            "shape": list(output.shape),
        }
        if plan.binary(output.name):
            raw = to_raw(output.data)
            chunks.append(raw)
            item["parameters"] = {"binary_data_size": len(raw)}
        else:
            item["data"] = to_json(output.data, f"output {output.name!r}")
        outputs.append(item)
    doc: dict[str, Any] = {
        "model_name": response.model_name,
        "model_version": response.model_version,
        "outputs": outputs,
    }
    if response.id is not None:
        doc["id"] = response.id
    header = json.dumps(doc, separators=(",", ":")).encode("utf-8")
    if not chunks:
        return EncodedResponse(header, None)
    return EncodedResponse(b"".join([header, *chunks]), len(header))
