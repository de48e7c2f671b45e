"""``modelseal job``: secured inference jobs on a Slurm cluster (see docs/jobs.md).

A thin adapter over :mod:`modelseal.jobs`, imported only when a command runs, so that this module
stays light.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from modelseal.cli._common import quiet_option, say
from modelseal.errors import UsageError

if TYPE_CHECKING:
    from modelseal.jobs import JobStatus

__all__ = ["COMMANDS", "job"]

_PATH = click.Path(path_type=Path)

_FILES = """\
\b
Files, in the directory you submit from (Slurm writes them as the job runs):
  <name>_job.sh        the batch script (read it with --dry-run; `sbatch` it again by hand)
  <name>_o<job id>.txt what the command printed (stdout)
  <name>_e<job id>.txt errors; the script's last line says how the command ended:
                       `modelseal job ID on NODE: exited N after S s`
\b
Exit codes of a job: the command's own; 78 when the node lacks what the job needs
(agent, license, model, FUSE; nothing was decrypted and no load counted); 77 when the
license's lease ended while the command ran; 1 when the vault refused the key
(`error: CODE: sentence` in the _e file).
"""


@click.group()
def job() -> None:
    """Run inference on Slurm nodes with a protected model, and follow the jobs.

    \b
    modelseal job submit --model iris.sealed --license iris.license \\
        --agent-home /var/lib/modelseal/agent -- python3 infer.py {model}/model.onnx
    modelseal job status [ID]      squeue / scontrol (sacct when accounting is on)
    modelseal job logs ID          the job's _o and _e files
    modelseal job wait ID          until the job ends; exit 0 only if it succeeded
    modelseal job cancel ID        scancel

    Each node needs modelseal, FUSE and an enrolled agent (`modelseal agent enroll`), or a
    running `modelseal agent serve`. Slurm's commands find the cluster through SLURM_CONF or
    /etc/slurm/slurm.conf.
    """


@job.command(
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
    epilog=_FILES,
)
@click.option(
    "--model",
    "model_path",
    required=True,
    type=_PATH,
    help="The sealed package (directory or archive), as the node sees it.",
)
@click.option(
    "--license", "license_file", type=_PATH, help="The license file (a JWS) for the model."
)
@click.option(
    "--agent-home",
    type=_PATH,
    help="The node's enrolled agent home; the job gets the key itself. {node} stands for the "
    "node's name (one home per node on a shared filesystem).",
)
@click.option(
    "--agent-socket",
    type=_PATH,
    help="The Unix socket of `modelseal agent serve` on the node ({node} as above).",
)
@click.option(
    "--plain",
    is_flag=True,
    help="--model is an unprotected model directory: run COMMAND without decryption "
    "(a baseline to compare run times with).",
)
@click.option("--node", metavar="NAME", help="Run on this node (sbatch --nodelist).")
@click.option("--partition", metavar="P", help="Run in this partition (sbatch --partition).")
@click.option(
    "--input",
    "input_path",
    type=_PATH,
    help="An input file for COMMAND: {input} in COMMAND and $MODELSEAL_JOB_INPUT name it.",
)
@click.option(
    "--name",
    help="Job name and file prefix (default: the model's name from its manifest).",
)
@click.option("--time", "time_limit", type=click.IntRange(min=1), help="Time limit in minutes.")
@click.option(
    "--via",
    type=click.Choice(["sbatch", "qsub"]),
    default="sbatch",
    show_default=True,
    help="Submit with sbatch, or with TORQUE's qsub (the slurm-wlm-torque wrapper).",
)
@click.option("--dry-run", is_flag=True, help="Print the batch script; submit nothing.")
@quiet_option
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def submit(
    model_path: Path,
    license_file: Path | None,
    agent_home: Path | None,
    agent_socket: Path | None,
    plain: bool,
    node: str | None,
    partition: str | None,
    input_path: Path | None,
    name: str | None,
    time_limit: int | None,
    via: str,
    dry_run: bool,
    quiet: bool,
    command: tuple[str, ...],
) -> None:
    """Submit COMMAND to run on a Slurm node against the model; print the job id.

    On the node the job first checks, fast and without counting a load, that the agent, the
    license, the model and FUSE are there (else it stops with exit 78 and one sentence in the _e
    file); then it runs COMMAND under `modelseal run`, which gets the key from the vault through
    the agent, shows the decrypted model files at a private directory while COMMAND runs, and
    unmounts afterwards. In COMMAND, {model} is that directory and {input} the --input file
    (also $MODELSEAL_MODEL_DIR and $MODELSEAL_JOB_INPUT).
    """
    from modelseal import jobs

    model: jobs.SealedModel | jobs.PlainModel
    if plain:
        if license_file or agent_home or agent_socket:
            raise UsageError("--plain runs without protection: drop --license and --agent-*")
        model = jobs.PlainModel(model_path)
    else:
        if license_file is None:
            raise UsageError("a protected job needs --license FILE (or --plain for a baseline)")
        if (agent_home is None) == (agent_socket is None):
            raise UsageError("give exactly one of --agent-home DIR or --agent-socket PATH")
        model = jobs.SealedModel(model_path, license_file, agent_home, agent_socket)
    options: dict[str, Any] = {
        "model": model,
        "name": name,
        "node": node,
        "partition": partition,
        "input": input_path,
        "time_limit": time_limit,
    }
    if dry_run:
        spec, _ = jobs.prepare(command, **options)
        click.echo(jobs.render_script(spec), nl=False)
        return
    submitted = jobs.submit(command, via="qsub" if via == "qsub" else "sbatch", **options)
    say(
        quiet,
        f"submitted job {submitted.id} ({submitted.name}) via {via}; output: "
        f"{submitted.output_file.name}, errors: {submitted.error_file.name}",
    )
    click.echo(submitted.id)


def _status_dict(status: JobStatus) -> dict[str, Any]:
    return {
        "id": status.id,
        "name": status.name,
        "state": status.state,
        "exit_code": status.exit_code,
        "signal": status.signal,
        "node": status.node,
        "partition": status.partition,
        "user": status.user,
        "reason": status.reason,
        "submitted": status.submitted.isoformat() if status.submitted else None,
        "started": status.started.isoformat() if status.started else None,
        "ended": status.ended.isoformat() if status.ended else None,
        "output_file": str(status.output_file) if status.output_file else None,
        "error_file": str(status.error_file) if status.error_file else None,
        "source": status.source,
    }


def _describe(status: JobStatus) -> str:
    parts = [status.state]
    if status.exit_code is not None:
        parts.append(f"exit {status.exit_code}")
    if status.signal is not None:
        parts.append(f"signal {status.signal}")
    if status.node:
        parts.append(f"on {status.node}")
    if status.reason:  # Slurm's placeholders (None, N/A) were dropped when parsing
        parts.append(f"reason: {status.reason}")
    return f"job {status.id} ({status.name}): " + ", ".join(parts)


@job.command()
@click.argument("job_id", metavar="[ID]", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def status(job_id: str | None, as_json: bool) -> None:
    """The state of job ID (scontrol, then sacct), or of every job Slurm knows (squeue)."""
    from modelseal import jobs

    if job_id is not None:
        one = jobs.status(job_id)
        if as_json:
            click.echo(json.dumps(_status_dict(one), indent=2))
            return
        click.echo(_describe(one))
        for label, path in (("output", one.output_file), ("errors", one.error_file)):
            if path is not None:
                click.echo(f"  {label}: {path}")
        return
    rows = jobs.status()
    if as_json:
        click.echo(json.dumps([_status_dict(row) for row in rows], indent=2))
        return
    if not rows:
        click.echo("no jobs", err=True)
        return
    table = [("ID", "NAME", "STATE", "NODE", "PARTITION", "USER", "REASON")]
    table += [
        (r.id, r.name, r.state, r.node or "-", r.partition or "-", r.user or "-", r.reason or "-")
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))


@job.command()
@click.argument("job_id", metavar="ID")
@click.option(
    "--dir",
    "workdir",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    help="Where to look for the files once Slurm has forgotten the job (default: here).",
)
@click.option(
    "--only", type=click.Choice(["output", "errors"]), help="Print only one of the two files."
)
def logs(job_id: str, workdir: Path | None, only: str | None) -> None:
    """Print job ID's output file (<name>_o<ID>.txt) and error file (<name>_e<ID>.txt)."""
    from modelseal import jobs

    found = jobs.logs(job_id, workdir=workdir)
    sections = [
        ("output", found.output_file, found.output),
        ("errors", found.error_file, found.error),
    ]
    for label, path, text in sections:
        if only is not None and only != label:
            continue
        if only is None:
            where = path.name if path is not None else "not written yet"
            click.echo(f"==> {label}: {where} <==")
        click.echo(text, nl=False)
        if text and not text.endswith("\n"):
            click.echo()


@job.command()
@click.argument("job_id", metavar="ID")
@click.option(
    "--timeout", type=click.FloatRange(min=0), help="Give up after this many seconds (exit 1)."
)
def wait(job_id: str, timeout: float | None) -> None:
    """Wait until job ID has ended; print how it ended. Exits 0 only if it succeeded."""
    from modelseal import jobs

    final = jobs.wait(job_id, timeout=timeout)
    click.echo(_describe(final))
    if not final.succeeded:
        click.get_current_context().exit(1)


@job.command()
@click.argument("job_id", metavar="ID")
@quiet_option
def cancel(job_id: str, quiet: bool) -> None:
    """Cancel job ID (scancel): Slurm sends SIGTERM, then SIGKILL after its KillWait.

    `modelseal run` passes SIGTERM on to the command and unmounts the model; a job that has
    already ended is left alone.
    """
    from modelseal import jobs

    before = jobs.cancel(job_id)
    if before.finished:
        say(quiet, f"job {job_id} had already ended ({before.state}); nothing to cancel")
    else:
        say(quiet, f"asked Slurm to cancel job {job_id} (it was {before.state})")


COMMANDS = [job]
