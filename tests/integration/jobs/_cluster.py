"""A real single-host Slurm cluster on loopback for the job tests.

munged (a fresh key), slurmctld and one slurmd per node name, all from the Debian packages, all
in the foreground under this process, with every file (config, key, sockets, state, spool, logs,
pid files) in one temporary directory. ``SLURM_CONF`` points Slurm's commands at it, so the
system's configuration is never read or touched. Jobs run as root, which is who runs the daemons.

``SlurmCluster.start`` raises :class:`ClusterUnavailableError` with a precise reason when the cluster
cannot come up here (the tests then skip with that reason); ``stop`` ends every process it started
and ``leftovers`` names any Slurm or munge process that appeared since and is still alive.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

DAEMONS = ("munged", "slurmctld", "slurmd", "slurmstepd", "slurmscriptd")
PROGRAMS = ("munged", "mungekey", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "qsub")
START_TIMEOUT = 30.0


class ClusterUnavailableError(Exception):
    """Slurm cannot run here; the message says exactly what failed."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def slurm_processes() -> dict[int, str]:
    """pid → name of every live process whose name is one of Slurm's or munge's daemons."""
    found: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            comm = (entry / "comm").read_text().strip()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and (comm in DAEMONS or comm.startswith("slurmstepd")):
            found[int(entry.name)] = comm
    return found


def _config(root: Path, nodes: Sequence[str], ctld_port: int, node_ports: Sequence[int]) -> str:
    lines = [
        "# A throwaway single-host cluster for modelseal's job tests.",
        "ClusterName=modelseal-test",
        "SlurmctldHost=localhost(127.0.0.1)",
        f"SlurmctldPort={ctld_port}",
        "AuthType=auth/munge",
        "CredType=cred/munge",
        f"AuthInfo=socket={root / 'munge' / 'munge.socket'}",
        "SlurmUser=root",
        "SlurmdUser=root",
        f"StateSaveLocation={root / 'state'}",
        f"SlurmdSpoolDir={root / 'spool' / '%n'}",
        f"SlurmctldPidFile={root / 'run' / 'slurmctld.pid'}",
        f"SlurmdPidFile={root / 'run' / 'slurmd-%n.pid'}",
        f"SlurmctldLogFile={root / 'log' / 'slurmctld.log'}",
        f"SlurmdLogFile={root / 'log' / 'slurmd-%n.log'}",
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
        "JobAcctGatherType=jobacct_gather/none",
        "AccountingStorageType=accounting_storage/none",
        "JobCompType=jobcomp/none",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_Core",
        "SlurmdParameters=config_overrides",
        "SchedulerType=sched/backfill",
        "MpiDefault=none",
        "SwitchType=switch/none",
        "ReturnToService=2",
        "MailProg=/bin/true",
        "KillWait=2",
        "MinJobAge=600",
        "InactiveLimit=0",
        "SlurmctldTimeout=30",
        "SlurmdTimeout=60",
        "MessageTimeout=10",
    ]
    for name, port in zip(nodes, node_ports, strict=True):
        lines.append(
            f"NodeName={name} NodeHostname=localhost NodeAddr=127.0.0.1 Port={port} "
            "CPUs=2 State=UNKNOWN"
        )
    lines.append(f"PartitionName=edge Nodes={','.join(nodes)} Default=YES MaxTime=60 State=UP")
    return "\n".join(lines) + "\n"


