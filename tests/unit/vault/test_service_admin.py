"""The vault service, controller side: models, customers, enrolment, devices, licenses, audit.

Every refusal is checked for its exact error and for leaving the database as it was (apart from
the audit entry some refusals write).
"""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet
from sqlalchemy import select, update

from modelseal.crypto import (
    ImportPrivateKey,
    SigningKey,
    canonical_json,
    certificate_role,
    create_csr,
    load_certificates,
    parse_subject,
    verify_chain,
)
from modelseal.licensing import VersionSpec, parse_license
from modelseal.package import Manifest, seal
from modelseal.package.signature import sign_manifest
from modelseal.vault.db.schema import audit_log, models, vault_meta
from modelseal.vault.home import UnlockedVault, VaultHome
from modelseal.vault.service import (
    BadRequest,
    Conflict,
    NotFound,
    Unauthorized,
    VaultError,
    VaultService,
)
from modelseal.vault.service.audit import AUDIT_KEY_META
from tests.conftest import Identity, expect_error, make_identity
from tests.vaulthome import (
    ADMIN,
    NOW,
    Clock,
    audit_entries,
    enroll,
    issue,
    register,
    seal_for_vault,
    small_model,
    snapshot,
)

# joserfc warns that RFC 9864 deprecates "EdDSA" (see tests/unit/crypto/test_jose.py).
pytestmark = pytest.mark.filterwarnings(
    "ignore:EdDSA is deprecated via RFC 9864:joserfc.errors.SecurityWarning"
)


# --- models --------------------------------------------------------------------------------------


def test_the_seeded_models_were_registered_from_the_import_key(service: VaultService) -> None:
    models = service.list_models()
    assert [(m.name, m.version) for m in models] == [("iris", 1), ("iris", 2)]
    assert models[0].owner == "CN=Acme Models"
    assert models[0].files == 2 and models[0].size > 64 * 1024
    register_entries = audit_entries(service, "model.register")
    assert [e["details"]["key_from"] for e in register_entries] == ["import-key", "import-key"]


def test_register_with_the_import_key_rewraps_under_the_master_key(
    service: VaultService, unlocked_vault: UnlockedVault, owner: Identity, tmp_path: Path
) -> None:
    package = seal_for_vault(
        unlocked_vault, owner, small_model(tmp_path / "m"), tmp_path / "p", version=3
    )
    view = register(service, package)
    manifest = Manifest.from_bytes((package / "manifest.json").read_bytes())
    assert (view.name, view.version, view.model_id, view.key_id) == (
        "iris",
        3,
        manifest.model.id,
        manifest.key_id,
    )
    with service.engine.connect() as conn:
        stored = conn.execute(
            select(models.c.wrapped_key).where(models.c.version == 3)
        ).scalar_one()
    assert stored[:4] == b"MSK1"  # the master-key format, not the manifest's HPKE copy


def test_register_twice_is_a_conflict(
    service: VaultService, unlocked_vault: UnlockedVault, owner: Identity, tmp_path: Path
) -> None:
    package = seal_for_vault(unlocked_vault, owner, small_model(tmp_path / "m"), tmp_path / "p")
    before = snapshot(service)
    expect_error(Conflict, lambda: register(service, package), "model iris version 1 is registered")
    assert snapshot(service) == before


def test_a_bad_signature_is_refused_by_name(
    service: VaultService, unlocked_vault: UnlockedVault, owner: Identity, tmp_path: Path
) -> None:
    package = seal_for_vault(
        unlocked_vault, owner, small_model(tmp_path / "m"), tmp_path / "p", version=5
    )
    manifest = (package / "manifest.json").read_bytes()
    attacker = make_identity("Mallory")
    forged = json.loads((package / "manifest.sig").read_bytes())
    forged["signature"] = base64.b64encode(attacker.key.sign(manifest)).decode()
    before = snapshot(service, audit=True)
    expect_error(
        BadRequest,
        lambda: service.register_model(ADMIN, manifest=manifest, signature=canonical_json(forged)),
        "the manifest signature does not verify",
    )
    expect_error(
        BadRequest,
        lambda: service.register_model(ADMIN, manifest=manifest, signature=b"{}"),
        "signature",
    )
    assert snapshot(service, audit=True) == before


