"""Every ``modelseal …`` command line in the deployment recipes parses with the real CLI.

The recipes (compose.yaml and the shell scripts of its one-shot services, the Dockerfiles' CMD,
the systemd units' Exec lines, the code blocks of deploy/README.md) are not run here, so this is
what keeps them from rotting when an option is renamed.
"""

from __future__ import annotations

import click
import pytest

from tests.unit.deploy._recipes import (
    DOCKERFILES,
    README,
    UNITS,
    CommandLine,
    as_argv,
    check_command_line,
    compose_run_argv,
    compose_service_argv,
    exec_argv,
    image_defaults,
    load_compose,
    markdown_shell_blocks,
    modelseal_in_argv,
    modelseal_in_script,
    read_unit,
    service_environment,
    shell_commands,
    unwrap,
)

# The README documents these as set in the environment of the command (never on its line).
README_ENV = {"MODELSEAL_ENROLL_TOKEN": "placeholder"}


def compose_lines() -> list[CommandLine]:
    compose = load_compose()
    found: list[CommandLine] = []
    for name, service in compose["services"].items():
        found += modelseal_in_argv(
            compose_service_argv(compose, name),
            f"compose.yaml services.{name}",
            service_environment(service),
        )
    return found


def dockerfile_lines() -> list[CommandLine]:
    found: list[CommandLine] = []
    for name, path in DOCKERFILES.items():
        entrypoint, command = image_defaults(path)
        found += modelseal_in_argv(entrypoint + command, f"{name}.Dockerfile CMD", {})
    return found


def unit_lines() -> list[CommandLine]:
    found: list[CommandLine] = []
    for path in UNITS.values():
        service = read_unit(path)["Service"]
        for key in ("ExecStartPre", "ExecStart", "ExecStartPost", "ExecStop", "ExecReload"):
            if key in service:
                found += modelseal_in_argv(exec_argv(service[key]), f"{path.name} {key}", {})
    return found


def readme_lines() -> list[CommandLine]:
    compose = load_compose()
    found: list[CommandLine] = []
    for line, body in markdown_shell_blocks(README.read_text()):
        where = f"deploy/README.md block at line {line}"
        found += modelseal_in_script(body, where, README_ENV)
        for words in shell_commands(body):
            run = compose_run_argv(unwrap(words))
            if run is None:
                continue
            service, args = run
            assert service in compose["services"], f"{where}: no compose service {service!r}"
            entrypoint = as_argv(compose["services"][service].get("entrypoint"))
            env = {**service_environment(compose["services"][service]), **README_ENV}
            found += modelseal_in_argv(entrypoint + args, f"{where} (compose run)", env)
    return found


ALL_LINES = compose_lines() + dockerfile_lines() + unit_lines() + readme_lines()


@pytest.mark.parametrize(
    "line", ALL_LINES, ids=[f"{line.where}: {' '.join(line.args[:2])}" for line in ALL_LINES]
)
def test_recipe_command_line_parses_with_the_real_cli(line: CommandLine) -> None:
    try:
        check_command_line(line.args, line.env)
    except click.UsageError as exc:
        pytest.fail(f"{line.where}: modelseal {' '.join(line.args)}\n  {exc.format_message()}")


def test_the_recipes_run_every_command_they_are_for() -> None:
    """The extraction is not vacuous: each recipe really contains the commands it exists for."""
    paths = {
        where: {check_command_line(line.args, line.env) for line in lines}
        for where, lines in {
            "compose": compose_lines(),
            "docker": dockerfile_lines(),
            "systemd": unit_lines(),
            "readme": readme_lines(),
        }.items()
    }
    assert paths["compose"] >= {
        "modelseal vault init",
        "modelseal vault serve",
        "modelseal agent enroll",
        "modelseal agent serve",
        "modelseal serve",
        "modelseal license list",
    }
    assert paths["docker"] == {"modelseal vault serve", "modelseal serve"}
    assert paths["systemd"] == {"modelseal vault serve", "modelseal agent serve", "modelseal serve"}
    assert paths["readme"] >= {
        "modelseal keys create",
        "modelseal seal",
        "modelseal vault init",
        "modelseal model register",
        "modelseal customer create",
        "modelseal license issue",
        "modelseal device enroll-token",
        "modelseal agent enroll",
    }


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["vault", "serve", "--home", "h", "--listen", "::"], {}, "No such option '--listen'"),
        (["vault", "serve", "--port", "8443"], {}, "Missing option '--home'"),
        (["vault", "serve", "--home"], {}, "'--home' requires an argument"),
        (["vault", "init", "--home", "h", "--master-key", "tpm"], {}, "'tpm' is not one of"),
        (["serve", "--rest-port", "http"], {}, "'http' is not a valid integer"),
        (["agent", "enroll", "--home", "h"], {}, "Missing option '--vault'"),
        (["agent", "sever", "--home", "h"], {}, "no such command 'modelseal agent sever'"),
        (["vault"], {}, "modelseal vault needs a subcommand"),
    ],
)
def test_the_check_catches_drift(args: list[str], env: dict[str, str], message: str) -> None:
    with pytest.raises(click.UsageError) as caught:
        check_command_line(args, env)
    assert message in caught.value.format_message()


def test_options_read_from_the_environment_count_as_given() -> None:
    env = {"MODELSEAL_VAULT": "https://vault:8443", "MODELSEAL_ENROLL_TOKEN": "t"}
    assert check_command_line(["agent", "enroll", "--home", "h"], env) == "modelseal agent enroll"


def test_command_lines_are_found_behind_wrappers_and_inside_scripts() -> None:
    script = (
        "if [ -f x ]; then exit 0; fi\nTOKEN=$(docker compose run --rm -T admin device ls) && "
        "exec modelseal vault serve \\\n  --home /h\nsudo -u modelseal --preserve-env=A "
        "/opt/modelseal/bin/modelseal agent serve --home a --socket s  # comment"
    )
    lines = modelseal_in_script(script, "here", {})
    assert [line.args for line in lines] == [
        ("vault", "serve", "--home", "/h"),
        ("agent", "serve", "--home", "a", "--socket", "s"),
    ]
    assert compose_run_argv(["docker", "compose", "run", "--rm", "-e", "X", "admin", "a"]) == (
        "admin",
        ["a"],
    )
    assert modelseal_in_argv(["modelseal-entrypoint", "modelseal", "serve"], "w", {}) == [
        CommandLine(("serve",), "w", {})
    ]
