"""config.json: OVMS fields, version policies, and errors that name the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from modelseal.serving.config import VersionPolicy, load_config, parse_config
from modelseal.serving.errors import ConfigError
from tests.conftest import expect_error


def _doc(**config: Any) -> dict[str, Any]:
    return {"model_config_list": [{"config": {"name": "m", "base_path": "m", **config}}]}


def test_a_full_entry(tmp_path: Path) -> None:
    doc = _doc(
        model_version_policy={"specific": {"versions": [3, 1]}},
        target_device="CPU",
        nireq=2,
        plugin_config={"NUM_STREAMS": 1},
        backend="openvino",
        license="l.jws",
        batch_size=1,
    )
    doc["monitoring"] = {"metrics": {"enable": True}}
    config = parse_config(doc, root=tmp_path)
    (model,) = config.models
    assert model.base_path == tmp_path / "m" and model.license == tmp_path / "l.jws"
    assert model.version_policy == VersionPolicy("specific", versions=(1, 3))
    assert (model.nireq, model.backend, config.metrics_enabled) == (2, "openvino", True)


@pytest.mark.parametrize(
    ("policy", "available", "chosen"),
    [
        (VersionPolicy(), [1, 3, 2], [3]),
        (VersionPolicy("latest", num_versions=2), [1, 3, 2], [2, 3]),
        (VersionPolicy("all"), [2, 1], [1, 2]),
        (VersionPolicy("specific", versions=(1, 5)), [1, 2], [1]),
    ],
)
def test_version_policies(policy: VersionPolicy, available: list[int], chosen: list[int]) -> None:
    assert policy.select(available) == chosen


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({}, "config.json: model_config_list: field required"),
        ({"model_config_list": []}, "config.json: model_config_list is empty; list at least one model"),
        ({"model_config_list": [{"config": {"name": "m"}}]},
         "config.json: model_config_list[0].config.base_path: field required"),
        (_doc(name="a b"), "config.json: model_config_list[0].config.name: use 1-128 letters, "
         "digits, '.', '_' or '-', starting with a letter or digit"),
        (_doc(model_version_policy={"latest": {"num_versions": 0}}),
         "config.json: model_config_list[0].config.model_version_policy.latest.num_versions: "
         "Input should be greater than or equal to 1"),
        (_doc(model_version_policy={}), "config.json: model_config_list[0].config."
         "model_version_policy: give exactly one of latest, all, specific"),
        (_doc(bogus=1), "config.json: model_config_list[0].config: unknown field 'bogus'"),
        (_doc(backend="tensorrt"), "config.json: model_config_list[0].config.backend: Input "
         "should be 'onnxruntime' or 'openvino'"),
        ({**_doc(), "pipeline_config_list": [{}]},
         "config.json: pipeline_config_list is not supported by modelseal serve"),
        ({"model_config_list": [_doc()["model_config_list"][0]] * 2},
         "config.json: model_config_list[1].config.name: 'm' is used twice"),
    ],
)  # fmt: skip
def test_errors_name_the_field(doc: dict[str, Any], message: str, tmp_path: Path) -> None:
    error = expect_error(ConfigError, lambda: parse_config(doc, root=tmp_path))
    assert error.message == message


def test_not_json(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text("{")
    expect_error(ConfigError, lambda: load_config(path), "is not valid JSON (line 1, column 2")