def test_a_package_sealed_for_another_vault_is_refused(
    service: VaultService, owner: Identity, tmp_path: Path
) -> None:
    stranger = ImportPrivateKey.generate().public_key()  # another vault's import key
    package = seal(
        small_model(tmp_path / "m"),
        tmp_path / "p",
        name="iris",
        version=4,
        signing_key=owner.key,
        certificates=[owner.cert],
        import_keys=[stranger],
        now=NOW,
    ).path
    before = snapshot(service, audit=True)
    error = expect_error(
        BadRequest,
        lambda: register(service, package),
        f"sealed for another vault (import key {stranger.key_id[:16]}",
    )
    assert "this vault's import key is" in error.message
    assert snapshot(service, audit=True) == before


def test_a_wrapped_key_copied_from_another_package_does_not_open(
    service: VaultService, unlocked_vault: UnlockedVault, owner: Identity, tmp_path: Path
) -> None:
    """The owner (or anyone who can sign) swaps in another package's wrapped key: HPKE info binds
    the key to its model id, version and key id, so it does not open for this manifest."""
    model = small_model(tmp_path / "m")
    donor = seal_for_vault(unlocked_vault, owner, model, tmp_path / "donor", version=8)
    target = seal_for_vault(unlocked_vault, owner, model, tmp_path / "target", version=9)
    donor_manifest = Manifest.from_bytes((donor / "manifest.json").read_bytes())
    doc = json.loads((target / "manifest.json").read_bytes())
    doc["encryption"]["wrapped_keys"] = [
        {"algorithm": w.algorithm, "recipient": w.recipient, "wrapped": w.wrapped}
        for w in donor_manifest.wrapped_keys
    ]
    manifest = canonical_json(doc)
    signature = sign_manifest(manifest, owner.key, [owner.cert])
    expect_error(
        BadRequest,
        lambda: service.register_model(ADMIN, manifest=manifest, signature=signature),
        "does not open for this manifest",
    )


def test_a_package_without_a_vault_copy_of_its_key_needs_the_wrapped_key(
    service: VaultService, unlocked_vault: UnlockedVault, owner: Identity, tmp_path: Path
) -> None:
    generated = service.generate_data_key(ADMIN, model_id=str(uuid.uuid4()), version=1)
    package = seal_for_vault(
        unlocked_vault,
        owner,
        small_model(tmp_path / "m"),
        tmp_path / "p",
        name="resnet",
        data_key=generated.key,
        model_id=generated.model_id,
    )
    expect_error(
        BadRequest, lambda: register(service, package), "sealed without --vault-import-key"
    )
    view = register(service, package, wrapped=generated.wrapped)
    assert (view.name, view.model_id, view.key_id) == (
        "resnet",
        generated.model_id,
        generated.key.key_id,
    )
    assert audit_entries(service, "data_key.generate")[0]["subject"] == generated.model_id


def test_a_wrapped_key_for_another_model_is_refused(
    service: VaultService, unlocked_vault: UnlockedVault, owner: Identity, tmp_path: Path
) -> None:
    generated = service.generate_data_key(ADMIN, model_id=str(uuid.uuid4()), version=1)
    package = seal_for_vault(
        unlocked_vault,
        owner,
        small_model(tmp_path / "m"),
        tmp_path / "p",
        name="resnet",
        data_key=generated.key,  # but under a fresh model id
    )
    before = snapshot(service)
    expect_error(
        BadRequest,
        lambda: register(service, package, wrapped=generated.wrapped),
        "the wrapped data key was not generated by this vault for model",
    )
    expect_error(
        BadRequest, lambda: register(service, package, wrapped=b"MSK1" + bytes(64)), "not generated"
    )
    assert snapshot(service) == before


