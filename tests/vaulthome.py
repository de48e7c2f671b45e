"""Vault homes and services for the tests: initialised, unlocked, with a clock the test moves.

``vault init`` (key generation, the CA, scrypt) runs once per session: ``pristine_vault_home``
is an empty home; ``seeded_vault_home`` adds the customers ``acme`` and ``globex`` and the model
``iris`` versions 1 and 2 (registered from packages sealed offline to the vault's import key).
Each test gets its own copy (``vault_home``; SQLite, so copying the directory copies the
database) and a :class:`VaultService` on it whose clock starts at :data:`NOW`.

Helpers: :func:`enroll` (a device with its key and certificate), :func:`seal_for_vault`,
:func:`register`, :func:`release_request` (a challenge and a request with a fresh one-time key),
:func:`open_grant` (the released key, opened as the device would).
"""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from modelseal.crypto import (
    Certificate,
    DataKey,
    SigningKey,
    create_csr,
    load_certificates,
    parse_subject,
)
from modelseal.crypto.hpke import EphemeralPrivateKey, open_data_key, release_info
from modelseal.licensing import Policy, VersionSpec
from modelseal.package import seal
from modelseal.vault.db import metadata
from modelseal.vault.db.schema import audit_log
from modelseal.vault.home import SoftwareMaster, UnlockedVault, VaultHome, init_vault
from modelseal.vault.service import (
    LicenseView,
    ModelView,
    ReleaseGrant,
    ReleaseRequest,
    VaultService,
)
from tests.conftest import Identity, random_bytes

__all__ = [
    "ADMIN",
    "NOW",
    "PASSPHRASE",
    "Clock",
    "Device",
    "audit_entries",
    "clock",
    "enroll",
    "issue",
    "make_home",
    "open_grant",
    "pristine_vault_home",
    "register",
    "release_request",
    "seal_for_vault",
    "seeded_vault_home",
    "service",
    "small_model",
    "snapshot",
    "unlocked_vault",
    "vault_home",
]

PASSPHRASE = b"correct horse battery staple"
NOW = datetime(2030, 6, 1, 12, 0, tzinfo=UTC)
FAST = SoftwareMaster(PASSPHRASE, scrypt_n=2**10)
ADMIN = "OU=admin,CN=admin"
"""The actor of admin calls (the admin certificate's subject)."""


class Clock:
    """The service clock: stands still until the test moves it."""

    def __init__(self, now: datetime = NOW) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


@dataclass(frozen=True)
class Device:
    id: str
    customer: str
    key: SigningKey
    cert: Certificate


def make_home(path: Path, *, database_url: str | None = None) -> VaultHome:
    return init_vault(path, database_url=database_url, master=FAST, now=NOW)


def small_model(root: Path) -> Path:
    """A two-file model (64 KiB of weights), big enough to find in a leak search."""
    root.mkdir(parents=True)
    (root / "config.json").write_text('{"architecture": "logistic-regression"}\n')
    (root / "weights.bin").write_bytes(random_bytes(64 * 1024, seed=7))
    return root


def seal_for_vault(
    vault: UnlockedVault | VaultHome,
    owner: Identity,
    model: Path,
    out: Path,
    *,
    name: str = "iris",
    version: int = 1,
    data_key: DataKey | None = None,
    model_id: str | None = None,
) -> Path:
    """Seal ``model`` offline to the vault's import key (``seal --vault-import-key``)."""
    home = vault.home if isinstance(vault, UnlockedVault) else vault
    result = seal(
        model,
        out,
        name=name,
        version=version,
        signing_key=owner.key,
        certificates=[owner.cert],
        import_keys=[] if data_key is not None else [home.import_public_key],
        data_key=data_key,
        model_id=model_id,
        now=NOW,
    )
    return result.path


def register(service: VaultService, package: Path, wrapped: bytes | None = None) -> ModelView:
    return service.register_model(
        ADMIN,
        manifest=(package / "manifest.json").read_bytes(),
        signature=(package / "manifest.sig").read_bytes(),
        wrapped=wrapped,
    )


def enroll(service: VaultService, customer: str = "acme", *, name: str = "edge") -> Device:
    token = service.create_enrollment_token(ADMIN, customer=customer, ttl=timedelta(hours=1))
    key = SigningKey.generate("ecdsa-p256")
    enrollment = service.enroll_device(
        token=token, csr_pem=create_csr(key, parse_subject(f"CN={name}"))
    )
    cert = load_certificates(enrollment.certificate_pem, what="the device certificate")[0]
    return Device(enrollment.device_id, customer, key, cert)


