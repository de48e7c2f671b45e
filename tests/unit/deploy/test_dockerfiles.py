"""deploy/docker/: the Dockerfiles are well formed, run as non-root, copy only what exists and
survives .dockerignore, and hold no secret; entrypoint.sh turns secret files into variables."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from tests.unit.deploy._recipes import (
    DOCKERFILES,
    ENTRYPOINT,
    REPO,
    Instruction,
    dockerfile_instructions,
    dockerignore_excludes,
    exec_form,
    read_dockerignore,
)

SECRET_WORDS = re.compile(r"PASSWORD|PASSPHRASE|TOKEN|PIN|SECRET", re.IGNORECASE)
BASES = {"vault": "python:3.11-slim-bookworm", "runtime": "python:3.11-slim-bookworm"}
BASES["nginx"] = "debian:bookworm-slim"


def stages(path: Path) -> list[list[Instruction]]:
    result: list[list[Instruction]] = []
    for instruction in dockerfile_instructions(path):
        if instruction.keyword == "FROM":
            result.append([])
        assert result, f"{path.name}:{instruction.line}: {instruction.keyword} before FROM"
        result[-1].append(instruction)
    return result


def final(path: Path, keyword: str) -> list[Instruction]:
    return [i for i in stages(path)[-1] if i.keyword == keyword]


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_from_first_and_pinned_bases(name: str) -> None:
    path = DOCKERFILES[name]
    instructions = dockerfile_instructions(path)
    assert instructions[0].keyword == "FROM"
    for stage in stages(path):
        image = stage[0].arguments.split()[0]
        assert image == BASES[name], f"{path.name}: base {image}"


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_runs_as_a_numeric_non_root_user(name: str) -> None:
    users = final(DOCKERFILES[name], "USER")
    assert users, "no USER in the final stage"
    user, _, group = users[-1].arguments.partition(":")
    assert user.isdigit() and int(user) >= 1000, "USER must be a numeric non-root id"
    assert not group or (group.isdigit() and int(group) != 0)
    last = dockerfile_instructions(DOCKERFILES[name])
    after = last[last.index(users[-1]) + 1 :]
    assert all(i.keyword != "RUN" for i in after), "RUN after USER would run as that user"


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_no_remote_add_and_copy_sources_exist_in_the_context(name: str) -> None:
    path = DOCKERFILES[name]
    ignore = read_dockerignore(path.with_name(path.name + ".dockerignore"))
    for instruction in dockerfile_instructions(path):
        assert instruction.keyword != "ADD", f"{path.name}:{instruction.line}: use COPY, not ADD"
        if instruction.keyword != "COPY":
            continue
        words = instruction.arguments.split()
        if any(word.startswith("--from=") for word in words):
            continue
        sources = [word for word in words if not word.startswith("--")][:-1]
        assert sources
        for source in sources:
            assert (REPO / source).exists(), f"{path.name}:{instruction.line}: no {source}"
            assert not dockerignore_excludes(ignore, source.rstrip("/")), (
                f"{path.name}:{instruction.line}: .dockerignore leaves out {source}"
            )


def test_dockerignore_matching() -> None:
    patterns = ["*", "!src", "!requirements/lock.txt", "**/__pycache__"]
    assert dockerignore_excludes(patterns, ".venv")
    assert dockerignore_excludes(patterns, "tests/unit")
    assert not dockerignore_excludes(patterns, "src/modelseal/cli/main.py")
    assert not dockerignore_excludes(patterns, "requirements/lock.txt")
    assert dockerignore_excludes(patterns, "src/modelseal/__pycache__/x.pyc")


@pytest.mark.parametrize("name", ["vault", "runtime"])
def test_the_build_context_leaves_out_the_rest_of_the_repository(name: str) -> None:
    path = DOCKERFILES[name]
    ignore = read_dockerignore(path.with_name(path.name + ".dockerignore"))
    for private in (".venv", ".git", "tests", "demo-output", "deploy/compose/secrets"):
        assert dockerignore_excludes(ignore, private), f"{private} would be sent to the builder"


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_health_check_expose_and_command(name: str) -> None:
    path = DOCKERFILES[name]
    (health,) = final(path, "HEALTHCHECK")
    assert re.search(r"--interval=\d+s", health.arguments)
    probe = exec_form(health.arguments.split(" CMD ", 1)[1])
    assert probe[0] == "curl" and probe[-1].startswith(("http://127.0.0.1:", "https://127.0.0.1:"))
    port = probe[-1].split(":")[2].split("/")[0]
    exposed = {p for i in final(path, "EXPOSE") for p in i.arguments.split()}
    assert port in exposed
    (command,) = final(path, "CMD")
    assert command.arguments.startswith("["), "CMD in exec form, so signals reach the process"


def test_vault_health_check_trusts_only_the_vault_ca() -> None:
    (health,) = final(DOCKERFILES["vault"], "HEALTHCHECK")
    probe = exec_form(health.arguments.split(" CMD ", 1)[1])
    assert "--cacert" in probe and "--insecure" not in probe and "-k" not in probe
    assert probe[probe.index("--cacert") + 1] == "/var/lib/modelseal/vault/ca/ca.pem"


@pytest.mark.parametrize("name", ["vault", "runtime"])
def test_install_from_the_repository_with_the_lock_file_and_real_extras(name: str) -> None:
    extras = set(
        tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    )
    runs = [i.arguments for i in dockerfile_instructions(DOCKERFILES[name]) if i.keyword == "RUN"]
    (install,) = [run for run in runs if " install " in run and "pip" in run]
    assert "--constraint requirements/lock.txt" in install
    wanted = re.search(r'"?\.(?:\[([a-z0-9,_-]+)\])?"?$', install)
    assert wanted, install
    asked = set(filter(None, (wanted.group(1) or "").split(",")))
    assert asked <= extras
    assert asked == ({"openvino", "fuse"} if name == "runtime" else set())
    (entry,) = final(DOCKERFILES[name], "ENTRYPOINT")
    assert exec_form(entry.arguments) == ["modelseal-entrypoint"]
    volumes = {v for i in final(DOCKERFILES[name], "VOLUME") for v in exec_form(i.arguments)}
    assert "/var/lib/modelseal" in volumes


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_no_secret_is_baked_in(name: str) -> None:
    for instruction in dockerfile_instructions(DOCKERFILES[name]):
        if instruction.keyword not in {"ENV", "ARG", "LABEL"}:
            continue
        for key, value in re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=(\S+)", instruction.arguments):
            if SECRET_WORDS.search(key):
                assert key.endswith("_FILE") and value.startswith("/run/secrets/"), (
                    f"{name}: {key} holds a value"
                )


# --- entrypoint.sh ------------------------------------------------------------------------------

SH = shutil.which("sh")


@pytest.mark.skipif(SH is None, reason="no POSIX sh")
def test_entrypoint_reads_secret_files_into_variables(tmp_path: Path) -> None:
    secret = tmp_path / "vault_passphrase"
    secret.write_text("correct horse battery\n")
    env = {"PATH": "/usr/bin:/bin", "MODELSEAL_VAULT_PASSPHRASE_FILE": str(secret), "KEEP": "1"}
    script = 'printf "%s|%s|%s" "$MODELSEAL_VAULT_PASSPHRASE" "${MODELSEAL_VAULT_PASSPHRASE_FILE-unset}" "$KEEP"'
    done = subprocess.run(
        [str(SH), str(ENTRYPOINT), "sh", "-c", script],
        env=env,
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    )
    assert done.stdout == "correct horse battery|unset|1"


@pytest.mark.skipif(SH is None, reason="no POSIX sh")
def test_entrypoint_refuses_an_unreadable_secret_file(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "PGPASSWORD_FILE": str(tmp_path / "missing")}
    done = subprocess.run(
        [str(SH), str(ENTRYPOINT), "true"], env=env, capture_output=True, text=True, timeout=10
    )
    assert done.returncode == 1
    assert f"PGPASSWORD_FILE names {tmp_path / 'missing'}, which this user" in done.stderr


@pytest.mark.skipif(SH is None, reason="no POSIX sh")
def test_entrypoint_runs_the_command_unchanged_without_secrets() -> None:
    done = subprocess.run(
        [str(SH), str(ENTRYPOINT), "printf", "%s,", "a b", "$HOME"],
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    )
    assert done.stdout == "a b,$HOME,"
