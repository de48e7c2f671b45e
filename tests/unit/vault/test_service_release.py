"""The key release transaction and lease renewal through the vault service, on SQLite.

Each refusal is checked for its exact code, for the database being as before (counters, nonce,
leases; only the audit log grows, by the refusal's entry), and for that audit entry.
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import timedelta
from functools import partial
from pathlib import Path

import pytest
from sqlalchemy import update

from modelseal.crypto import (
    DecryptionError,
    SigningKey,
    create_csr,
    issue_from_csr,
    parse_subject,
    verify_jws,
)
from modelseal.crypto.hpke import EphemeralPrivateKey, open_data_key
from modelseal.licensing import (
    License,
    Policy,
    Refusal,
    RefusalCode,
    VersionSpec,
    issue_license,
)
from modelseal.package import open_package
from modelseal.vault.db.schema import models
from modelseal.vault.home import UnlockedVault
from modelseal.vault.service import (
    LEASE_TYP,
    BadRequest,
    ReleaseGrant,
    ReleaseRequest,
    VaultError,
    VaultService,
)
from modelseal.vault.service.audit import AuditTrail
from tests.conftest import Identity, read_tree
from tests.vaulthome import (
    ADMIN,
    NOW,
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
    snapshot,
)

Snapshot = dict[str, list[tuple[object, ...]]]
VECTORS = Path(__file__).resolve().parents[2] / "vectors"


def refused(
    service: VaultService, call: Callable[[], object], code: RefusalCode, *fragments: str
) -> Refusal:
    """``call`` is refused with ``code``; nothing but the audit log changed, which gained one
    entry with that outcome."""
    before = snapshot(service)
    entries = len(audit_entries(service))
    with pytest.raises(Refusal) as info:
        call()
    assert info.value.code is code, info.value
    for fragment in fragments:
        assert fragment in info.value.message
    assert snapshot(service) == before
    log = audit_entries(service)
    assert len(log) == entries + 1 and log[-1]["outcome"] == code.value
    return info.value


def release(
    service: VaultService, device: Device, license_jws: str, **changes: object
) -> ReleaseGrant:
    request, _ = release_request(service, device, license_jws)
    return service.release(device.cert, replace(request, **changes))  # type: ignore[arg-type]


# --- granted -------------------------------------------------------------------------------------


def test_the_released_key_decrypts_the_registered_package(
    service: VaultService,
    unlocked_vault: UnlockedVault,
    owner: Identity,
    model_dir: Path,
    tmp_path: Path,
) -> None:
    package = seal_for_vault(unlocked_vault, owner, model_dir, tmp_path / "p", name="resnet")
    register(service, package)
    device = enroll(service)
    view, token = issue(service, model="resnet", versions="1", lease=timedelta(minutes=5))
    request, ephemeral = release_request(service, device, token, model="resnet")
    grant = service.release(device.cert, request)
    assert grant.expires_at == NOW + timedelta(minutes=5)
    key = open_grant(grant, ephemeral, device=device.id, license_id=view.id, model="resnet")
    open_package(package, key, tmp_path / "opened")
    assert read_tree(tmp_path / "opened") == read_tree(model_dir)
    # The sealed key opens only under its own info and with its own private key.
    with pytest.raises(DecryptionError):
        open_data_key(grant.sealed_key, ephemeral, info=grant.info + b" ", key_id=grant.key_id)
    with pytest.raises(DecryptionError):
        open_data_key(
            grant.sealed_key, EphemeralPrivateKey.generate(), info=grant.info, key_id=grant.key_id
        )


def test_a_hybrid_post_quantum_key_is_accepted(service: VaultService) -> None:
    device = enroll(service)
    view, token = issue(service)
    request, ephemeral = release_request(service, device, token, kem="mlkem768-x25519")
    grant = service.release(device.cert, request)
    assert len(grant.sealed_key) == 1120 + 48
    open_grant(grant, ephemeral, device=device.id, license_id=view.id)


def test_the_lease_is_a_jws_of_the_license_key(
    service: VaultService, unlocked_vault: UnlockedVault
) -> None:
    device = enroll(service)
    view, token = issue(service, lease=timedelta(minutes=3), offline_grace=timedelta(minutes=1))
    grant = release(service, device, token)
    claims = verify_jws(grant.lease, unlocked_vault.home.license_keys, typ=LEASE_TYP)
    assert claims == {
        "jti": grant.lease_id,
        "sub": device.id,
        "lic": view.id,
        "model": "iris",
        "version": 1,
        "exp": int((NOW + timedelta(minutes=3)).timestamp()),
        "hb": 60,
        "grace": 60,
    }
    assert grant.lease_id.startswith("lease-")
    assert (grant.heartbeat, grant.offline_grace) == (timedelta(minutes=1), timedelta(minutes=1))


def test_the_audit_entry_of_a_release(service: VaultService) -> None:
    device = enroll(service)
    view, token = issue(service)
    request, _ = release_request(service, device, token)
    grant = service.release(device.cert, replace(request, evidence=b"ignored for type none"))
    [entry] = audit_entries(service, "key.release")
    assert (entry["actor"], entry["subject"], entry["outcome"]) == (device.id, view.id, "ok")
    details = entry["details"]
    assert details["evidence"] == {"type": "none", "given": False}
    assert details["lease"] == grant.lease_id
    assert details["nonce"].startswith("hmac-sha256:") and request.nonce not in str(entry)
    assert details["public_key"].startswith("hmac-sha256:")
    assert service.verify_audit().ok


def test_show_license_counts_loads_and_devices(service: VaultService) -> None:
    device = enroll(service)
    view, token = issue(service, max_loads=2, loads_per=(timedelta(hours=1), 5))
    release(service, device, token)
    release(service, device, token)
    shown = service.show_license(view.id)
    assert (shown.state, shown.loads_used, shown.period_loads) == ("exhausted", 2, 2)
    assert (shown.devices, shown.active_leases, shown.first_use_at) == ((device.id,), 2, NOW)


# --- refusals, in the order of the transaction ---------------------------------------------------


@pytest.fixture
def device(service: VaultService) -> Device:
    return enroll(service)


@pytest.fixture
def licensed(service: VaultService) -> str:
    return issue(service)[1]


def test_unknown_nonce(service: VaultService, device: Device, licensed: str) -> None:
    request, _ = release_request(service, device, licensed)
    bad = replace(request, nonce="A" * 43)
    refused(service, lambda: service.release(device.cert, bad), RefusalCode.NONCE_INVALID)


def test_replayed_nonce(service: VaultService, device: Device, licensed: str) -> None:
    request, _ = release_request(service, device, licensed)
    service.release(device.cert, request)
    refused(service, lambda: service.release(device.cert, request), RefusalCode.NONCE_INVALID)


def test_expired_nonce(service: VaultService, device: Device, licensed: str, clock: Clock) -> None:
    request, _ = release_request(service, device, licensed)
    clock.advance(timedelta(minutes=2))
    refused(service, lambda: service.release(device.cert, request), RefusalCode.NONCE_INVALID)


def test_a_nonce_with_a_changed_byte_is_refused(
    service: VaultService, device: Device, licensed: str
) -> None:
    """The nonce carries its own expiry under a MAC: changing any byte (say, to push the expiry
    out) makes it a nonce this vault never issued."""
    request, _ = release_request(service, device, licensed)
    token = bytearray(base64.urlsafe_b64decode(request.nonce + "=="))
    for index in (0, 1, 16, 23, 24, 39):
        forged = bytearray(token)
        forged[index] ^= 0x01
        text = base64.urlsafe_b64encode(bytes(forged)).rstrip(b"=").decode()
        bad = replace(request, nonce=text)
        refused(service, partial(service.release, device.cert, bad), RefusalCode.NONCE_INVALID)
    service.release(device.cert, request)  # the original is still unused


def test_another_spelling_of_a_used_nonce_is_a_replay(
    service: VaultService, device: Device, licensed: str
) -> None:
    """base64 has several spellings of the same bytes (here: the standard alphabet, and unused
    low bits in the last character); a used nonce is recorded by its bytes, not its text."""
    request, _ = release_request(service, device, licensed)
    while "-" not in request.nonce and "_" not in request.nonce:
        request, _ = release_request(service, device, licensed)
    service.release(device.cert, request)
    standard = request.nonce.replace("-", "+").replace("_", "/")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet[alphabet.index(request.nonce[-1]) ^ 1]  # one of the 4 unused low bits
    for spelling in (standard, request.nonce[:-1] + last):
        assert base64.urlsafe_b64decode(spelling + "==") == base64.urlsafe_b64decode(
            request.nonce + "=="
        )
        again = replace(request, nonce=spelling)
        refused(service, partial(service.release, device.cert, again), RefusalCode.NONCE_INVALID)


def test_a_nonce_from_another_vault_is_refused(
    tmp_path: Path, clock: Clock, service: VaultService, device: Device, licensed: str
) -> None:
    """Another vault's nonce for the same certificate: its MAC key is another vault secret."""
    other = make_home(tmp_path / "other")
    with (
        other.unlock(passphrase=PASSPHRASE) as vault,
        VaultService(vault, clock=clock) as elsewhere,
    ):
        foreign = elsewhere.challenge(device.cert).nonce
    request, _ = release_request(service, device, licensed)
    bad = replace(request, nonce=foreign)
    refused(service, lambda: service.release(device.cert, bad), RefusalCode.NONCE_INVALID)


