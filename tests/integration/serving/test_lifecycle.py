"""License enforcement while serving, metrics, and no plaintext on disk."""

from __future__ import annotations

import os
import re
import time

import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from tests.conftest import assert_no_plaintext
from tests.integration.serving.conftest import Served

PAYLOAD = {
    "inputs": [{"name": "float_input", "shape": [3, 2], "datatype": "FP32", "data": [1.0] * 6}]
}


def _infer(served: Served, model: str) -> httpx.Response:
    return httpx.post(f"http://{served.rest_url}/v2/models/{model}/infer", json=PAYLOAD)


def _until(check: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError("timed out")


def test_a_lease_that_ends_unloads_and_a_new_license_loads_again(served: Served) -> None:
    assert _infer(served, "revocable").status_code == 200
    (served.control / "revoke-1").write_text("revocable-1")
    _until(lambda: _infer(served, "revocable").status_code == 503)
    reason = (
        "model revocable version 1 is not available: license lic-revocable-1 was revoked by the "
        "model controller (REVOKED)"
    )
    assert _infer(served, "revocable").json() == {"error": reason}
    ready = httpx.get(f"http://{served.rest_url}/v2/models/revocable/ready")
    assert (ready.status_code, ready.json()) == (503, {"error": reason})
    client = grpcclient.InferenceServerClient(served.grpc_url)
    assert not client.is_model_ready("revocable")
    tensor = grpcclient.InferInput("float_input", [3, 2], "FP32")
    tensor.set_data_from_numpy(np.ones((3, 2), np.float32))
    with pytest.raises(InferenceServerException) as info:
        client.infer("revocable", [tensor])
    assert (info.value.status(), info.value.message()) == ("StatusCode.UNAVAILABLE", reason)
    # the other sealed models keep serving
    assert _infer(served, "iris-sealed").status_code == 200
    # a new license file: the poller notices and loads the model again
    license_file = served.repo.licenses["revocable"]
    license_file.write_text("revocable-2\n")
    os.utime(license_file)
    _until(lambda: _infer(served, "revocable").status_code == 200)


def test_metrics(served: Served) -> None:
    assert _infer(served, "iris-sealed").status_code == 200
    assert _infer(served, "nope").status_code == 404
    text = httpx.get(f"http://{served.rest_url}/metrics").text
    for line in (
        'modelseal_requests_success_total{api="KServe",interface="REST",method="ModelInfer",'
        'name="iris-sealed",version=""}',
        'modelseal_requests_fail_total{api="KServe",interface="REST",method="ModelInfer",'
        'name="",version=""}',
        'modelseal_model_state{name="iris-sealed",state="AVAILABLE",version="1"} 1.0',
        'modelseal_lease_state{name="iris-sealed",state="active",version="1"} 1.0',
        'modelseal_inferences_metered_total{name="iris-sealed",version="1"}',
        'modelseal_request_time_us_count{interface="REST",name="iris-sealed",version=""}',
        'modelseal_inference_time_us_count{name="iris-sealed",version="1"}',
        'modelseal_current_requests{name="",version=""}',
    ):
        assert line in text, line


def _distinctive(plaintext: bytes) -> list[bytes]:
    """The stretches of a model between runs of one repeated byte: tar padding and zero-filled
    tensors share 64-byte windows of zeros, which would match without anything having leaked."""
    pieces, start = [], 0
    for run in re.finditer(rb"(.)\1{7,}", plaintext, re.S):
        pieces.append(plaintext[start : run.start()])
        start = run.end()
    pieces.append(plaintext[start:])
    return [p for p in pieces if len(p) >= 256 and len(set(p)) > 32]


def test_no_plaintext_model_bytes_on_disk(served: Served) -> None:
    """Everything the test and the server wrote, except the plain models' own directories."""
    assert _infer(served, "iris-sealed").status_code == 200
    probes = [piece for text in served.repo.plaintexts for piece in _distinctive(text)]
    assert sum(map(len, probes)) > 9_000_000  # most of both models is searched for
    plain = served.repo.plain_dirs
    for entry in served.repo.root.iterdir():
        if entry.name == "repo":
            for model in entry.iterdir():
                if model not in plain:
                    assert_no_plaintext(model, probes)
        elif entry.is_dir():
            assert_no_plaintext(entry, probes)