def test_generate_data_key_checks_its_arguments(service: VaultService) -> None:
    expect_error(
        BadRequest,
        lambda: service.generate_data_key(ADMIN, model_id="resnet", version=1),
        "is not a UUID",
    )
    expect_error(
        BadRequest,
        lambda: service.generate_data_key(ADMIN, model_id=str(uuid.uuid4()), version=0),
        "from 1 to",
    )


# --- customers -----------------------------------------------------------------------------------


def test_customers(service: VaultService) -> None:
    view = service.create_customer(ADMIN, "initech")
    assert view.name == "initech" and view.created_at == NOW
    assert [c.name for c in service.list_customers()] == ["acme", "globex", "initech"]
    before = snapshot(service, audit=True)
    expect_error(Conflict, lambda: service.create_customer(ADMIN, "acme"), "'acme' exists already")
    expect_error(BadRequest, lambda: service.create_customer(ADMIN, " acme"), "printable")
    assert snapshot(service, audit=True) == before


# --- enrolment -----------------------------------------------------------------------------------


def csr(name: str = "edge") -> bytes:
    return create_csr(SigningKey.generate("ed25519"), parse_subject(f"CN={name}"))


def test_enrolment_issues_a_device_certificate_of_the_vault_ca(
    service: VaultService, unlocked_vault: UnlockedVault
) -> None:
    token = service.create_enrollment_token(ADMIN, customer="acme", ttl=timedelta(hours=1))
    prefix, _secret, pin = token.split(".")
    assert prefix == "mset1"
    assert "sha256:" + pin == unlocked_vault.ca.pin
    enrollment = service.enroll_device(token=token, csr_pem=csr("my-camera"))
    assert enrollment.device_id.startswith("dev-")
    uuid.UUID(enrollment.device_id.removeprefix("dev-"))
    assert enrollment.customer == "acme"
    cert = load_certificates(enrollment.certificate_pem, what="device")[0]
    ca = load_certificates(enrollment.ca_pem, what="ca")[0]
    assert certificate_role(cert) == "device"
    assert cert.subject == f"CN={enrollment.device_id},OU=device"
    verify_chain(cert, [], [ca], now=NOW)
    [device] = service.list_devices(customer="acme")
    assert (device.id, device.customer, device.fingerprint) == (
        enrollment.device_id,
        "acme",
        cert.fingerprint,
    )
    assert service.list_devices(customer="globex") == []
    expect_error(NotFound, lambda: service.list_devices(customer="nobody"), "no customer 'nobody'")


def test_a_token_is_single_use(service: VaultService) -> None:
    token = service.create_enrollment_token(ADMIN, customer="acme", ttl=timedelta(hours=1))
    service.enroll_device(token=token, csr_pem=csr())
    before = snapshot(service)
    expect_error(
        Unauthorized, lambda: service.enroll_device(token=token, csr_pem=csr()), "was used already"
    )
    assert snapshot(service) == before
    assert audit_entries(service, "device.enroll")[-1]["outcome"] == "UNAUTHORIZED"


def test_an_expired_token_is_refused(service: VaultService, clock: Clock) -> None:
    token = service.create_enrollment_token(ADMIN, customer="acme", ttl=timedelta(minutes=5))
    clock.advance(timedelta(minutes=5))
    before = snapshot(service)
    expect_error(Unauthorized, lambda: service.enroll_device(token=token, csr_pem=csr()), "expired")
    assert snapshot(service) == before


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (lambda t: t + "x", "not a modelseal token"),
        (lambda t: "mset2" + t[5:], "not a modelseal token"),
        (lambda t: t[:-64] + "0" * 64, "made by another vault"),
        (lambda t: t[:6] + ("A" if t[6] != "A" else "B") + t[7:], "is not known to this vault"),
    ],
)
def test_bad_tokens_are_refused(service: VaultService, mangle: object, message: str) -> None:
    token = service.create_enrollment_token(ADMIN, customer="acme", ttl=timedelta(hours=1))
    bad = mangle(token)  # type: ignore[operator]
    before = snapshot(service)
    expect_error(Unauthorized, lambda: service.enroll_device(token=bad, csr_pem=csr()), message)
    assert snapshot(service) == before
    service.enroll_device(token=token, csr_pem=csr())  # the real token still works


