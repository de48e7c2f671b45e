"""What the job API hands back: a submitted Job, a JobStatus from the scheduler, JobLogs.

The converters turn the parsed output of scontrol, sacct and squeue into one JobStatus shape.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from modelseal.errors import UsageError
from modelseal.jobs._parse import _JOB_ID, first, parse_exit_code
from modelseal.jobs.script import error_file_name, output_file_name

__all__ = [
    "ENDED_STATES",
    "Job",
    "JobLogs",
    "JobStatus",
    "Via",
    "from_sacct",
    "from_scontrol",
    "from_squeue",
    "job_id_of",
]

_SUMMARY = re.compile(r"^modelseal job \S+ on \S+: exited (\d+) after (\d+\.\d+) s$", re.M)

Via = Literal["sbatch", "qsub"]
ENDED_STATES: Final = frozenset(
    {
        "BOOT_FAIL",
        "CANCELLED",
        "COMPLETED",
        "DEADLINE",
        "FAILED",
        "NODE_FAIL",
        "OUT_OF_MEMORY",
        "PREEMPTED",
        "REVOKED",
        "SPECIAL_EXIT",
        "TIMEOUT",
    }
)
"""Slurm job states after which nothing more happens."""


@dataclass(frozen=True)
class Job:
    """A submitted job: its id, its name and where its files are."""

    id: str
    name: str
    workdir: Path
    script: Path
    via: Via = "sbatch"

    @property
    def output_file(self) -> Path:
        """``<name>_o<id>.txt``: what the job printed on stdout."""
        return self.workdir / output_file_name(self.name, self.id)

    @property
    def error_file(self) -> Path:
        """``<name>_e<id>.txt``: what the job printed on stderr."""
        return self.workdir / error_file_name(self.name, self.id)

    def __str__(self) -> str:
        return self.id


@dataclass(frozen=True)
class JobStatus:
    """What the scheduler says about a job. ``state`` is Slurm's (PENDING, RUNNING, COMPLETED…)."""

    id: str
    name: str
    state: str
    node: str | None = None
    partition: str | None = None
    user: str | None = None
    reason: str | None = None
    """Why a job waits or failed (Slurm's Reason), when it says."""
    exit_code: int | None = None
    signal: int | None = None
    submitted: dt.datetime | None = None
    started: dt.datetime | None = None
    ended: dt.datetime | None = None
    """Times as Slurm prints them: the controller's local time, to the second."""
    output_file: Path | None = None
    error_file: Path | None = None
    source: str = "scontrol"
    """Which command answered: squeue, scontrol or sacct."""

    @property
    def finished(self) -> bool:
        """True once the job has ended, however it ended."""
        return self.state in ENDED_STATES

    @property
    def succeeded(self) -> bool:
        return self.state == "COMPLETED" and self.exit_code == 0


@dataclass(frozen=True)
class JobLogs:
    """The job's output and error files (empty text while a file does not exist yet)."""

    job_id: str
    output: str
    error: str
    output_file: Path | None
    error_file: Path | None

    @property
    def elapsed(self) -> float | None:
        """Seconds the command ran on the node (from the script's last line), if it ran."""
        found = _SUMMARY.findall(self.error)
        return float(found[-1][1]) if found else None

    @property
    def exit_code(self) -> int | None:
        """The command's exit code as the script reported it, if it got that far."""
        found = _SUMMARY.findall(self.error)
        return int(found[-1][0]) if found else None


def job_id_of(job: Job | str) -> str:
    job_id = job.id if isinstance(job, Job) else str(job).strip()
    if not _JOB_ID.fullmatch(job_id):
        raise UsageError(f"{job_id!r} is not a Slurm job id")
    return job_id


def _time(value: str | None) -> dt.datetime | None:
    if value is None:
        return None
    try:
        return dt.datetime.fromisoformat(value)
    except ValueError:
        return None


def _path(value: str | None) -> Path | None:
    return None if value is None else Path(value)


def from_scontrol(values: dict[str, str]) -> JobStatus:
    code, signal = parse_exit_code(values.get("ExitCode", ""))
    user = first(values, "UserId")
    return JobStatus(
        id=values["JobId"],
        name=values.get("JobName", ""),
        state=values.get("JobState", "UNKNOWN").split()[0],
        node=first(values, "NodeList", "BatchHost"),
        partition=first(values, "Partition"),
        user=None if user is None else user.split("(", 1)[0],
        reason=first(values, "Reason"),
        exit_code=code,
        signal=signal,
        submitted=_time(first(values, "SubmitTime")),
        started=_time(first(values, "StartTime")),
        ended=_time(first(values, "EndTime")),
        output_file=_path(first(values, "StdOut")),
        error_file=_path(first(values, "StdErr")),
        source="scontrol",
    )


def from_sacct(values: dict[str, str]) -> JobStatus:
    code, signal = parse_exit_code(values["ExitCode"])
    return JobStatus(
        id=values["JobID"],
        name=values["JobName"],
        state=(values["State"].split() or ["UNKNOWN"])[0],
        node=first(values, "NodeList"),
        partition=first(values, "Partition"),
        user=first(values, "User"),
        exit_code=code,
        signal=signal,
        submitted=_time(first(values, "Submit")),
        started=_time(first(values, "Start")),
        ended=_time(first(values, "End")),
        source="sacct",
    )


def from_squeue(values: dict[str, str]) -> JobStatus:
    return JobStatus(
        id=values["JobId"],
        name=values["JobName"],
        state=values["JobState"],
        node=first(values, "NodeList"),
        partition=first(values, "Partition"),
        user=first(values, "UserId"),
        reason=first(values, "Reason"),
        source="squeue",
    )
