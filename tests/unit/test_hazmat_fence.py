"""The crypto fence: only ``modelseal.crypto`` touches ``cryptography.hazmat``, and it stays light."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "modelseal"
CRYPTO = SRC / "crypto"
HAZMAT = "cryptography.hazmat"
HEAVY = ("onnxruntime", "grpc", "sqlalchemy", "fastapi")


def _hazmat_uses(path: Path, root: Path = SRC.parent) -> list[str]:
    """Each ``import``/``from`` (or module-name string) in ``path`` that reaches the hazmat layer."""
    found: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            names = [node.value]  # importlib.import_module("cryptography.hazmat...") and the like
        else:
            continue
        where = f"{path.relative_to(root)}:{node.lineno}"
        found += [f"{where}: {name}" for name in names if _is_hazmat(name)]
    return found


def _is_hazmat(name: str) -> bool:
    return name == HAZMAT or name.startswith(HAZMAT + ".")


def test_the_scanner_sees_hazmat_imports(tmp_path: Path) -> None:
    """Guards the fence test itself: every spelling it must catch is caught."""
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import cryptography.hazmat.primitives.hashes\n"
        "from cryptography.hazmat.primitives import hashes\n"
        "from cryptography import hazmat\n"
        "import importlib\n"
        "importlib.import_module('cryptography.hazmat.primitives.ciphers')\n"
        "import cryptography.x509\n"
        "from cryptography.exceptions import InvalidTag\n",
        encoding="utf-8",
    )
    hits = _hazmat_uses(sample, root=tmp_path)
    assert [hit.split(":")[1] for hit in hits] == ["1", "2", "2", "3", "5"]


def test_only_the_crypto_package_imports_hazmat() -> None:
    sources = sorted(SRC.rglob("*.py"))
    assert sources, f"no sources under {SRC}"
    outside = [use for path in sources if CRYPTO not in path.parents for use in _hazmat_uses(path)]
    assert outside == [], "cryptography.hazmat used outside modelseal.crypto:\n" + "\n".join(
        outside
    )
    inside = [use for path in sources if CRYPTO in path.parents for use in _hazmat_uses(path)]
    assert inside, "the crypto package should be where hazmat is used; the scan found nothing"


@pytest.mark.parametrize("module", ["modelseal", "modelseal.crypto"])
def test_importing_the_crypto_core_stays_light(module: str) -> None:
    code = f"import json, sys, {module}; print(json.dumps(sorted(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, check=True, timeout=60
    )
    loaded = json.loads(result.stdout)
    assert module in loaded
    heavy = sorted(name for name in loaded if name.split(".")[0] in HEAVY)
    assert heavy == [], f"import {module} pulled in {heavy}"
    assert "tink" not in loaded  # Tink is a test-only peer, never a runtime dependency
