"""The example notebooks run from top to bottom, so they cannot rot (examples/quickstart.ipynb)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "examples" / "quickstart.ipynb"
KERNEL = "modelseal-test-python"


@pytest.fixture
def kernel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A kernelspec running this interpreter (the venv's), found first through JUPYTER_PATH, so
    the notebook never runs in whatever ``python3`` kernel a machine has installed elsewhere."""
    spec = tmp_path / "jupyter" / "kernels" / KERNEL
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(
        json.dumps({"argv": argv, "display_name": "modelseal tests", "language": "python"})
    )
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("JUPYTER_PLATFORM_DIRS", "1")  # no migration warning from jupyter_core
    monkeypatch.setenv("MPLBACKEND", "Agg")  # the kernel draws without a display
    return KERNEL


def _read(path: Path) -> nbformat.NotebookNode:
    notebook: nbformat.NotebookNode = nbformat.read(path, as_version=4)  # type: ignore[no-untyped-call]
    return notebook


def _text(notebook: nbformat.NotebookNode) -> str:
    return "".join(
        output.get("text", "")
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
        if output.output_type == "stream"
    )


def test_quickstart_is_committed_without_outputs() -> None:
    notebook = _read(QUICKSTART)
    nbformat.validate(notebook)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, cell.source[:60]


@pytest.mark.slow
def test_quickstart_runs(kernel: str, tmp_path: Path) -> None:
    notebook = _read(QUICKSTART)
    work = tmp_path / "work"
    work.mkdir()
    client = NotebookClient(
        notebook,
        kernel_name=kernel,
        timeout=120,
        resources={"metadata": {"path": str(work)}},
    )
    start = time.monotonic()
    client.execute()
    elapsed = time.monotonic() - start
    text = _text(notebook)
    assert "read 'Sealed with modelseal'" in text
    assert "refused: payload/" in text  # the tampered copy
    assert "HTTP 429: The license allows 3 inferences per 1h" in text
    assert "load 3: refused USAGE_EXHAUSTED" in text
    assert "HTTP 503: model ppocr-rec version 1 is not available" in text and "(REVOKED)" in text
    assert ", ok" in text  # the audit chain
    assert "nothing left running" in text
    assert elapsed < 120, f"the quick start took {elapsed:.0f} s"
