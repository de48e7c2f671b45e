"""``modelseal serve`` as a user runs it: single-model mode, SIGTERM, and clear start-up errors."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import onnx_example_path

MODELSEAL = [sys.executable, "-m", "modelseal"]


def test_single_model_serves_and_stops_on_sigterm(tmp_path: Path) -> None:
    (tmp_path / "iris" / "1").mkdir(parents=True)
    shutil.copyfile(onnx_example_path(), tmp_path / "iris" / "1" / "model.onnx")
    process = subprocess.Popen(
        [
            *MODELSEAL,
            "serve",
            "--model-name",
            "iris",
            "--model-path",
            str(tmp_path / "iris"),
            "--rest-port",
            "0",
            "--grpc-port",
            "0",
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    lines = []
    try:
        for line in process.stderr:
            lines.append(line)
            if "serving KServe v2" in line:
                break
        found = re.search(r"REST http://127\.0\.0\.1:(\d+)", "".join(lines))
        assert found, "".join(lines)
        assert any("loaded model iris version 1 (plain, onnxruntime_onnx)" in x for x in lines)
        url = f"http://127.0.0.1:{found.group(1)}"
        assert httpx.get(f"{url}/v2/models/iris/ready").status_code == 200
    finally:
        process.send_signal(signal.SIGTERM)
        rest = process.communicate(timeout=20)[1]
    assert process.returncode == 0, rest
    assert "stopped" in rest


def test_sealed_models_need_an_agent(tmp_path: Path) -> None:
    (tmp_path / "m" / "1").mkdir(parents=True)
    (tmp_path / "m" / "1" / "package.tar").write_bytes(b"x" * 1024)
    started = time.monotonic()
    result = subprocess.run(
        [*MODELSEAL, "serve", "--model-name", "m", "--model-path", str(tmp_path / "m")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1 and time.monotonic() - started < 30
    assert result.stderr.startswith(
        "error: the repository holds sealed models, which need keys from the agent\n"
        "  hint: pass --agent-home DIR (agent in this process) or --agent-socket PATH"
    )


def test_settings_are_checked(tmp_path: Path) -> None:
    result = subprocess.run([*MODELSEAL, "serve"], capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr == "error: give a config file, or both a model name and a model path\n"
