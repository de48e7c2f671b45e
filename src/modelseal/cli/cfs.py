"""``modelseal mount / unmount / run``: the crypto filesystem (see docs/cfs.md).

This module stays light: the package code, the agent and mfusepy are imported when a command runs.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from modelseal.errors import Error, UsageError

if TYPE_CHECKING:
    from modelseal.agent.source import KeySource

__all__ = ["COMMANDS", "mount", "run", "unmount"]

F = TypeVar("F", bound=Callable[..., Any])
_SEALED = click.Path(path_type=Path, exists=True)
_DIR = click.Path(path_type=Path, file_okay=False)

_THREAT = """\
\b
Plaintext exists only in this process's memory, the kernel's page cache and FUSE
buffers, never in a file. Without --allow-other only the mounting user can read
the mount (root can always read it, and can read this process's memory).
"""


def _key_options(func: F) -> F:
    options = [
        click.option(
            "--license",
            "license_file",
            required=True,
            type=click.Path(path_type=Path, exists=True, dir_okay=False),
            help="The license file (a JWS) from the model controller.",
        ),
        click.option(
            "--agent-home",
            type=_DIR,
            help="Get the key in this process, with the device identity in this agent home.",
        ),
        click.option(
            "--agent-socket",
            type=click.Path(path_type=Path, dir_okay=False),
            help="Get the key from `modelseal agent serve` listening on this Unix socket.",
        ),
        click.option(
            "--cache-segments",
            type=click.IntRange(1, 4096),
            default=32,
            show_default=True,
            help="Decrypted 1 MiB segments kept in memory (least recently used go first).",
        ),
        click.option(
            "--allow-other",
            is_flag=True,
            help="Let every user on this machine read the plaintext (off by default).",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _read_license(path: Path) -> str:
    try:
        return path.read_text("ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read the license {path}: it is not a license file") from exc


def _check_agent_choice(agent_home: Path | None, agent_socket: Path | None) -> None:
    if (agent_home is None) == (agent_socket is None):
        raise UsageError("give exactly one of --agent-home DIR or --agent-socket PATH")


def _key_source(agent_home: Path | None, agent_socket: Path | None) -> KeySource:
    _check_agent_choice(agent_home, agent_socket)
    try:
        if agent_home is not None:
            from modelseal.agent import AgentHome
            from modelseal.agent.keyagent import KeyAgent

            return KeyAgent(AgentHome.open(agent_home))
        from modelseal.agent.socket_client import AgentSocketClient

        assert agent_socket is not None  # noqa: S101 - checked above
        return AgentSocketClient(agent_socket)
    except ImportError as exc:  # pragma: no cover - only while the agent is not built
        raise Error(f"this modelseal has no key agent yet ({exc.name} is missing)") from exc


def _log_to_stderr() -> None:
    root = logging.getLogger()
    if root.level > logging.WARNING or not root.handlers:
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


@click.command(epilog=_THREAT)
@click.argument("sealed", type=_SEALED)
@click.argument("mountpoint", type=_DIR)
@_key_options
@click.option("--foreground", "-f", is_flag=True, help="Stay attached; Ctrl-C unmounts.")
@click.option(
    "--log-file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Where the detached mount writes its log (default: nowhere).",
)
def mount(
    sealed: Path,
    mountpoint: Path,
    license_file: Path,
    agent_home: Path | None,
    agent_socket: Path | None,
    cache_segments: int,
    allow_other: bool,
    foreground: bool,
    log_file: Path | None,
) -> None:
    """Mount the sealed package SEALED (directory or archive) read-only at MOUNTPOINT.

    The files appear with their real names, sizes and directories; reads decrypt only the
    1 MiB segments they touch. The key comes from the agent under the license's lease; when the
    lease ends (revoked, exhausted, expired) the key is dropped and every read fails with EIO.

    Without --foreground the command returns once the mount is live (or prints why it failed);
    `modelseal unmount MOUNTPOINT` ends it.
    """
    from modelseal.cfs import CfsSession, check_fuse, serve_until_stopped

    _check_agent_choice(agent_home, agent_socket)
    token = _read_license(license_file)
    check_fuse(allow_other=allow_other)  # fail here, before any fork or key release

    def work(ready: Callable[[], None] | None) -> None:
        source = _key_source(agent_home, agent_socket)
        try:
            with CfsSession(sealed, source, token, cache_segments=cache_segments) as session:
                serve_until_stopped(session.view, mountpoint, allow_other=allow_other, ready=ready)
        finally:
            source.close()

    if foreground:
        _log_to_stderr()
        work(lambda: click.echo(f"mounted {sealed} at {mountpoint}; Ctrl-C unmounts", err=True))
        return
    from modelseal.cfs.daemon import detach

    sealed, mountpoint = sealed.absolute(), mountpoint.absolute()
    log_path = str(log_file.absolute()) if log_file else None
    pid = detach(work, log_file=log_path)
    click.echo(f"mounted {sealed} at {mountpoint} (process {pid})", err=True)


@click.command()
@click.argument("mountpoint", type=_DIR)
@click.option("--lazy", "-z", is_flag=True, help="Detach now even if files are still open.")
def unmount(mountpoint: Path, lazy: bool) -> None:
    """Unmount a crypto filesystem mounted at MOUNTPOINT (fusermount3 -u)."""
    from modelseal.cfs import unmount as do_unmount

    do_unmount(mountpoint, lazy=lazy)
    click.echo(f"unmounted {mountpoint}", err=True)


@click.command(
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
    epilog=_THREAT,
)
@click.option("--model", "sealed", required=True, type=_SEALED, help="The sealed package.")
@click.option(
    "--at",
    "mountpoint",
    required=True,
    type=_DIR,
    help="Where the plaintext files appear (created if missing, removed again afterwards).",
)
@_key_options
@click.option(
    "--grace",
    type=click.FloatRange(0, 300),
    default=5.0,
    show_default=True,
    help="Seconds between SIGTERM and SIGKILL when the program must stop.",
)
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def run(
    sealed: Path,
    mountpoint: Path,
    license_file: Path,
    agent_home: Path | None,
    agent_socket: Path | None,
    cache_segments: int,
    allow_other: bool,
    grace: float,
    command: tuple[str, ...],
) -> None:
    """Mount SEALED at --at DIR, run COMMAND against the plaintext, unmount when it ends.

    \b
    Example:
      modelseal run --model ocr.sealed --at /run/ocr --license ocr.jwt \\
          --agent-home ~/.modelseal/agent -- python infer.py /run/ocr/det.onnx

    COMMAND keeps stdin, stdout and stderr, and its exit code becomes modelseal's. SIGTERM,
    SIGINT and SIGHUP are passed on to it. When the lease ends, reads fail with EIO and COMMAND
    is stopped (SIGTERM, then SIGKILL after --grace); modelseal then exits with 77.
    """
    from modelseal.cfs import EXIT_LEASE_ENDED, CfsSession, check_fuse, run_program

    token = _read_license(license_file)
    check_fuse(allow_other=allow_other)
    source = _key_source(agent_home, agent_socket)  # before mkdir: a bad choice leaves no dir
    created = False
    try:
        if not mountpoint.exists():
            mountpoint.mkdir(parents=True, mode=0o700)
            created = True
        _log_to_stderr()
        with CfsSession(sealed, source, token, cache_segments=cache_segments) as session:
            result = run_program(
                session.view, mountpoint, command, allow_other=allow_other, grace=grace
            )
    finally:
        source.close()
        if created:
            mountpoint.rmdir()
    if result.lease_ended is not None:
        click.echo(
            f"error: stopped {command[0]}: the lease ended "
            f"({result.lease_ended.code or 'LEASE_ENDED'})",
            err=True,
        )
        sys.exit(EXIT_LEASE_ENDED)
    sys.exit(result.returncode)


COMMANDS = [mount, unmount, run]