def test_a_nonce_issued_to_another_device(
    service: VaultService, device: Device, licensed: str
) -> None:
    other = enroll(service)
    request, _ = release_request(service, other, licensed)
    refused(service, lambda: service.release(device.cert, request), RefusalCode.NONCE_INVALID)
    service.release(other.cert, request)  # still unused: it works for the device it was for


def test_a_certificate_the_vault_never_enrolled(
    service: VaultService, unlocked_vault: UnlockedVault, device: Device, licensed: str
) -> None:
    key = SigningKey.generate("ecdsa-p256")
    ghost = issue_from_csr(
        unlocked_vault.ca,
        create_csr(key, parse_subject("CN=ghost")),
        subject_override="CN=dev-ghost",
        role="device",
        days=30,
        now=NOW,
    )
    stranger = Device("dev-ghost", "acme", key, ghost)
    request, _ = release_request(service, stranger, licensed)
    refused(service, lambda: service.release(ghost, request), RefusalCode.DEVICE_UNKNOWN)


def test_revoked_device(service: VaultService, device: Device, licensed: str) -> None:
    request, _ = release_request(service, device, licensed)
    service.revoke_device(ADMIN, device.id, reason="stolen")
    refused(service, lambda: service.release(device.cert, request), RefusalCode.DEVICE_REVOKED)


