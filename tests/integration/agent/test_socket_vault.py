"""The agent socket in front of the real vault: in process (KeyAgent behind AgentSocketServer) and
as ``modelseal agent serve`` in a subprocess stopped by SIGTERM."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from modelseal.agent import (
    AgentSocketClient,
    AgentSocketServer,
    InferenceLimitError,
    KeyAgent,
    LeaseEndedError,
)
from modelseal.licensing import RefusalCode, format_datetime
from modelseal.vault.client import VaultRequestError
from tests.conftest import expect_error
from tests.integration.agent._world import Ending, World, wait_for


@pytest.fixture
def socket_path() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="ms-agent-", dir="/tmp"))
    yield folder / "agent.sock"
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def agent_socket(running: World, socket_path: Path) -> Iterator[Path]:
    with KeyAgent(running.device) as agent, AgentSocketServer(agent, socket_path):
        yield socket_path


def test_a_key_over_the_socket_is_the_key_the_vault_released(
    running: World, agent_socket: Path
) -> None:
    license_id, token = running.issue(max_inferences_per=(timedelta(days=1), 10))
    with AgentSocketClient(agent_socket) as client:
        key = client.acquire(token, "iris", 1)
        assert key.key == running.data_key
        status = key.status()
        assert (status.state, status.license_id, status.model_version) == ("active", license_id, 1)
        key.count_inferences(4)
        wait_for(lambda: key.status().inferences_reported == 4, "the report")
        expect_error(
            InferenceLimitError,
            lambda: key.count_inferences(7),
            "The license allows 10 inferences per 1d, and 4 of them are used",
        )
    with running.admin() as admin:
        assert admin.show_license(license_id).period_inferences == 4


def test_revocation_is_pushed_to_the_socket_client(running: World, agent_socket: Path) -> None:
    license_id, token = running.issue()
    with AgentSocketClient(agent_socket) as client:
        key = client.acquire(token, "iris", 1)
        ending = Ending(key)
        with running.admin() as admin:
            revoked = admin.revoke_license(license_id, reason="unpaid")
        status = ending.wait()
    assert revoked.revoked_at is not None
    reason = (
        f"License {license_id} was revoked at {format_datetime(revoked.revoked_at)}; "
        f"{RefusalCode.REVOKED.action}."
    )
    assert (status.code, status.reason) == ("REVOKED", reason)
    assert expect_error(LeaseEndedError, lambda: key.key, reason).code == "REVOKED"


def test_a_vault_refusal_reaches_the_socket_client(running: World, agent_socket: Path) -> None:
    _, token = running.issue()
    with AgentSocketClient(agent_socket) as client:
        error = expect_error(VaultRequestError, lambda: client.acquire(token, "iris", 2))
    assert (error.code, error.status) == ("MODEL_NOT_LICENSED", 403)
    assert error.reason == (
        "The license covers model 'iris' versions 1, not 'iris' version 2; "
        f"{RefusalCode.MODEL_NOT_LICENSED.action}."
    )


def test_agent_serve_runs_until_sigterm(running: World, socket_path: Path) -> None:
    _, token = running.issue()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "modelseal",
            "agent",
            "serve",
            "--home",
            os.fspath(running.device.path),
            "--socket",
            os.fspath(socket_path),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert process.stderr is not None
        line = process.stderr.readline().decode()
        assert line == (
            f"agent of device {running.device.device_id} listening on {socket_path} (vault "
            f"{running.url}); stop it with SIGTERM or Ctrl-C\n"
        )
        assert socket_path.is_socket()
        client = AgentSocketClient(socket_path)
        key = client.acquire(token, "iris", 1)
        assert key.key == running.data_key
        ending = Ending(key)
        process.send_signal(signal.SIGTERM)
        assert process.wait(10) == 0
        status = ending.wait()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert (status.code, status.reason) == (
        "CLOSED",
        "The agent was closed; load the model again once an agent runs",
    )
    assert not socket_path.exists()
    assert process.stderr.read().decode() == f"agent stopped; {socket_path} removed\n"
    process.stderr.close()
    assert process.stdout is not None and process.stdout.read() == b""
    process.stdout.close()
    client.close()
