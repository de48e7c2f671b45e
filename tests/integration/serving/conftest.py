"""A model repository with plain and sealed models side by side, served by a real server process."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest

from modelseal.crypto import DataKey, dump_data_key
from modelseal.package import seal
from tests.conftest import Identity, make_identity, onnx_example_path

ROOT = Path(__file__).resolve().parents[3]


def ocr_model_path() -> Path:
    import rapidocr_onnxruntime

    found = sorted(Path(rapidocr_onnxruntime.__file__).parent.glob("models/*rec*.onnx"))
    assert found, "the PP-OCRv4 recognition model of rapidocr-onnxruntime is missing"
    return found[0]


@dataclass
class Repository:
    root: Path
    config: Path
    keys: Path
    licenses: dict[str, Path]
    plaintexts: list[bytes]
    plain_dirs: list[Path]


def _seal(owner: Identity, model: Path, out: Path, name: str, archive: bool) -> DataKey:
    key = DataKey.generate()
    seal(
        model,
        out,
        name=name,
        version=1,
        signing_key=owner.key,
        certificates=[owner.cert],
        data_key=key,
        archive=archive,
    )
    return key


def _openvino_ir(onnx_model: Path, out: Path) -> None:
    """``onnx_model`` converted to OpenVINO IR (``model.xml`` + ``model.bin``, FP32 weights)."""
    import openvino as ov

    out.mkdir(parents=True)
    ov.save_model(ov.convert_model(onnx_model), out / "model.xml", compress_to_fp16=False)


def build_repository(root: Path) -> Repository:
    """iris and ocr, plain and sealed (directory and archive form), plus a revocable model."""
    owner = make_identity("Acme Models")
    repo = root / "repo"
    iris, ocr = onnx_example_path(), ocr_model_path()
    for name, source in (("iris", iris), ("ocr", ocr)):
        (repo / name / "1").mkdir(parents=True)
        shutil.copyfile(source, repo / name / "1" / "model.onnx")
    staging = root / "staging"
    for name, source in (("iris", iris), ("ocr", ocr)):
        (staging / name).mkdir(parents=True)
        shutil.copyfile(source, staging / name / "model.onnx")
    keys: list[dict[str, object]] = []
    licenses: dict[str, Path] = {}

    def add_key(name: str, key: DataKey) -> None:
        path = root / "keys" / f"{name}.json"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(dump_data_key(key))
        keys.append({"name": name, "version": 1, "file": str(path)})

    # the version directory is the package; the license sits beside the version directories
    (repo / "iris-sealed").mkdir()
    add_key("iris", _seal(owner, staging / "iris", repo / "iris-sealed" / "1", "iris", False))
    licenses["iris-sealed"] = repo / "iris-sealed" / "license.jws"
    # one archive in the version directory, the license beside it
    (repo / "ocr-sealed" / "1").mkdir(parents=True)
    ocr_key = _seal(owner, staging / "ocr", repo / "ocr-sealed" / "1" / "ocr.tar", "ocr", True)
    add_key("ocr", ocr_key)
    licenses["ocr-sealed"] = repo / "ocr-sealed" / "1" / "license.jws"
    # a model whose license the tests revoke; its license is named by the config
    (repo / "revocable").mkdir()
    add_key(
        "revocable",
        _seal(owner, staging / "iris", repo / "revocable" / "1", "revocable", False),
    )
    licenses["revocable"] = root / "licenses" / "revocable.jws"
    licenses["revocable"].parent.mkdir()
    # the OCR model as OpenVINO IR (model.xml + model.bin), sealed, for the openvino backend
    _openvino_ir(ocr, staging / "ocr-ir")
    (repo / "ocr-ir-sealed").mkdir()
    add_key(
        "ocr-ir", _seal(owner, staging / "ocr-ir", repo / "ocr-ir-sealed" / "1", "ocr-ir", False)
    )
    licenses["ocr-ir-sealed"] = repo / "ocr-ir-sealed" / "license.jws"
    for name, path in licenses.items():
        path.write_text(f"{name}-1\n")
    shutil.rmtree(staging)
    ov_config = {"INFERENCE_PRECISION_HINT": "f32"}
    entries = [
        {"name": "iris", "base_path": "repo/iris"},
        {"name": "iris-sealed", "base_path": "repo/iris-sealed"},
        {"name": "ocr", "base_path": "repo/ocr"},
        {"name": "ocr-sealed", "base_path": "repo/ocr-sealed"},
        {
            "name": "ocr-openvino",
            "base_path": "repo/ocr",
            "backend": "openvino",
            "plugin_config": ov_config,
        },
        {"name": "revocable", "base_path": "repo/revocable", "license": "licenses/revocable.jws"},
        {"name": "ocr-ir-sealed", "base_path": "repo/ocr-ir-sealed", "plugin_config": ov_config},
    ]
    config = root / "config.json"
    config.write_text(
        json.dumps(
            {
                "model_config_list": [{"config": entry} for entry in entries],
                "monitoring": {"metrics": {"enable": True}},
            }
        )
    )
    keys_file = root / "keys.json"
    keys_file.write_text(json.dumps(keys))
    return Repository(
        root,
        config,
        keys_file,
        licenses,
        [iris.read_bytes(), ocr.read_bytes()],
        [repo / "iris", repo / "ocr"],
    )


@dataclass
class Served:
    repo: Repository
    rest: int
    grpc: int
    control: Path
    process: subprocess.Popen[str]

    @property
    def rest_url(self) -> str:
        return f"127.0.0.1:{self.rest}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc}"


def start_child(root: Path, repo: Repository, **settings: object) -> Served:
    control = root / "control"
    control.mkdir(exist_ok=True)
    settings_file = root / "settings.json"
    settings_file.write_text(
        json.dumps(
            {
                "config": str(repo.config),
                "rest_port": 0,
                "grpc_port": 0,
                "license_poll_interval": 0.2,
                "max_body_size": 8 << 20,
                **settings,
            }
        )
    )
    home = root / "home"
    home.mkdir(exist_ok=True)
    log = (root / "server.log").open("w")
    env = {**os.environ, "TMPDIR": str(home), "HOME": str(home), "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.integration.serving._child",
            str(settings_file),
            str(repo.keys),
            str(control),
        ],
        cwd=home,
        env=env,
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    log.close()  # the child has its own copy
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        process.wait(10)
        raise AssertionError((root / "server.log").read_text())
    ports = json.loads(line)
    served = Served(repo, ports["rest"], ports["grpc"], control, process)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://{served.rest_url}/v2/health/ready").status_code == 200:
                return served
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    stop_child(served)
    raise AssertionError("the server did not become ready:\n" + (root / "server.log").read_text())


def stop_child(served: Served) -> int:
    served.process.send_signal(signal.SIGTERM)
    try:
        return served.process.wait(15)
    except subprocess.TimeoutExpired:
        served.process.kill()
        raise
    finally:
        if served.process.stdout is not None:
            served.process.stdout.close()


@pytest.fixture(scope="package")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("serving")
    repo = build_repository(root)
    child = start_child(root, repo)
    yield child
    assert stop_child(child) == 0


def iris_input() -> np.ndarray:
    return np.array([[5.1, 3.5], [6.2, 2.9], [7.7, 3.0]], dtype=np.float32)


def ocr_input() -> np.ndarray:
    return np.random.default_rng(7).random((1, 3, 48, 160), dtype=np.float32)