def test_wrong_customers_device(service: VaultService, licensed: str) -> None:
    other = enroll(service, "globex")
    request, _ = release_request(service, other, licensed)
    refused(
        service,
        lambda: service.release(other.cert, request),
        RefusalCode.WRONG_CUSTOMER,
        "belongs to customer 'globex', and the license to 'acme'",
    )


def tampered(token: str) -> str:
    header, payload, signature = token.split(".")
    flipped = payload[:10] + ("A" if payload[10] != "A" else "B") + payload[11:]
    return f"{header}.{flipped}.{signature}"


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (tampered, "signature does not verify"),
        (lambda token: token.rsplit(".", 1)[0], "cannot be read"),
        (lambda token: "not a license", "cannot be read"),
    ],
)
def test_tampered_license(
    service: VaultService, device: Device, licensed: str, mangle: Callable[[str], str], message: str
) -> None:
    request, _ = release_request(service, device, mangle(licensed))
    refused(
        service, lambda: service.release(device.cert, request), RefusalCode.LICENSE_INVALID, message
    )


def test_a_license_signed_by_another_key_or_not_on_record(
    service: VaultService, unlocked_vault: UnlockedVault, device: Device
) -> None:
    def sign(key: SigningKey) -> tuple[License, str]:
        return issue_license(
            key=key,
            kid=unlocked_vault.license_kid,
            issuer=unlocked_vault.settings.vault_id,
            customer="acme",
            model_name="iris",
            versions=VersionSpec.all(),
            policy=Policy(),
            vault_urls=["https://vault.example"],
            vault_pins=["0" * 64],
            now=NOW,
        )

    forged = sign(SigningKey.generate())[1]
    request, _ = release_request(service, device, forged)
    refused(service, lambda: service.release(device.cert, request), RefusalCode.LICENSE_INVALID)
    unrecorded = sign(unlocked_vault.license_key)
    request, _ = release_request(service, device, unrecorded[1])
    refused(
        service,
        lambda: service.release(device.cert, request),
        RefusalCode.LICENSE_INVALID,
        f"no record of license {unrecorded[0].id}",
    )


