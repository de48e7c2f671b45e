"""deploy/compose/compose.yaml: parses, is wired together, and its parts agree with each other
(the same paths and ports in the commands, the mounts and the health checks)."""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Any

import pytest

from tests.unit.deploy._recipes import (
    COMPOSE_FILE,
    NGINX_CONF,
    REPO,
    as_argv,
    command_params,
    compose_service_argv,
    interpolate,
    load_compose,
    modelseal_in_argv,
    service_environment,
)

COMPOSE = load_compose()
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
OURS = ("vault-init", "vault", "admin", "agent-enroll", "agent", "runtime", "nginx")
LONG_RUNNING = ("postgres", "vault", "agent", "runtime", "nginx")
SECRET_WORDS = re.compile(r"PASSWORD|PASSPHRASE|TOKEN|PIN|SECRET|KEY", re.IGNORECASE)


def modelseal_params(name: str) -> dict[str, Any]:
    """Parsed parameters of the modelseal command a service runs (``exec modelseal …`` last)."""
    lines = modelseal_in_argv(compose_service_argv(COMPOSE, name), name, {})
    assert lines, f"service {name} runs no modelseal command"
    return command_params(lines[-1].args, service_environment(SERVICES[name]) | _PLACEHOLDERS)


_PLACEHOLDERS = {"MODELSEAL_ENROLL_TOKEN": "placeholder"}


def mounts(name: str) -> dict[str, str]:
    """Container path → source of a service's volumes (short syntax)."""
    result = {}
    for volume in SERVICES[name].get("volumes", []):
        source, target, *_ = volume.split(":")
        result[target] = source
    return result


def is_named_volume(source: str) -> bool:
    return not source.startswith(("/", ".", "~"))


def test_compose_parses_with_services_and_no_unset_variables() -> None:
    assert COMPOSE["name"] == "modelseal"
    assert set(SERVICES) == {"postgres", *OURS}
    assert "version" not in COMPOSE  # obsolete in the Compose specification


def test_interpolation_follows_compose() -> None:
    assert interpolate("${A:-x} $${B} ${C-y}") == "x ${B} y"
    with pytest.raises(AssertionError, match="no default"):
        interpolate("${UNSET}")


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_every_service_has_an_image_or_a_build_that_exists(name: str) -> None:
    service = SERVICES[name]
    assert "image" in service or "build" in service
    if "build" in service:
        context = (COMPOSE_FILE.parent / service["build"]["context"]).resolve()
        assert context == REPO
        assert (context / service["build"]["dockerfile"]).is_file()
    if "image" not in service or "build" in service:
        return
    builders = [other for other in SERVICES.values() if "build" in other]
    if service["image"].startswith("modelseal-"):
        assert any(other["image"] == service["image"] for other in builders), (
            f"nothing builds {service['image']}"
        )
    else:
        assert ":" in service["image"], "a public image needs a tag"


def test_volumes_secrets_and_networks_are_declared_and_used() -> None:
    used_volumes = {
        source for name in SERVICES for source in mounts(name).values() if is_named_volume(source)
    }
    used_secrets = {
        secret for service in SERVICES.values() for secret in service.get("secrets", [])
    }
    used_networks = {net for service in SERVICES.values() for net in service.get("networks", [])}
    assert used_volumes == set(COMPOSE["volumes"])
    assert used_secrets == set(COMPOSE["secrets"])
    assert used_networks == set(COMPOSE["networks"])
    for secret in COMPOSE["secrets"].values():
        assert secret["file"].startswith("./secrets/")
    for name in SERVICES:
        for target, source in mounts(name).items():
            if source.startswith("../"):  # files from the repository
                assert (COMPOSE_FILE.parent / source).exists(), f"{name}: {source} is missing"
            assert PurePosixPath(target).is_absolute()


def test_start_order() -> None:
    def needs(name: str) -> dict[str, str]:
        return {
            other: spec["condition"] for other, spec in SERVICES[name].get("depends_on", {}).items()
        }

    assert needs("vault-init") == {"postgres": "service_healthy"}
    assert needs("vault") == {
        "postgres": "service_healthy",
        "vault-init": "service_completed_successfully",
    }
    assert needs("agent-enroll") == {"vault": "service_healthy"}
    assert needs("agent") == {"agent-enroll": "service_completed_successfully"}
    assert needs("runtime") == {"agent": "service_healthy"}
    assert needs("nginx") == {"runtime": "service_healthy"}


@pytest.mark.parametrize("name", LONG_RUNNING)
def test_long_running_services_have_health_checks_and_restart(name: str) -> None:
    check = SERVICES[name]["healthcheck"]
    assert check["test"][0] == "CMD" and len(check["test"]) > 1
    assert {"interval", "timeout", "retries"} <= set(check)
    assert SERVICES[name]["restart"] == "unless-stopped"


