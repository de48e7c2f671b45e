"""Device routes (a device client certificate): challenge, key release, lease renewal.

These are the hot path, so they are coroutines and choose where the service call runs:

* a challenge touches no database (see :mod:`modelseal.vault.service.challenges`), so it runs on
  the event loop;
* on SQLite, releases and renewals also run on the event loop, one at a time. SQLite admits one
  writer anyway, and a commit does not wait for the disk (WAL, ``synchronous=NORMAL``), so a
  release is ~1-2 ms of CPU; worker threads would only add GIL and lock hand-offs (measured:
  twice the CPU per release, see docs/benchmarks.md);
* on PostgreSQL, a release waits for the server (round trips, the commit's WAL flush), so they
  run on worker threads and overlap those waits.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Annotated, TypeVar

import anyio.to_thread
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
T = TypeVar("T")


def device_router(service: VaultService, metrics: VaultMetrics | None) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["device"], responses=errors(*DEVICE_ERRORS))
    on_loop = service.engine.dialect.name == "sqlite"

    async def run(call: Callable[[], T]) -> T:
        return call() if on_loop else await anyio.to_thread.run_sync(call)

    @router.post("/challenge", summary="Get a single-use nonce for one key release")
    async def challenge(device: Device) -> s.Challenge:
        issued = service.challenge(device)
        return s.Challenge(nonce=issued.nonce, expires_at=issued.expires_at)

    @router.post(
        "/keys/release",
        responses=errors(400, 404, 409, 429),
        summary="Release a model key, sealed to a one-time public key, with a lease",
    )
    async def release(body: s.KeyReleaseRequest, device: Device) -> s.ReleaseGrant:
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
            grant = await run(lambda: service.release(device, request))
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
    async def renew(lease_id: str, body: s.RenewRequest, device: Device) -> s.LeaseGrant:
        grant = await run(lambda: service.renew(device, lease_id, inferences=body.inferences))
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
