"""Open routes (no client certificate): health, the vault's public material, and enrolment."""

from __future__ import annotations

from typing import Any, Final

from fastapi import APIRouter
from fastapi.responses import Response

from modelseal.vault.api import schemas as s
from modelseal.vault.api._responses import errors
from modelseal.vault.home import VaultHome
from modelseal.vault.service import VaultService

__all__ = ["PEM_CERTIFICATE", "PEM_KEY", "public_router"]

PEM_CERTIFICATE: Final = "application/pem-certificate-chain"  # RFC 8555 §9.1
PEM_KEY: Final = "application/x-pem-file"


def _pem_response(media_type: str, description: str) -> dict[int | str, dict[str, Any]]:
    return {
        200: {
            "description": description,
            "content": {media_type: {"schema": {"type": "string"}}},
        }
    }


def public_router(service: VaultService, home: VaultHome) -> APIRouter:
    router = APIRouter(tags=["public"])
    health = s.Health(status="ok", vault_id=home.settings.vault_id)
    ca_pem = home.ca_certificate.pem()
    import_pem = home.import_public_key.to_pem()

    @router.get("/healthz", summary="Liveness: the vault answers")
    def healthz() -> s.Health:
        return health

    @router.get(
        "/v1/ca",
        response_class=Response,
        responses=_pem_response(PEM_CERTIFICATE, "The vault CA certificate (PEM)."),
        summary="The vault CA certificate (check it against the enrolment token's pin)",
    )
    def ca() -> Response:
        return Response(ca_pem, media_type=PEM_CERTIFICATE)

    @router.get(
        "/v1/license-keys",
        summary="JWKS of the keys that sign licenses and leases",
    )
    def license_keys() -> s.JWKS:
        return s.JWKS.model_validate(service.license_keys())

    @router.get(
        "/v1/import-key",
        response_class=Response,
        responses=_pem_response(PEM_KEY, "The X25519 import public key (PEM)."),
        summary="The import public key, to seal packages offline (seal --vault-import-key)",
    )
    def import_key() -> Response:
        return Response(import_pem, media_type=PEM_KEY)

    @router.post(
        "/v1/enroll",
        status_code=201,
        responses=errors(400, 401, 422, 500),
        summary="Enrol a device: a one-time token and a CSR for a device certificate",
    )
    def enroll(body: s.EnrollmentRequest) -> s.Enrollment:
        enrolled = service.enroll_device(token=body.token, csr_pem=body.csr.encode("utf-8"))
        return s.Enrollment(
            device_id=enrolled.device_id,
            customer=enrolled.customer,
            certificate=enrolled.certificate_pem.decode("ascii"),
            ca=enrolled.ca_pem.decode("ascii"),
        )

    return router
