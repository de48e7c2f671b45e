"""Bad requests get 4xx with the KServe error body and an exact sentence, never 5xx."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from tests.integration.serving.conftest import Served

IRIS = "/v2/models/iris/infer"
GOOD_INPUT = {"name": "float_input", "shape": [3, 2], "datatype": "FP32", "data": [1.0] * 6}


def body(**changes: object) -> bytes:
    return json.dumps({"inputs": [{**GOOD_INPUT, **changes}]}).encode()


CASES = [
    (
        "wrong shape",
        IRIS,
        body(shape=[2, 3]),
        {},
        400,
        "input 'float_input' of model iris version 1 has shape [3, 2] (-1: any size), not [2, 3]",
    ),
    (
        "wrong datatype",
        IRIS,
        body(datatype="INT64", data=[1] * 6),
        {},
        400,
        "input 'float_input' of model iris version 1 is FP32, not INT64",
    ),
    (
        "unknown datatype",
        IRIS,
        body(datatype="FP8"),
        {},
        400,
        "unknown datatype 'FP8'; use one of BOOL, UINT8, UINT16, UINT32, UINT64, INT8, INT16, INT32, "
        "INT64, FP16, FP32, FP64, BF16, BYTES",
    ),
    (
        "data count",
        IRIS,
        body(data=[1.0] * 5),
        {},
        400,
        "input 'float_input': 5 elements of data, but shape [3, 2] holds 6",
    ),
    (
        "data kind",
        IRIS,
        body(data=["a"] * 6),
        {},
        400,
        "input 'float_input': element 'a' is not a valid FP32 value",
    ),
    (
        "unknown input",
        IRIS,
        body(name="x"),
        {},
        400,
        "model iris version 1 has no input 'x'; its inputs are 'float_input' (FP32 [3, 2])",
    ),
    (
        "unknown model",
        "/v2/models/nope/infer",
        body(),
        {},
        404,
        "there is no model 'nope' on this server",
    ),
    (
        "unknown version",
        "/v2/models/iris/versions/7/infer",
        body(),
        {},
        404,
        "model 'iris' has no version 7 on this server (served: 1)",
    ),
    (
        "bad version",
        "/v2/models/iris/versions/x/infer",
        body(),
        {},
        400,
        "model version 'x' is not a positive integer",
    ),
    (
        "malformed JSON",
        IRIS,
        b'{"inputs": [',
        {},
        400,
        "the request body is not valid JSON (line 1, column 13: Expecting value)",
    ),
    (
        "no inputs",
        IRIS,
        b'{"inputs": []}',
        {},
        400,
        "the request must have a non-empty list of inputs",
    ),
    (
        "header longer than body",
        IRIS,
        body(),
        {"Inference-Header-Content-Length": "100000"},
        400,
        "Inference-Header-Content-Length is '100000', but it must be a byte count no larger than "
        "the body (114 bytes)",
    ),
    (
        "header not a number",
        IRIS,
        body(),
        {"Inference-Header-Content-Length": "-1"},
        400,
        "Inference-Header-Content-Length is '-1', but it must be a byte count no larger than the "
        "body (114 bytes)",
    ),
    (
        "unknown output",
        IRIS,
        json.dumps({"inputs": [GOOD_INPUT], "outputs": [{"name": "probabilities"}]}).encode(),
        {},
        400,
        "model iris version 1 has no output 'probabilities'; its outputs are 'label'",
    ),
    ("unknown endpoint", "/v2/models/iris/explain", b"{}", {}, 404, "there is no such endpoint"),
]


@pytest.mark.parametrize(
    ("path", "content", "headers", "status", "message"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_bad_rest_request(
    served: Served, path: str, content: bytes, headers: dict[str, str], status: int, message: str
) -> None:
    response = httpx.post(f"http://{served.rest_url}{path}", content=content, headers=headers)
    assert (response.status_code, response.json()) == (status, {"error": message})


def _binary(declared: int, raw: bytes) -> tuple[bytes, dict[str, str]]:
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "float_input",
                    "shape": [3, 2],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": declared},
                }
            ]
        }
    ).encode()
    return header + raw, {"Inference-Header-Content-Length": str(len(header))}


def test_binary_size_that_does_not_fit_the_shape(served: Served) -> None:
    content, headers = _binary(20, np.ones(5, np.float32).tobytes())
    response = httpx.post(f"http://{served.rest_url}{IRIS}", content=content, headers=headers)
    assert (response.status_code, response.json()) == (
        400,
        {"error": "input 'float_input': 20 bytes of data, but shape [3, 2] of FP32 needs 24"},
    )


def test_binary_data_nobody_claims(served: Served) -> None:
    content, headers = _binary(24, np.ones(7, np.float32).tobytes())
    response = httpx.post(f"http://{served.rest_url}{IRIS}", content=content, headers=headers)
    assert (response.status_code, response.json()) == (
        400,
        {"error": "the body has 4 bytes of binary data that no input claims"},
    )


def test_oversized_body_is_refused_before_reading_it(served: Served) -> None:
    content = b"{" + b" " * (8 << 20)
    response = httpx.post(f"http://{served.rest_url}{IRIS}", content=content)
    assert (response.status_code, response.json()) == (
        413,
        {"error": f"the request body is larger than this server accepts ({8 << 20} bytes)"},
    )


@pytest.mark.parametrize(
    ("model", "version", "shape", "code", "message"),
    [
        ("nope", "", [3, 2], "StatusCode.NOT_FOUND", "there is no model 'nope' on this server"),
        (
            "iris",
            "",
            [1, 2],
            "StatusCode.INVALID_ARGUMENT",
            "input 'float_input' of model iris version 1 has shape [3, 2] (-1: any size), not [1, 2]",
        ),
        (
            "iris",
            "9",
            [3, 2],
            "StatusCode.NOT_FOUND",
            "model 'iris' has no version 9 on this server (served: 1)",
        ),
    ],
)
def test_bad_grpc_request(
    served: Served, model: str, version: str, shape: list[int], code: str, message: str
) -> None:
    client = grpcclient.InferenceServerClient(served.grpc_url)
    tensor = grpcclient.InferInput("float_input", shape, "FP32")
    tensor.set_data_from_numpy(np.ones(shape, np.float32))
    with pytest.raises(InferenceServerException) as info:
        client.infer(model, [tensor], model_version=version)
    assert (info.value.status(), info.value.message()) == (code, message)


def test_grpc_raw_size_mismatch(served: Served) -> None:
    client = grpcclient.InferenceServerClient(served.grpc_url)
    tensor = grpcclient.InferInput("float_input", [3, 2], "FP32")
    tensor.set_data_from_numpy(np.ones((3, 2), np.float32))
    tensor._raw_content = tensor._raw_content[:-4]  # a client that lies about the size
    with pytest.raises(InferenceServerException) as info:
        client.infer("iris", [tensor])
    assert (info.value.status(), info.value.message()) == (
        "StatusCode.INVALID_ARGUMENT",
        "input 'float_input': 20 bytes of data, but shape [3, 2] of FP32 needs 24",
    )
