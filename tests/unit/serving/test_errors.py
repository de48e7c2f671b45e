"""One table maps every serving error to its HTTP status and gRPC code."""

from __future__ import annotations

import logging

import grpc
import pytest

import modelseal.serving.errors as errors
from modelseal.serving.errors import STATUS, ServingError, Status, internal_error


def test_the_table() -> None:
    assert STATUS == {
        "INVALID_REQUEST": Status(400, "INVALID_ARGUMENT"),
        "MODEL_NOT_FOUND": Status(404, "NOT_FOUND"),
        "PAYLOAD_TOO_LARGE": Status(413, "RESOURCE_EXHAUSTED"),
        "INFERENCE_LIMIT": Status(429, "RESOURCE_EXHAUSTED"),
        "INTERNAL": Status(500, "INTERNAL"),
        "MODEL_UNAVAILABLE": Status(503, "UNAVAILABLE"),
    }


def test_every_error_kind_has_a_row_with_a_real_grpc_code() -> None:
    kinds = [
        k for k in vars(errors).values() if isinstance(k, type) and issubclass(k, ServingError)
    ]
    assert len(kinds) == 7
    for kind in kinds:
        assert kind.code in STATUS, kind
    for status in STATUS.values():
        assert grpc.StatusCode[status.grpc]


def test_internal_errors_name_a_request_id_not_the_exception(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.ERROR, logger="modelseal.serving"):
        error = internal_error(RuntimeError("secret detail"), "ModelInfer")
    assert "secret detail" not in error.message
    request_id = error.message.split("request id ")[1].split(":")[0]
    assert request_id in caplog.text and "secret detail" in caplog.text
    assert error.status == Status(500, "INTERNAL")
