"""The whole chain, real parts only, started once for the directory.

* ``chain``: a vault (SQLite home, HTTPS on loopback), customer ``acme``, a device enrolled with
  ``modelseal agent enroll``, onnxruntime's ``logreg_iris.onnx`` sealed as a directory package and
  the PP-OCRv4 recognition model sealed as an archive (registered with ``modelseal model
  register``), and two servers: ``modelseal serve --config … --agent-home`` and ``modelseal serve
  --agent-socket`` behind ``modelseal agent serve`` with TLS and client certificates on both ports.
* ``offline``: a second vault and device, and a single-model ``modelseal serve``; its vault is
  stopped as soon as the server answers, and a sampler records what the server says every 0.2 s.
  It starts first (autouse) so that the lease (30 s at least) runs out while the other tests run;
  ``test_vault_offline.py`` (last by name) reads the record.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest

from modelseal.agent import AgentHome
from tests.conftest import onnx_example_path
from tests.integration.runtime._chain import (
    CUSTOMER,
    Server,
    Tls,
    Vault,
    make_tls,
    ocr_model_path,
    running_vault,
    seal_model,
    start_agent,
    start_server,
    stop_process,
)

SESSION_STARTED = time.time()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """geventhttpclient 2.0 (tritonclient.http's transport) checks host names with
    ``ssl.match_hostname``, deprecated since Python 3.7; nothing here can change that."""
    for item in items:
        if item.path.parent == Path(__file__).parent:
            item.add_marker(
                pytest.mark.filterwarnings("ignore:ssl.match_hostname:DeprecationWarning")
            )


OFFLINE_GRACE = timedelta(seconds=3)
INFERENCE_LIMIT = 5


# --- the main chain -----------------------------------------------------------------------------


@dataclass
class Chain:
    vault: Vault
    root: Path
    home_server: Server
    """``modelseal serve --config … --agent-home DEVICE``: iris, ocr, iris-metered, iris-revocable."""
    socket_server: Server
    """``modelseal serve --agent-socket`` with TLS + client certificates: iris, ocr, iris-revocable."""
    tls: Tls
    socket_dir: Path
    licenses: dict[str, str]
    """(server, model) as ``home/iris`` → license id."""

    def servers(self) -> dict[str, Server]:
        return {"home": self.home_server, "socket": self.socket_server}


def _config(path: Path, entries: list[dict[str, str]]) -> Path:
    path.write_text(
        json.dumps(
            {
                "model_config_list": [{"config": entry} for entry in entries],
                "monitoring": {"metrics": {"enable": True}},
            }
        )
    )
    return path


@pytest.fixture(scope="package")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chain]:
    root = tmp_path_factory.mktemp("chain")
    socket_dir = Path(tempfile.mkdtemp(prefix="ms-rt-"))  # short: Unix socket paths are limited
    started: list[Server] = []
    agent = None
    with running_vault(root) as vault:
        try:
            device = root / "device"
            vault.enroll_cli(device)
            repo = root / "repo"
            seal_model(vault, onnx_example_path(), repo / "iris" / "1", "iris", archive=False)
            seal_model(
                vault, ocr_model_path(), repo / "ocr" / "1" / "ocr.sealed.tar", "ocr", archive=True
            )
            for copy in ("iris-metered", "iris-revocable"):
                shutil.copytree(repo / "iris", repo / copy)
            licenses = {
                "home/iris": vault.issue("iris", repo / "iris" / "license.jws"),
                "home/ocr": vault.issue("ocr", repo / "ocr" / "1" / "license.jws"),
                "home/iris-metered": vault.issue(
                    "iris",
                    repo / "iris-metered" / "license.jws",
                    max_inferences_per=(timedelta(days=1), INFERENCE_LIMIT),
                ),
                "home/iris-revocable": vault.issue("iris", repo / "iris-revocable" / "license.jws"),
            }
            for model in ("iris", "ocr", "iris-revocable"):
                licenses[f"socket/{model}"] = vault.issue(
                    model.split("-")[0], root / "licenses" / f"socket-{model}.jws"
                )
            home_config = _config(
                root / "home-config.json",
                [{"name": name, "base_path": f"repo/{name}"} for name in
                 ("iris", "ocr", "iris-metered", "iris-revocable")],
            )  # fmt: skip
            socket_config = _config(
                root / "socket-config.json",
                [
                    {"name": name, "base_path": f"repo/{name}",
                     "license": f"licenses/socket-{name}.jws"}
                    for name in ("iris", "ocr", "iris-revocable")
                ],
            )  # fmt: skip
            tls = make_tls(root / "tls")
            socket_path = socket_dir / "agent.sock"
            agent = start_agent(device, socket_path, root / "agent.log")
            started.append(
                start_server(root / "home-server", "--config", str(home_config),
                             "--agent-home", str(device))
            )  # fmt: skip
            started.append(
                start_server(root / "socket-server", "--config", str(socket_config),
                             "--agent-socket", str(socket_path), tls=tls)
            )  # fmt: skip
            started[1].extra.append(agent)
            yield Chain(vault, root, started[0], started[1], tls, socket_dir, licenses)
            codes = [server.stop() for server in started]
            assert codes == [0, 0], "a server did not exit cleanly on SIGTERM"
        finally:
            for server in started:
                server.stop()
            if agent is not None:
                stop_process(agent)
            shutil.rmtree(socket_dir, ignore_errors=True)


# --- the offline vault --------------------------------------------------------------------------

_LEASE_STATE = re.compile(r'modelseal_lease_state\{name="iris",state="(\w+)",version="1"\} 1\.0')


@dataclass(frozen=True)
class Sample:
    at: float
    """Wall-clock time (time.time()) when the answer arrived."""
    status: int
    body: str
    lease: str | None


@dataclass
class Offline:
    vault: Vault
    server: Server
    license_id: str
    root: Path
    stopped_at: float = 0.0
    samples: list[Sample] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def sample(self) -> None:
        """Every 0.2 s: one inference and one scrape, until stopped (or well past the end)."""
        with self.server.http() as client:
            ended_at = None
            while not self.done.wait(0.2):
                answer = self.server.infer_json(client, "iris")
                found = _LEASE_STATE.search(self.server.metrics(client))
                now = time.time()
                self.samples.append(
                    Sample(now, answer.status_code, answer.text, found[1] if found else None)
                )
                if answer.status_code == 503:
                    ended_at = ended_at or now
                    if now - ended_at > 1.0:
                        return


@pytest.fixture(scope="package", autouse=True)
def offline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Offline]:
    root = tmp_path_factory.mktemp("offline")
    with running_vault(root) as vault:
        with vault.admin() as admin:
            token = admin.create_enrollment_token(customer=CUSTOMER, ttl_seconds=600).token
        AgentHome.enroll(root / "device", vault_url=vault.url, token=token)
        repo = root / "repo" / "iris"
        seal_model(vault, onnx_example_path(), repo / "1", "iris", archive=False)
        license_id = vault.issue("iris", repo / "license.jws", offline_grace=OFFLINE_GRACE)
        server = start_server(
            root / "server", "--model-name", "iris", "--model-path", str(repo),
            "--agent-home", str(root / "device"),
        )  # fmt: skip
        state = Offline(vault, server, license_id, root)
        try:
            with server.http() as client:
                assert server.infer_json(client, "iris").status_code == 200
            vault.control.stop()
            state.stopped_at = time.time()
            state.thread = threading.Thread(target=state.sample, daemon=True)
            state.thread.start()
            yield state
        finally:
            state.done.set()
            if state.thread is not None:
                state.thread.join(10)
            server.stop()
