"""Render a job's batch script into the submitting directory and hand it to Slurm.

The script is written as ``<name>_job.sh`` (so it can be read and resubmitted by hand) and
submitted with ``sbatch`` or TORQUE's ``qsub`` wrapper; Slurm writes ``<name>_o<id>.txt`` and
``<name>_e<id>.txt`` beside it.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from modelseal._files import replace_file
from modelseal.errors import Error, UsageError
from modelseal.jobs._parse import parse_submit_output
from modelseal.jobs.errors import JobError, SchedulerUnavailableError, SubmitError
from modelseal.jobs.records import Job, Via
from modelseal.jobs.script import (
    JobSpec,
    PlainModel,
    SealedModel,
    check_job_name,
    error_file_name,
    output_file_name,
    render_script,
)
from modelseal.jobs.slurm import Slurm

__all__ = ["default_modelseal_command", "prepare", "submit"]

_DEFAULT = Slurm()


def default_modelseal_command() -> tuple[str, ...]:
    """How a node runs this modelseal: the ``modelseal`` beside this Python, else on PATH, else
    ``python -m modelseal`` (nodes are expected to share the installation, as they share the
    submitting directory)."""
    beside = Path(sys.executable).with_name("modelseal")
    if beside.is_file() and os.access(beside, os.X_OK):
        return (str(beside),)
    found = shutil.which("modelseal")
    return (found,) if found else (sys.executable, "-m", "modelseal")


def _absolute(path: Path, base: Path) -> Path:
    path = path.expanduser()
    return path if path.is_absolute() else base / path


def _default_name(model: SealedModel | PlainModel) -> str:
    if isinstance(model, PlainModel):
        raw = model.path.name if model.path.is_dir() else model.path.stem
    else:
        from modelseal.package import SealedPackage

        try:
            with SealedPackage.open(model.package) as package:
                raw = package.manifest.model.name
        except (Error, OSError) as exc:
            raise UsageError(
                f"cannot read the model's name from {model.package}: {exc}",
                hint="give the job a name (--name)",
            ) from exc
    name = re.sub(r"[^A-Za-z0-9._-]", "-", raw).lstrip("._-")[:64]
    return name or "job"


def prepare(
    command: Sequence[str],
    *,
    model: SealedModel | PlainModel,
    name: str | None = None,
    workdir: Path | None = None,
    node: str | None = None,
    partition: str | None = None,
    input: Path | None = None,
    time_limit: int | None = None,
    modelseal: Sequence[str] | None = None,
) -> tuple[JobSpec, Path]:
    """The job's spec with absolute paths, and the directory it is submitted from.

    Relative paths are taken relative to ``workdir`` (default: the current directory).
    """
    base = (workdir or Path.cwd()).absolute()
    if isinstance(model, SealedModel):
        model = SealedModel(
            package=_absolute(model.package, base),
            license=_absolute(model.license, base),
            agent_home=None if model.agent_home is None else _absolute(model.agent_home, base),
            agent_socket=(
                None if model.agent_socket is None else _absolute(model.agent_socket, base)
            ),
        )
    else:
        model = PlainModel(_absolute(model.path, base))
    spec = JobSpec(
        name=check_job_name(name) if name is not None else _default_name(model),
        command=tuple(command),
        model=model,
        modelseal=tuple(modelseal) if modelseal is not None else default_modelseal_command(),
        node=node,
        partition=partition,
        input=None if input is None else _absolute(input, base),
        time_limit=time_limit,
    )
    return spec, base


def _qsub_args(spec: JobSpec) -> list[str]:
    args = ["-N", spec.name, "-o", output_file_name(spec.name, "%j")]
    args += ["-e", error_file_name(spec.name, "%j")]
    resources = []
    if spec.node is not None:
        resources.append(f"nodes={spec.node}")
    if spec.time_limit is not None:
        hours, minutes = divmod(spec.time_limit, 60)
        resources.append(f"walltime={hours:02d}:{minutes:02d}:00")
    if resources:
        args += ["-l", ",".join(resources)]
    if spec.partition is not None:
        args += ["-q", spec.partition]
    return args


def submit(
    command: Sequence[str],
    *,
    model: SealedModel | PlainModel,
    name: str | None = None,
    workdir: Path | None = None,
    node: str | None = None,
    partition: str | None = None,
    input: Path | None = None,
    time_limit: int | None = None,
    via: Via = "sbatch",
    modelseal: Sequence[str] | None = None,
    slurm: Slurm = _DEFAULT,
) -> Job:
    """Render the job's script into ``workdir`` (``<name>_job.sh``), submit it, return the Job.

    ``command`` runs on the node against ``model``: a :class:`SealedModel` is decrypted there by
    ``modelseal run`` under its license, a :class:`PlainModel` is used as it is. ``via="qsub"``
    submits through the TORQUE wrapper instead of ``sbatch``.
    """
    spec, base = prepare(
        command,
        model=model,
        name=name,
        workdir=workdir,
        node=node,
        partition=partition,
        input=input,
        time_limit=time_limit,
        modelseal=modelseal,
    )
    script = base / f"{spec.name}_job.sh"
    if via == "sbatch":
        args = ["--parsable", script.name]
    elif via == "qsub":
        args = [*_qsub_args(spec), script.name]
    else:
        raise UsageError(f"cannot submit via {via!r}: use sbatch or qsub")
    # Atomically, so a concurrent submission of the same name never reads half a script; 0o755:
    # a script people may run by hand (no secrets in it).
    replace_file(script, render_script(spec).encode("utf-8"), 0o755)
    try:
        result = slurm.run(via, *args, cwd=base)
    except SchedulerUnavailableError:
        raise
    except JobError as exc:
        raise SubmitError(f"Slurm refused job {spec.name}: {exc.message}") from exc
    return Job(parse_submit_output(result.stdout), spec.name, base, script, via)
