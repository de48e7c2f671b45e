"""Entry point of ``modelseal``: one group, one place where errors become exit codes."""

from __future__ import annotations

import logging
import sys
from typing import Any

import click

from modelseal import __version__
from modelseal.errors import Error

__all__ = ["cli", "main"]

EXIT_ERROR = 1
EXIT_USAGE = 2


class _Group(click.Group):
    """Runs subcommands with modelseal errors turned into one clear message and exit code 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except Error as exc:
            if ctx.find_root().params.get("verbose"):
                raise
            click.echo(f"error: {exc.diagnostics()}", err=True)
            ctx.exit(EXIT_ERROR)


@click.group(
    cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100}
)
@click.version_option(__version__, prog_name="modelseal")
@click.option("-v", "--verbose", is_flag=True, help="Show debug logs and full tracebacks.")
def cli(verbose: bool) -> None:
    """Seal AI models, license them, and serve them on devices you do not control.

    \b
    Owner:       keys create, seal, verify, inspect, open, tcb create
    Controller:  vault init / serve, model, customer, device, license, evidence verify
    Device:      agent enroll / check / serve, serve, mount, run, job
    """
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )


def _register() -> None:
    from modelseal.cli import admin, agent, attestation, cfs, jobs, keys, package, serve, vault

    cli.add_command(keys.keys)
    for command in package.COMMANDS:
        cli.add_command(command)
    # Light: each of these imports the vault, its client or the agent when it runs.
    cli.add_command(vault.vault)
    for command in admin.COMMANDS:
        cli.add_command(command)
    cli.add_command(agent.agent)
    cli.add_command(serve.serve)
    for command in cfs.COMMANDS:
        cli.add_command(command)
    for command in attestation.COMMANDS:
        cli.add_command(command)
    cli.add_command(jobs.job)


_register()


def main(argv: list[str] | None = None) -> None:
    """Console entry point."""
    cli.main(args=argv, prog_name="modelseal")


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])
