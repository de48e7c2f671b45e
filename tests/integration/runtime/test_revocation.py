"""``modelseal license revoke`` takes a model off the server within two heartbeats, with the agent
in the server's process and behind ``modelseal agent serve``; other models keep serving."""

from __future__ import annotations

import time
from datetime import datetime

import pytest
from tritonclient.utils import InferenceServerException

from tests.integration.runtime._chain import HEARTBEAT, grpc_client, iris_input
from tests.integration.runtime.conftest import Chain

SLACK = 0.5  # seconds: the renewal's round trip and this test's 20 ms polling


@pytest.mark.parametrize("agent", ["home", "socket"])
def test_revocation_unloads_the_model_within_two_heartbeats(chain: Chain, agent: str) -> None:
    import tritonclient.grpc as grpcclient

    server = chain.servers()[agent]
    license_id = chain.licenses[f"{agent}/iris-revocable"]
    with server.http() as client:
        assert server.infer_json(client, "iris-revocable").status_code == 200
        chain.vault.cli("license", "revoke", license_id, "--reason", "runtime test")
        deadline = time.monotonic() + 10
        while (answer := server.infer_json(client, "iris-revocable")).status_code == 200:
            assert time.monotonic() < deadline, "the model kept serving after the revocation"
            time.sleep(0.02)
        unavailable = time.time()
        shown = chain.vault.show(license_id)
        assert shown["state"] == "revoked"
        # from the vault's own record of the revocation to the first 503
        latency = unavailable - datetime.fromisoformat(str(shown["revoked_at"])).timestamp()
        print(f"\n{agent}: first 503 {latency:.2f} s after the revocation (heartbeat {HEARTBEAT})")
        assert 0 < latency <= 2 * HEARTBEAT.total_seconds() + SLACK
        assert answer.status_code == 503
        message = answer.json()["error"]
        assert message.startswith("model iris-revocable version 1 is not available: ")
        assert message.endswith("(REVOKED)")
        assert f"License {license_id} was revoked" in message
        ready = client.get("/v2/models/iris-revocable/ready")
        assert (ready.status_code, ready.json()) == (503, {"error": message})
        metrics = server.metrics(client)
        assert 'modelseal_model_state{name="iris-revocable",state="END",version="1"} 1.0' in metrics
        assert server.infer_json(client, "iris").status_code == 200  # the others keep serving
    grpc = grpc_client(server)
    try:
        assert not grpc.is_model_ready("iris-revocable")
        tensor = grpcclient.InferInput("float_input", [3, 2], "FP32")
        tensor.set_data_from_numpy(iris_input())
        with pytest.raises(InferenceServerException) as info:
            grpc.infer("iris-revocable", [tensor])
        assert (info.value.status(), info.value.message()) == ("StatusCode.UNAVAILABLE", message)
        assert grpc.infer("iris", [tensor]).as_numpy("label") is not None
    finally:
        grpc.close()
