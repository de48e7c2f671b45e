"""Secured inference jobs on a real Slurm cluster: sbatch and TORQUE's qsub, a protected ONNX
inference whose output file holds the right prediction, a revoked license and a node without an
agent refused with a clear sentence in the error file, status, logs, cancel, and a controller
that is down."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from modelseal import jobs
from modelseal.cfs import fuse_mounts
from modelseal.jobs import (
    EXIT_NODE_NOT_READY,
    PlainModel,
    SchedulerUnavailableError,
    SealedModel,
    Slurm,
)
from tests.conftest import expect_error
from tests.integration.jobs._cluster import SlurmCluster, free_port
from tests.integration.jobs.conftest import INFER, MODEL_FILE, World
from tests.integration.jobs.infer_iris import predict

WAIT = 60.0
INFER_COMMAND = (sys.executable, str(INFER), "{model}/" + MODEL_FILE)


def expected_prediction(world: World) -> dict[str, object]:
    return predict(str(world.plain / MODEL_FILE))


def cli(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "modelseal", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=False,
    )


def no_mount_dirs_left(job_id: str) -> None:
    left = list(Path("/tmp").glob(f"modelseal-job-{job_id}.*"))
    assert not left, f"the job left its private directory behind: {left}"
    mounts = [m.mountpoint for m in fuse_mounts() if f"modelseal-job-{job_id}." in m.mountpoint]
    assert not mounts, f"the job left its mount behind: {mounts}"


def test_protected_inference_job_writes_the_prediction_to_its_output_file(
    world: World, slurm: Slurm
) -> None:
    workdir = world.workdir("protected")
    job = jobs.submit(
        INFER_COMMAND, model=world.model(), workdir=workdir, node="edge1", slurm=slurm
    )
    assert job.name == "iris"  # from the sealed manifest
    final = jobs.wait(job, timeout=WAIT, slurm=slurm)
    found = jobs.logs(job, slurm=slurm)
    assert final.state == "COMPLETED", found.error
    assert final.exit_code == 0 and final.node == "edge1"
    assert job.output_file == workdir / f"iris_o{job.id}.txt"
    assert job.error_file == workdir / f"iris_e{job.id}.txt"
    assert job.script == workdir / "iris_job.sh"
    assert json.loads(job.output_file.read_text()) == expected_prediction(world)
    assert found.exit_code == 0 and found.elapsed is not None and found.elapsed > 0
    assert final.output_file == job.output_file and final.error_file == job.error_file
    # Nothing decrypted stays on the node: the mount point is gone with the job.
    no_mount_dirs_left(job.id)


def test_revoked_license_is_refused_with_its_code_and_sentence(world: World, slurm: Slurm) -> None:
    workdir = world.workdir("revoked")
    job = jobs.submit(
        INFER_COMMAND,
        model=world.model(license=world.revoked_license),
        workdir=workdir,
        name="iris-revoked",
        node="edge1",
        slurm=slurm,
    )
    final = jobs.wait(job, timeout=WAIT, slurm=slurm)
    error = job.error_file.read_text()
    assert final.state == "FAILED" and final.exit_code not in (None, 0), error
    assert "REVOKED" in error
    assert "revoked" in error.lower().replace("REVOKED", "")  # the sentence, not only the code
    assert job.output_file.read_text() == ""  # the inference program never ran
    no_mount_dirs_left(job.id)


def test_the_same_script_submitted_through_qsub_works(world: World, cluster: SlurmCluster) -> None:
    workdir = world.workdir("qsub")
    env = dict(cluster.environ())
    submitted = cli(
        "job", "submit", "--via", "qsub", "--model", str(world.sealed),
        "--license", str(world.license), "--agent-home", str(world.agents / "{node}"),
        "--node", "edge1", "--name", "iris-qsub", "--", *INFER_COMMAND,
        cwd=workdir, env=env,
    )  # fmt: skip
    assert submitted.returncode == 0, submitted.stderr
    job_id = submitted.stdout.strip()
    assert job_id.isdigit(), submitted.stdout  # the id alone on stdout
    waited = cli("job", "wait", job_id, "--timeout", str(WAIT), cwd=workdir, env=env)
    assert waited.returncode == 0, waited.stdout + waited.stderr
    assert f"job {job_id} (iris-qsub): COMPLETED, exit 0, on edge1" in waited.stdout
    output = workdir / f"iris-qsub_o{job_id}.txt"
    assert json.loads(output.read_text()) == expected_prediction(world)
    assert (workdir / f"iris-qsub_e{job_id}.txt").exists()
    shown = cli("job", "logs", job_id, "--only", "output", cwd=workdir, env=env)
    assert shown.returncode == 0 and json.loads(shown.stdout) == expected_prediction(world)
    both = cli("job", "logs", job_id, cwd=workdir, env=env)
    assert f"==> output: iris-qsub_o{job_id}.txt <==" in both.stdout
    assert f"==> errors: iris-qsub_e{job_id}.txt <==" in both.stdout
    assert "exited 0 after" in both.stdout
    status = cli("job", "status", job_id, "--json", cwd=workdir, env=env)
    assert json.loads(status.stdout)["state"] == "COMPLETED"


def test_a_node_without_an_agent_fails_fast_with_a_clear_message(
    world: World, slurm: Slurm
) -> None:
    workdir = world.workdir("no-agent")
    job = jobs.submit(
        INFER_COMMAND,
        model=world.model(),
        workdir=workdir,
        name="iris-edge2",
        node="edge2",  # world.agents holds a home for edge1 only
        slurm=slurm,
    )
    final = jobs.wait(job, timeout=WAIT, slurm=slurm)
    error = job.error_file.read_text()
    assert final.state == "FAILED" and final.exit_code == EXIT_NODE_NOT_READY, error
    assert f"modelseal job {job.id} on edge2: no modelseal agent is enrolled on this node" in error
    assert f"{world.agents / 'edge2'} does not exist" in error
    assert "modelseal agent enroll --home" in error
    assert "exited" not in error  # stopped before `modelseal run`: no key asked for, no mount
    assert job.output_file.read_text() == ""


def test_a_missing_license_file_fails_fast(world: World, slurm: Slurm) -> None:
    workdir = world.workdir("no-license")
    job = jobs.submit(
        INFER_COMMAND,
        model=world.model(license=workdir / "nowhere.license"),
        workdir=workdir,
        name="iris-nolicense",
        node="edge1",
        slurm=slurm,
    )
    final = jobs.wait(job, timeout=WAIT, slurm=slurm)
    error = job.error_file.read_text()
    assert final.exit_code == EXIT_NODE_NOT_READY, error
    assert f"no license: {workdir / 'nowhere.license'} is missing" in error


def test_status_lists_and_cancel_stops_a_running_job(world: World, slurm: Slurm) -> None:
    workdir = world.workdir("cancel")
    job = jobs.submit(
        ("sleep", "60"), model=PlainModel(world.plain), workdir=workdir, name="sleeper",
        slurm=slurm,
    )  # fmt: skip
    deadline = time.monotonic() + WAIT
    while (current := jobs.status(job, slurm=slurm)).state != "RUNNING":
        assert time.monotonic() < deadline and not current.finished, current
        time.sleep(0.2)
    listed = {row.id: row for row in jobs.status(slurm=slurm)}
    assert listed[job.id].state == "RUNNING" and listed[job.id].name == "sleeper"
    assert listed[job.id].source == "squeue"
    jobs.cancel(job, slurm=slurm)
    final = jobs.wait(job, timeout=WAIT, slurm=slurm)
    assert final.state == "CANCELLED"
    jobs.cancel(job, slurm=slurm)  # already ended: left alone
    expect_error(jobs.JobNotFoundError, lambda: jobs.cancel("999999", slurm=slurm), "999999")
    expect_error(jobs.JobNotFoundError, lambda: jobs.status("999999", slurm=slurm), "999999")


def test_a_stopped_controller_is_a_clear_error(cluster: SlurmCluster, tmp_path: Path) -> None:
    dead = tmp_path / "slurm.conf"
    text = cluster.conf.read_text()
    port = next(line for line in text.splitlines() if line.startswith("SlurmctldPort="))
    # Nothing listens on that port; a short MessageTimeout keeps Slurm's retries short.
    text = text.replace(port, f"SlurmctldPort={free_port()}")
    dead.write_text(text.replace("MessageTimeout=10", "MessageTimeout=1"))
    down = Slurm(conf=dead, environ=os.environ, timeout=20)
    started = time.monotonic()
    error = expect_error(
        SchedulerUnavailableError,
        lambda: jobs.status(slurm=down),
        "the Slurm controller is not running or not reachable",
    )
    assert "start slurmctld" in error.diagnostics()
    assert time.monotonic() - started < 5


def test_the_cli_dry_run_prints_the_script_and_submits_nothing(
    world: World, cluster: SlurmCluster
) -> None:
    workdir = world.workdir("dry-run")
    shown = cli(
        "job", "submit", "--dry-run", "--model", str(world.sealed), "--license",
        str(world.license), "--agent-home", str(world.agents / "{node}"), "--",
        *INFER_COMMAND, cwd=workdir, env=dict(cluster.environ()),
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith("#!/bin/bash\n# iris: a modelseal job")
    assert "#SBATCH --output=iris_o%j.txt" in shown.stdout
    assert list(workdir.iterdir()) == []


@pytest.mark.parametrize("via", ["sbatch", "qsub"])
def test_slurm_refusing_a_job_is_a_submit_error(world: World, slurm: Slurm, via: str) -> None:
    workdir = world.workdir(f"refused-{via}")
    expect_error(
        jobs.SubmitError,
        lambda: jobs.submit(
            ("true",),
            model=PlainModel(world.plain),
            workdir=workdir,
            node="edge9",
            via="qsub" if via == "qsub" else "sbatch",
            slurm=slurm,
        ),
        "Slurm refused job iris-model",
        "Invalid node name",
    )


def test_a_job_gets_its_key_from_a_running_agent_service(world: World, slurm: Slurm) -> None:
    socket = world.root / "edge1.sock"
    log = (world.root / "agent-serve.log").open("wb")
    service = subprocess.Popen(
        [sys.executable, "-m", "modelseal", "agent", "serve", "--home",
         str(world.agents / "edge1"), "--socket", str(socket)],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while not socket.exists():
            assert service.poll() is None and time.monotonic() < deadline, "agent serve failed"
            time.sleep(0.1)
        workdir = world.workdir("socket")
        model = SealedModel(world.sealed, world.license, agent_socket=world.root / "{node}.sock")
        job = jobs.submit(
            INFER_COMMAND, model=model, workdir=workdir, name="iris-socket", node="edge1",
            slurm=slurm,
        )  # fmt: skip
        final = jobs.wait(job, timeout=WAIT, slurm=slurm)
        assert final.succeeded, job.error_file.read_text()
        assert json.loads(job.output_file.read_text()) == expected_prediction(world)
    finally:
        service.terminate()
        service.wait(timeout=15)
        log.close()
    assert not socket.exists()