def test_revoked_license(service: VaultService, device: Device) -> None:
    view, token = issue(service)
    service.revoke_license(ADMIN, view.id, reason="unpaid")
    request, _ = release_request(service, device, token)
    refused(service, lambda: service.release(device.cert, request), RefusalCode.REVOKED)


def test_expired_license(service: VaultService, device: Device, clock: Clock) -> None:
    _, token = issue(service, expires_at=NOW + timedelta(days=1))
    clock.advance(timedelta(days=1))
    request, _ = release_request(service, device, token)
    refused(service, lambda: service.release(device.cert, request), RefusalCode.EXPIRED)


def test_duration_from_first_use(service: VaultService, device: Device, clock: Clock) -> None:
    _, token = issue(service, duration_from_first_use=timedelta(days=30))
    clock.advance(timedelta(days=3))  # the clock starts at the first use, not at issue
    first = release(service, device, token)
    assert first.expires_at == clock.now + timedelta(minutes=10)
    clock.advance(timedelta(days=30) - timedelta(minutes=5))
    last = release(service, device, token)
    assert last.expires_at == NOW + timedelta(days=33)  # a lease never outlives the license
    clock.advance(timedelta(minutes=5))
    request, _ = release_request(service, device, token)
    refused(
        service,
        lambda: service.release(device.cert, request),
        RefusalCode.EXPIRED,
        "30d after its first use",
    )


def test_not_yet_valid(service: VaultService, device: Device, clock: Clock) -> None:
    _, token = issue(service)
    clock.advance(-timedelta(hours=1))  # this vault's clock went back
    request, _ = release_request(service, device, token)
    refused(service, lambda: service.release(device.cert, request), RefusalCode.NOT_YET_VALID)


def test_model_not_licensed(service: VaultService, device: Device) -> None:
    _, token = issue(service, versions="1")
    request, _ = release_request(service, device, token, version=2)
    refused(service, lambda: service.release(device.cert, request), RefusalCode.MODEL_NOT_LICENSED)


def test_model_unknown(service: VaultService, device: Device, licensed: str) -> None:
    request, _ = release_request(service, device, licensed, version=7)
    refused(service, lambda: service.release(device.cert, request), RefusalCode.MODEL_UNKNOWN)


def test_node_locked(service: VaultService, device: Device) -> None:
    other = enroll(service)
    _, token = issue(service, devices=[device.id])
    release(service, device, token)
    request, _ = release_request(service, other, token)
    refused(service, lambda: service.release(other.cert, request), RefusalCode.DEVICE_NOT_ALLOWED)


