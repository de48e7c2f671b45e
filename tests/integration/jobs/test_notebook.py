"""examples/edge-jobs.ipynb, executed top to bottom by a real Jupyter kernel against the test
cluster: a plain and a protected job from Python, their outputs, and the run-time comparison.

Needs nbclient, nbformat and ipykernel; without them the test skips and says which are missing.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

from tests.integration.jobs._cluster import SlurmCluster
from tests.integration.jobs.conftest import MODEL_FILE, World

NOTEBOOK = Path(__file__).resolve().parents[3] / "examples" / "edge-jobs.ipynb"
NEEDED = ("nbclient", "nbformat", "ipykernel")


def _missing() -> list[str]:
    return [name for name in NEEDED if importlib.util.find_spec(name) is None]


def test_the_notebook_runs_a_plain_and_a_protected_job(
    world: World, cluster: SlurmCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = _missing()
    if missing:
        reason = f"executing {NOTEBOOK.name} needs {', '.join(missing)} (pip install them)"
        print(reason, file=sys.stderr)
        pytest.skip(reason)
    # jupyter_core warns about its directories unless told which convention to use.
    monkeypatch.setenv("JUPYTER_PLATFORM_DIRS", "1")
    import nbformat
    from nbclient import NotebookClient

    workdir = world.workdir("notebook")
    env = {
        **cluster.environ(),
        "JUPYTER_PLATFORM_DIRS": "1",
        "MPLBACKEND": "module://matplotlib_inline.backend_inline",
        "EDGE_JOBS_SEALED": str(world.sealed),
        "EDGE_JOBS_PLAIN": str(world.plain),
        "EDGE_JOBS_LICENSE": str(world.license),
        "EDGE_JOBS_AGENT_HOME": str(world.agents / "{node}"),
        "EDGE_JOBS_MODEL_FILE": MODEL_FILE,
        "EDGE_JOBS_NODE": "edge1",
        "EDGE_JOBS_RUNS": "2",
        "EDGE_JOBS_TIMEOUT": "60",
        "EDGE_JOBS_PYTHON": sys.executable,
    }
    notebook = nbformat.read(NOTEBOOK, as_version=4)  # type: ignore[no-untyped-call]
    client = NotebookClient(
        notebook,
        timeout=120,
        kernel_name="python3",
        resources={"metadata": {"path": str(workdir)}},
    )
    try:
        client.execute(env=env)
    finally:  # for a person to look at when something fails
        nbformat.write(notebook, workdir / "edge-jobs.executed.ipynb")  # type: ignore[no-untyped-call]

    texts: list[str] = []
    images = 0
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            texts.append(output.get("text", ""))
            data = output.get("data", {})
            texts.append(data.get("text/plain", ""))
            images += "image/png" in data
    text = "\n".join(texts)
    assert "plain and protected predictions agree: [0, 2, 0]" in text
    assert "protected / plain job time:" in text
    assert sorted(p.name for p in workdir.glob("iris-protected_o*.txt")) != []
    assert len(list(workdir.glob("iris-plain_o*.txt"))) == 2
    if importlib.util.find_spec("matplotlib") is not None:
        assert images == 1, "the comparison plot is missing"
    else:
        assert "matplotlib is not installed" in text
    assert os.environ.get("MODELSEAL_MODEL_DIR") is None  # nothing leaked into this process
