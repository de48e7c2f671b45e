"""The server never imports the vault's service, database, API or server (they talk over HTTP),
and importing modelseal.serving stays light."""

from __future__ import annotations

import subprocess
import sys

FORBIDDEN = (
    "modelseal.vault.service",
    "modelseal.vault.db",
    "modelseal.vault.api",
    "modelseal.vault.server",
)
HEAVY = (
    "openvino",
    "onnxruntime",
    "grpc",
    "starlette",
    "fastapi",
    "uvicorn",
    "numpy",
    "sqlalchemy",
)


def _loaded(code: str, names: tuple[str, ...]) -> list[str]:
    script = f"import sys\n{code}\nprint(','.join(m for m in {names!r} if m in sys.modules))"
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    return [name for name in result.stdout.strip().split(",") if name]


def test_the_server_does_not_import_the_vault() -> None:
    code = (
        "import modelseal.serving.server, modelseal.serving.backends.onnxruntime\n"
        "import modelseal.serving.backends.openvino, modelseal.cli.serve"
    )
    assert _loaded(code, FORBIDDEN) == []


def test_importing_serving_is_light() -> None:
    assert _loaded("import modelseal.serving", HEAVY) == []


def test_the_server_imports_openvino_only_when_a_model_uses_it() -> None:
    assert _loaded("import modelseal.serving.server", ("openvino",)) == []
