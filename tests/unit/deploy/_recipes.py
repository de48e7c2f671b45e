"""Readers of the deployment recipes in ``deploy/``: compose interpolation, Dockerfile
instructions, systemd units, the ``modelseal`` command lines inside them, and a check of each
command line against the real click command tree (so a renamed option breaks the tests, not a
deployment)."""

from __future__ import annotations

import configparser
import json
import os
import re
import shlex
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import yaml  # type: ignore[import-untyped]  # no stubs in the lock file

from modelseal.cli.main import cli

REPO = Path(__file__).resolve().parents[3]
DEPLOY = REPO / "deploy"
COMPOSE_FILE = DEPLOY / "compose" / "compose.yaml"
NGINX_CONF = DEPLOY / "nginx" / "modelseal-serve.conf"
DEV_CERTS = DEPLOY / "nginx" / "dev-certs.sh"
ENTRYPOINT = DEPLOY / "docker" / "entrypoint.sh"
DOCKERFILES = {
    name: DEPLOY / "docker" / f"{name}.Dockerfile" for name in ("vault", "runtime", "nginx")
}
UNITS = {
    name: DEPLOY / "systemd" / f"modelseal-{name}.service" for name in ("vault", "agent", "serve")
}
README = DEPLOY / "README.md"

# --- compose ------------------------------------------------------------------------------------

_VARIABLE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")


