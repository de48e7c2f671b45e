"""The agent and the vault client run on devices: they import no server, database or web
framework (a fresh interpreter shows what each import pulls in)."""

from __future__ import annotations

import subprocess
import sys

import pytest

SERVER_SIDE = ("fastapi", "starlette", "uvicorn", "sqlalchemy", "prometheus_client")


@pytest.mark.parametrize(
    "module", ["modelseal.agent", "modelseal.vault.client", "modelseal.vault.api.schemas"]
)
def test_no_server_code_on_the_device(module: str) -> None:
    code = f"import sys, {module}\nprint(','.join(m for m in {SERVER_SIDE!r} if m in sys.modules))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "", f"{module} pulls in {result.stdout.strip()}"


def test_the_http_client_waits_for_a_call() -> None:
    code = (
        "import sys, modelseal.agent\n"
        "heavy = ('httpx', 'pydantic', 'numpy', 'onnxruntime', 'grpc')\n"
        "print(','.join(m for m in heavy if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "", f"modelseal.agent pulls in {result.stdout.strip()}"
