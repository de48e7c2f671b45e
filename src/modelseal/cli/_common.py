"""Helpers shared by CLI commands: passphrases, progress bars, quiet output."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.progress import Progress as RichProgress

from modelseal.errors import UsageError
from modelseal.progress import NO_PROGRESS, Progress

__all__ = [
    "console",
    "passphrase_env_option",
    "progress_bar",
    "quiet_option",
    "read_passphrase",
    "say",
]

F = TypeVar("F", bound=Callable[..., Any])
console = Console(stderr=True, highlight=False)


def quiet_option(func: F) -> F:
    return click.option(
        "-q", "--quiet", is_flag=True, help="Print nothing but errors and requested output."
    )(func)


def passphrase_env_option(help_text: str) -> Callable[[F], F]:
    return click.option("--passphrase-env", metavar="VAR", help=help_text)


def read_passphrase(env_var: str | None, *, prompt: str, confirm: bool = False) -> bytes:
    """The passphrase from the environment variable ``env_var``, or asked on the terminal."""
    if env_var:
        value = os.environ.get(env_var)
        if value is None:
            raise UsageError(
                f"environment variable {env_var} is not set", hint=f"export {env_var}=…"
            )
        if not value:
            raise UsageError(
                f"environment variable {env_var} is empty; an empty passphrase is not allowed"
            )
        return value.encode("utf-8")
    if not sys.stdin.isatty():
        raise UsageError(
            "a passphrase is needed but standard input is not a terminal",
            hint="pass --passphrase-env VAR with the passphrase in that environment variable",
        )
    value = click.prompt(prompt, hide_input=True, confirmation_prompt=confirm)
    if not value:
        raise UsageError("an empty passphrase is not allowed")
    return str(value).encode("utf-8")


def say(quiet: bool, *lines: str) -> None:
    """Status lines on stderr, verbatim (stdout stays for machine-readable output)."""
    if not quiet:
        console.print("\n".join(lines), soft_wrap=True, markup=False)


class _RichProgress:
    def __init__(self, bar: RichProgress) -> None:
        self._bar = bar
        self._task: Any = None

    def start(self, description: str, total: int) -> None:
        if self._task is not None:
            self._bar.update(self._task, completed=self._bar.tasks[0].total)
        self._task = self._bar.add_task(description, total=total)

    def advance(self, amount: int) -> None:
        if self._task is not None:
            self._bar.advance(self._task, amount)


@contextmanager
def progress_bar(quiet: bool) -> Iterator[Progress]:
    """A byte progress bar on stderr, or nothing when quiet or not on a terminal."""
    if quiet or not console.is_terminal:
        yield NO_PROGRESS
        return
    bar = RichProgress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    )
    with bar:
        yield _RichProgress(bar)
