"""deploy/systemd/: the units parse, are hardened, agree with each other (socket, homes, order)
and pass ``systemd-analyze verify`` where it is installed."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from tests.unit.deploy._recipes import UNITS, command_params, exec_argv, read_unit

HARDENING = {
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "PrivateTmp": "yes",
    "ProtectHome": "yes",
    "PrivateDevices": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectControlGroups": "yes",
    "RestrictSUIDSGID": "yes",
    "LockPersonality": "yes",
    "CapabilityBoundingSet": "",
    "SystemCallArchitectures": "native",
}
INSTALLED = "/opt/modelseal/bin/modelseal"


def service(name: str) -> Any:
    return read_unit(UNITS[name])["Service"]


def params(name: str) -> dict[str, Any]:
    argv = exec_argv(service(name)["ExecStart"])
    assert argv[0] == INSTALLED
    return command_params(argv[1:])


@pytest.mark.parametrize("name", sorted(UNITS))
def test_unit_sections_user_and_restart(name: str) -> None:
    unit = read_unit(UNITS[name])
    assert set(unit.sections()) == {"Unit", "Service", "Install"}
    assert unit["Unit"]["Description"]
    assert unit["Install"]["WantedBy"] == "multi-user.target"
    svc = unit["Service"]
    assert svc["Type"] == "exec"
    assert svc["User"] == svc["Group"] == "modelseal"
    assert svc["Restart"] == "on-failure"
    assert svc["UMask"] == "0077"


@pytest.mark.parametrize("name", sorted(UNITS))
def test_unit_is_hardened(name: str) -> None:
    svc = service(name)
    for key, value in HARDENING.items():
        assert svc.get(key) == value, f"{UNITS[name].name}: {key}={svc.get(key)}"
    # ONNX Runtime and OpenVINO JIT code, libffi closures: never forbid W+X memory here.
    assert "MemoryDenyWriteExecute" not in svc
    assert "AF_PACKET" not in svc["RestrictAddressFamilies"]


def test_vault_writes_only_its_home_and_reads_its_passphrase_from_a_file() -> None:
    svc, vault = service("vault"), params("vault")
    assert svc["ReadWritePaths"] == str(vault["home"])
    assert svc["EnvironmentFile"].startswith("/etc/modelseal/")
    assert vault["passphrase_env"] == "MODELSEAL_VAULT_PASSPHRASE"  # noqa: S105 - a name
    assert vault["port"] == 8443


def test_agent_socket_home_and_runtime_directory() -> None:
    svc, agent = service("agent"), params("agent")
    assert svc["ReadWritePaths"] == str(agent["home"])
    socket = PurePosixPath(str(agent["socket_path"]))
    assert socket.parent == PurePosixPath("/run") / svc["RuntimeDirectory"]
    assert svc["RuntimeDirectory"] == "modelseal"


def test_serve_needs_the_agent_and_never_sees_the_device_key() -> None:
    unit = read_unit(UNITS["serve"])
    serve, agent = params("serve"), params("agent")
    assert "modelseal-agent.service" in unit["Unit"]["Requires"].split()
    assert "modelseal-agent.service" in unit["Unit"]["After"].split()
    assert serve["agent_socket"] == agent["socket_path"]
    assert str(agent["socket_path"]) in unit["Service"]["ExecStartPre"]
    assert unit["Service"]["InaccessiblePaths"] == str(agent["home"])
    assert serve["rest_host"] == serve["grpc_host"] == "127.0.0.1"
    assert PurePosixPath(str(serve["config"])).is_relative_to(unit["Service"]["ReadOnlyPaths"])
    assert "ReadWritePaths" not in unit["Service"]
    assert unit["Service"]["EnvironmentFile"].startswith("-/etc/modelseal/")


def test_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed here; the INI checks above still ran")
    modelseal = Path(sys.executable).with_name("modelseal")
    assert modelseal.is_file()
    for path in UNITS.values():  # the installed path does not exist on this machine
        text = path.read_text().replace(INSTALLED, str(modelseal))
        (tmp_path / path.name).write_text(text)
    done = subprocess.run(
        [analyze, "verify", "--man=no", *sorted(str(tmp_path / p.name) for p in UNITS.values())],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if done.returncode != 0 and "Failed to" in done.stderr and "manager" in done.stderr:
        pytest.skip(f"systemd-analyze cannot run here: {done.stderr.strip()}")
    # warnings (unknown keys, bad values) do not change the exit status: require silence
    assert done.returncode == 0 and done.stderr == "", done.stderr
