"""Follow submitted jobs: status (scontrol, sacct, squeue), logs, cancel, wait."""

from __future__ import annotations

import time
from pathlib import Path
from typing import overload

from modelseal.jobs._parse import (
    SACCT_FIELDS,
    SQUEUE_FORMAT,
    parse_sacct,
    parse_scontrol_job,
    parse_squeue,
)
from modelseal.jobs.errors import JobError, JobNotFoundError, JobTimeoutError
from modelseal.jobs.records import (
    Job,
    JobLogs,
    JobStatus,
    from_sacct,
    from_scontrol,
    from_squeue,
    job_id_of,
)
from modelseal.jobs.slurm import Slurm

__all__ = ["cancel", "logs", "status", "wait"]

_DEFAULT = Slurm()


def _one(job_id: str, slurm: Slurm) -> JobStatus:
    result = slurm.run("scontrol", "show", "job", "--oneliner", job_id, ok_codes=(0, 1))
    if result.returncode == 0:
        for values in parse_scontrol_job(result.stdout):
            if values.get("JobId") == job_id:
                return from_scontrol(values)
    elif "Invalid job id" not in result.stderr + result.stdout:
        raise slurm.error_for("scontrol", result)
    # Forgotten by the controller (MinJobAge): ask the accounting database, when there is one.
    fields = ",".join(SACCT_FIELDS)
    found = slurm.run(
        "sacct", "--parsable2", "--noheader", "-X", "-j", job_id, f"--format={fields}",
        ok_codes=(0, 1),
    )  # fmt: skip
    if found.returncode == 0:
        for values in parse_sacct(found.stdout):
            if values["JobID"] == job_id:
                return from_sacct(values)
    raise JobNotFoundError(
        f"Slurm does not know job {job_id}",
        hint="the controller forgets ended jobs after MinJobAge unless accounting (slurmdbd) "
        "is set up; `modelseal job logs` still finds its files in the submitting directory",
    )


@overload
def status(job: Job | str, *, slurm: Slurm = ...) -> JobStatus: ...
@overload
def status(job: None = None, *, slurm: Slurm = ...) -> list[JobStatus]: ...
def status(job: Job | str | None = None, *, slurm: Slurm = _DEFAULT) -> JobStatus | list[JobStatus]:
    """One job's status (scontrol, then sacct), or every job the controller knows (squeue)."""
    if job is not None:
        return _one(job_id_of(job), slurm)
    result = slurm.run("squeue", "--noheader", "--states=all", f"--format={SQUEUE_FORMAT}")
    return [from_squeue(values) for values in parse_squeue(result.stdout)]


def _read(path: Path | None) -> str:
    if path is None:
        return ""
    try:
        return path.read_text("utf-8", errors="replace")
    except FileNotFoundError:
        return ""
    except OSError as exc:
        raise JobError(f"cannot read {path}: {exc.strerror}") from exc


def _files_in(workdir: Path, job_id: str) -> tuple[Path | None, Path | None]:
    outputs = sorted(workdir.glob(f"*_o{job_id}.txt"))
    errors = sorted(workdir.glob(f"*_e{job_id}.txt"))
    return (outputs[0] if outputs else None), (errors[0] if errors else None)


def logs(job: Job | str, *, workdir: Path | None = None, slurm: Slurm = _DEFAULT) -> JobLogs:
    """The job's ``_o`` and ``_e`` files: from the Job itself, else where Slurm says they are,
    else by name (``*_o<id>.txt``) in ``workdir`` (default: the current directory)."""
    job_id = job_id_of(job)
    output: Path | None
    error: Path | None
    if isinstance(job, Job):
        output, error = job.output_file, job.error_file
    else:
        try:
            known = _one(job_id, slurm)
            output, error = known.output_file, known.error_file
        except JobNotFoundError:
            where = (workdir or Path.cwd()).absolute()
            output, error = _files_in(where, job_id)
            if output is None and error is None:
                raise JobNotFoundError(
                    f"no output files of job {job_id} (*_o{job_id}.txt, *_e{job_id}.txt) in "
                    f"{where}, and Slurm does not know it",
                    hint="run the command in the directory the job was submitted from",
                ) from None
    return JobLogs(job_id, _read(output), _read(error), output, error)


def cancel(job: Job | str, *, slurm: Slurm = _DEFAULT) -> JobStatus:
    """Ask Slurm to stop the job (SIGTERM to it, SIGKILL after KillWait); its status before.

    A job that has already ended is left as it is; a job Slurm does not know is a
    JobNotFoundError (scancel itself says nothing about unknown ids).
    """
    job_id = job_id_of(job)
    current = _one(job_id, slurm)
    if current.finished:
        return current
    result = slurm.run("scancel", job_id, ok_codes=(0, 1))
    text = result.stderr + result.stdout
    if result.returncode != 0 and "already completing or completed" not in text:
        raise slurm.error_for("scancel", result)
    return current


def wait(
    job: Job | str,
    *,
    timeout: float | None = None,
    poll: float = 0.5,
    slurm: Slurm = _DEFAULT,
) -> JobStatus:
    """Wait until the job has ended; its final status. JobTimeoutError after ``timeout`` s."""
    job_id = job_id_of(job)
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        current = _one(job_id, slurm)
        if current.finished:
            return current
        if deadline is not None and time.monotonic() >= deadline:
            raise JobTimeoutError(
                f"job {job_id} is still {current.state} after {timeout:g} s"
                + (f" ({current.reason})" if current.reason else "")
            )
        time.sleep(poll)
