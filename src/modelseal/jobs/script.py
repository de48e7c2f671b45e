"""The batch script of a job: what runs on the node, rendered from one readable template.

The script is plain bash with ``#SBATCH`` directives, so ``sbatch FILE`` and the TORQUE wrapper
``qsub FILE`` both submit it, and a person can read (``modelseal job submit --dry-run``), keep and
resubmit it by hand. On the node it

1. checks, without decrypting anything or counting a load, that what the job needs is there:
   the modelseal command, the sealed model, a license file that looks like one, an enrolled agent
   home (or a listening agent socket), ``/dev/fuse``, and the input file;
2. runs the command under ``modelseal run``, which gets the key from the vault through the agent,
   mounts the plaintext view of the model at a private directory for as long as the command runs,
   unmounts it afterwards and stops the command when the license's lease ends;
3. ends with one line on stderr saying how the command ended and how long it took.

In the command's arguments ``{model}`` stands for the directory where the model's files appear
and ``{input}`` for the input file; the command also finds them in ``$MODELSEAL_MODEL_DIR`` and
``$MODELSEAL_JOB_INPUT``. In an agent home or socket path ``{node}`` stands for the node's Slurm
name, for clusters that keep one agent home per node on a shared filesystem.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import Final

from modelseal.errors import UsageError

__all__ = [
    "EXIT_NODE_NOT_READY",
    "JobSpec",
    "PlainModel",
    "SealedModel",
    "check_job_name",
    "error_file_name",
    "output_file_name",
    "render_script",
]

EXIT_NODE_NOT_READY: Final = 78
"""Exit code of a job whose node lacks what it needs (EX_CONFIG): no agent, license, model…"""

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_PLACEHOLDER = re.compile(r"\{(model|input|node)\}")
_SHELL_VALUE = {"model": '"$MODEL_DIR"', "input": '"$INPUT"', "node": '"$NODE"'}
_AGENT_FILES = ("agent.json", "device.pem", "device-key.pem", "ca.pem")


@dataclass(frozen=True)
class SealedModel:
    """A sealed package that the node decrypts through ``modelseal run`` under a license.

    Give exactly one of ``agent_home`` (the job gets the key itself with the node's enrolled
    device identity) or ``agent_socket`` (a ``modelseal agent serve`` on the node gives it).
    Paths are as the node sees them; ``{node}`` in either agent path becomes the node's name.
    """

    package: Path
    license: Path
    agent_home: Path | None = None
    agent_socket: Path | None = None

    def __post_init__(self) -> None:
        if (self.agent_home is None) == (self.agent_socket is None):
            raise UsageError("give exactly one of an agent home or an agent socket")


@dataclass(frozen=True)
class PlainModel:
    """An unprotected model directory: the command runs directly (a baseline to compare with)."""

    path: Path


@dataclass(frozen=True)
class JobSpec:
    """Everything the batch script says. Paths should be absolute (the node runs the script)."""

    name: str
    """Job name and the stem of the output files ``<name>_o<id>.txt`` / ``<name>_e<id>.txt``."""
    command: tuple[str, ...]
    """The program and its arguments; ``{model}`` and ``{input}`` are replaced (see above)."""
    model: SealedModel | PlainModel
    modelseal: tuple[str, ...]
    """How the node starts modelseal, e.g. ``("/opt/modelseal/bin/modelseal",)``."""
    node: str | None = None
    partition: str | None = None
    input: Path | None = None
    time_limit: int | None = None
    """Minutes after which Slurm stops the job (None: the partition's limit)."""

    def __post_init__(self) -> None:
        check_job_name(self.name)
        if not self.command:
            raise UsageError("no command to run: give it after --")
        if not self.modelseal:
            raise UsageError("no modelseal command for the node")
        if self.node is not None and self.partition is not None:
            raise UsageError("give a node or a partition, not both")
        if self.time_limit is not None and self.time_limit < 1:
            raise UsageError("the time limit is a number of minutes, at least 1")


def check_job_name(name: str) -> str:
    """``name`` if it is safe as a job name and a file name stem, else a UsageError."""
    if not _NAME.fullmatch(name):
        raise UsageError(
            f"{name!r} cannot name a job: use 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


def output_file_name(name: str, job_id: str) -> str:
    """``<name>_o<job id>.txt``: the job's standard output, in the submitting directory."""
    return f"{name}_o{job_id}.txt"


def error_file_name(name: str, job_id: str) -> str:
    """``<name>_e<job id>.txt``: the job's standard error, in the submitting directory."""
    return f"{name}_e{job_id}.txt"


def _shell_word(text: str, allowed: Sequence[str]) -> str:
    """``text`` as one shell word, with the allowed placeholders turned into variables."""
    parts: list[str] = []
    for index, piece in enumerate(_PLACEHOLDER.split(text)):
        if index % 2:  # a placeholder name
            if piece in allowed:
                parts.append(_SHELL_VALUE[piece])
                continue
            piece = "{" + piece + "}"
        if piece:
            parts.append(shlex.quote(piece))
    return "".join(parts) or "''"


def _directives(spec: JobSpec) -> str:
    lines = [
        f"#SBATCH --job-name={spec.name}",
        f"#SBATCH --output={output_file_name(spec.name, '%j')}",
        f"#SBATCH --error={error_file_name(spec.name, '%j')}",
        "#SBATCH --nodes=1",
        "#SBATCH --ntasks=1",
    ]
    if spec.node is not None:
        lines.append(f"#SBATCH --nodelist={_safe_option('node', spec.node)}")
    if spec.partition is not None:
        lines.append(f"#SBATCH --partition={_safe_option('partition', spec.partition)}")
    if spec.time_limit is not None:
        lines.append(f"#SBATCH --time={spec.time_limit}")
    return "\n".join(lines)


def _safe_option(what: str, value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9._,\[\]-]+", value):
        raise UsageError(f"{value!r} is not a Slurm {what} name")
    return value


_HEADER = Template("""\
#!/bin/bash
# $name: a modelseal job (rendered by `modelseal job submit`; see docs/jobs.md).
# $summary
# Output: ${name}_o<job id>.txt, errors: ${name}_e<job id>.txt, in the submitting directory.
$directives
set -uo pipefail

NODE="$${SLURMD_NODENAME:-$$(hostname -s)}"
JOB="$${SLURM_JOB_ID:-local}"
say() { printf 'modelseal job %s on %s: %s\\n' "$$JOB" "$$NODE" "$$*" >&2; }
not_ready() { say "$$*"; exit $not_ready; }
""")

_SEALED_CHECKS = Template("""
MODELSEAL=($modelseal)
SEALED=$sealed
LICENSE=$license
$agent_var=$agent_path
INPUT=$input

# 1. Fast checks on this node: nothing is decrypted and no load is counted.
command -v "$${MODELSEAL[0]}" >/dev/null ||
    not_ready "modelseal is not installed on this node ($${MODELSEAL[0]} was not found)"
[ -e "$$SEALED" ] || not_ready "the sealed model $$SEALED is not on this node"
[ -r "$$LICENSE" ] && [ -s "$$LICENSE" ] ||
    not_ready "no license: $$LICENSE is missing, empty or unreadable on this node"
grep -Eqx '[[:space:]]*[A-Za-z0-9_-]+\\.[A-Za-z0-9_-]+\\.[A-Za-z0-9_-]+[[:space:]]*' "$$LICENSE" ||
    not_ready "$$LICENSE is not a license file (a JWS from the model controller)"
$agent_check
[ -c /dev/fuse ] || not_ready "FUSE is not available on this node (/dev/fuse is missing)"
$input_check
# 2. A private, empty directory where the model's files appear while the command runs.
WORK="$$(mktemp -d "$${TMPDIR:-/tmp}/modelseal-job-$$JOB.XXXXXX")" ||
    not_ready "cannot create a private directory under $${TMPDIR:-/tmp}"
trap 'rmdir "$$WORK/model" "$$WORK" 2>/dev/null' EXIT
MODEL_DIR="$$WORK/model"
export MODELSEAL_MODEL_DIR="$$MODEL_DIR" MODELSEAL_JOB_INPUT="$$INPUT"

# 3. The command, under `modelseal run`: it gets the key through the agent, mounts the plaintext
#    at $$MODEL_DIR, unmounts when the command ends and stops it if the license's lease ends
#    (exit 77). A refused key release ends here with the refusal code and sentence on stderr.
started=$$(date +%s%N)
"$${MODELSEAL[@]}" run --model "$$SEALED" --at "$$MODEL_DIR" --license "$$LICENSE" \\
    --$agent_option "$$$agent_var" -- \\
    $command
""")

_PLAIN_CHECKS = Template("""
MODEL_DIR=$model_dir
INPUT=$input

# 1. Fast checks on this node.
[ -e "$$MODEL_DIR" ] || not_ready "the model $$MODEL_DIR is not on this node"
$input_check
export MODELSEAL_MODEL_DIR="$$MODEL_DIR" MODELSEAL_JOB_INPUT="$$INPUT"

# 2. The command, directly: this model is not protected.
started=$$(date +%s%N)
$command
""")

_FOOTER = Template("""status=$$?
ms=$$(( ($$(date +%s%N) - started) / 1000000 ))
say "$$(printf 'exited %d after %d.%03d s' "$$status" $$((ms / 1000)) $$((ms % 1000)))"
${lease_note}exit "$$status"
""")
_LEASE_NOTE = (
    '[ "$status" -ne 77 ] || say "the license\'s lease ended while the command ran; it was stopped"'
)

_AGENT_HOME_CHECK = Template("""\
[ -d "$$AGENT_HOME" ] ||
    not_ready "no modelseal agent is enrolled on this node: $$AGENT_HOME does not exist" \\
        "(enrol the node with: modelseal agent enroll --home $$AGENT_HOME; see docs/jobs.md)"
for file in $files; do
    [ -r "$$AGENT_HOME/$$file" ] ||
        not_ready "the agent home $$AGENT_HOME on this node is incomplete: $$file is missing" \\
            "(enrol the node again)"
done""")

_AGENT_SOCKET_CHECK = """\
[ -S "$AGENT_SOCKET" ] ||
    not_ready "no modelseal agent is listening on this node at $AGENT_SOCKET" \\
        "(start one with: modelseal agent serve --home DIR --socket $AGENT_SOCKET;" \\
        "see docs/jobs.md)\""""

_INPUT_CHECK = """\
[ -z "$INPUT" ] || [ -e "$INPUT" ] || not_ready "the input $INPUT is not on this node"
"""


def _summary(spec: JobSpec) -> str:
    program = Path(spec.command[0]).name
    if isinstance(spec.model, SealedModel):
        return (
            f"Runs {program} against the sealed model {spec.model.package.name}, decrypted "
            "on the node by `modelseal run`."
        )
    return f"Runs {program} against the unprotected model {spec.model.path.name}."


def render_script(spec: JobSpec) -> str:
    """The batch script for ``spec`` (bash, ``#SBATCH`` directives first)."""
    command = " ".join(_shell_word(arg, ("model", "input")) for arg in spec.command)
    common: Mapping[str, str] = {
        "input": "''" if spec.input is None else _shell_word(str(spec.input), ()),
        "input_check": _INPUT_CHECK,
        "command": command,
    }
    header = _HEADER.substitute(
        name=spec.name,
        summary=_summary(spec),
        directives=_directives(spec),
        not_ready=EXIT_NODE_NOT_READY,
    )
    model = spec.model
    if isinstance(model, PlainModel):
        body = _PLAIN_CHECKS.substitute(common, model_dir=_shell_word(str(model.path), ()))
        return header + body + _FOOTER.substitute(lease_note="")
    if model.agent_home is not None:
        agent_var, agent_option, agent_path = "AGENT_HOME", "agent-home", model.agent_home
        agent_check = _AGENT_HOME_CHECK.substitute(files=" ".join(_AGENT_FILES))
    else:
        assert model.agent_socket is not None  # noqa: S101 - SealedModel checks it
        agent_var, agent_option, agent_path = "AGENT_SOCKET", "agent-socket", model.agent_socket
        agent_check = _AGENT_SOCKET_CHECK
    body = _SEALED_CHECKS.substitute(
        common,
        modelseal=" ".join(_shell_word(part, ()) for part in spec.modelseal),
        sealed=_shell_word(str(model.package), ()),
        license=_shell_word(str(model.license), ()),
        agent_var=agent_var,
        agent_option=agent_option,
        agent_path=_shell_word(str(agent_path), ("node",)),
        agent_check=agent_check,
    )
    return header + body + _FOOTER.substitute(lease_note=_LEASE_NOTE + "\n")
