"""The job API over stand-ins for Slurm's commands (small scripts in a bin directory): what is
run, with which arguments and where, and how every kind of failure reads. The real cluster is
in tests/integration/jobs."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from modelseal import jobs
from modelseal.errors import UsageError
from modelseal.jobs import (
    Job,
    JobError,
    JobLogs,
    JobNotFoundError,
    JobTimeoutError,
    PlainModel,
    SchedulerUnavailableError,
    SealedModel,
    Slurm,
    SubmitError,
)
from tests.conftest import expect_error

SCONTROL_DONE = (
    "JobId=5 JobName=iris UserId=root(0) JobState=COMPLETED Reason=None ExitCode=0:0 "
    "SubmitTime=2026-11-22T02:39:32 StartTime=2026-11-22T02:39:35 EndTime=Unknown "
    "Partition=edge NodeList=edge1 StdErr={dir}/iris_e5.txt StdOut={dir}/iris_o5.txt"
)


class FakeSlurm:
    """Each command prints ``<name>.out`` / ``<name>.err`` from its folder and exits with
    ``<name>.rc``; it also writes its arguments (one a line) to ``<name>.args`` and its working
    directory to ``<name>.cwd``."""

    def __init__(self, folder: Path) -> None:
        self.bin = folder / "bin"
        self.bin.mkdir(parents=True)
        for name in ("sbatch", "qsub", "squeue", "scontrol", "sacct", "scancel"):
            self.answer(name, "")
            program = self.bin / name
            program.write_text(
                "#!/bin/bash\n"
                f'printf "%s\\n" "$@" > "{self.bin}/{name}.args"; pwd > "{self.bin}/{name}.cwd"\n'
                f'cat "{self.bin}/{name}.out"; cat "{self.bin}/{name}.err" >&2\n'
                f'exit "$(cat "{self.bin}/{name}.rc")"\n'
            )
            program.chmod(program.stat().st_mode | stat.S_IXUSR)

    def answer(self, name: str, out: str, err: str = "", rc: int = 0) -> None:
        (self.bin / f"{name}.out").write_text(out)
        (self.bin / f"{name}.err").write_text(err)
        (self.bin / f"{name}.rc").write_text(str(rc))

    def args(self, name: str) -> list[str]:
        return (self.bin / f"{name}.args").read_text().splitlines()

    def slurm(self, **changes: object) -> Slurm:
        return Slurm(bin_dir=self.bin, **changes)  # type: ignore[arg-type]


@pytest.fixture
def fake(tmp_path: Path) -> FakeSlurm:
    return FakeSlurm(tmp_path / "slurm")


@pytest.fixture
def model(tmp_path: Path) -> PlainModel:
    folder = tmp_path / "iris-model"
    folder.mkdir()
    return PlainModel(folder)


# --- submit --------------------------------------------------------------------------------------


def test_submit_writes_the_script_and_runs_sbatch_in_the_workdir(
    fake: FakeSlurm, model: PlainModel, tmp_path: Path
) -> None:
    fake.answer("sbatch", "17\n")
    work = tmp_path / "work"
    work.mkdir()
    job = jobs.submit(("python3", "infer.py"), model=model, workdir=work, slurm=fake.slurm())
    assert job == Job("17", "iris-model", work, work / "iris-model_job.sh", "sbatch")
    assert str(job) == "17"
    assert job.output_file == work / "iris-model_o17.txt"
    assert job.error_file == work / "iris-model_e17.txt"
    assert fake.args("sbatch") == ["--parsable", "iris-model_job.sh"]
    assert (fake.bin / "sbatch.cwd").read_text().strip() == str(work)
    script = job.script.read_text()
    assert "#SBATCH --output=iris-model_o%j.txt" in script
    assert f"MODEL_DIR={model.path}" in script
    assert [p.name for p in work.iterdir()] == ["iris-model_job.sh"]  # no temporary left


def test_submit_via_qsub_passes_torque_options(
    fake: FakeSlurm, model: PlainModel, tmp_path: Path
) -> None:
    fake.answer("qsub", "23\n")
    job = jobs.submit(
        ("true",), model=model, workdir=tmp_path, name="base", node="edge2", time_limit=90,
        via="qsub", slurm=fake.slurm(),
    )  # fmt: skip
    assert job.id == "23" and job.via == "qsub"
    assert fake.args("qsub") == [
        "-N", "base", "-o", "base_o%j.txt", "-e", "base_e%j.txt",
        "-l", "nodes=edge2,walltime=01:30:00", "base_job.sh",
    ]  # fmt: skip
    jobs.submit(("true",), model=model, workdir=tmp_path, partition="edge", via="qsub",
                slurm=fake.slurm())  # fmt: skip
    assert fake.args("qsub")[-3:] == ["-q", "edge", "iris-model_job.sh"]


def test_relative_paths_are_taken_from_the_workdir(tmp_path: Path) -> None:
    spec, base = jobs.prepare(
        ("x",),
        model=SealedModel(Path("m.sealed"), Path("l.jwt"), agent_home=Path("agents/{node}")),
        name="n",
        workdir=tmp_path,
        input=Path("in.csv"),
        modelseal=("modelseal",),
    )
    assert base == tmp_path
    assert spec.model == SealedModel(
        tmp_path / "m.sealed", tmp_path / "l.jwt", agent_home=tmp_path / "agents/{node}"
    )
    assert spec.input == tmp_path / "in.csv"


def test_the_default_name_of_a_sealed_job_needs_a_readable_package(tmp_path: Path) -> None:
    model = SealedModel(tmp_path / "missing", tmp_path / "l", agent_home=tmp_path)
    expect_error(
        UsageError,
        lambda: jobs.prepare(("x",), model=model, workdir=tmp_path),
        "cannot read the model's name from",
    )


def test_the_default_modelseal_is_this_installation() -> None:
    command = jobs.default_modelseal_command()
    assert command[0].endswith("modelseal") or command[1:] == ("-m", "modelseal")


def test_slurm_refusing_a_job_is_a_submit_error(
    fake: FakeSlurm, model: PlainModel, tmp_path: Path
) -> None:
    fake.answer(
        "sbatch", "", "sbatch: error: Batch job submission failed: Invalid node name specified\n", 1
    )
    expect_error(
        SubmitError,
        lambda: jobs.submit(("x",), model=model, workdir=tmp_path, node="zz", slurm=fake.slurm()),
        "Slurm refused job iris-model",
        "Invalid node name specified",
    )


def test_an_unknown_via_is_a_usage_error(model: PlainModel, tmp_path: Path) -> None:
    expect_error(
        UsageError,
        lambda: jobs.submit(("x",), model=model, workdir=tmp_path, via="pbs"),  # type: ignore[arg-type]
        "cannot submit via 'pbs'",
    )


# --- the scheduler missing, down or unconfigured -------------------------------------------------


def test_a_missing_slurm_names_the_package(tmp_path: Path, model: PlainModel) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    error = expect_error(
        SchedulerUnavailableError,
        lambda: jobs.status(slurm=Slurm(bin_dir=empty)),
        "`squeue` is not installed here",
        "slurm-client",
    )
    assert "docs/jobs.md" in error.diagnostics()
    expect_error(
        SchedulerUnavailableError,
        lambda: jobs.submit(
            ("x",), model=model, workdir=tmp_path, via="qsub", slurm=Slurm(bin_dir=empty)
        ),
        "`qsub` is not installed here",
        "slurm-wlm-torque",
    )


@pytest.mark.parametrize(
    ("stderr", "message", "hint"),
    [
        (
            "slurm_load_jobs error: Unable to contact slurm controller (connect failure)",
            "the Slurm controller is not running or not reachable",
            "start slurmctld",
        ),
        (
            "squeue: error: s_p_parse_file: unable to status file /etc/slurm/slurm.conf: "
            "No such file or directory",
            "found no Slurm configuration",
            "SLURM_CONF",
        ),
        (
            "squeue: error: auth_g_unpack: remote plugin_id 0 not found",
            "could not authenticate",
            "munged",
        ),
    ],
)
def test_scheduler_failures_say_what_to_do(
    fake: FakeSlurm, stderr: str, message: str, hint: str
) -> None:
    fake.answer("squeue", "", stderr + "\n", 1)
    error = expect_error(
        SchedulerUnavailableError, lambda: jobs.status(slurm=fake.slurm()), message
    )
    assert hint in error.diagnostics()


def test_other_failures_quote_slurm(fake: FakeSlurm) -> None:
    fake.answer("squeue", "", "squeue: error: something odd\n", 2)
    expect_error(
        JobError, lambda: jobs.status(slurm=fake.slurm()), "`squeue` failed (exit 2)", "odd"
    )


def test_a_missing_configuration_file_fails_at_once(tmp_path: Path) -> None:
    slurm = Slurm(conf=tmp_path / "nowhere.conf", environ={"PATH": os.environ["PATH"]})
    expect_error(
        SchedulerUnavailableError, lambda: jobs.status(slurm=slurm), "nowhere.conf does not exist"
    )


def test_a_configuration_file_needs_an_environment(tmp_path: Path) -> None:
    expect_error(UsageError, lambda: Slurm(conf=tmp_path / "slurm.conf"), "needs the environment")
    slurm = Slurm(conf=tmp_path / "s.conf", environ={"PATH": "/bin", "SLURM_CONF": "/etc/x"})
    assert slurm.env() == {"PATH": "/bin", "SLURM_CONF": str(tmp_path / "s.conf")}
    assert Slurm().env() is None


def test_a_hanging_command_times_out(fake: FakeSlurm) -> None:
    (fake.bin / "squeue").write_text("#!/bin/bash\nexec sleep 10\n")
    expect_error(
        SchedulerUnavailableError,
        lambda: jobs.status(slurm=fake.slurm(timeout=0.3)),
        "did not answer within 0.3 s",
    )


# --- status, logs, cancel, wait ------------------------------------------------------------------


def test_status_of_one_job_comes_from_scontrol(fake: FakeSlurm, tmp_path: Path) -> None:
    fake.answer("scontrol", SCONTROL_DONE.format(dir=tmp_path) + "\n")
    found = jobs.status("5", slurm=fake.slurm())
    assert (found.id, found.name, found.state, found.exit_code) == ("5", "iris", "COMPLETED", 0)
    assert found.succeeded and found.finished and found.source == "scontrol"
    assert (found.node, found.partition, found.user) == ("edge1", "edge", "root")
    assert found.started is not None and found.started.second == 35
    assert found.ended is None  # Unknown
    assert found.output_file == tmp_path / "iris_o5.txt"


def test_a_forgotten_job_is_looked_up_in_sacct(fake: FakeSlurm) -> None:
    fake.answer("scontrol", "", "slurm_load_jobs error: Invalid job id specified\n", 1)
    fake.answer(
        "sacct",
        "5|iris|CANCELLED by 0|0:15|edge1|edge|root|2026-11-22T02:39:32|"
        "2026-11-22T02:39:35|2026-11-22T02:39:40|/srv\n",
    )
    found = jobs.status("5", slurm=fake.slurm())
    assert (found.state, found.exit_code, found.signal, found.source) == (
        "CANCELLED",
        None,
        15,
        "sacct",
    )
    assert not found.succeeded


def test_an_unknown_job_without_accounting_is_not_found(fake: FakeSlurm) -> None:
    fake.answer("scontrol", "", "slurm_load_jobs error: Invalid job id specified\n", 1)
    fake.answer("sacct", "", "Slurm accounting storage is disabled\n", 1)
    error = expect_error(JobNotFoundError, lambda: jobs.status("5", slurm=fake.slurm()), "job 5")
    assert "MinJobAge" in error.diagnostics()
    expect_error(JobNotFoundError, lambda: jobs.cancel("5", slurm=fake.slurm()), "job 5")


def test_a_bad_job_id_is_a_usage_error(fake: FakeSlurm) -> None:
    expect_error(UsageError, lambda: jobs.status("5; rm", slurm=fake.slurm()), "not a Slurm job id")


def test_status_of_all_jobs_comes_from_squeue(fake: FakeSlurm) -> None:
    fake.answer("squeue", "12|RUNNING|root|edge|edge1|None|iris\n")
    (row,) = jobs.status(slurm=fake.slurm())
    assert (row.id, row.state, row.node, row.source) == ("12", "RUNNING", "edge1", "squeue")
    assert row.reason is None  # Slurm's "None"
    assert "--states=all" in fake.args("squeue")


def test_logs_read_the_files_slurm_names(fake: FakeSlurm, tmp_path: Path) -> None:
    fake.answer("scontrol", SCONTROL_DONE.format(dir=tmp_path) + "\n")
    (tmp_path / "iris_o5.txt").write_text('{"labels": [0]}\n')
    (tmp_path / "iris_e5.txt").write_text("modelseal job 5 on edge1: exited 0 after 1.250 s\n")
    found = jobs.logs("5", slurm=fake.slurm())
    assert found.output == '{"labels": [0]}\n'
    assert found.elapsed == 1.25 and found.exit_code == 0


def test_logs_of_a_forgotten_job_are_found_by_name(fake: FakeSlurm, tmp_path: Path) -> None:
    fake.answer("scontrol", "", "slurm_load_jobs error: Invalid job id specified\n", 1)
    fake.answer("sacct", "", "Slurm accounting storage is disabled\n", 1)
    (tmp_path / "iris_o9.txt").write_text("out\n")
    found = jobs.logs("9", workdir=tmp_path, slurm=fake.slurm())
    assert (found.output, found.error, found.error_file) == ("out\n", "", None)
    expect_error(
        JobNotFoundError,
        lambda: jobs.logs("10", workdir=tmp_path, slurm=fake.slurm()),
        "no output files of job 10",
    )


def test_logs_of_a_job_object_need_no_scheduler(tmp_path: Path) -> None:
    job = Job("3", "iris", tmp_path, tmp_path / "iris_job.sh")
    found = jobs.logs(job, slurm=Slurm(bin_dir=tmp_path / "none"))
    assert found == JobLogs("3", "", "", job.output_file, job.error_file)
    assert found.elapsed is None and found.exit_code is None


def test_cancel_runs_scancel_only_for_a_live_job(fake: FakeSlurm, tmp_path: Path) -> None:
    running = SCONTROL_DONE.format(dir=tmp_path).replace("COMPLETED", "RUNNING")
    fake.answer("scontrol", running + "\n")
    assert jobs.cancel("5", slurm=fake.slurm()).state == "RUNNING"
    assert fake.args("scancel") == ["5"]
    (fake.bin / "scancel.args").unlink()
    fake.answer("scontrol", SCONTROL_DONE.format(dir=tmp_path) + "\n")
    assert jobs.cancel("5", slurm=fake.slurm()).state == "COMPLETED"
    assert not (fake.bin / "scancel.args").exists()


def test_wait_gives_up_after_its_timeout(fake: FakeSlurm, tmp_path: Path) -> None:
    pending = SCONTROL_DONE.format(dir=tmp_path).replace("JobState=COMPLETED Reason=None",
                                                         "JobState=PENDING Reason=Resources")  # fmt: skip
    fake.answer("scontrol", pending + "\n")
    expect_error(
        JobTimeoutError,
        lambda: jobs.wait("5", timeout=0.2, poll=0.05, slurm=fake.slurm()),
        "job 5 is still PENDING after 0.2 s (Resources)",
    )
    fake.answer("scontrol", SCONTROL_DONE.format(dir=tmp_path) + "\n")
    assert jobs.wait("5", timeout=5, slurm=fake.slurm()).succeeded


def test_status_json_of_the_cli_is_serialisable(fake: FakeSlurm, tmp_path: Path) -> None:
    from modelseal.cli.jobs import _status_dict

    fake.answer("scontrol", SCONTROL_DONE.format(dir=tmp_path) + "\n")
    text = json.dumps(_status_dict(jobs.status("5", slurm=fake.slurm())))
    assert json.loads(text)["started"] == "2026-11-22T02:39:35"
