"""Errors of the job workflow: Slurm missing or down, a refused submission, an unknown job."""

from __future__ import annotations

from modelseal.errors import Error

__all__ = [
    "JobError",
    "JobNotFoundError",
    "JobTimeoutError",
    "SchedulerUnavailableError",
    "SubmitError",
]


class JobError(Error):
    """A scheduler command failed."""

    code = "JOB"


class SchedulerUnavailableError(JobError):
    """Slurm (or its TORQUE wrappers) is not installed here, not configured, or not answering."""

    code = "SCHEDULER_UNAVAILABLE"


class SubmitError(JobError):
    """The scheduler refused the job."""

    code = "SUBMIT_REFUSED"


class JobNotFoundError(JobError):
    """The scheduler does not know the job (never existed, or forgotten since it ended)."""

    code = "JOB_NOT_FOUND"


class JobTimeoutError(JobError):
    """The job did not end within the time the caller was willing to wait."""

    code = "JOB_TIMEOUT"