def test_a_bad_csr_does_not_use_up_the_token(service: VaultService) -> None:
    token = service.create_enrollment_token(ADMIN, customer="acme", ttl=timedelta(hours=1))
    good = csr()
    body = bytearray(base64.b64decode(b"".join(good.splitlines()[1:-1])))
    body[-5] ^= 0x01  # inside the signature
    text = base64.encodebytes(bytes(body)).replace(b"\n", b"")
    tampered = (
        b"-----BEGIN CERTIFICATE REQUEST-----\n" + text + b"\n-----END CERTIFICATE REQUEST-----\n"
    )
    before = snapshot(service, audit=True)
    expect_error(
        BadRequest,
        lambda: service.enroll_device(token=token, csr_pem=tampered),
        "the certificate request was refused",
    )
    expect_error(BadRequest, lambda: service.enroll_device(token=token, csr_pem=b"junk"), "CSR")
    assert snapshot(service, audit=True) == before
    service.enroll_device(token=token, csr_pem=good)


def test_tokens_are_stored_hashed(service: VaultService, vault_home: VaultHome) -> None:
    token = service.create_enrollment_token(ADMIN, customer="acme", ttl=timedelta(hours=1))
    secret_text = token.split(".")[1]
    secret = base64.urlsafe_b64decode(secret_text + "=")
    service.enroll_device(token=token, csr_pem=csr())
    service.engine.dispose()  # SQLite: checkpoint, so the file holds everything
    contents = b"".join(p.read_bytes() for p in vault_home.path.glob("vault.db*"))
    assert secret_text.encode() not in contents and secret not in contents
    assert hashlib.sha256(secret).hexdigest().encode() in contents  # what is stored instead
    rows = snapshot(service, audit=True)
    assert secret_text not in repr(rows)


def test_token_arguments(service: VaultService) -> None:
    expect_error(
        NotFound,
        lambda: service.create_enrollment_token(ADMIN, customer="x", ttl=timedelta(hours=1)),
        "no customer 'x'",
    )
    expect_error(
        BadRequest,
        lambda: service.create_enrollment_token(ADMIN, customer="acme", ttl=timedelta(days=31)),
        "from 1 second to 30 days",
    )


# --- devices -------------------------------------------------------------------------------------


def test_revoke_a_device(service: VaultService, clock: Clock) -> None:
    device = enroll(service)
    clock.advance(timedelta(minutes=1))
    view = service.revoke_device(ADMIN, device.id, reason="stolen")
    assert view.revoked and view.revoked_at == NOW + timedelta(minutes=1)
    assert view.revoked_reason == "stolen"
    again = service.revoke_device(ADMIN, device.id, reason="twice")
    assert again == view  # idempotent: the first reason stays
    assert [e["subject"] for e in audit_entries(service, "device.revoke")] == [device.id]
    expect_error(NotFound, lambda: service.revoke_device(ADMIN, "dev-x", reason="r"), "no device")


# --- licenses ------------------------------------------------------------------------------------


def test_issue_a_license_any_jose_library_verifies(
    service: VaultService, unlocked_vault: UnlockedVault
) -> None:
    view, token = issue(service, versions="1", max_loads=5, lease=timedelta(minutes=5))
    license_ = parse_license(token, unlocked_vault.home.license_keys, now=NOW)
    assert (license_.id, license_.customer, license_.model_name) == (view.id, "acme", "iris")
    assert license_.issuer == unlocked_vault.settings.vault_id
    assert license_.vault_pins == (unlocked_vault.ca.pin.removeprefix("sha256:"),)
    assert license_.vault_urls == tuple(unlocked_vault.settings.public_urls)
    keyset = KeySet.import_key_set(service.license_keys())  # type: ignore[arg-type]
    decoded = jwt.decode(token, keyset, algorithms=["EdDSA"])
    assert decoded.claims["jti"] == view.id
    assert (view.state, view.loads_used, view.max_loads, view.devices) == ("active", 0, 5, ())
    assert view.versions == VersionSpec.of([1]) and view.policy.max_loads == 5
    assert audit_entries(service, "license.issue")[0]["subject"] == view.id


