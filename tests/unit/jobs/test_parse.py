"""Parsers of sbatch, qsub, squeue, scontrol and sacct output. The samples are what Slurm 22.05
(Debian bookworm's slurm-wlm) printed on the test cluster of tests/integration/jobs."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelseal.jobs import JobError
from modelseal.jobs._parse import (
    parse_exit_code,
    parse_sacct,
    parse_scontrol_job,
    parse_squeue,
    parse_submit_output,
)
from tests.conftest import expect_error

SCONTROL_ONELINE = (
    "JobId=7 JobName=iris UserId=root(0) GroupId=root(0) MCS_label=N/A Priority=4294901759 "
    "Nice=0 Account=(null) QOS=(null) JobState=FAILED Reason=NonZeroExitCode "
    "Dependency=(null) Requeue=1 Restarts=0 BatchFlag=1 Reboot=0 ExitCode=78:0 "
    "RunTime=00:00:01 TimeLimit=01:00:00 TimeMin=N/A SubmitTime=2026-11-22T02:39:32 "
    "EligibleTime=2026-11-22T02:39:32 AccrueTime=2026-11-22T02:39:32 "
    "StartTime=2026-11-22T02:39:35 EndTime=2026-11-22T02:39:36 Deadline=N/A "
    "SuspendTime=None SecsPreSuspend=0 LastSchedEval=2026-11-22T02:39:35 Scheduler=Main "
    "Partition=edge AllocNode:Sid=localhost:8416 ReqNodeList=edge2 ExcNodeList=(null) "
    "NodeList=edge2 BatchHost=edge2 NumNodes=1 NumCPUs=1 NumTasks=1 CPUs/Task=1 "
    "ReqB:S:C:T=0:0:*:* TRES=cpu=1,node=1,billing=1 Socks/Node=* NtasksPerN:B:S:C=0:0:*:* "
    "CoreSpec=* MinCPUsNode=1 MinMemoryNode=0 MinTmpDiskNode=0 Features=(null) "
    "DelayBoot=00:00:00 OverSubscribe=OK Contiguous=0 Licenses=(null) Network=(null) "
    "Command=/srv/jobs/my dir/iris_job.sh WorkDir=/srv/jobs/my dir "
    "StdErr=/srv/jobs/my dir/iris_e7.txt StdIn=/dev/null StdOut=/srv/jobs/my dir/iris_o7.txt "
    "Power= "
)

SCONTROL_BLOCKS = """\
JobId=1 JobName=x
   UserId=root(0) GroupId=root(0) MCS_label=N/A
   JobState=COMPLETED Reason=None Dependency=(null)
   ExitCode=0:0
   NodeList=edge1
   StdOut=/tmp/jobs/x_o1.txt
   Power=

JobId=2 JobName=y
   JobState=RUNNING Reason=None Dependency=(null)
   ExitCode=0:0
   NodeList=edge2
"""


@pytest.mark.parametrize(
    ("text", "job_id"),
    [
        ("Submitted batch job 42\n", "42"),
        ("Submitted batch job 42 on cluster edge\n", "42"),
        ("42\n", "42"),
        ("42;edge\n", "42"),
        ("warning: something\n17\n", "17"),  # qsub: the id is on the last line
        ("17.server\n", "17"),  # TORQUE style
        ("8_3\n", "8_3"),  # an array task
    ],
)
def test_submit_output_gives_the_job_id(text: str, job_id: str) -> None:
    assert parse_submit_output(text) == job_id


@pytest.mark.parametrize("text", ["", "\n", "There was an error\n", "Submitted batch job\n"])
def test_submit_output_without_an_id_is_an_error(text: str) -> None:
    expect_error(JobError, lambda: parse_submit_output(text), "printed no job id")


@given(st.integers(min_value=1, max_value=2**31), st.sampled_from(["plain", "parsable", "qsub"]))
def test_any_job_id_round_trips(job_id: int, form: str) -> None:
    text = {"plain": f"Submitted batch job {job_id}\n", "parsable": f"{job_id};c\n"}.get(
        form, f"{job_id}\n"
    )
    assert parse_submit_output(text) == str(job_id)


def test_squeue_rows_keep_a_bar_in_the_job_name() -> None:
    text = "12|RUNNING|root|edge|edge1|None|iris\n13|PENDING|ann|edge||Resources|a|b\n\n"
    rows = parse_squeue(text)
    assert rows == [
        {
            "JobId": "12",
            "JobState": "RUNNING",
            "UserId": "root",
            "Partition": "edge",
            "NodeList": "edge1",
            "Reason": "None",
            "JobName": "iris",
        },
        {
            "JobId": "13",
            "JobState": "PENDING",
            "UserId": "ann",
            "Partition": "edge",
            "NodeList": "",
            "Reason": "Resources",
            "JobName": "a|b",
        },
    ]
    assert parse_squeue("") == []
    expect_error(JobError, lambda: parse_squeue("12|RUNNING\n"), "unexpected squeue line")


def test_scontrol_oneliner_values_may_hold_spaces_and_equals_signs() -> None:
    (job,) = parse_scontrol_job(SCONTROL_ONELINE)
    assert job["JobId"] == "7" and job["JobName"] == "iris"
    assert job["JobState"] == "FAILED" and job["ExitCode"] == "78:0"
    assert job["StdOut"] == "/srv/jobs/my dir/iris_o7.txt"
    assert job["StdErr"] == "/srv/jobs/my dir/iris_e7.txt"
    assert job["TRES"] == "cpu=1,node=1,billing=1"
    assert job["NtasksPerN:B:S:C"] == "0:0:*:*"
    assert job["Power"] == ""


def test_scontrol_blocks_are_one_job_each() -> None:
    jobs = parse_scontrol_job(SCONTROL_BLOCKS)
    assert [(j["JobId"], j["JobState"], j["NodeList"]) for j in jobs] == [
        ("1", "COMPLETED", "edge1"),
        ("2", "RUNNING", "edge2"),
    ]
    assert jobs[0]["StdOut"] == "/tmp/jobs/x_o1.txt"
    # Two oneliners without a blank line between them.
    assert len(parse_scontrol_job(SCONTROL_ONELINE + "\n" + SCONTROL_ONELINE)) == 2
    assert parse_scontrol_job("No jobs in the system\n") == []


def test_sacct_rows() -> None:
    text = (
        "7|iris|CANCELLED by 0|0:15|edge1|edge|root|2026-11-22T02:39:32|"
        "2026-11-22T02:39:35|2026-11-22T02:39:40|/srv/jobs\n"
    )
    (row,) = parse_sacct(text)
    assert row["State"] == "CANCELLED by 0" and row["ExitCode"] == "0:15"
    assert row["WorkDir"] == "/srv/jobs"
    expect_error(JobError, lambda: parse_sacct("7|iris\n"), "unexpected sacct line")


@pytest.mark.parametrize(
    ("value", "expected"),
    [("0:0", (0, None)), ("78:0", (78, None)), ("0:15", (None, 15)), ("", (None, None))],
)
def test_exit_codes(value: str, expected: tuple[int | None, int | None]) -> None:
    assert parse_exit_code(value) == expected