def test_max_devices_floats_when_leases_end(
    service: VaultService, device: Device, clock: Clock
) -> None:
    other = enroll(service)
    view, token = issue(service, max_devices=1, lease=timedelta(minutes=1))
    release(service, device, token)
    request, _ = release_request(service, other, token)
    refused(service, lambda: service.release(other.cert, request), RefusalCode.TOO_MANY_DEVICES)
    clock.advance(timedelta(minutes=1))  # the first device's lease has ended
    release(service, other, token)
    assert service.show_license(view.id).devices == (other.id,)


@pytest.mark.parametrize(
    ("required", "sent", "message"),
    [
        ("sgx", "sgx", "The sgx evidence was refused: format: the sgx quote is malformed"),
        ("tdx", "none", "The license requires tdx evidence, and the request has 'none' evidence"),
        ("none", "sev-snp", "the request has 'sev-snp' evidence"),
    ],
)
def test_evidence(
    service: VaultService, device: Device, required: str, sent: str, message: str
) -> None:
    _, token = issue(service, require_evidence=required)
    request, _ = release_request(service, device, token, evidence_type=sent)
    refused(
        service,
        lambda: service.release(device.cert, request),
        RefusalCode.EVIDENCE_REJECTED,
        message,
    )


def test_a_genuine_quote_for_another_request_is_refused_naming_every_claim(
    service: VaultService, device: Device
) -> None:
    """A real SGX quote (tests/vectors/attestation) sent as this release's evidence: its report
    data is not this request's, and this vault has no collateral for its platform."""
    quote = (VECTORS / "attestation" / "dcap-qvl" / "sgx_quote").read_bytes()
    _, token = issue(service, require_evidence="sgx")
    request, _ = release_request(service, device, token, evidence_type="sgx")
    request = replace(request, evidence=quote)
    refusal = refused(
        service, lambda: service.release(device.cert, request), RefusalCode.EVIDENCE_REJECTED
    )
    for claim in ("collateral: no collateral was given", "tcb_status: unknown", "report_data:"):
        assert claim in refusal.message, refusal.message


def test_usage_exhausted(service: VaultService, device: Device) -> None:
    view, token = issue(service, max_loads=2)
    release(service, device, token)
    release(service, device, token)
    request, _ = release_request(service, device, token)
    refused(
        service,
        lambda: service.release(device.cert, request),
        RefusalCode.USAGE_EXHAUSTED,
        "All 2 loads",
    )
    assert service.show_license(view.id).loads_used == 2


def test_rate_limited(service: VaultService, device: Device, clock: Clock) -> None:
    clock.advance(timedelta(minutes=20))
    _, token = issue(service, loads_per=(timedelta(hours=1), 2))
    release(service, device, token)
    release(service, device, token)
    request, _ = release_request(service, device, token)
    refusal = refused(
        service, lambda: service.release(device.cert, request), RefusalCode.RATE_LIMITED
    )
    assert refusal.retry_after == 40 * 60  # the next hour starts at 13:00
    clock.advance(timedelta(minutes=40))
    release(service, device, token)


# --- failing closed ------------------------------------------------------------------------------


