"""The model lifecycle in-process: a sealed version loads with a key, meters inferences, unloads
when its lease ends, and loads again with a new license file."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from modelseal.serving.config import single_model_config
from modelseal.serving.dataplane import DataPlane, InferInput, InferRequest
from modelseal.serving.errors import ModelUnavailableError, TooManyInferencesError
from modelseal.serving.models import ModelManager, Reason, State
from tests.conftest import SealFactory, expect_error
from tests.integration.serving.keysource import StaticKeySource

X = np.ones((3, 2), np.float32)


@pytest.fixture
def repository(
    tmp_path: Path, sealed: SealFactory, onnx_model: Path
) -> tuple[Path, StaticKeySource]:
    package, key = sealed(onnx_model.parent, name="iris")
    base = tmp_path / "repo" / "iris"
    base.mkdir(parents=True)
    shutil.move(package, base / "1")
    (base / "license.jws").write_text("token-1\n")
    return base, StaticKeySource({("iris", 1): key}, inference_limit=2)


def _request() -> InferRequest:
    return InferRequest("iris", None, [InferInput("float_input", "FP32", (3, 2), X)])


def _until(check: object) -> None:
    deadline = time.monotonic() + 10
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_lease_end_unloads_and_a_new_license_reloads(
    repository: tuple[Path, StaticKeySource],
) -> None:
    base, source = repository
    with ModelManager(
        single_model_config("iris", base), source, license_poll_interval=0.05
    ) as models:
        models.start()
        plane = DataPlane(models)
        assert plane.infer(_request()).outputs[0].name == "label"
        source.revoke("token-1")
        (version,) = models.versions()
        assert version.state.value == "END" and version.key is None and version.backend is None
        assert version.reason == Reason(
            "REVOKED", "license lic-token-1 was revoked by the model controller"
        )
        error = expect_error(ModelUnavailableError, lambda: plane.infer(_request()))
        assert error.message == (
            "model iris version 1 is not available: license lic-token-1 was revoked by the model "
            "controller (REVOKED)"
        )
        (base / "license.jws").write_text("token-2\n")
        _until(lambda: models.version("iris", "1").state is State.AVAILABLE)
        assert plane.infer(_request()).model_version == "1"
        assert source.acquired == 2
        # the limit of the test key source is 2 inferences per key
        plane.infer(_request())
        limited = expect_error(TooManyInferencesError, lambda: plane.infer(_request()))
        assert limited.retry_after_seconds == 3601 and limited.status.http == 429
        assert version.metered == 3
    assert all(key.status().state == "ended" for key in source.held)


def test_a_missing_license_is_a_reason(repository: tuple[Path, StaticKeySource]) -> None:
    base, source = repository
    (base / "license.jws").unlink()
    with ModelManager(single_model_config("iris", base), source) as models:
        models.start()
        (version,) = models.versions()
        assert version.reason is not None and version.reason.code == "LICENSE_MISSING"
        assert source.acquired == 0


def test_a_sealed_model_without_a_key_source(repository: tuple[Path, StaticKeySource]) -> None:
    base, _ = repository
    with ModelManager(single_model_config("iris", base)) as models:
        models.start()
        (version,) = models.versions()
        assert version.reason == Reason(
            "SERVE_CONFIG",
            "a sealed model needs a key agent; start the server with --agent-home or --agent-socket",
        )
