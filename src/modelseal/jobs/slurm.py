"""The one place that runs Slurm's commands: settings in, text out, failures as JobErrors.

Every scheduler command of the job workflow goes through :meth:`Slurm.run`, which turns a
missing program, a missing configuration and an unreachable controller into a
:class:`SchedulerUnavailableError` with a sentence a person can act on.
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from modelseal.errors import UsageError
from modelseal.jobs.errors import JobError, SchedulerUnavailableError

__all__ = ["Slurm"]

_INSTALL_HINT = (
    "install Slurm's client commands (Debian: apt-get install slurm-client slurm-wlm-torque) "
    "and point them at the cluster (SLURM_CONF or /etc/slurm/slurm.conf); see docs/jobs.md"
)
_PACKAGES = {"qsub": "slurm-wlm-torque", "qstat": "slurm-wlm-torque", "qdel": "slurm-wlm-torque"}
_DOWN = (
    "Unable to contact slurm controller",
    "Socket timed out on send/recv",
    "Zero Bytes were transmitted or received",
    "Connection refused",
)
_NO_CONFIG = (
    "Could not establish a configuration source",
    "s_p_parse_file: unable to",
    "unable to read slurm.conf",
    "Unable to process configuration file",
)
_AUTH = ("auth_g_", "Protocol authentication error", "munge", "Invalid authentication credential")


@dataclass(frozen=True)
class Slurm:
    """How to reach the cluster.

    ``conf`` sets ``SLURM_CONF`` for every command (and so for the jobs they submit); it needs
    ``environ``, the environment those commands get. With neither, commands inherit this
    process's environment. ``bin_dir`` is where the commands are (None: on PATH).
    """

    conf: Path | None = None
    environ: Mapping[str, str] | None = field(default=None, repr=False)
    bin_dir: Path | None = None
    timeout: float = 30.0
    """Seconds a single command may take."""

    def __post_init__(self) -> None:
        if self.conf is not None and self.environ is None:
            raise UsageError(
                "a Slurm configuration file needs the environment to run Slurm's commands with",
                hint="pass environ=os.environ (or a copy of it) together with conf=",
            )

    def env(self) -> dict[str, str] | None:
        """The environment of Slurm's commands (None: inherit this process's)."""
        if self.environ is None:
            return None
        env = dict(self.environ)
        if self.conf is not None:
            env["SLURM_CONF"] = str(self.conf)
        return env

    def program(self, name: str) -> str:
        return str(self.bin_dir / name) if self.bin_dir is not None else name

    def run(
        self,
        name: str,
        *args: str,
        cwd: Path | None = None,
        ok_codes: Sequence[int] = (0,),
    ) -> subprocess.CompletedProcess[str]:
        """Run Slurm's ``name`` with ``args``; its result, or a JobError saying what failed."""
        argv = [self.program(name), *args]
        if self.conf is not None and not self.conf.is_file():
            # Slurm's commands would retry for a minute before saying so.
            raise SchedulerUnavailableError(
                f"the Slurm configuration {self.conf} does not exist", hint=_INSTALL_HINT
            )
        try:
            result = subprocess.run(  # noqa: S603 - a fixed program and our own arguments
                argv,
                cwd=cwd,
                env=self.env(),
                capture_output=True,
                text=True,
                timeout=self.timeout,
                check=False,
            )
        except FileNotFoundError as exc:
            package = _PACKAGES.get(name, "slurm-client")
            raise SchedulerUnavailableError(
                f"`{name}` is not installed here, so no Slurm job can be managed from this "
                f"machine (Debian package {package})",
                hint=_INSTALL_HINT,
            ) from exc
        except subprocess.TimeoutExpired as exc:
            raise SchedulerUnavailableError(
                f"`{name}` did not answer within {self.timeout:g} s: the Slurm controller is "
                "busy or unreachable",
                hint="check that slurmctld is running (scontrol ping)",
            ) from exc
        if result.returncode not in ok_codes:
            raise self.error_for(name, result)
        return result

    @staticmethod
    def error_for(name: str, result: subprocess.CompletedProcess[str]) -> JobError:
        """The error a failed Slurm command stands for (SchedulerUnavailableError when it is the
        cluster, not the request, that failed)."""
        text = (result.stderr.strip() or result.stdout.strip()).replace("\n", " | ")
        if any(marker in text for marker in _NO_CONFIG):
            return SchedulerUnavailableError(
                f"`{name}` found no Slurm configuration: {text}",
                hint="set SLURM_CONF to the cluster's slurm.conf, or install one at "
                "/etc/slurm/slurm.conf",
            )
        if any(marker in text for marker in _DOWN):
            return SchedulerUnavailableError(
                f"the Slurm controller is not running or not reachable: {text}",
                hint="start slurmctld (and munged), or check SlurmctldHost in slurm.conf; "
                "`scontrol ping` tells",
            )
        if any(marker in text for marker in _AUTH):
            return SchedulerUnavailableError(
                f"Slurm could not authenticate this request: {text}",
                hint="check that munged runs here with the cluster's munge key",
            )
        return JobError(f"`{name}` failed (exit {result.returncode}): {text or 'no message'}")
