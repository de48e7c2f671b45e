"""Inferences are metered on the device, reported to the vault on renewal (``modelseal license
show``), and the license's ``max_inferences_per`` is enforced by the server itself: 429."""

from __future__ import annotations

import re

import pytest
from tritonclient.utils import InferenceServerException

from modelseal.licensing import format_datetime
from modelseal.licensing.periods import period_start
from tests.integration.runtime._chain import (
    grpc_client,
    infer_grpc,
    infer_http,
    iris_input,
    wait_for,
)
from tests.integration.runtime.conftest import INFERENCE_LIMIT, Chain


def test_inferences_are_reported_and_the_limit_answers_429(chain: Chain) -> None:
    import tritonclient.grpc as grpcclient

    server = chain.home_server
    license_id = chain.licenses["home/iris-metered"]
    assert chain.vault.show(license_id)["period_inferences"] == 0
    # five inferences, over every protocol
    infer_http(server, "iris-metered", iris_input(), binary=False)
    infer_http(server, "iris-metered", iris_input(), binary=True)
    infer_grpc(server, "iris-metered", iris_input())
    with server.http() as client:
        for _ in range(INFERENCE_LIMIT - 3):
            assert server.infer_json(client, "iris-metered").status_code == 200
        # the sixth is refused here, by the server, before it runs
        refused = server.infer_json(client, "iris-metered")
        assert refused.status_code == 429
        assert int(refused.headers["Retry-After"]) >= 1
        sentence = refused.json()["error"]
        match = re.fullmatch(
            rf"The license allows {INFERENCE_LIMIT} inferences per 1d, and {INFERENCE_LIMIT} of "
            r"them are used; no more until (\S+)",
            sentence,
        )
        assert match is not None, sentence
        metrics = server.metrics(client)
    assert (
        f'modelseal_inferences_metered_total{{name="iris-metered",version="1"}} '
        f"{float(INFERENCE_LIMIT)}" in metrics
    )
    from datetime import UTC, datetime, timedelta

    next_day = period_start(datetime.now(UTC), timedelta(days=1)) + timedelta(days=1)
    assert match[1] == format_datetime(next_day)
    grpc = grpc_client(server)
    try:
        tensor = grpcclient.InferInput("float_input", [3, 2], "FP32")
        tensor.set_data_from_numpy(iris_input())
        with pytest.raises(InferenceServerException) as info:
            grpc.infer("iris-metered", [tensor])
        assert (info.value.status(), info.value.message()) == (
            "StatusCode.RESOURCE_EXHAUSTED",
            sentence,
        )
    finally:
        grpc.close()
    # the next renewal (every heartbeat) reports the five to the vault
    wait_for(
        lambda: chain.vault.show(license_id)["period_inferences"] == INFERENCE_LIMIT,
        "the vault to count the reported inferences",
        timeout=8,
    )
    assert chain.vault.show(license_id)["state"] == "active"
