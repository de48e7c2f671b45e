"""The whole chain: a real vault over HTTPS on loopback, an enrolled device, the in-process
KeyAgent, a FUSE mount; revoking the license through the admin API makes reads fail with EIO
within two heartbeats."""

from __future__ import annotations

import errno
import time
from datetime import timedelta
from pathlib import Path

from modelseal.agent import AgentHome
from modelseal.agent.keyagent import KeyAgent
from modelseal.cfs import CfsSession, Mount
from modelseal.licensing import Policy
from modelseal.vault.api.schemas import LicenseRequest, PolicyTerms
from modelseal.vault.client import VaultClient
from tests.integration.vault._server import make_home, running_vault, seal_to_vault

HEARTBEAT = timedelta(seconds=1)


def test_revoking_the_license_fails_reads_within_two_heartbeats(tmp_path: Path) -> None:
    home = make_home(tmp_path / "home")
    with running_vault(home) as running:
        with VaultClient.admin(running.url, home.path / "admin") as admin:
            package, _ = seal_to_vault(tmp_path, admin.import_key_pem())
            admin.register_model(
                manifest=(package / "manifest.json").read_bytes(),
                signature=(package / "manifest.sig").read_bytes(),
            )
            admin.create_customer("acme")
            enrolment = admin.create_enrollment_token(customer="acme", ttl_seconds=600).token
            policy = Policy(lease=timedelta(seconds=30), heartbeat=HEARTBEAT)
            issued = admin.issue_license(
                LicenseRequest(
                    customer="acme", model="iris", versions="1", policy=PolicyTerms.of(policy)
                )
            )
        device = AgentHome.enroll(tmp_path / "device", vault_url=running.url, token=enrolment)
        plain = tmp_path / "iris-1-src" / "model"
        mountpoint = tmp_path / "mnt"
        mountpoint.mkdir()
        with (
            KeyAgent(device) as agent,
            CfsSession(package, agent, issued.token) as session,
            Mount(session.view, mountpoint),
        ):
            weights = (plain / "weights.bin").read_bytes()
            assert (mountpoint / "weights.bin").read_bytes() == weights
            with VaultClient.admin(running.url, home.path / "admin") as admin:
                admin.revoke_license(issued.license.id, reason="contract ended")
            revoked = time.monotonic()
            while True:
                try:
                    (mountpoint / "config.json").read_bytes()
                except OSError as exc:
                    assert exc.errno == errno.EIO
                    break
                elapsed = time.monotonic() - revoked
                assert elapsed < 2 * HEARTBEAT.total_seconds() + 0.5, "reads still work"
                time.sleep(0.05)
            ended = session.guard.ended
            assert ended is not None and ended.code == "REVOKED"
        assert not mountpoint.is_mount()