def test_a_refusal_stands_when_its_audit_write_fails(
    service: VaultService, device: Device, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, token = issue(service, max_loads=1)
    release(service, device, token)
    request, _ = release_request(service, device, token)

    def broken(*_args: object, **_kwargs: object) -> str:
        raise OSError("disk full")

    monkeypatch.setattr(AuditTrail, "append", broken)
    before = snapshot(service, audit=True)
    with pytest.raises(Refusal) as info:
        service.release(device.cert, request)
    assert info.value.code is RefusalCode.USAGE_EXHAUSTED
    assert snapshot(service, audit=True) == before


def test_a_failed_audit_write_releases_nothing(
    service: VaultService, device: Device, licensed: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    request, _ = release_request(service, device, licensed)
    monkeypatch.setattr(AuditTrail, "append", lambda *_a, **_k: (_ for _ in ()).throw(OSError()))
    before = snapshot(service, audit=True)
    with pytest.raises(OSError):
        service.release(device.cert, request)
    assert snapshot(service, audit=True) == before
    monkeypatch.undo()
    service.release(device.cert, request)  # the nonce was not used up


def test_a_data_key_that_does_not_unwrap_releases_nothing(
    service: VaultService, device: Device, licensed: str
) -> None:
    with service.engine.begin() as conn:
        conn.execute(update(models).values(wrapped_key=b"MSK1" + bytes(64)))
    request, _ = release_request(service, device, licensed)
    before = snapshot(service)
    with pytest.raises(VaultError, match="does not unwrap with the master key"):
        service.release(device.cert, request)
    assert snapshot(service) == before
    assert audit_entries(service)[-1]["outcome"] == "VAULT"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"public_key": b"short"}, "a x25519 public key has 32 bytes, not 5"),
        ({"kem": "rsa"}, "unknown key encapsulation 'rsa'"),
        ({"public_key": bytes(32)}, "cannot be used"),
        ({"model_version": 0}, "from 1 to"),
        ({"model_name": "../iris"}, "is not a model name"),
        ({"evidence_type": "x" * 33}, "short name"),
    ],
)
def test_malformed_requests(
    service: VaultService, device: Device, licensed: str, changes: dict[str, object], message: str
) -> None:
    request, _ = release_request(service, device, licensed)
    bad: ReleaseRequest = replace(request, **changes)  # type: ignore[arg-type]
    before = snapshot(service)
    with pytest.raises(BadRequest, match=message):
        service.release(device.cert, bad)
    assert snapshot(service) == before
    service.release(device.cert, request)


# --- renewal -------------------------------------------------------------------------------------


def test_renew(service: VaultService, device: Device, clock: Clock) -> None:
    view, token = issue(service, lease=timedelta(minutes=10), max_loads=1)
    grant = release(service, device, token)
    clock.advance(timedelta(minutes=3))
    renewed = service.renew(device.cert, grant.lease_id, inferences=17)
    assert renewed.expires_at == NOW + timedelta(minutes=13)
    assert renewed.lease != grant.lease
    assert service.show_license(view.id).loads_used == 1  # renewals are not loads
    assert audit_entries(service, "lease.renew")[-1]["details"]["inferences"] == 17


def test_renew_within_the_offline_grace(
    service: VaultService, device: Device, clock: Clock
) -> None:
    _, token = issue(service, lease=timedelta(minutes=1), offline_grace=timedelta(minutes=5))
    grant = release(service, device, token)
    clock.advance(timedelta(minutes=6))
    service.renew(device.cert, grant.lease_id, inferences=0)


def test_renew_unknown_or_someone_elses_lease(service: VaultService, device: Device) -> None:
    other = enroll(service)
    _, token = issue(service)
    grant = release(service, device, token)
    refused(
        service,
        lambda: service.renew(other.cert, grant.lease_id, inferences=0),
        RefusalCode.LEASE_UNKNOWN,
    )
    refused(
        service,
        lambda: service.renew(device.cert, "lease-nope", inferences=0),
        RefusalCode.LEASE_UNKNOWN,
    )


def lease_state(service: VaultService, lease_id: str) -> tuple[object, ...]:
    [row] = [r for r in snapshot(service)["leases"] if r[0] == lease_id]
    return row


def ended_with(
    service: VaultService, device: Device, lease_id: str, code: RefusalCode, *fragments: str
) -> None:
    """The renewal is refused with ``code``, the lease ends, and stays ended with that code."""
    with pytest.raises(Refusal) as info:
        service.renew(device.cert, lease_id, inferences=0)
    assert info.value.code is code
    for fragment in fragments:
        assert fragment in info.value.message
    assert lease_state(service, lease_id)[-1] == code.value  # end_reason
    assert audit_entries(service, "lease.renew")[-1]["outcome"] == code.value
    refused(service, lambda: service.renew(device.cert, lease_id, inferences=0), code, "ended")


