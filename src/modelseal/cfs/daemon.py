"""Detach a mount from the terminal: the caller returns once the mount is live, or raises the
error the detached process met, so ``modelseal mount`` never reports success for a dead mount."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import NoReturn

from modelseal.cfs.errors import MountError
from modelseal.errors import Error

__all__ = ["Ready", "detach"]

Ready = Callable[[], None]
"""Called by the detached work once the mount is live."""


def detach(work: Callable[[Ready], None], *, log_file: str | None = None) -> int:
    """Run ``work(ready)`` in a new session, detached; return its pid once it called ``ready``.

    Fork before anything starts threads: the work creates its key source after the fork. An
    :class:`~modelseal.errors.Error` the work raises before ``ready`` is raised here again.
    """
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid:  # the caller
        os.close(write_end)
        with os.fdopen(read_end, "rb") as pipe:
            message = pipe.read()
        os.waitpid(pid, 0)  # the intermediate child exits at once
        return _outcome(message)
    os.close(read_end)  # pragma: no cover - runs in the forked child (tested end to end)
    _child(work, write_end, log_file)  # pragma: no cover


def _outcome(message: bytes) -> int:
    try:
        report = json.loads(message)
    except ValueError:
        report = None
    if not isinstance(report, dict):
        raise MountError("the detached mount process ended before the mount was live")
    if "pid" in report:
        return int(report["pid"])
    error = MountError(str(report.get("message")), hint=report.get("hint"))
    error.code = str(report.get("code", error.code))
    raise error


def _child(
    work: Callable[[Ready], None], pipe: int, log_file: str | None
) -> NoReturn:  # pragma: no cover
    os.setsid()
    if os.fork():
        os._exit(0)  # the grandchild is not a session leader: it can never get a terminal
    os.chdir("/")
    null = os.open(os.devnull, os.O_RDWR)
    log_fd = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600) if log_file else null
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.dup2(log_fd, 2)
    sent = False

    def send(report: dict[str, object]) -> None:
        nonlocal sent
        if not sent:
            sent = True
            os.write(pipe, json.dumps(report).encode())
            os.close(pipe)

    code = 0
    try:
        work(lambda: send({"pid": os.getpid()}))
    except Error as exc:
        send({"message": exc.message, "hint": exc.hint, "code": exc.code})
        code = 1
    except BaseException as exc:
        send({"message": f"unexpected error in the mount process: {exc!r}"})
        code = 1
    finally:
        send({"message": "the mount process ended before the mount was live"})
    os._exit(code)
