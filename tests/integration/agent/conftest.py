"""One real vault for every agent integration test (package scope): customer ``acme``, model
``iris`` version 1 sealed to the vault's import key and registered, and this device enrolled."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from modelseal.agent import AgentHome
from modelseal.vault.client import VaultClient
from tests.integration.agent._world import VaultControl, World
from tests.integration.vault._server import make_home, seal_to_vault


@pytest.fixture(scope="package")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("agent")
    vault = VaultControl(make_home(tmp / "vault"))
    vault.start()
    try:
        with VaultClient.admin(vault.url, vault.home.path / "admin") as admin:
            package, data_key = seal_to_vault(tmp, admin.import_key_pem())
            admin.register_model(
                manifest=(package / "manifest.json").read_bytes(),
                signature=(package / "manifest.sig").read_bytes(),
            )
            admin.create_customer("acme")
            token = admin.create_enrollment_token(customer="acme", ttl_seconds=600).token
        device = AgentHome.enroll(tmp / "device", vault_url=vault.url, token=token)
        yield World(vault, device, data_key, tmp)
    finally:
        if vault.server is not None:
            vault.stop()


@pytest.fixture
def running(world: World) -> Iterator[World]:
    """The world with its vault running (a test that stops it gets it started again)."""
    if world.vault.server is None:
        world.vault.start()
    yield world
    if world.vault.server is None:
        world.vault.start()
