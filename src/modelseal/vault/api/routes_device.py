"""Device routes (a device client certificate): challenge, key release, lease renewal."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends

from modelseal.crypto import Certificate
from modelseal.licensing import Refusal
from modelseal.vault.api import schemas as s
from modelseal.vault.api._responses import DEVICE_ERRORS, errors
from modelseal.vault.api.metrics import VaultMetrics
from modelseal.vault.auth import require_role
from modelseal.vault.service import ReleaseRequest, VaultService

__all__ = ["device_router"]

Device = Annotated[Certificate, Depends(require_role("device"))]


def device_router(service: VaultService, metrics: VaultMetrics | None) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["device"], responses=errors(*DEVICE_ERRORS))

    @router.post("/challenge", summary="Get a single-use nonce for one key release")
    def challenge(device: Device) -> s.Challenge:
        issued = service.challenge(device)
        return s.Challenge(nonce=issued.nonce, expires_at=issued.expires_at)

    @router.post(
        "/keys/release",
        responses=errors(400, 404, 409, 429),
        summary="Release a model key, sealed to a one-time public key, with a lease",
    )
    def release(body: s.KeyReleaseRequest, device: Device) -> s.ReleaseGrant:
        request = ReleaseRequest(
            license=body.license,
            model_name=body.model_name,
            model_version=body.model_version,
            nonce=body.nonce,
            public_key=body.public_key,
            kem=body.kem,
            evidence_type=body.evidence_type,
            evidence=body.evidence,
        )
        try:
            grant = service.release(device, request)
        except Refusal as refusal:
            if metrics is not None:
                metrics.release_refused(refusal.code.value)
            raise
        if metrics is not None:
            metrics.release_granted()
        return s.ReleaseGrant(
            lease_id=grant.lease_id,
            expires_at=grant.expires_at,
            sealed_key=grant.sealed_key,
            info=grant.info,
            lease=grant.lease,
            heartbeat=_seconds(grant.heartbeat),
            offline_grace=_seconds(grant.offline_grace),
            key_id=grant.key_id,
        )

    @router.post(
        "/leases/{lease_id}/renew",
        responses=errors(404, 410, 429),
        summary="Renew a lease, reporting the inferences run since the last renewal",
    )
    def renew(lease_id: str, body: s.RenewRequest, device: Device) -> s.LeaseGrant:
        grant = service.renew(device, lease_id, inferences=body.inferences)
        return s.LeaseGrant(
            lease_id=grant.lease_id,
            expires_at=grant.expires_at,
            lease=grant.lease,
            heartbeat=_seconds(grant.heartbeat),
            offline_grace=_seconds(grant.offline_grace),
        )

    return router


def _seconds(value: timedelta) -> int:
    return value // timedelta(seconds=1)
