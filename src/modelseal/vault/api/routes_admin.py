"""Admin routes (the admin client certificate): models, data keys, customers, enrolment tokens,
devices, licenses and the audit check. Each route translates JSON to one service call and back."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from modelseal.crypto import Certificate, dump_data_key
from modelseal.licensing import VersionSpec
from modelseal.vault.api import schemas as s
from modelseal.vault.api._responses import ADMIN_ERRORS, errors
from modelseal.vault.auth import require_role
from modelseal.vault.service import VaultService
from modelseal.vault.service.views import LicenseView

__all__ = ["admin_router", "license_record"]

Admin = Annotated[Certificate, Depends(require_role("admin"))]
CustomerFilter = Annotated[
    str | None, Query(description="Only those of this customer.", min_length=1)
]


def admin_router(service: VaultService) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["admin"], responses=errors(*ADMIN_ERRORS))

    @router.post(
        "/models",
        status_code=201,
        responses=errors(400, 409),
        summary="Register a sealed model version",
    )
    def register_model(body: s.ModelRegistration, admin: Admin) -> s.Model:
        view = service.register_model(
            admin.subject, manifest=body.manifest, signature=body.signature, wrapped=body.wrapped
        )
        return s.Model.model_validate(view, from_attributes=True)

    @router.get("/models", summary="List registered models")
    def list_models(_admin: Admin) -> list[s.Model]:
        return [s.Model.model_validate(v, from_attributes=True) for v in service.list_models()]

    @router.post(
        "/data-keys",
        status_code=201,
        responses=errors(400),
        summary="Generate a data key for sealing (seal --vault)",
    )
    def generate_data_key(body: s.DataKeyRequest, admin: Admin) -> s.DataKeyGrant:
        generated = service.generate_data_key(
            admin.subject, model_id=body.model_id, version=body.version
        )
        return s.DataKeyGrant(
            model_id=generated.model_id,
            version=generated.version,
            key_id=generated.key.key_id,
            key_file=dump_data_key(generated.key),
            wrapped=generated.wrapped,
        )

    @router.post(
        "/customers", status_code=201, responses=errors(400, 409), summary="Create a customer"
    )
    def create_customer(body: s.CustomerCreate, admin: Admin) -> s.Customer:
        view = service.create_customer(admin.subject, body.name)
        return s.Customer.model_validate(view, from_attributes=True)

    @router.get("/customers", summary="List customers")
    def list_customers(_admin: Admin) -> list[s.Customer]:
        return [
            s.Customer.model_validate(v, from_attributes=True) for v in service.list_customers()
        ]

    @router.post(
        "/enrollment-tokens",
        status_code=201,
        responses=errors(400, 404),
        summary="Create a one-time device enrolment token",
    )
    def create_enrollment_token(body: s.EnrollmentTokenRequest, admin: Admin) -> s.EnrollmentToken:
        token = service.create_enrollment_token(
            admin.subject, customer=body.customer, ttl=timedelta(seconds=body.ttl)
        )
        return s.EnrollmentToken(token=token)

    @router.get("/devices", responses=errors(404), summary="List enrolled devices")
    def list_devices(_admin: Admin, customer: CustomerFilter = None) -> list[s.Device]:
        return [
            s.Device.model_validate(v, from_attributes=True)
            for v in service.list_devices(customer=customer)
        ]

    @router.post(
        "/devices/{device_id}/revoke", responses=errors(400, 404), summary="Revoke a device"
    )
    def revoke_device(device_id: str, body: s.RevokeRequest, admin: Admin) -> s.Device:
        view = service.revoke_device(admin.subject, device_id, reason=body.reason)
        return s.Device.model_validate(view, from_attributes=True)

    @router.post(
        "/licenses",
        status_code=201,
        responses=errors(400, 404),
        summary="Issue a license",
    )
    def issue_license(body: s.LicenseRequest, admin: Admin) -> s.IssuedLicense:
        view, token = service.issue_license(
            admin.subject,
            customer=body.customer,
            model_name=body.model,
            versions=VersionSpec.parse(body.versions),
            policy=body.policy.to_policy(),
        )
        return s.IssuedLicense(license=license_record(view), token=token)

    @router.get("/licenses", responses=errors(404), summary="List licenses")
    def list_licenses(_admin: Admin, customer: CustomerFilter = None) -> list[s.LicenseRecord]:
        return [license_record(v) for v in service.list_licenses(customer=customer)]

    @router.get(
        "/licenses/{license_id}",
        responses=errors(404),
        summary="Show a license: state, counters, devices",
    )
    def show_license(license_id: str, _admin: Admin) -> s.LicenseRecord:
        return license_record(service.show_license(license_id))

    @router.post(
        "/licenses/{license_id}/revoke", responses=errors(400, 404), summary="Revoke a license"
    )
    def revoke_license(license_id: str, body: s.RevokeRequest, admin: Admin) -> s.LicenseRecord:
        return license_record(service.revoke_license(admin.subject, license_id, reason=body.reason))

    @router.get("/audit/verify", summary="Verify the audit log's hash chain")
    def verify_audit(_admin: Admin) -> s.AuditReport:
        report = service.verify_audit()
        return s.AuditReport(entries=report.entries, first_bad=report.first_bad, ok=report.ok)

    return router


def license_record(view: LicenseView) -> s.LicenseRecord:
    return s.LicenseRecord(
        id=view.id,
        customer=view.customer,
        model=view.model_name,
        versions=str(view.versions),
        policy=s.PolicyTerms.of(view.policy),
        state=view.state,
        issued_at=view.issued_at,
        not_before=view.not_before,
        ends_at=view.ends_at,
        first_use_at=view.first_use_at,
        revoked_at=view.revoked_at,
        revoked_reason=view.revoked_reason,
        loads_used=view.loads_used,
        max_loads=view.max_loads,
        period_loads=view.period_loads,
        period_inferences=view.period_inferences,
        devices=list(view.devices),
        active_leases=view.active_leases,
    )
