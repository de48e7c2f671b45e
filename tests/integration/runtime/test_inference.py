"""tritonclient against ``modelseal serve`` with keys released by the real vault: outputs equal
ONNX Runtime in-process on the plaintext model, over REST JSON, REST binary and gRPC, with the
agent in the server's process and behind ``modelseal agent serve`` (that server over TLS)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from tests.conftest import onnx_example_path
from tests.integration.runtime._chain import (
    infer_grpc,
    infer_http,
    iris_input,
    ocr_input,
    ocr_model_path,
)
from tests.integration.runtime.conftest import Chain

MODELS: dict[str, tuple[Callable[[], np.ndarray], Callable[[], Path]]] = {
    "iris": (iris_input, onnx_example_path),
    "ocr": (ocr_input, ocr_model_path),
}


def expected(model: str) -> dict[str, np.ndarray]:
    make_input, path = MODELS[model]
    session = ort.InferenceSession(str(path()), providers=["CPUExecutionProvider"])
    tensors = [o.name for o in session.get_outputs() if o.type.startswith("tensor(")]
    name = session.get_inputs()[0].name
    return dict(zip(tensors, session.run(tensors, {name: make_input()}), strict=True))


@pytest.mark.parametrize("model", sorted(MODELS))
@pytest.mark.parametrize("protocol", ["rest-json", "rest-binary", "grpc"])
@pytest.mark.parametrize("agent", ["home", "socket"])
def test_outputs_equal_onnxruntime(chain: Chain, agent: str, protocol: str, model: str) -> None:
    server = chain.servers()[agent]
    array = MODELS[model][0]()
    if protocol == "grpc":
        got = infer_grpc(server, model, array)
    else:
        got = infer_http(server, model, array, binary=protocol == "rest-binary")
    want = expected(model)
    assert sorted(got) == sorted(want)
    for name, tensor in want.items():
        assert (got[name].dtype, got[name].shape) == (tensor.dtype, tensor.shape)
        np.testing.assert_array_equal(got[name], tensor)
