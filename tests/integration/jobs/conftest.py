"""Fixtures of the job tests: a real Slurm cluster (two node names on this host, see
_cluster.py), a real vault over HTTPS on loopback, the iris ONNX model sealed to it, an agent
enrolled for node ``edge1`` only, a valid and a revoked license.

Everything the jobs see is on this host's filesystem, as on a cluster with a shared filesystem:
agent homes live at ``agents/<node>``, so ``--agent-home .../agents/{node}`` finds the home of
``edge1`` and nothing on ``edge2``.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest

from modelseal.agent import AgentHome
from modelseal.crypto import ImportPublicKey
from modelseal.jobs import SealedModel, Slurm
from modelseal.licensing import Policy
from modelseal.package import seal
from modelseal.vault.api.schemas import LicenseRequest, PolicyTerms
from modelseal.vault.client import VaultClient
from tests.conftest import make_identity, onnx_example_path
from tests.integration.cfs._fuse_check import fuse_missing
from tests.integration.jobs._cluster import ClusterUnavailableError, SlurmCluster
from tests.integration.vault._server import make_home, running_vault

INFER = Path(__file__).with_name("infer_iris.py")
MODEL_FILE = "logreg_iris.onnx"


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmCluster]:
    """The running cluster, or a skip that says precisely why Slurm cannot start here."""
    cluster = SlurmCluster(tmp_path_factory.mktemp("slurm"))
    try:
        cluster.start()
    except ClusterUnavailableError as exc:
        print(f"\nSlurm job tests skipped: {exc}", file=sys.stderr)
        pytest.skip(f"Slurm cannot start here: {exc}")
    try:
        yield cluster
    finally:
        cluster.stop()
        left = cluster.leftovers()
        assert not left, f"Slurm/munge processes left behind: {left}"


@pytest.fixture(scope="session")
def slurm(cluster: SlurmCluster) -> Slurm:
    return Slurm(conf=cluster.conf, environ=cluster.environ())


@dataclass(frozen=True)
class World:
    root: Path
    plain: Path  # the unprotected model directory
    sealed: Path
    license: Path
    revoked_license: Path
    agents: Path  # agents/<node>: an enrolled home for edge1 only

    def model(self, *, license: Path | None = None) -> SealedModel:
        return SealedModel(self.sealed, license or self.license, agent_home=self.agents / "{node}")

    def workdir(self, name: str) -> Path:
        """A fresh submitting directory."""
        path = self.root / "submit" / name
        path.mkdir(parents=True)
        return path


@pytest.fixture(scope="session")
def world(cluster: SlurmCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    reason = fuse_missing("protected jobs")
    if reason:
        pytest.skip(reason)
    root = tmp_path_factory.mktemp("jobs")
    plain = root / "iris-model"
    plain.mkdir()
    shutil.copyfile(onnx_example_path(), plain / MODEL_FILE)
    home = make_home(root / "vault")
    with running_vault(home) as running:
        with VaultClient.admin(running.url, home.path / "admin") as admin:
            owner = make_identity("Acme Models")
            sealed = seal(
                plain,
                root / "iris.sealed",
                name="iris",
                version=1,
                signing_key=owner.key,
                certificates=[owner.cert],
                import_keys=[ImportPublicKey.from_pem(admin.import_key_pem())],
            ).path
            admin.register_model(
                manifest=(sealed / "manifest.json").read_bytes(),
                signature=(sealed / "manifest.sig").read_bytes(),
            )
            admin.create_customer("acme")
            token = admin.create_enrollment_token(customer="acme", ttl_seconds=600).token
            terms = PolicyTerms.of(Policy(lease=timedelta(minutes=5)))
            request = LicenseRequest(customer="acme", model="iris", versions="1", policy=terms)
            good = admin.issue_license(request)
            revoked = admin.issue_license(request)
            admin.revoke_license(revoked.license.id, reason="the customer stopped paying")
        (root / "agents").mkdir()
        AgentHome.enroll(root / "agents" / "edge1", vault_url=running.url, token=token)
        (root / "iris.license").write_text(good.token + "\n")
        (root / "revoked.license").write_text(revoked.token + "\n")
        yield World(
            root=root,
            plain=plain,
            sealed=sealed,
            license=root / "iris.license",
            revoked_license=root / "revoked.license",
            agents=root / "agents",
        )