@dataclass
class SlurmCluster:
    root: Path
    nodes: tuple[str, ...] = ("edge1", "edge2")
    conf: Path = field(init=False)
    env: dict[str, str] = field(init=False)
    _processes: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)
    _logs: list[IO[bytes]] = field(default_factory=list)
    _before: set[int] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.conf = self.root / "slurm.conf"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}

    # --- start ---------------------------------------------------------------------------------

    @staticmethod
    def unavailable() -> str | None:
        """Why no cluster can start here, or None."""
        missing = [name for name in PROGRAMS if shutil.which(name) is None]
        if missing:
            return (
                f"Slurm is not installed: {', '.join(missing)} missing "
                "(run `bash tools/system-deps.sh` as root)"
            )
        if os.geteuid() != 0:
            return "the Slurm test cluster runs slurmd as root; these tests are not root"
        return None

    def start(self) -> None:
        reason = self.unavailable()
        if reason:
            raise ClusterUnavailableError(reason)
        self._before = set(slurm_processes())
        for sub in ("munge", "state", "run", "log", *(f"spool/{n}" for n in self.nodes)):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        (self.root / "munge").chmod(0o700)
        ports = [free_port() for _ in range(len(self.nodes) + 1)]
        self.conf.write_text(_config(self.root, self.nodes, ports[0], ports[1:]))
        try:
            self._start_munge()
            self._spawn("slurmctld", ["slurmctld", "-D", "-i", "-f", str(self.conf)])
            self._wait_for(self._controller_answers, "slurmctld did not answer `scontrol ping`")
            for node in self.nodes:
                self._spawn(f"slurmd-{node}", ["slurmd", "-D", "-N", node, "-f", str(self.conf)])
            self._wait_for(self._nodes_idle, f"the nodes {self.nodes} did not become idle")
        except BaseException:
            self.stop()
            raise

    def _start_munge(self) -> None:
        munge = self.root / "munge"
        key = munge / "munge.key"
        subprocess.run(
            ["mungekey", "--create", "--bits=1024", f"--keyfile={key}"],
            check=True,
            capture_output=True,
        )
        # --force: pytest's temporary directories are not world-searchable, which munged would
        # otherwise refuse for its socket; only root uses this socket here.
        self._spawn(
            "munged",
            [
                "munged",
                "--foreground",
                "--force",
                f"--key-file={key}",
                f"--socket={munge / 'munge.socket'}",
                f"--pid-file={munge / 'munged.pid'}",
                f"--log-file={self.root / 'log' / 'munged.log'}",
                f"--seed-file={munge / 'munged.seed'}",
            ],
        )
        self._wait_for(
            lambda: (munge / "munge.socket").exists(), "munged did not create its socket"
        )

    def _spawn(self, label: str, argv: list[str]) -> None:
        log = (self.root / "log" / f"{label}.out").open("wb")
        self._logs.append(log)
        process = subprocess.Popen(
            argv, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self._processes.append((label, process))

    def _wait_for(self, ready: object, failure: str) -> None:
        assert callable(ready)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            for label, process in self._processes:
                if process.poll() is not None:
                    raise ClusterUnavailableError(
                        f"{label} exited with {process.returncode} while starting: "
                        f"{self.log_tail(label)}"
                    )
            if ready():
                return
            time.sleep(0.1)
        raise ClusterUnavailableError(f"{failure} within {START_TIMEOUT:g} s: {self.all_logs()}")

    def _controller_answers(self) -> bool:
        result = self.command("scontrol", "ping", check=False)
        return result.returncode == 0 and "is UP" in result.stdout

    def _nodes_idle(self) -> bool:
        result = self.command("sinfo", "--noheader", "--Node", "--format=%N %t", check=False)
        states = dict(line.split() for line in result.stdout.splitlines() if line.strip())
        return all(states.get(node) == "idle" for node in self.nodes)

    # --- use -----------------------------------------------------------------------------------

    def command(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            list(argv), env=self.env, capture_output=True, text=True, check=check, timeout=30
        )

    def log_tail(self, label: str, lines: int = 15) -> str:
        text = ""
        for path in (self.root / "log" / f"{label}.out", self.root / "log" / f"{label}.log"):
            if path.exists():
                text += path.read_text(errors="replace")
        return " | ".join(text.strip().splitlines()[-lines:]) or "(no log)"

    def all_logs(self) -> str:
        return "; ".join(f"{label}: {self.log_tail(label, 5)}" for label, _ in self._processes)

    def environ(self) -> Mapping[str, str]:
        return self.env

    # --- stop ----------------------------------------------------------------------------------

    def stop(self) -> None:
        """Cancel what still runs, then end the daemons (slurmd first, munged last)."""
        if any(label == "slurmctld" and p.poll() is None for label, p in self._processes):
            self.command("scancel", "--full", "--user=root", check=False)
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                queue = self.command("squeue", "--noheader", "--format=%i", check=False)
                if queue.returncode != 0 or not queue.stdout.strip():
                    break
                time.sleep(0.2)
        for _label, process in reversed(self._processes):
            self._end(process)
        self._processes.clear()
        for log in self._logs:
            log.close()
        self._logs.clear()

    @staticmethod
    def _end(process: subprocess.Popen[bytes]) -> None:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)  # its own session, started by us
                process.wait(timeout=5)
        try:  # helpers it left in its process group (slurmscriptd, slurmstepd)
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def leftovers(self, timeout: float = 10.0) -> dict[int, str]:
        """Slurm and munge processes started since ``start`` that are still alive."""
        deadline = time.monotonic() + timeout
        while True:
            left = {pid: name for pid, name in slurm_processes().items() if pid not in self._before}
            if not left or time.monotonic() >= deadline:
                return left
            time.sleep(0.2)
