"""``modelseal job``: the thin adapter's options, output and errors, over stand-ins for Slurm's
commands found first on PATH (see test_api.FakeSlurm)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from modelseal.cli.main import cli
from tests.unit.jobs.test_api import SCONTROL_DONE, FakeSlurm


@pytest.fixture
def fake(tmp_path: Path) -> FakeSlurm:
    return FakeSlurm(tmp_path / "slurm")


def invoke(fake: FakeSlurm, *args: str) -> tuple[int, str, str]:
    runner = CliRunner()
    env = {"PATH": f"{fake.bin}{os.pathsep}{os.environ['PATH']}"}
    result = runner.invoke(cli, list(args), env=env, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_submit_prints_the_job_id_alone(fake: FakeSlurm, tmp_path: Path) -> None:
    fake.answer("sbatch", "31\n")
    model = tmp_path / "plain"
    model.mkdir()
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(tmp_path)
        code, out, err = invoke(
            fake, "job", "submit", "--plain", "--model", "plain", "--", "python3", "x.py"
        )
    assert code == 0, err
    assert out == "31\n"
    assert "submitted job 31 (plain) via sbatch; output: plain_o31.txt" in err
    assert (tmp_path / "plain_job.sh").exists()


def test_dry_run_prints_the_script(fake: FakeSlurm, tmp_path: Path) -> None:
    code, out, _ = invoke(
        fake, "job", "submit", "--dry-run", "--plain", "--model", str(tmp_path), "--name", "n",
        "--", "true",
    )  # fmt: skip
    assert code == 0 and out.startswith("#!/bin/bash\n# n: a modelseal job")
    assert not (fake.bin / "sbatch.args").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--plain", "--license", "l"], "--plain runs without protection"),
        ([], "a protected job needs --license FILE"),
        (["--license", "l"], "exactly one of --agent-home DIR or --agent-socket PATH"),
        (["--license", "l", "--agent-home", "a", "--agent-socket", "s"], "exactly one of"),
    ],
)
def test_submit_usage_errors(fake: FakeSlurm, args: list[str], message: str) -> None:
    code, _, err = invoke(fake, "job", "submit", "--model", "m", *args, "--", "true")
    assert code == 1 and message in err


def test_a_missing_sbatch_is_one_sentence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # the submitting directory, where the script is written
    runner = CliRunner()
    model = tmp_path / "plain"
    model.mkdir()
    result = runner.invoke(
        cli,
        ["job", "submit", "--plain", "--model", str(model), "--", "true"],
        env={"PATH": str(tmp_path)},
    )
    assert result.exit_code == 1
    assert result.stderr.startswith("error: `sbatch` is not installed here")
    assert "hint: install Slurm's client commands" in result.stderr


def test_status_prints_a_table_and_one_job(fake: FakeSlurm, tmp_path: Path) -> None:
    fake.answer(
        "squeue", "12|RUNNING|root|edge|edge1|None|iris\n13|PENDING|root|edge||Priority|b\n"
    )
    code, out, _ = invoke(fake, "job", "status")
    lines = out.splitlines()
    assert code == 0 and lines[0].split() == [
        "ID", "NAME", "STATE", "NODE", "PARTITION", "USER", "REASON",
    ]  # fmt: skip
    assert lines[1].split() == ["12", "iris", "RUNNING", "edge1", "edge", "root", "-"]
    assert lines[2].split() == ["13", "b", "PENDING", "-", "edge", "root", "Priority"]
    fake.answer("scontrol", SCONTROL_DONE.format(dir=tmp_path) + "\n")
    code, out, _ = invoke(fake, "job", "status", "5")
    assert out.splitlines() == [
        "job 5 (iris): COMPLETED, exit 0, on edge1",
        f"  output: {tmp_path / 'iris_o5.txt'}",
        f"  errors: {tmp_path / 'iris_e5.txt'}",
    ]
    fake.answer("squeue", "")
    assert invoke(fake, "job", "status")[2] == "no jobs\n"


def test_logs_wait_and_cancel(fake: FakeSlurm, tmp_path: Path) -> None:
    fake.answer("scontrol", SCONTROL_DONE.format(dir=tmp_path) + "\n")
    (tmp_path / "iris_o5.txt").write_text("prediction\n")
    (tmp_path / "iris_e5.txt").write_text("modelseal job 5 on edge1: exited 0 after 1.000 s")
    code, out, _ = invoke(fake, "job", "logs", "5")
    assert code == 0 and out == (
        "==> output: iris_o5.txt <==\nprediction\n"
        "==> errors: iris_e5.txt <==\nmodelseal job 5 on edge1: exited 0 after 1.000 s\n"
    )
    assert invoke(fake, "job", "logs", "5", "--only", "output")[1] == "prediction\n"
    assert invoke(fake, "job", "wait", "5")[:2] == (
        0,
        "job 5 (iris): COMPLETED, exit 0, on edge1\n",
    )
    code, _, err = invoke(fake, "job", "cancel", "5")
    assert code == 0 and "job 5 had already ended (COMPLETED); nothing to cancel" in err
    failed = SCONTROL_DONE.format(dir=tmp_path).replace("COMPLETED", "FAILED")
    fake.answer("scontrol", failed.replace("ExitCode=0:0", "ExitCode=78:0") + "\n")
    assert invoke(fake, "job", "wait", "5")[:2] == (1, "job 5 (iris): FAILED, exit 78, on edge1\n")
    fake.answer("scontrol", failed.replace("FAILED", "RUNNING") + "\n")
    code, _, err = invoke(fake, "job", "cancel", "5")
    assert code == 0 and "asked Slurm to cancel job 5 (it was RUNNING)" in err
    assert fake.args("scancel") == ["5"]


def test_help_explains_the_workflow(fake: FakeSlurm) -> None:
    code, out, _ = invoke(fake, "job", "--help")
    assert code == 0 and "modelseal job submit --model" in out and "scancel" in out
    code, out, _ = invoke(fake, "job", "submit", "--help")
    assert "<name>_o<job id>.txt" in out and "78 when the node lacks" in out