@pytest.mark.parametrize("name", OURS)
def test_our_services_are_locked_down(name: str) -> None:
    service = SERVICES[name]
    assert service["cap_drop"] == ["ALL"]
    assert "no-new-privileges:true" in service["security_opt"]
    assert service["read_only"] is True
    assert "privileged" not in service and "user" not in service  # the images' non-root user


def test_no_secret_value_is_written_in_the_file() -> None:
    for name, service in SERVICES.items():
        for key, value in service_environment(service).items():
            if not SECRET_WORDS.search(key):
                continue
            passed_through = value == "placeholder"
            from_a_secret_file = key.endswith("_FILE") and value.startswith("/run/secrets/")
            assert passed_through or from_a_secret_file, f"{name}: {key} holds a value"


def test_only_nginx_and_the_vault_publish_ports() -> None:
    published = {
        name: {port.rsplit(":", 1)[1] for port in service.get("ports", [])}
        for name, service in SERVICES.items()
    }
    assert published == {
        "postgres": set(),
        "vault-init": set(),
        "vault": {"8443"},
        "admin": set(),
        "agent-enroll": set(),
        "agent": set(),
        "runtime": set(),
        "nginx": {"8443", "9443"},
    }
    internal = {name for name, net in COMPOSE["networks"].items() if net.get("internal")}
    assert set(SERVICES["runtime"]["networks"]) <= internal, "the model server must have no way out"
    assert set(SERVICES["postgres"]["networks"]) <= internal


def test_vault_paths_ports_and_health_check_agree() -> None:
    init, serve = modelseal_params("vault-init"), modelseal_params("vault")
    home = PurePosixPath(str(serve["home"]))
    assert PurePosixPath(str(init["home"])) == home
    # vault init renames the home into place: it must sit inside the volume, not be its root
    mount = PurePosixPath(next(t for t, s in mounts("vault").items() if s == "vault-home"))
    assert home.parent == mount
    assert str(init["database_url"]).startswith("postgresql+psycopg://")
    assert "@postgres:" in str(init["database_url"]) and ":@" not in str(init["database_url"])
    assert init["port"] == serve["port"] == 8443
    assert serve["host"] == "0.0.0.0"  # noqa: S104 - inside its container
    assert serve["passphrase_env"] == init["passphrase_env"]
    assert f"{serve['passphrase_env']}_FILE" in service_environment(SERVICES["vault"])
    test = SERVICES["vault"]["healthcheck"]["test"]
    assert f"https://127.0.0.1:{serve['port']}/healthz" in test
    assert str(home / "ca" / "ca.pem") in test
    assert "--insecure" not in test and "-k" not in test
    admin_env = service_environment(SERVICES["admin"])
    assert PurePosixPath(admin_env["MODELSEAL_ADMIN"]) == home / "admin"


def test_agent_and_runtime_share_the_socket_and_nothing_else() -> None:
    enroll, agent, runtime = (modelseal_params(n) for n in ("agent-enroll", "agent", "runtime"))
    assert enroll["home"] == agent["home"]
    socket = PurePosixPath(str(agent["socket_path"]))
    assert PurePosixPath(str(runtime["agent_socket"])) == socket
    assert mounts("agent")[str(socket.parent)] == mounts("runtime")[str(socket.parent)]
    home_volume = mounts("agent")[str(PurePosixPath(str(agent["home"])).parent)]
    assert home_volume not in mounts("runtime").values(), "the server must not see the device key"
    config = PurePosixPath(str(runtime["config"]))
    assert any(config.is_relative_to(target) for target in mounts("runtime"))
    assert SERVICES["agent"]["healthcheck"]["test"] == ["CMD", "test", "-S", str(socket)]
    rest = SERVICES["runtime"]["healthcheck"]["test"]
    assert f"http://127.0.0.1:{runtime['rest_port']}/v2/health/ready" in rest


def test_nginx_forwards_to_the_runtime_ports() -> None:
    runtime = modelseal_params("runtime")
    conf = NGINX_CONF.read_text()
    assert f"server runtime:{runtime['rest_port']};" in conf
    assert f"server runtime:{runtime['grpc_port']};" in conf
    assert runtime["rest_host"] == runtime["grpc_host"] == "0.0.0.0"  # noqa: S104
    volumes = mounts("nginx")
    assert volumes["/etc/modelseal-nginx/nginx.conf"] == "../nginx/modelseal-serve.conf"
    assert "/etc/modelseal-nginx/tls" in volumes
    nginx_cmd = as_argv(SERVICES["nginx"].get("command")) or []
    assert nginx_cmd == []  # the image's CMD, checked in test_dockerfiles


def test_the_admin_and_one_shot_services_stay_out_of_the_way() -> None:
    assert SERVICES["admin"]["profiles"] == ["tools"]
    assert as_argv(SERVICES["admin"]["entrypoint"])[-1] == "modelseal"
    for name in ("vault-init", "agent-enroll"):
        assert SERVICES[name]["restart"] == "no"
        script = as_argv(SERVICES[name]["command"])[2]
        assert script.splitlines()[0].startswith("if [ -f "), f"{name} must be idempotent"