def issue(
    service: VaultService,
    customer: str = "acme",
    *,
    model: str = "iris",
    versions: str = "*",
    **policy: object,
) -> tuple[LicenseView, str]:
    return service.issue_license(
        ADMIN,
        customer=customer,
        model_name=model,
        versions=VersionSpec.parse(versions),
        policy=Policy(**policy),  # type: ignore[arg-type]
    )


def release_request(
    service: VaultService,
    device: Device,
    license_jws: str,
    *,
    model: str = "iris",
    version: int = 1,
    kem: str = "x25519",
    evidence_type: str = "none",
) -> tuple[ReleaseRequest, EphemeralPrivateKey]:
    """A challenge for ``device`` and a release request with a fresh one-time key."""
    ephemeral = EphemeralPrivateKey.generate(kem)
    nonce = service.challenge(device.cert).nonce
    request = ReleaseRequest(
        license=license_jws,
        model_name=model,
        model_version=version,
        nonce=nonce,
        public_key=ephemeral.public_bytes(),
        kem=kem,
        evidence_type=evidence_type,
    )
    return request, ephemeral


def open_grant(
    grant: ReleaseGrant,
    ephemeral: EphemeralPrivateKey,
    *,
    device: str,
    license_id: str,
    model: str = "iris",
    version: int = 1,
) -> DataKey:
    """Open the released key with the info the device computes itself (not the one returned)."""
    info = release_info(
        device=device,
        license=license_id,
        model=model,
        version=version,
        lease_expires=int(grant.expires_at.timestamp()),
    )
    assert info == grant.info
    return open_data_key(grant.sealed_key, ephemeral, info=info, key_id=grant.key_id)


# --- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def pristine_vault_home(tmp_path_factory: pytest.TempPathFactory) -> VaultHome:
    """An initialised vault home with an empty database (do not change it: copy it)."""
    return make_home(tmp_path_factory.mktemp("vault") / "home")


@pytest.fixture(scope="session")
def seeded_vault_home(
    pristine_vault_home: VaultHome, owner: Identity, tmp_path_factory: pytest.TempPathFactory
) -> VaultHome:
    """The pristine home plus customers acme and globex and model iris versions 1 and 2."""
    root = tmp_path_factory.mktemp("seeded")
    shutil.copytree(pristine_vault_home.path, root / "home")
    home = VaultHome.open(root / "home")
    model = small_model(root / "model")
    model_id = str(uuid.uuid4())
    with home.unlock(passphrase=PASSPHRASE) as vault, VaultService(vault) as seeder:
        for customer in ("acme", "globex"):
            seeder.create_customer(ADMIN, customer)
        for version in (1, 2):
            package = seal_for_vault(
                vault, owner, model, root / f"iris-{version}", version=version, model_id=model_id
            )
            register(seeder, package)
    return home


@pytest.fixture
def vault_home(seeded_vault_home: VaultHome, tmp_path: Path) -> VaultHome:
    """A private copy of the seeded home."""
    shutil.copytree(seeded_vault_home.path, tmp_path / "home")
    return VaultHome.open(tmp_path / "home")


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def unlocked_vault(vault_home: VaultHome) -> Iterator[UnlockedVault]:
    with vault_home.unlock(passphrase=PASSPHRASE) as vault:
        yield vault


@pytest.fixture
def service(unlocked_vault: UnlockedVault, clock: Clock) -> Iterator[VaultService]:
    with VaultService(unlocked_vault, clock=clock) as vault_service:
        yield vault_service


# --- looking at the database ---------------------------------------------------------------------


def snapshot(service: VaultService, *, audit: bool = False) -> dict[str, list[tuple[object, ...]]]:
    """Every row of every vault table (the audit log only with ``audit``), to compare states."""
    tables = [t for t in metadata.sorted_tables if audit or t.name != "audit_log"]
    with service.engine.connect() as conn:
        return {
            table.name: sorted((tuple(row) for row in conn.execute(select(table))), key=repr)
            for table in tables
        }


def audit_entries(service: VaultService, action: str | None = None) -> list[dict[str, Any]]:
    """The audit log in order, each entry with its details parsed."""
    query = select(audit_log).order_by(audit_log.c.seq)
    if action is not None:
        query = query.where(audit_log.c.action == action)
    with service.engine.connect() as conn:
        rows = conn.execute(query).mappings().all()
    return [dict(row, details=json.loads(row["details"])) for row in rows]
