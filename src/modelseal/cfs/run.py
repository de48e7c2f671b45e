"""``modelseal run``: mount, run an unmodified program against the plaintext, unmount.

The program inherits stdin, stdout and stderr and its exit code becomes ours. SIGTERM, SIGINT and
SIGHUP sent to us are forwarded to it. When the lease ends (revoked, exhausted, expired) the
program is stopped: SIGTERM, then SIGKILL after a grace period. The mount is gone when we return,
however the program ended.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from modelseal.agent.source import LeaseStatus
from modelseal.cfs.errors import CfsError
from modelseal.cfs.mount import DEFAULT_THREADS, Mount
from modelseal.cfs.view import PlaintextView

__all__ = ["DEFAULT_GRACE", "EXIT_LEASE_ENDED", "RunResult", "run_program"]

DEFAULT_GRACE = 5.0
"""Seconds between SIGTERM and SIGKILL when the program has to stop."""
EXIT_LEASE_ENDED = 77
"""Exit code of ``modelseal run`` when the lease ended and the program was stopped (EX_NOPERM)."""

_FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
_POLL = 0.05


@dataclass(frozen=True)
class RunResult:
    returncode: int
    """The program's exit code (128 + N when signal N ended it, as shells report it)."""
    lease_ended: LeaseStatus | None = None
    """Set when the lease ended while the program ran and it was stopped for that."""


def _say(text: str) -> None:
    print(f"modelseal run: {text}", file=sys.stderr, flush=True)


def _terminal_delivers(signum: int) -> bool:
    """A Ctrl-C or Ctrl-\\ on our terminal already reached the program (same process group)."""
    if signum != signal.SIGINT:
        return False
    try:
        return os.isatty(0) and os.tcgetpgrp(0) == os.getpgrp()
    except OSError:
        return False


def run_program(
    view: PlaintextView,
    mountpoint: Path,
    command: Sequence[str],
    *,
    allow_other: bool = False,
    grace: float = DEFAULT_GRACE,
    threads: int = DEFAULT_THREADS,
    device: Path | None = None,
    say: Callable[[str], None] = _say,
) -> RunResult:
    """Mount ``view`` at ``mountpoint``, run ``command`` and wait for it; always unmount."""
    if not command:
        raise CfsError("no program to run: give it after --")
    wake = threading.Event()
    received: list[int] = []
    ended: list[LeaseStatus] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        wake.set()

    def on_end(status: LeaseStatus) -> None:
        ended.append(status)
        wake.set()

    previous: dict[signal.Signals, signal.Handlers | int | object | None] = {}
    if threading.current_thread() is threading.main_thread():
        # Installed before the mount starts, so libfuse keeps its own handlers off these signals.
        for forwarded in _FORWARDED:
            previous[forwarded] = signal.signal(forwarded, on_signal)
    try:
        with Mount(view, mountpoint, allow_other=allow_other, threads=threads, device=device):
            view.guard.on_end(on_end)
            try:
                child = subprocess.Popen(list(command))  # noqa: S603 - the user's own command
            except OSError as exc:
                raise CfsError(f"cannot run {command[0]}: {exc.strerror or exc}") from exc
            _supervise(child, wake, received, ended, grace, say)
    finally:
        for restored, handler in previous.items():
            signal.signal(restored, handler)  # type: ignore[arg-type]
    code = child.returncode
    return RunResult(128 - code if code < 0 else code, ended[0] if ended else None)


def _supervise(
    child: subprocess.Popen[bytes],
    wake: threading.Event,
    received: list[int],
    ended: list[LeaseStatus],
    grace: float,
    say: Callable[[str], None],
) -> None:
    forwarded = 0
    kill_at: float | None = None
    while child.poll() is None:
        wake.wait(_POLL)
        wake.clear()
        while forwarded < len(received):
            signum = received[forwarded]
            forwarded += 1
            if not _terminal_delivers(signum):
                child.send_signal(signum)
            if signum != signal.SIGINT and kill_at is None:
                kill_at = time.monotonic() + grace
        if ended and kill_at is None:
            status = ended[0]
            say(
                f"the lease of {status.model_name} version {status.model_version} ended "
                f"({status.code or 'LEASE_ENDED'}"
                f"{': ' + status.reason if status.reason else ''}); the key was dropped and reads "
                f"now fail; stopping the program (pid {child.pid}) with SIGTERM, SIGKILL after "
                f"{grace:g} s"
            )
            child.terminate()
            kill_at = time.monotonic() + grace
        if kill_at is not None and time.monotonic() >= kill_at:
            child.kill()
            child.wait()
