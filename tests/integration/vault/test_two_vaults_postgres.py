"""Exact limits over HTTP: two ``modelseal vault serve`` processes share one PostgreSQL database,
and 50 devices' releases (challenge and release over mTLS, as the agent does them) split across
both race for a license with ``max_loads`` 20: exactly 20 are granted, 30 refused with
USAGE_EXHAUSTED, and the audit chain verifies."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from click.testing import CliRunner

from modelseal.vault.client import VaultRequestError
from modelseal.vault.service import VaultService
from tests.integration.vault._processes import (
    DeviceFiles,
    client,
    make_home,
    prepare,
    release,
    serving,
)
from tests.vaulthome import PASSPHRASE, audit_entries

ATTEMPTS = 50
MAX_LOADS = 20


def test_two_vault_processes_grant_exactly_max_loads(tmp_path: Path, postgres_url: str) -> None:
    home = make_home(tmp_path / "home", database_url=postgres_url)
    prepared = prepare(home, tmp_path, devices=5, max_loads=MAX_LOADS)
    barrier = threading.Barrier(ATTEMPTS)

    with serving(home, count=2) as vaults:
        urls = [vault.url for vault in vaults]

        def attempt(n: int) -> str:
            device: DeviceFiles = prepared.devices[n % len(prepared.devices)]
            with client(urls[n % 2], home, device) as vault_client:
                vault_client.health()  # connected (mTLS handshake done) before the race
                barrier.wait(timeout=30)
                try:
                    release(vault_client, device, prepared)
                except VaultRequestError as refusal:
                    assert refusal.status == 403 or refusal.status == 429, refusal
                    return refusal.code
                return "ok"

        with ThreadPoolExecutor(max_workers=ATTEMPTS) as pool:
            outcomes = list(pool.map(attempt, range(ATTEMPTS)))

    assert outcomes.count("ok") == MAX_LOADS
    assert outcomes.count("USAGE_EXHAUSTED") == ATTEMPTS - MAX_LOADS
    with home.unlock(passphrase=PASSPHRASE) as unlocked, VaultService(unlocked) as service:
        assert service.show_license(prepared.license_id).loads_used == MAX_LOADS
        releases = [entry["outcome"] for entry in audit_entries(service, "key.release")]
        assert releases.count("ok") == MAX_LOADS
        assert releases.count("USAGE_EXHAUSTED") == ATTEMPTS - MAX_LOADS
        assert service.verify_audit().ok

    from modelseal.cli.main import cli

    verified = CliRunner().invoke(cli, ["vault", "audit", "verify", "--home", str(home.path)])
    assert verified.exit_code == 0, verified.output
    assert verified.stdout.startswith("audit chain ok: ")
