"""The vault service: one protocol-free class behind the REST routes (docs/vault.md, "Service layer
contract"). Each method delegates to the part that owns the concern."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine

from modelseal._closing import Closing
from modelseal.crypto import Certificate, jwks
from modelseal.licensing import Policy, VersionSpec
from modelseal.vault.home import UnlockedVault
from modelseal.vault.service._core import Core, utc_now
from modelseal.vault.service.admin import Customers, Devices
from modelseal.vault.service.challenges import Challenges
from modelseal.vault.service.enrollment import Enrolments
from modelseal.vault.service.leases import Leases
from modelseal.vault.service.licenses import Licenses
from modelseal.vault.service.models import Models
from modelseal.vault.service.release import Releases
from modelseal.vault.service.views import (
    AuditReport,
    Challenge,
    CustomerView,
    DeviceView,
    Enrollment,
    GeneratedKey,
    LeaseGrant,
    LicenseView,
    ModelView,
    ReleaseGrant,
    ReleaseRequest,
)

if TYPE_CHECKING:
    from modelseal.attestation import Collateral

__all__ = ["VaultService"]


class VaultService(Closing):
    """Models, customers, enrolment, licenses, key release, leases and audit of one vault.

    ``actor`` (admin calls) is who asks, for the audit log: the subject of the admin certificate.
    ``device`` (device calls) is the client certificate the TLS layer verified against the vault
    CA. Refusals raise :class:`modelseal.licensing.Refusal`; other failures raise
    :class:`~modelseal.vault.service.errors.VaultError` subclasses. Thread-safe.

    The service opens its own engine on the vault database unless ``engine`` is given; ``close``
    disposes of an engine it opened (the unlocked vault stays the caller's). ``collateral`` is
    the Intel DCAP collateral that sgx and tdx evidence is verified with.
    """

    def __init__(
        self,
        vault: UnlockedVault,
        *,
        clock: Callable[[], datetime] = utc_now,
        nonce_ttl: timedelta = timedelta(minutes=2),
        engine: Engine | None = None,
        collateral: Sequence[Collateral] = (),
    ) -> None:
        self._owns_engine = engine is None
        engine = vault.engine() if engine is None else engine
        try:
            core = Core(vault, engine, clock=clock, nonce_ttl=nonce_ttl, collateral=collateral)
        except BaseException:
            if self._owns_engine:
                engine.dispose()
            raise
        self._core = core
        self._models = Models(core)
        self._customers = Customers(core)
        self._devices = Devices(core)
        self._enrolments = Enrolments(core)
        self._licenses = Licenses(core)
        self._challenges = Challenges(core)
        self._releases = Releases(core, self._challenges)
        self._leases = Leases(core)

    @property
    def engine(self) -> Engine:
        return self._core.engine

    def close(self) -> None:
        if self._owns_engine:
            self._core.engine.dispose()

    # --- models ---------------------------------------------------------------------------------

    def generate_data_key(self, actor: str, *, model_id: str, version: int) -> GeneratedKey:
        """A fresh data key for ``seal --vault``, and its master-key-wrapped form to hand back."""
        return self._models.generate_data_key(actor, model_id=model_id, version=version)

    def register_model(
        self, actor: str, *, manifest: bytes, signature: bytes, wrapped: bytes | None = None
    ) -> ModelView:
        """Register a sealed package by its manifest and signature (see :mod:`.models`)."""
        return self._models.register_model(
            actor, manifest=manifest, signature=signature, wrapped=wrapped
        )

    def list_models(self) -> list[ModelView]:
        return self._models.list_models()

    # --- customers, enrolment, devices ----------------------------------------------------------

    def create_customer(self, actor: str, name: str) -> CustomerView:
        return self._customers.create(actor, name)

    def list_customers(self) -> list[CustomerView]:
        return self._customers.list()

    def create_enrollment_token(self, actor: str, *, customer: str, ttl: timedelta) -> str:
        """A one-time enrolment token for ``customer`` (stored hashed; see :mod:`.enrollment`)."""
        return self._enrolments.create_token(actor, customer=customer, ttl=ttl)

    def enroll_device(self, *, token: str, csr_pem: bytes) -> Enrollment:
        """Use a token: a device certificate (role device) from the vault CA for the CSR's key."""
        return self._enrolments.enroll(token=token, csr_pem=csr_pem)

    def list_devices(self, *, customer: str | None = None) -> list[DeviceView]:
        return self._devices.list(customer=customer)

    def revoke_device(self, actor: str, device_id: str, *, reason: str) -> DeviceView:
        return self._devices.revoke(actor, device_id, reason=reason)

    # --- licenses -------------------------------------------------------------------------------

    def issue_license(
        self,
        actor: str,
        *,
        customer: str,
        model_name: str,
        versions: VersionSpec,
        policy: Policy,
    ) -> tuple[LicenseView, str]:
        """Issue and record a license; (its view, the compact JWS the customer receives)."""
        return self._licenses.issue(
            actor, customer=customer, model_name=model_name, versions=versions, policy=policy
        )

    def revoke_license(self, actor: str, license_id: str, *, reason: str) -> LicenseView:
        return self._licenses.revoke(actor, license_id, reason=reason)

    def show_license(self, license_id: str) -> LicenseView:
        return self._licenses.show(license_id)

    def list_licenses(self, *, customer: str | None = None) -> list[LicenseView]:
        return self._licenses.list(customer=customer)

    def license_keys(self) -> dict[str, Any]:
        """The JWKS of the license-signing keys (licenses and leases verify against it)."""
        return dict(jwks(self._core.license_keys))

    def verify_audit(self) -> AuditReport:
        return self._core.audit.verify()

    # --- devices --------------------------------------------------------------------------------

    def challenge(self, device: Certificate) -> Challenge:
        """A single-use nonce for this device's next key release."""
        return self._challenges.challenge(device)

    def release(self, device: Certificate, request: ReleaseRequest) -> ReleaseGrant:
        """The key release transaction (see :mod:`.release`)."""
        return self._releases.release(device, request)

    def renew(self, device: Certificate, lease_id: str, *, inferences: int) -> LeaseGrant:
        """Renew a lease, reporting the inferences run since the last renewal."""
        return self._leases.renew(device, lease_id, inferences=inferences)