def test_issue_refusals(service: VaultService) -> None:
    before = snapshot(service, audit=True)
    expect_error(NotFound, lambda: issue(service, "nobody"), "no customer 'nobody'")
    expect_error(NotFound, lambda: issue(service, model="resnet"), "no model named 'resnet'")
    expect_error(
        BadRequest, lambda: issue(service, devices=["dev-nope"]), "device 'dev-nope', which is not"
    )
    expect_error(BadRequest, lambda: issue(service, expires_at=NOW - timedelta(days=1)), "expire")
    assert snapshot(service, audit=True) == before
    other = enroll(service, "globex")
    expect_error(BadRequest, lambda: issue(service, devices=[other.id]), "another customer")


def test_revoke_show_and_list(service: VaultService, clock: Clock) -> None:
    first, _ = issue(service)
    second, _ = issue(service, "globex")
    clock.advance(timedelta(hours=1))
    revoked = service.revoke_license(ADMIN, first.id, reason="unpaid")
    assert revoked.state == "revoked" and revoked.revoked_reason == "unpaid"
    assert service.show_license(first.id) == revoked
    assert service.revoke_license(ADMIN, first.id, reason="again") == revoked
    assert {v.id for v in service.list_licenses()} == {first.id, second.id}
    assert [v.id for v in service.list_licenses(customer="globex")] == [second.id]
    expect_error(NotFound, lambda: service.show_license("lic-nope"), "no license 'lic-nope'")
    expect_error(NotFound, lambda: service.revoke_license(ADMIN, "lic-x", reason="r"), "lic-x")


def test_expired_and_exhausted_states(service: VaultService, clock: Clock) -> None:
    dated, _ = issue(service, expires_at=NOW + timedelta(days=1))
    clock.advance(timedelta(days=1))
    assert service.show_license(dated.id).state == "expired"
    assert service.show_license(dated.id).ends_at == NOW + timedelta(days=1)


# --- audit ---------------------------------------------------------------------------------------


def test_the_audit_key_is_stored_wrapped_and_survives_a_restart(
    service: VaultService, unlocked_vault: UnlockedVault, clock: Clock
) -> None:
    with service.engine.connect() as conn:
        stored = json.loads(
            conn.execute(
                select(vault_meta.c.value).where(vault_meta.c.key == AUDIT_KEY_META)
            ).scalar_one()
        )
    assert set(stored) == {"type", "key_id", "master_version", "wrapped"}
    assert base64.b64decode(stored["wrapped"])[:4] == b"MSK1"
    with VaultService(unlocked_vault, clock=clock) as again:
        assert again._core.audit.secret("nonce", "n") == service._core.audit.secret("nonce", "n")


def test_verify_audit_names_the_first_bad_entry(service: VaultService) -> None:
    issue(service)
    report = service.verify_audit()
    assert report.ok and report.entries == len(audit_entries(service))
    with service.engine.begin() as conn:
        conn.execute(update(audit_log).where(audit_log.c.seq == 3).values(actor="mallory"))
    assert service.verify_audit().first_bad == 3


def test_a_damaged_audit_key_stops_the_service(
    service: VaultService, unlocked_vault: UnlockedVault
) -> None:
    with service.engine.begin() as conn:
        conn.execute(
            update(vault_meta).where(vault_meta.c.key == AUDIT_KEY_META).values(value="{}")
        )
    expect_error(VaultError, lambda: VaultService(unlocked_vault), "the audit key in the vault")


def test_error_codes() -> None:
    assert [cls.code for cls in (VaultError, NotFound, Conflict, BadRequest, Unauthorized)] == [
        "VAULT",
        "NOT_FOUND",
        "CONFLICT",
        "BAD_REQUEST",
        "UNAUTHORIZED",
    ]
