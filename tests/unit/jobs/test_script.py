"""The batch script: what it says, and what it does when bash runs it on a "node" (this machine)
with a stand-in for ``modelseal`` that records how it was called."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from modelseal.errors import UsageError
from modelseal.jobs import EXIT_NODE_NOT_READY, JobSpec, PlainModel, SealedModel, render_script
from tests.conftest import expect_error

JWS = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"
AGENT_FILES = ("agent.json", "device.pem", "device-key.pem", "ca.pem")
FAKE_MODELSEAL = """\
import json, os, sys
with open(os.environ["FAKE_RECORD"], "w") as out:
    json.dump({"argv": sys.argv[1:], "model_dir": os.environ.get("MODELSEAL_MODEL_DIR"),
               "input": os.environ.get("MODELSEAL_JOB_INPUT")}, out)
sys.exit(int(os.environ.get("FAKE_EXIT", "0")))
"""


@dataclass(frozen=True)
class Node:
    root: Path
    sealed: Path
    license: Path
    agents: Path
    modelseal: tuple[str, ...]
    record: Path

    def spec(self, **changes: object) -> JobSpec:
        fields: dict[str, object] = {
            "name": "iris",
            "command": ("python3", "infer.py", "{model}/model.onnx"),
            "model": SealedModel(self.sealed, self.license, agent_home=self.agents / "{node}"),
            "modelseal": self.modelseal,
        }
        fields.update(changes)
        return JobSpec(**fields)  # type: ignore[arg-type]

    def run(
        self, spec: JobSpec, env: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        script = self.root / "job.sh"
        script.write_text(render_script(spec))
        environment = {
            "PATH": os.environ["PATH"],
            "SLURMD_NODENAME": "edge1",
            "SLURM_JOB_ID": "42",
            "TMPDIR": str(self.root / "tmp"),
            "FAKE_RECORD": str(self.record),
            **(env or {}),
        }
        return subprocess.run(
            ["bash", str(script)],
            cwd=self.root,
            env=environment,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )

    def called(self) -> dict[str, object]:
        assert self.record.exists(), "modelseal was not run"
        loaded: dict[str, object] = json.loads(self.record.read_text())
        return loaded


@pytest.fixture
def node(tmp_path: Path) -> Node:
    sealed = tmp_path / "iris.sealed"
    sealed.mkdir()
    license_file = tmp_path / "iris.license"
    license_file.write_text(JWS + "\n")
    home = tmp_path / "agents" / "edge1"
    home.mkdir(parents=True)
    for name in AGENT_FILES:
        (home / name).write_text("x")
    fake = tmp_path / "fake_modelseal.py"
    fake.write_text(FAKE_MODELSEAL)
    (tmp_path / "tmp").mkdir()
    return Node(
        tmp_path,
        sealed,
        license_file,
        tmp_path / "agents",
        (sys.executable, str(fake)),
        tmp_path / "record.json",
    )


# --- what the script says ------------------------------------------------------------------------


def test_directives_name_the_files_and_the_node(node: Node) -> None:
    text = render_script(node.spec(node="edge1", time_limit=15))
    assert text.startswith("#!/bin/bash\n# iris: a modelseal job")
    directives = [line for line in text.splitlines() if line.startswith("#SBATCH")]
    assert directives == [
        "#SBATCH --job-name=iris",
        "#SBATCH --output=iris_o%j.txt",
        "#SBATCH --error=iris_e%j.txt",
        "#SBATCH --nodes=1",
        "#SBATCH --ntasks=1",
        "#SBATCH --nodelist=edge1",
        "#SBATCH --time=15",
    ]
    partition = render_script(node.spec(partition="edge"))
    assert "#SBATCH --partition=edge" in partition and "--nodelist" not in partition


def test_the_script_is_valid_bash(node: Node) -> None:
    for spec in (
        node.spec(),
        node.spec(model=SealedModel(node.sealed, node.license, agent_socket=Path("/run/a"))),
        node.spec(model=PlainModel(node.root)),
        node.spec(input=Path("/data/in put.csv")),
    ):
        checked = subprocess.run(
            ["bash", "-n"], input=render_script(spec), capture_output=True, text=True, check=False
        )
        assert checked.returncode == 0, checked.stderr


def test_paths_and_arguments_are_quoted_for_the_shell(node: Node) -> None:
    spec = node.spec(
        model=SealedModel(Path("/data/my model's"), Path("/l/$HOME"), agent_home=Path("/a")),
        command=("python3", "in fer.py", "{model}/x.onnx", "--in={input}", "$(reboot)", "{node}"),
        input=Path("/in/a b"),
    )
    text = render_script(spec)
    assert "SEALED='/data/my model'\"'\"'s'" in text
    assert "LICENSE='/l/$HOME'" in text
    assert "python3 'in fer.py' \"$MODEL_DIR\"/x.onnx --in=\"$INPUT\" '$(reboot)' '{node}'" in text


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"name": "../etc"}, "cannot name a job"),
        ({"name": ""}, "cannot name a job"),
        ({"name": "x" * 65}, "cannot name a job"),
        ({"command": ()}, "no command to run"),
        ({"node": "a", "partition": "b"}, "a node or a partition, not both"),
        ({"time_limit": 0}, "at least 1"),
        ({"modelseal": ()}, "no modelseal command"),
    ],
)
def test_bad_specs_are_refused(node: Node, changes: dict[str, object], message: str) -> None:
    expect_error(UsageError, lambda: node.spec(**changes), message)


def test_a_node_name_must_be_a_slurm_name(node: Node) -> None:
    expect_error(UsageError, lambda: render_script(node.spec(node="a;rm")), "not a Slurm node")


def test_a_sealed_model_needs_exactly_one_agent(node: Node) -> None:
    expect_error(UsageError, lambda: SealedModel(node.sealed, node.license), "exactly one")
    expect_error(
        UsageError,
        lambda: SealedModel(
            node.sealed, node.license, agent_home=node.root, agent_socket=node.root
        ),
        "exactly one",
    )


# --- what the script does ------------------------------------------------------------------------


def test_a_ready_node_runs_the_command_under_modelseal_run(node: Node) -> None:
    data = node.root / "in.csv"
    data.write_text("1,2\n")
    result = node.run(node.spec(command=("python3", "infer.py", "{model}/m.onnx", "--in={input}"),
                                input=data))  # fmt: skip
    assert result.returncode == 0, result.stderr
    called = node.called()
    argv = called["argv"]
    assert isinstance(argv, list)
    model_dir = called["model_dir"]
    assert isinstance(model_dir, str) and model_dir.startswith(str(node.root / "tmp"))
    assert Path(model_dir).name == "model" and "modelseal-job-42." in model_dir
    assert argv == [
        "run", "--model", str(node.sealed), "--at", model_dir, "--license", str(node.license),
        "--agent-home", str(node.agents / "edge1"), "--",
        "python3", "infer.py", f"{model_dir}/m.onnx", f"--in={data}",
    ]  # fmt: skip
    assert called["input"] == str(data)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("modelseal job 42 on edge1: exited 0 after ")
    assert list((node.root / "tmp").iterdir()) == []  # the private directory is gone


def test_the_command_s_exit_code_is_the_job_s(node: Node) -> None:
    result = node.run(node.spec(), env={"FAKE_EXIT": "3"})
    assert result.returncode == 3
    assert "exited 3 after" in result.stderr


def test_an_ended_lease_is_explained(node: Node) -> None:
    result = node.run(node.spec(), env={"FAKE_EXIT": "77"})
    assert result.returncode == 77
    assert "the license's lease ended while the command ran; it was stopped" in result.stderr


def _not_ready(node: Node, result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert result.returncode == EXIT_NODE_NOT_READY, result.stderr
    assert not node.record.exists(), "modelseal ran although the node was not ready"
    assert result.stderr.startswith("modelseal job 42 on ")
    for fragment in fragments:
        assert fragment in result.stderr
    assert len(result.stderr.splitlines()) == 1


def test_a_node_without_an_agent_home_stops_before_modelseal(node: Node) -> None:
    result = node.run(node.spec(), env={"SLURMD_NODENAME": "edge2"})
    _not_ready(
        node,
        result,
        "on edge2: no modelseal agent is enrolled on this node: "
        f"{node.agents / 'edge2'} does not exist",
        f"modelseal agent enroll --home {node.agents / 'edge2'}",
    )


def test_an_incomplete_agent_home_is_named(node: Node) -> None:
    (node.agents / "edge1" / "ca.pem").unlink()
    result = node.run(node.spec())
    _not_ready(node, result, "is incomplete: ca.pem is missing")


def test_a_missing_agent_socket_is_named(node: Node) -> None:
    socket = node.root / "agent.sock"
    socket.write_text("not a socket")
    model = SealedModel(node.sealed, node.license, agent_socket=socket)
    result = node.run(node.spec(model=model))
    _not_ready(node, result, f"no modelseal agent is listening on this node at {socket}")


def test_a_missing_license_is_named(node: Node) -> None:
    node.license.unlink()
    _not_ready(node, node.run(node.spec()), f"no license: {node.license} is missing")


def test_a_file_that_is_no_license_is_named(node: Node) -> None:
    node.license.write_text("-----BEGIN CERTIFICATE-----\n")
    _not_ready(node, node.run(node.spec()), "is not a license file (a JWS")


def test_a_missing_sealed_model_is_named(node: Node) -> None:
    node.sealed.rmdir()
    _not_ready(node, node.run(node.spec()), f"the sealed model {node.sealed} is not on this node")


def test_a_missing_input_is_named(node: Node) -> None:
    missing = node.root / "nothing.csv"
    _not_ready(node, node.run(node.spec(input=missing)), f"the input {missing} is not on this node")


def test_a_missing_modelseal_is_named(node: Node) -> None:
    result = node.run(node.spec(modelseal=("/opt/nowhere/modelseal",)))
    _not_ready(node, result, "modelseal is not installed on this node (/opt/nowhere/modelseal")


def test_a_plain_job_runs_the_command_directly(node: Node) -> None:
    plain = node.root / "plain model"
    plain.mkdir()
    spec = node.spec(
        model=PlainModel(plain),
        command=(*node.modelseal, "{model}/m.onnx"),  # the recorder stands in for the program
    )
    result = node.run(spec)
    assert result.returncode == 0, result.stderr
    assert node.called() == {"argv": [f"{plain}/m.onnx"], "model_dir": str(plain), "input": ""}
    assert "exited 0 after" in result.stderr
