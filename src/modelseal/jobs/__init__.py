"""Secured inference jobs on a Slurm cluster (see docs/jobs.md).

``submit`` renders a batch script that runs a command on a node under ``modelseal run`` (the
sealed model decrypted through the crypto filesystem, the key from the node's agent under a
license), submits it with ``sbatch`` or TORQUE's ``qsub`` wrapper, and returns a :class:`Job`;
``status``, ``logs``, ``cancel`` and ``wait`` follow it. Output and errors land in the submitting
directory as ``<name>_o<id>.txt`` and ``<name>_e<id>.txt``.

Importing this package runs nothing and pulls in no serving, storage or ML code.
"""

from modelseal.jobs.errors import (
    JobError,
    JobNotFoundError,
    JobTimeoutError,
    SchedulerUnavailableError,
    SubmitError,
)
from modelseal.jobs.follow import cancel, logs, status, wait
from modelseal.jobs.records import ENDED_STATES, Job, JobLogs, JobStatus, Via
from modelseal.jobs.script import (
    EXIT_NODE_NOT_READY,
    JobSpec,
    PlainModel,
    SealedModel,
    render_script,
)
from modelseal.jobs.slurm import Slurm
from modelseal.jobs.submit import default_modelseal_command, prepare, submit

__all__ = [
    "ENDED_STATES",
    "EXIT_NODE_NOT_READY",
    "Job",
    "JobError",
    "JobLogs",
    "JobNotFoundError",
    "JobSpec",
    "JobStatus",
    "JobTimeoutError",
    "PlainModel",
    "SchedulerUnavailableError",
    "SealedModel",
    "Slurm",
    "SubmitError",
    "Via",
    "cancel",
    "default_modelseal_command",
    "logs",
    "prepare",
    "render_script",
    "status",
    "submit",
    "wait",
]
