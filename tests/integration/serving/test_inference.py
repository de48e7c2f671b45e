"""tritonclient against the real server: outputs equal ONNX Runtime in-process on the plaintext,
over REST JSON, REST binary and gRPC, for plain and sealed models side by side."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from tests import triton
from tests.conftest import onnx_example_path
from tests.integration.serving.conftest import Served, iris_input, ocr_input, ocr_model_path
from tests.triton import triton_http

MODELS: dict[str, tuple[Callable[[], np.ndarray], Callable[[], object]]] = {
    "iris": (iris_input, onnx_example_path),
    "iris-sealed": (iris_input, onnx_example_path),
    "ocr": (ocr_input, ocr_model_path),
    "ocr-sealed": (ocr_input, ocr_model_path),
}
OPENVINO = {"ocr-openvino": MODELS["ocr"], "ocr-ir-sealed": MODELS["ocr"]}


def expected(model: str) -> dict[str, np.ndarray]:
    make_input, path = MODELS[model]
    session = ort.InferenceSession(str(path()), providers=["CPUExecutionProvider"])
    tensors = [o.name for o in session.get_outputs() if o.type.startswith("tensor(")]
    name = session.get_inputs()[0].name
    return dict(zip(tensors, session.run(tensors, {name: make_input()}), strict=True))


def infer_http(served: Served, model: str, binary: bool) -> dict[str, np.ndarray]:
    array = {**MODELS, **OPENVINO}[model][0]()
    with triton_http(served.rest_url) as client:
        return triton.infer_http(client, model, array, binary=binary)


def infer_grpc(served: Served, model: str) -> dict[str, np.ndarray]:
    array = {**MODELS, **OPENVINO}[model][0]()
    with grpcclient.InferenceServerClient(served.grpc_url) as client:
        return triton.infer_grpc(client, model, array)


@pytest.mark.parametrize("model", sorted(MODELS))
@pytest.mark.parametrize("protocol", ["rest-json", "rest-binary", "grpc"])
def test_outputs_equal_onnxruntime(served: Served, model: str, protocol: str) -> None:
    if protocol == "grpc":
        got = infer_grpc(served, model)
    else:
        got = infer_http(served, model, binary=protocol == "rest-binary")
    want = expected(model)
    assert sorted(got) == sorted(want)
    for name, array in want.items():
        assert got[name].dtype == array.dtype and got[name].shape == array.shape
        np.testing.assert_array_equal(got[name], array)


def test_tritonclient_defaults_use_the_binary_extension(served: Served) -> None:
    tensor = httpclient.InferInput("float_input", [3, 2], "FP32")
    tensor.set_data_from_numpy(iris_input())  # binary by default
    with triton_http(served.rest_url) as client:
        result = client.infer("iris-sealed", [tensor])  # no outputs: binary_data_output
    np.testing.assert_array_equal(result.as_numpy("label"), expected("iris")["label"])


@pytest.mark.parametrize("model", sorted(OPENVINO))
def test_openvino_backend_matches_within_tolerance(served: Served, model: str) -> None:
    """OpenVINO on the ONNX file (ocr-openvino) and on the IR converted from it, sealed and
    read from memory (ocr-ir-sealed: model.xml + model.bin)."""
    want = expected("ocr")
    for got in (infer_http(served, model, True), infer_grpc(served, model)):
        (name,) = want
        np.testing.assert_allclose(got[name], want[name], atol=1e-4)


def test_metadata_names_the_signature(served: Served) -> None:
    with triton_http(served.rest_url) as client:
        meta = client.get_model_metadata("ocr-sealed")
    assert meta == {
        "name": "ocr-sealed",
        "versions": ["1"],
        "platform": "onnxruntime_onnx",
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 3, -1, -1]}],
        "outputs": [{"name": "softmax_11.tmp_0", "datatype": "FP32", "shape": [-1, -1, 6625]}],
    }
    with grpcclient.InferenceServerClient(served.grpc_url) as grpc:
        grpc_meta = grpc.get_model_metadata("ocr-sealed", "1", as_json=True)
    assert grpc_meta["inputs"] == [
        {"name": "x", "datatype": "FP32", "shape": ["-1", "3", "-1", "-1"]}
    ]
    assert grpc_meta["platform"] == "onnxruntime_onnx"


def test_health_and_server_metadata(served: Served) -> None:
    with (
        triton_http(served.rest_url) as http,
        grpcclient.InferenceServerClient(served.grpc_url) as grpc,
    ):
        _check_health(http, grpc)


def _check_health(http: Any, grpc: Any) -> None:
    assert http.is_server_live() and http.is_server_ready()
    assert grpc.is_server_live() and grpc.is_server_ready()
    assert http.is_model_ready("ocr-sealed") and grpc.is_model_ready("ocr-sealed", "1")
    assert http.get_server_metadata()["extensions"] == ["binary_tensor_data"]
    assert grpc.get_server_metadata(as_json=True)["name"] == "modelseal"
