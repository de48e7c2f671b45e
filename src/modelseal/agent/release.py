"""One key release from the device's side: challenge, one-time key pair, release, open the key.

The data key arrives HPKE-sealed to a key pair made for this release alone, under an ``info`` that
names this device, license, model, version and lease expiry. The agent computes that ``info``
itself and opens the key with it, so a key sealed for any other release does not open here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from modelseal.crypto import DataKey, DecryptionError, keys_from_jwks
from modelseal.crypto.hpke import EphemeralPrivateKey, Kem, open_data_key, release_info
from modelseal.errors import Error, UsageError
from modelseal.licensing import License, Refusal, parse_license

if TYPE_CHECKING:
    from modelseal.vault.client import VaultClient

__all__ = ["EvidenceSource", "ReleaseError", "ReleasedKey", "default_evidence", "request_key"]


class ReleaseError(Error):
    """The vault granted a key this device cannot open or does not recognise as its own."""

    code = "RELEASE_MISMATCH"


@dataclass(frozen=True)
class ReleasedKey:
    """A granted release: the data key (never printed), its lease, and the license it was
    released under (parsed and verified against the vault's license keys)."""

    key: DataKey = field(repr=False)
    lease_id: str
    expires_at: datetime
    heartbeat: timedelta
    offline_grace: timedelta
    lease: str = field(repr=False)
    license: License = field(repr=False)
    model_name: str
    model_version: int


EvidenceSource = Callable[[str, bytes], bytes]
"""``(kind, report_data) -> evidence``: what the agent presents when a license requires evidence."""


def default_evidence(config: Sequence[Path] = ()) -> EvidenceSource:
    """Evidence from this machine (:func:`modelseal.attestation.collect_evidence`): ``software``
    measures this installation, the interpreter and the ``config`` files; ``sgx`` asks Gramine,
    ``tdx`` and ``sev-snp`` the kernel's configfs-tsm."""

    def collect(kind: str, report_data: bytes) -> bytes:
        from modelseal.attestation import collect_evidence

        return collect_evidence(kind, report_data, config=tuple(config))

    return collect


def request_key(
    client: VaultClient,
    *,
    device_id: str,
    license_token: str,
    model_name: str,
    model_version: int | None,
    kem: Kem = "x25519",
    evidence: EvidenceSource | None = None,
) -> ReleasedKey:
    """Ask the vault for the data key of ``model_name`` version ``model_version`` (it counts as one
    load); ``None`` means the one version the license covers. A refusal is a
    :class:`~modelseal.vault.client.VaultRequestError` with its code.

    When the license requires evidence, ``evidence`` (default :func:`default_evidence`) makes it,
    bound to this request's nonce and one-time public key (report data, DESIGN §3.3)."""
    from modelseal.vault.api.schemas import KeyReleaseRequest

    token = license_token.strip()
    license_ = _local_license(client, token)
    if model_version is None:
        model_version = _only_version(license_.versions.ranges, model_name)
    challenge = client.challenge()
    private = EphemeralPrivateKey.generate(kem)
    kind = license_.policy.require_evidence
    proof = b""
    if kind != "none":
        from modelseal.attestation import report_data

        bound = report_data(challenge.nonce, private.public_bytes())
        proof = (evidence or default_evidence())(kind, bound)
    grant = client.release(
        KeyReleaseRequest(
            license=token,
            model_name=model_name,
            model_version=model_version,
            nonce=challenge.nonce,
            public_key=private.public_bytes(),
            kem=kem,
            evidence_type=kind,
            evidence=proof,
        )
    )
    info = release_info(
        device=device_id,
        license=license_.id,
        model=model_name,
        version=model_version,
        lease_expires=int(grant.expires_at.timestamp()),
    )
    if grant.info != info:
        raise ReleaseError(
            "the vault sealed the key for another release (device, license, model or lease "
            "differ from this request); the key was not used"
        )
    try:
        key = open_data_key(grant.sealed_key, private, info=info, key_id=grant.key_id)
    except DecryptionError:
        raise ReleaseError("the released key does not open with this request's key pair") from None
    return ReleasedKey(
        key=key,
        lease_id=grant.lease_id,
        expires_at=grant.expires_at,
        heartbeat=timedelta(seconds=grant.heartbeat),
        offline_grace=timedelta(seconds=grant.offline_grace),
        lease=grant.lease,
        license=license_,
        model_name=model_name,
        model_version=model_version,
    )


def _local_license(client: VaultClient, token: str) -> License:
    """The license, checked against this vault's license keys before a nonce is spent on it (the
    vault checks it again). The keys are fetched once per client; a license that does not verify
    against them is tried once more against a fresh copy (the vault may have a new key)."""
    known = client.license_keys()
    try:
        return parse_license(token, keys_from_jwks(known), now=None)
    except Refusal:
        fresh = client.license_keys(refresh=True)
        if fresh == known:
            raise
        return parse_license(token, keys_from_jwks(fresh), now=None)


def _only_version(ranges: tuple[tuple[int, int], ...], model_name: str) -> int:
    if len(ranges) == 1 and ranges[0][0] == ranges[0][1]:
        return ranges[0][0]
    raise UsageError(
        f"the license covers several versions of {model_name}; say which one",
        hint=f"--model {model_name}:VERSION",
    )