def test_renew_after_the_grace(service: VaultService, device: Device, clock: Clock) -> None:
    _, token = issue(service, lease=timedelta(minutes=1), offline_grace=timedelta(minutes=5))
    grant = release(service, device, token)
    clock.advance(timedelta(minutes=6, seconds=1))
    ended_with(service, device, grant.lease_id, RefusalCode.LEASE_EXPIRED, "grace")


def test_renew_after_revocation(service: VaultService, device: Device) -> None:
    view, token = issue(service)
    grant = release(service, device, token)
    service.revoke_license(ADMIN, view.id, reason="unpaid")
    ended_with(service, device, grant.lease_id, RefusalCode.REVOKED, "revoked")


def test_renew_by_a_revoked_device(service: VaultService, device: Device) -> None:
    _, token = issue(service)
    grant = release(service, device, token)
    service.revoke_device(ADMIN, device.id, reason="stolen")
    ended_with(service, device, grant.lease_id, RefusalCode.DEVICE_REVOKED)


def test_renew_after_the_license_expired(
    service: VaultService, device: Device, clock: Clock
) -> None:
    _, token = issue(
        service, expires_at=NOW + timedelta(minutes=5), offline_grace=timedelta(hours=1)
    )
    grant = release(service, device, token)
    assert grant.expires_at == NOW + timedelta(minutes=5)
    clock.advance(timedelta(minutes=5))
    ended_with(service, device, grant.lease_id, RefusalCode.EXPIRED)


def test_inference_limits(service: VaultService, device: Device, clock: Clock) -> None:
    view, token = issue(
        service, max_inferences_per=(timedelta(hours=1), 100), lease=timedelta(hours=2)
    )
    grant = release(service, device, token)
    service.renew(device.cert, grant.lease_id, inferences=60)
    refusal = refused(
        service,
        lambda: service.renew(device.cert, grant.lease_id, inferences=41),
        RefusalCode.RATE_LIMITED,
    )
    assert refusal.retry_after == 3600
    refused(
        service,
        lambda: service.renew(device.cert, grant.lease_id, inferences=101),
        RefusalCode.USAGE_EXHAUSTED,
        "more than the 100 per 1h",
    )
    service.renew(device.cert, grant.lease_id, inferences=40)
    assert service.show_license(view.id).period_inferences == 100
    clock.advance(timedelta(hours=1))
    service.renew(device.cert, grant.lease_id, inferences=41)


def test_bad_inference_counts(service: VaultService, device: Device, licensed: str) -> None:
    grant = release(service, device, licensed)
    for bad in (-1, 2**53, True):
        with pytest.raises(BadRequest, match="inferences must be"):
            service.renew(device.cert, grant.lease_id, inferences=bad)


# --- concurrency ---------------------------------------------------------------------------------


def race_releases(service: VaultService, threads: int, max_loads: int) -> list[bool]:
    """``threads`` devices' releases, each with its own nonce, let go together."""
    devices = [enroll(service) for _ in range(5)]
    _, token = issue(service, max_loads=max_loads)
    requests = [
        (devices[i % 5], release_request(service, devices[i % 5], token)[0]) for i in range(threads)
    ]
    barrier = threading.Barrier(threads)

    def attempt(pair: tuple[Device, ReleaseRequest]) -> bool:
        barrier.wait(timeout=30)
        try:
            service.release(pair[0].cert, pair[1])
        except Refusal as refusal:
            assert refusal.code is RefusalCode.USAGE_EXHAUSTED
            return False
        return True

    with ThreadPoolExecutor(max_workers=threads) as pool:
        return list(pool.map(attempt, requests))


def test_fifty_releases_against_twenty_loads(service: VaultService) -> None:
    results = race_releases(service, 50, 20)
    assert results.count(True) == 20
    releases = audit_entries(service, "key.release")
    assert [e["outcome"] for e in releases].count("ok") == 20
    assert [e["outcome"] for e in releases].count("USAGE_EXHAUSTED") == 30
    assert len(snapshot(service)["leases"]) == 20
    assert service.verify_audit().ok