def interpolate(text: str) -> str:
    """Compose's interpolation as if no variable were set: ``${X:-default}`` gives the default,
    ``$$`` a literal ``$``. A bare ``${X}`` is refused: every knob in compose.yaml has a default."""

    def one(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, operator, default = match.groups()
        if operator in {":-", "-"}:
            return default
        raise AssertionError(f"${{{name}}} in compose.yaml has no default")

    return _VARIABLE.sub(one, text)


def load_compose() -> dict[str, Any]:
    """compose.yaml after interpolation, as Compose would see it with an empty environment."""
    raw = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(raw, dict)
    return _interpolate_tree(raw)  # type: ignore[no-any-return]


def _interpolate_tree(node: Any) -> Any:
    if isinstance(node, str):
        return interpolate(node)
    if isinstance(node, list):
        return [_interpolate_tree(item) for item in node]
    if isinstance(node, dict):
        return {key: _interpolate_tree(value) for key, value in node.items()}
    return node


def service_environment(service: Mapping[str, Any]) -> dict[str, str]:
    """A service's ``environment`` (map or list form); pass-through names get a placeholder."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        pairs = (item.split("=", 1) if "=" in item else (item, "placeholder") for item in env)
        return {key: value for key, value in pairs}
    return {key: "placeholder" if value is None else str(value) for key, value in env.items()}


def as_argv(value: Any) -> list[str]:
    """A compose ``command``/``entrypoint`` (list or string) as an argument vector."""
    if value is None:
        return []
    if isinstance(value, str):
        return shlex.split(value)
    return [str(item) for item in value]


def compose_service_argv(compose: dict[str, Any], name: str) -> list[str]:
    """What a compose service runs: its entrypoint and command, or its image's defaults."""
    service = compose["services"][name]
    dockerfile = _dockerfile_of(compose, service)
    image_entrypoint, image_command = image_defaults(dockerfile) if dockerfile else ([], [])
    entrypoint = as_argv(service["entrypoint"]) if "entrypoint" in service else image_entrypoint
    command = as_argv(service["command"]) if "command" in service else image_command
    return entrypoint + command


def _dockerfile_of(compose: dict[str, Any], service: dict[str, Any]) -> Path | None:
    """The Dockerfile that builds a service's image (its own build, or another service's build
    of the same image name)."""
    for other in compose["services"].values():
        if "build" in other and other.get("image") == service.get("image"):
            return (REPO / str(other["build"]["dockerfile"])).resolve()
    return None


# --- Dockerfiles ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str
    line: int


def dockerfile_instructions(path: Path) -> list[Instruction]:
    """Instructions with continuation lines joined and comments dropped (parser directives such
    as ``# syntax=`` are comments here)."""
    instructions: list[Instruction] = []
    pending = ""
    start = 0
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        text = pending + stripped
        pending = ""
        keyword, _, arguments = text.partition(" ")
        instructions.append(Instruction(keyword.upper(), arguments.strip(), start))
    assert not pending, f"{path.name}: the last instruction ends with a backslash"
    return instructions


def exec_form(arguments: str) -> list[str]:
    """The argument vector of a ``CMD``/``ENTRYPOINT``/``HEALTHCHECK CMD`` (JSON or shell form)."""
    if arguments.startswith("["):
        value = json.loads(arguments)
        assert isinstance(value, list) and all(isinstance(item, str) for item in value)
        return value
    return ["/bin/sh", "-c", arguments]


def image_defaults(path: Path) -> tuple[list[str], list[str]]:
    """(ENTRYPOINT, CMD) of the final stage of a Dockerfile."""
    entrypoint: list[str] = []
    command: list[str] = []
    for instruction in dockerfile_instructions(path):
        if instruction.keyword == "FROM":
            entrypoint, command = [], []
        elif instruction.keyword == "ENTRYPOINT":
            entrypoint = exec_form(instruction.arguments)
        elif instruction.keyword == "CMD":
            command = exec_form(instruction.arguments)
    return entrypoint, command


def dockerignore_excludes(patterns: list[str], relative: str) -> bool:
    """Whether ``relative`` (a path in the build context) is left out by .dockerignore
    ``patterns`` (last match wins; ``!`` re-includes; a directory match covers its contents)."""
    excluded = False
    parts = relative.split("/")
    for pattern in patterns:
        negate = pattern.startswith("!")
        body = pattern[1:] if negate else pattern
        regex = _dockerignore_regex(body.strip("/"))
        prefixes = ("/".join(parts[:end]) for end in range(1, len(parts) + 1))
        if any(regex.fullmatch(prefix) for prefix in prefixes):
            excluded = not negate
    return excluded


def _dockerignore_regex(pattern: str) -> re.Pattern[str]:
    out = ""
    index = 0
    while index < len(pattern):
        if pattern.startswith("**/", index):
            out += "(?:.*/)?"
            index += 3
        elif pattern.startswith("**", index):
            out += ".*"
            index += 2
        elif pattern[index] == "*":
            out += "[^/]*"
            index += 1
        elif pattern[index] == "?":
            out += "[^/]"
            index += 1
        else:
            out += re.escape(pattern[index])
            index += 1
    return re.compile(out)


def read_dockerignore(path: Path) -> list[str]:
    lines = (line.strip() for line in path.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


# --- systemd --------------------------------------------------------------------------------------


def read_unit(path: Path) -> configparser.ConfigParser:
    """A unit file as INI: case-sensitive keys, repeated keys allowed (the last one wins here)."""
    parser = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(path.read_text(), source=str(path))
    return parser


def exec_argv(value: str) -> list[str]:
    """An ``Exec*=`` line as an argument vector, without systemd's ``-@:+!`` prefixes."""
    return shlex.split(value.lstrip("-@:+!"))


# --- shell scripts and command lines ----------------------------------------------------------

_SEPARATORS = {";", "&&", "||", "|", "&", "(", ")", "$(", "`"}
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
# Commands that run their argument vector; options taking a value, then the command.
_WRAPPERS: dict[str, set[str]] = {
    "exec": set(),
    "env": {"-u", "--unset"},
    "nohup": set(),
    "sudo": {"-u", "--user", "-g", "--group", "-C", "-h", "--host", "-D", "--chdir"},
    "timeout": {"-s", "--signal", "-k", "--kill-after"},
}
_COMPOSE_RUN_VALUES = {
    "-e", "--env", "-v", "--volume", "-u", "--user", "-w", "--workdir", "--name", "--entrypoint",
    "-p", "--publish", "-l", "--label", "--env-from-file", "--cap-add", "--cap-drop", "--pull",
}  # fmt: skip


@dataclass(frozen=True)
class CommandLine:
    """One invocation found in a recipe: the arguments after ``modelseal``, where it was, and
    the environment it runs with (for options that also read a variable)."""

    args: tuple[str, ...]
    where: str
    env: Mapping[str, str] = field(default_factory=dict)


def shell_commands(script: str) -> Iterator[list[str]]:
    """The simple commands of a shell script, each as words (quotes removed, ``$VAR`` kept)."""
    script = re.sub(r"\\\n", " ", script)
    for line in script.splitlines():
        if line.lstrip().startswith("#"):
            continue
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        lexer.commenters = "#"
        words: list[str] = []
        for token in lexer:
            if token in _SEPARATORS or token.endswith("$"):
                # "TOKEN=$(cmd" arrives as "TOKEN=$", "(": both end the command before cmd
                if words:
                    yield words
                words = []
                continue
            words.append(token)
        if words:
            yield words


def unwrap(words: list[str]) -> list[str]:
    """A simple command without leading assignments and wrappers (exec, env, sudo, timeout)."""
    index = 0
    while index < len(words):
        word = words[index]
        if _ASSIGNMENT.match(word):
            index += 1
        elif word in _WRAPPERS:
            takes_value = _WRAPPERS[word]
            index += 1
            while index < len(words) and words[index].startswith("-"):
                if words[index] == "--":
                    index += 1
                    break
                index += 2 if words[index] in takes_value else 1
            if word == "timeout":
                index += 1  # the duration
        else:
            break
    return words[index:]


def is_modelseal(word: str) -> bool:
    return word == "modelseal" or word.endswith("/modelseal")


def modelseal_in_script(script: str, where: str, env: Mapping[str, str]) -> list[CommandLine]:
    found = []
    for words in shell_commands(script):
        command = unwrap(words)
        if command and is_modelseal(command[0]):
            found.append(CommandLine(tuple(command[1:]), where, env))
    return found


def modelseal_in_argv(argv: list[str], where: str, env: Mapping[str, str]) -> list[CommandLine]:
    """``modelseal …`` inside an argument vector: directly, behind the image's entry point or
    wrappers, or inside ``sh -c SCRIPT``."""
    argv = unwrap(argv)
    if argv and argv[0].endswith("modelseal-entrypoint"):
        argv = unwrap(argv[1:])
    if len(argv) >= 3 and argv[0] in {"sh", "/bin/sh", "bash", "/bin/bash"} and argv[1] == "-c":
        return modelseal_in_script(argv[2], where, env)
    if argv and is_modelseal(argv[0]):
        return [CommandLine(tuple(argv[1:]), where, env)]
    return []


def compose_run_argv(words: list[str]) -> tuple[str, list[str]] | None:
    """(service, arguments) of ``docker compose run [OPTIONS] SERVICE ARGS…``, else None."""
    if words[:3] != ["docker", "compose", "run"]:
        return None
    index = 3
    while index < len(words) and words[index].startswith("-"):
        index += 2 if words[index] in _COMPOSE_RUN_VALUES else 1
    if index >= len(words):
        return None
    return words[index], words[index + 1 :]


def markdown_shell_blocks(text: str) -> Iterator[tuple[int, str]]:
    """(first line number, body) of each ```sh / ```bash / ```console block."""
    for match in re.finditer(r"^```(?:sh|bash|shell)\n(.*?)^```", text, re.MULTILINE | re.DOTALL):
        yield text.count("\n", 0, match.start()) + 2, match.group(1)


# --- the check against the real CLI -----------------------------------------------------------


@contextmanager
def _environment(env: Mapping[str, str]) -> Iterator[None]:
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def check_command_line(args: tuple[str, ...] | list[str], env: Mapping[str, str] = {}) -> str:
    """Parse ``modelseal ARGS`` with the real click commands, as ``modelseal`` would before
    running anything: unknown commands and options, missing values, bad choices or numbers and
    missing required options raise :class:`click.UsageError`. Returns the command path."""
    return parse_command_line(args, env)[0]


def command_params(
    args: tuple[str, ...] | list[str], env: Mapping[str, str] = {}
) -> dict[str, Any]:
    """The parameters click hands the command for ``modelseal ARGS`` (after the same checks)."""
    return parse_command_line(args, env)[1]


def parse_command_line(
    args: tuple[str, ...] | list[str],
    env: Mapping[str, str] = {},
) -> tuple[str, dict[str, Any]]:
    command: click.Command = cli
    path = ["modelseal"]
    remaining = list(args)
    parent: click.Context | None = None
    with _environment(env):
        while isinstance(command, click.Group):
            split = next(
                (i for i, word in enumerate(remaining) if not word.startswith("-")), len(remaining)
            )
            if split == len(remaining):
                raise click.UsageError(f"{' '.join(path)} needs a subcommand")
            # the group's own options and the subcommand's name (a group without a subcommand
            # asks for help instead of parsing)
            context = command.make_context(path[-1], remaining[: split + 1], parent=parent)
            name = remaining[split]
            sub = command.get_command(context, name)
            if sub is None:
                raise click.UsageError(f"no such command {' '.join([*path, name])!r}", context)
            command, parent, remaining = sub, context, remaining[split + 1 :]
            path.append(name)
        with _paths_need_not_exist(command):
            final = command.make_context(path[-1], remaining, parent=parent)
    return " ".join(path), dict(final.params)


@contextmanager
def _paths_need_not_exist(command: click.Command) -> Iterator[None]:
    """Recipes name paths on the target machine: parse them without looking for them here."""
    checked = [
        param.type
        for param in command.params
        if isinstance(param.type, click.Path) and param.type.exists
    ]
    for path_type in checked:
        path_type.exists = False
    try:
        yield
    finally:
        for path_type in checked:
            path_type.exists = True
