"""Generate the reference pages that must match the code: docs/cli.md and docs/api/vault-openapi.json.

    .venv/bin/python tools/gen_docs.py            # rewrite both
    .venv/bin/python tools/gen_docs.py --check    # exit 1 if either is out of date (the tests run this)

docs/cli.md is every ``modelseal`` command's ``--help`` text, as click renders it, walked from the
real command tree; docs/api/vault-openapi.json is the vault's OpenAPI document, built from the real
FastAPI app over a throw-away vault home.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parent.parent
CLI_DOC = ROOT / "docs" / "cli.md"
OPENAPI_DOC = ROOT / "docs" / "api" / "vault-openapi.json"
_WIDTH = 100


def _commands(
    command: click.Command, path: tuple[str, ...]
) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    yield path, command
    if isinstance(command, click.Group):
        for name in sorted(command.commands):
            yield from _commands(command.commands[name], (*path, name))


def cli_reference() -> str:
    """docs/cli.md: a table of contents, then each command's help."""
    from modelseal.cli.main import cli

    entries = list(_commands(cli, ("modelseal",)))
    lines = [
        "# Command reference",
        "",
        "Generated from the code by `tools/gen_docs.py` (the tests fail when it is out of date);",
        "every command also answers `--help`.",
        "",
    ]
    lines += [f"- [`{' '.join(path)}`](#{'-'.join(path)})" for path, _ in entries]
    for path, command in entries:
        parent: click.Context | None = None
        for depth in range(1, len(path)):
            parent = click.Context(
                cli if depth == 1 else command, info_name=path[depth - 1], parent=parent
            )
        context = click.Context(
            command,
            info_name=path[-1],
            parent=parent,
            max_content_width=_WIDTH,
            terminal_width=_WIDTH,
        )
        text = command.get_help(context).rstrip()
        lines += [
            "",
            f'<a id="{"-".join(path)}"></a>',
            f"## `{' '.join(path)}`",
            "",
            "```text",
            text,
            "```",
        ]
    return "\n".join(lines) + "\n"


def vault_openapi() -> str:
    """The vault's OpenAPI document (indented JSON, keys in the app's order)."""
    from modelseal.vault.api import create_app
    from modelseal.vault.home import SoftwareMaster, init_vault
    from modelseal.vault.service import VaultService

    passphrase = b"docs generator throw-away vault"
    with tempfile.TemporaryDirectory() as folder:
        master = SoftwareMaster(passphrase, scrypt_n=2**10)
        home = init_vault(
            Path(folder) / "home", database_url=None, master=master, now=dt.datetime.now(dt.UTC)
        )
        with home.unlock(passphrase=passphrase) as vault, VaultService(vault) as service:
            document = create_app(service, home).openapi()
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args()
    stale = []
    for target, text in ((CLI_DOC, cli_reference()), (OPENAPI_DOC, vault_openapi())):
        if args.check:
            if not target.exists() or target.read_text("utf-8") != text:
                stale.append(target.relative_to(ROOT))
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, "utf-8")
            print(f"wrote {target.relative_to(ROOT)}")
    if stale:
        print(
            f"out of date: {', '.join(map(str, stale))}; run `.venv/bin/python tools/gen_docs.py`",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
