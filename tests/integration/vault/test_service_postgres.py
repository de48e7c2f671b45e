"""The vault service on a real PostgreSQL server: exact limits across two vault services (each
with its own engine and connection pool, as two vault processes), and a full release."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pytest

from modelseal.licensing import Refusal, RefusalCode
from modelseal.package import open_package
from modelseal.vault.home import UnlockedVault
from modelseal.vault.service import ReleaseRequest, VaultService
from tests.conftest import Identity, read_tree
from tests.vaulthome import (
    ADMIN,
    PASSPHRASE,
    Clock,
    Device,
    audit_entries,
    enroll,
    issue,
    make_home,
    open_grant,
    register,
    release_request,
    seal_for_vault,
    small_model,
    snapshot,
)

THREADS = 50
MAX_LOADS = 20


@pytest.fixture
def vault(tmp_path: Path, postgres_url: str) -> Iterator[UnlockedVault]:
    home = make_home(tmp_path / "home", database_url=postgres_url)
    with home.unlock(passphrase=PASSPHRASE) as unlocked:
        yield unlocked


@pytest.fixture
def services(vault: UnlockedVault) -> Iterator[tuple[VaultService, VaultService]]:
    """Two services on one database, each with its own engine (two vault processes)."""
    clock = Clock()
    with (
        VaultService(vault, clock=clock) as first,
        VaultService(vault, clock=clock) as second,
    ):
        yield first, second


@pytest.fixture
def package(
    services: tuple[VaultService, VaultService],
    vault: UnlockedVault,
    owner: Identity,
    tmp_path: Path,
) -> Path:
    service = services[0]
    service.create_customer(ADMIN, "acme")
    model = small_model(tmp_path / "model")
    sealed = seal_for_vault(vault, owner, model, tmp_path / "iris")
    register(service, sealed)
    return sealed


def test_two_vaults_grant_exactly_the_loads_left(
    services: tuple[VaultService, VaultService], package: Path
) -> None:
    first, second = services
    devices = [enroll(first) for _ in range(5)]
    _, token = issue(first, max_loads=MAX_LOADS)
    work: list[tuple[VaultService, Device, ReleaseRequest]] = []
    for i in range(THREADS):
        service, device = (first, second)[i % 2], devices[i % len(devices)]
        work.append((service, device, release_request(service, device, token)[0]))
    barrier = threading.Barrier(THREADS)

    def attempt(item: tuple[VaultService, Device, ReleaseRequest]) -> bool:
        service, device, request = item
        barrier.wait(timeout=30)
        try:
            service.release(device.cert, request)
        except Refusal as refusal:
            assert refusal.code is RefusalCode.USAGE_EXHAUSTED, refusal
            return False
        return True

    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        results = list(pool.map(attempt, work))
    assert results.count(True) == MAX_LOADS
    outcomes = [entry["outcome"] for entry in audit_entries(first, "key.release")]
    assert outcomes.count("ok") == MAX_LOADS
    assert outcomes.count("USAGE_EXHAUSTED") == THREADS - MAX_LOADS
    assert len(snapshot(first)["leases"]) == MAX_LOADS
    report = second.verify_audit()
    assert report.ok and report.entries == len(audit_entries(first))


def test_release_renew_and_revoke_on_postgres(
    services: tuple[VaultService, VaultService], package: Path, tmp_path: Path
) -> None:
    first, second = services
    device = enroll(first)
    view, token = issue(first, lease=timedelta(minutes=5))
    request, ephemeral = release_request(first, device, token)
    grant = second.release(device.cert, request)
    key = open_grant(grant, ephemeral, device=device.id, license_id=view.id)
    open_package(package, key, tmp_path / "opened")
    assert read_tree(tmp_path / "opened") == read_tree(tmp_path / "model")
    first.renew(device.cert, grant.lease_id, inferences=3)
    second.revoke_license(ADMIN, view.id, reason="unpaid")
    with pytest.raises(Refusal) as info:
        first.renew(device.cert, grant.lease_id, inferences=0)
    assert info.value.code is RefusalCode.REVOKED
    with pytest.raises(Refusal) as info:
        second.release(device.cert, release_request(second, device, token)[0])
    assert info.value.code is RefusalCode.REVOKED
    assert first.verify_audit().ok
