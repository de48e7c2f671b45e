"""The vault's REST API over real HTTPS on loopback: real server (server.py), real certificates
from a fresh vault home, httpx and the client. Routes, the error table, mTLS roles, metrics."""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelseal.agent import AgentHome, request_key
from modelseal.crypto import DataKey, DecryptionError, create_ca, load_data_key, spki_sha256
from modelseal.crypto.hpke import EphemeralPrivateKey, open_data_key
from modelseal.licensing import Policy, RefusalCode, VersionSpec
from modelseal.vault.api.schemas import (
    KeyReleaseRequest,
    LicenseRequest,
    PolicyTerms,
    ReleaseGrant,
)
from modelseal.vault.client import VaultClient, VaultConnectionError, VaultRequestError
from modelseal.vault.home import VaultHome
from tests.conftest import expect_error
from tests.integration.vault._server import (
    RunningVault,
    foreign_device,
    free_port,
    make_home,
    running_vault,
    seal_to_vault,
    tls_context,
)


@dataclass(frozen=True)
class World:
    home: VaultHome
    running: RunningVault
    device: AgentHome
    data_key: DataKey
    license: str  # JWS, max 100 loads
    tmp: Path

    @property
    def url(self) -> str:
        return self.running.url

    def admin(self) -> VaultClient:
        return VaultClient.admin(self.url, self.home.path / "admin")

    def device_client(self) -> VaultClient:
        d = self.device
        return VaultClient.device(self.url, d.cert_file, d.key_file, d.ca_file)

    def http(self, who: str | None) -> httpx.Client:
        ca = self.home.path / "ca/ca.pem"
        if who == "admin":
            admin = self.home.path / "admin"
            context = tls_context(ca, admin / "client.pem", admin / "client-key.pem")
        elif who == "device":
            context = tls_context(ca, self.device.cert_file, self.device.key_file)
        else:
            context = tls_context(ca)
        return httpx.Client(base_url=self.url, verify=context, timeout=30)


def issue(world: World, **terms: Any) -> str:
    request = LicenseRequest(
        customer="acme", model="iris", versions="1", policy=PolicyTerms.of(Policy(**terms))
    )
    with world.admin() as admin:
        return admin.issue_license(request).token


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("api")
    home = make_home(tmp / "home")
    with running_vault(home) as running:
        with VaultClient.admin(running.url, home.path / "admin") as admin:
            package, data_key = seal_to_vault(tmp, admin.import_key_pem())
            manifest = (package / "manifest.json").read_bytes()
            signature = (package / "manifest.sig").read_bytes()
            admin.register_model(manifest=manifest, signature=signature)
            admin.create_customer("acme")
            token = admin.create_enrollment_token(customer="acme", ttl_seconds=600).token
        device = AgentHome.enroll(tmp / "device", vault_url=running.url, token=token)
        world = World(home, running, device, data_key, "", tmp)
        yield World(home, running, device, data_key, issue(world, max_loads=100), tmp)


# --- open routes ---------------------------------------------------------------------------------


def test_health_and_public_material(world: World) -> None:
    with world.http(None) as http:
        assert http.get("/healthz").json() == {
            "status": "ok",
            "vault_id": world.home.settings.vault_id,
        }
        ca = http.get("/v1/ca")
        assert ca.headers["content-type"] == "application/pem-certificate-chain"
        assert ca.content == (world.home.path / "ca/ca.pem").read_bytes()
        assert http.get("/v1/import-key").content == world.home.import_public_key.to_pem()
        keys = http.get("/v1/license-keys").json()["keys"]
        assert [key["kid"] for key in keys] == [world.home.settings.license_kid]
        assert keys[0]["kty"] == "OKP" and keys[0]["crv"] == "Ed25519"


EXPECTED_ROUTES = {
    ("get", "/healthz"),
    ("get", "/metrics"),
    ("get", "/v1/ca"),
    ("get", "/v1/license-keys"),
    ("get", "/v1/import-key"),
    ("post", "/v1/enroll"),
    ("post", "/v1/models"),
    ("get", "/v1/models"),
    ("post", "/v1/data-keys"),
    ("post", "/v1/customers"),
    ("get", "/v1/customers"),
    ("post", "/v1/enrollment-tokens"),
    ("get", "/v1/devices"),
    ("post", "/v1/devices/{device_id}/revoke"),
    ("post", "/v1/licenses"),
    ("get", "/v1/licenses"),
    ("get", "/v1/licenses/{license_id}"),
    ("post", "/v1/licenses/{license_id}/revoke"),
    ("get", "/v1/audit/verify"),
    ("post", "/v1/challenge"),
    ("post", "/v1/keys/release"),
    ("post", "/v1/leases/{lease_id}/renew"),
}


def test_openapi_lists_every_route_with_described_fields(world: World) -> None:
    with world.http(None) as http:
        schema = http.get("/openapi.json").json()
    routes = {(method, path) for path, item in schema["paths"].items() for method in item}
    assert routes == EXPECTED_ROUTES
    release = schema["components"]["schemas"]["KeyReleaseRequest"]["properties"]
    assert release["public_key"]["format"] == "base64url"
    assert all(field.get("description") for field in release.values())
    error = schema["paths"]["/v1/keys/release"]["post"]["responses"]["429"]
    assert error["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorBody")
    # Our 422 body, not FastAPI's default HTTPValidationError.
    assert "HTTPValidationError" not in schema["components"]["schemas"]


def test_metrics_count_requests_and_releases(world: World) -> None:
    with world.device_client() as client:
        request_key(
            client,
            device_id=world.device.device_id,
            license_token=world.license,
            model_name="iris",
            model_version=1,
        )
        with pytest.raises(VaultRequestError):
            request_key(
                client,
                device_id=world.device.device_id,
                license_token=world.license,
                model_name="iris",
                model_version=2,  # not licensed
            )
    with world.http(None) as http:
        http.get("/healthz")
        http.get("/no/such/path")
        text = http.get("/metrics").text
    assert re.search(
        r'modelseal_vault_http_requests_total\{method="GET",route="/healthz",status="200"\} '
        r"[1-9]",
        text,
    )
    assert 'route="unmatched",status="404"' in text
    assert re.search(r"modelseal_vault_key_releases_granted_total [1-9]", text)
    assert 'modelseal_vault_key_releases_refused_total{code="MODEL_NOT_LICENSED"} 1.0' in text
    assert "modelseal_vault_http_request_duration_seconds_bucket" in text


# --- key release ---------------------------------------------------------------------------------


def test_release_returns_the_packages_key_sealed_to_the_device(world: World) -> None:
    with world.device_client() as client:
        released = request_key(
            client,
            device_id=world.device.device_id,
            license_token=world.license,
            model_name="iris",
            model_version=None,  # the license covers version 1 only
        )
    assert released.key == world.data_key  # the very key the package was sealed with
    assert released.key.key_id == world.data_key.key_id
    assert "key=" not in repr(released)  # the key never shows in a repr


def _release_body(world: World, nonce: str, private: EphemeralPrivateKey) -> dict[str, Any]:
    request = KeyReleaseRequest(
        license=world.license,
        model_name="iris",
        model_version=1,
        nonce=nonce,
        public_key=private.public_bytes(),
    )
    return request.model_dump(mode="json")


def test_a_replayed_nonce_is_refused(world: World) -> None:
    private = EphemeralPrivateKey.generate()
    with world.http("device") as http:
        nonce = http.post("/v1/challenge").json()["nonce"]
        first = http.post("/v1/keys/release", json=_release_body(world, nonce, private))
        assert first.status_code == 200, first.text
        replay = http.post("/v1/keys/release", json=_release_body(world, nonce, private))
    assert replay.status_code == 401
    assert replay.json()["code"] == "NONCE_INVALID"
    assert replay.json()["message"].endswith(RefusalCode.NONCE_INVALID.action + ".")


def test_a_nonce_from_nowhere_is_refused(world: World) -> None:
    private = EphemeralPrivateKey.generate()
    with world.http("device") as http:
        made_up = http.post("/v1/keys/release", json=_release_body(world, "A" * 43, private))
    assert (made_up.status_code, made_up.json()["code"]) == (401, "NONCE_INVALID")


def test_rate_limited_says_when_to_retry(world: World) -> None:
    token = issue(world, loads_per=(timedelta(days=1), 1))
    private = EphemeralPrivateKey.generate()
    with world.http("device") as http:
        for expected in (200, 429):
            nonce = http.post("/v1/challenge").json()["nonce"]
            body = _release_body(world, nonce, private) | {"license": token}
            answer = http.post("/v1/keys/release", json=body)
            assert answer.status_code == expected, answer.text
    error = answer.json()
    assert error["code"] == "RATE_LIMITED"
    assert 0 < error["retry_after"] <= 86400
    assert answer.headers["retry-after"] == str(error["retry_after"])


def test_renew_and_an_unknown_lease(world: World) -> None:
    with world.device_client() as client:
        released = request_key(
            client,
            device_id=world.device.device_id,
            license_token=world.license,
            model_name="iris",
            model_version=1,
        )
        renewed = client.renew(released.lease_id, inferences=3)
        assert renewed.lease_id == released.lease_id
        assert renewed.expires_at >= released.expires_at
        error = expect_error(
            VaultRequestError, lambda: client.renew("lease-nope", inferences=0), "LEASE_UNKNOWN"
        )
    assert error.status == 404


def test_a_key_sealed_for_another_release_does_not_open(world: World) -> None:
    """The sealed key is bound to its release: the info of another version does not open it."""
    private = EphemeralPrivateKey.generate()
    with world.http("device") as http:
        nonce = http.post("/v1/challenge").json()["nonce"]
        answer = http.post("/v1/keys/release", json=_release_body(world, nonce, private))
    grant = ReleaseGrant.model_validate_json(answer.content)
    assert open_data_key(grant.sealed_key, private, info=grant.info, key_id=grant.key_id) == (
        world.data_key
    )
    wrong = grant.info.replace(b'"version":1', b'"version":2')
    assert wrong != grant.info
    with pytest.raises(DecryptionError):
        open_data_key(grant.sealed_key, private, info=wrong, key_id=grant.key_id)


def test_seal_with_a_data_key_from_the_vault(world: World) -> None:
    """POST /v1/data-keys, seal with that key, register with the wrapped form, release it."""
    model_id = str(uuid.uuid4())
    with world.admin() as admin:
        grant = admin.generate_data_key(model_id=model_id, version=2)
        key = load_data_key(grant.key_file)
        assert (grant.model_id, grant.version, grant.key_id) == (model_id, 2, key.key_id)
        package, _ = seal_to_vault(world.tmp, None, version=2, data_key=key, model_id=model_id)
        manifest = (package / "manifest.json").read_bytes()
        signature = (package / "manifest.sig").read_bytes()
        registered = admin.register_model(
            manifest=manifest, signature=signature, wrapped=grant.wrapped
        )
        assert (registered.model_id, registered.key_id) == (model_id, key.key_id)
        versions = {(m.name, m.version) for m in admin.list_models()}
        assert {("iris", 1), ("iris", 2)} <= versions
        token = admin.issue_license(LicenseRequest(customer="acme", model="iris", versions="2"))
    with world.device_client() as client:
        released = request_key(
            client,
            device_id=world.device.device_id,
            license_token=token.token,
            model_name="iris",
            model_version=2,
        )
    assert released.key == key


# --- authentication and roles --------------------------------------------------------------------


DEVICE_CALLS = [("post", "/v1/challenge"), ("post", "/v1/leases/x/renew")]
ADMIN_CALLS = [("get", "/v1/customers"), ("get", "/v1/licenses"), ("get", "/v1/audit/verify")]


@pytest.mark.parametrize(("method", "path"), DEVICE_CALLS + ADMIN_CALLS)
def test_no_client_certificate_is_401(world: World, method: str, path: str) -> None:
    with world.http(None) as http:
        answer = http.request(method, path, json={} if method == "post" else None)
    assert answer.status_code == 401
    assert answer.json()["code"] == "CLIENT_CERT_REQUIRED"


@pytest.mark.parametrize(("method", "path"), [*ADMIN_CALLS, ("post", "/v1/customers")])
def test_a_device_certificate_on_an_admin_route_is_403(
    world: World, method: str, path: str
) -> None:
    with world.http("device") as http:
        answer = http.request(method, path, json={"name": "x"} if method == "post" else None)
    assert answer.status_code == 403
    assert answer.json()["code"] == "WRONG_ROLE"
    assert "needs an admin certificate" in answer.json()["message"]


def test_the_admin_certificate_on_a_device_route_is_403(world: World) -> None:
    with world.http("admin") as http:
        answer = http.post("/v1/challenge")
    assert (answer.status_code, answer.json()["code"]) == (403, "WRONG_ROLE")


def test_a_certificate_from_another_ca_is_refused_in_the_handshake(world: World) -> None:
    cert, key = foreign_device(world.tmp / "foreign")
    ca = world.home.path / "ca/ca.pem"
    with VaultClient.device(world.url, cert, key, ca) as client:
        error = expect_error(
            VaultConnectionError,
            client.challenge,
            f"the vault at {world.url} refused this client certificate ({cert})",
        )
    assert error.hint and "credential this vault issued" in error.hint
    with VaultClient.device(world.url, cert, key, ca) as client:  # nothing reached the app
        expect_error(VaultConnectionError, client.health, "refused this client certificate")


# --- the error table -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b'{"name": "x"', "the body is not valid JSON"),
        (b'{"name": 5}', "name: Input should be a valid string"),
        (b'{"name": "x", "extra": 1}', "extra: Extra inputs are not permitted"),
        (b"[]", "Input should be a valid dictionary"),
    ],
)
def test_a_malformed_body_is_422_bad_request(world: World, body: bytes, fragment: str) -> None:
    with world.http("admin") as http:
        answer = http.post(
            "/v1/customers", content=body, headers={"content-type": "application/json"}
        )
    assert answer.status_code == 422
    assert answer.json()["code"] == "BAD_REQUEST"
    assert fragment in answer.json()["message"], answer.json()


def test_bad_base64url_is_422(world: World) -> None:
    with world.http("device") as http:
        nonce = http.post("/v1/challenge").json()["nonce"]
        body = _release_body(world, nonce, EphemeralPrivateKey.generate())
        answer = http.post("/v1/keys/release", json=body | {"public_key": "not base64!"})
    assert answer.status_code == 422
    assert "public_key" in answer.json()["message"]


def test_a_bad_policy_is_400_with_the_sentence(world: World) -> None:
    body = {"customer": "acme", "model": "iris", "policy": {"lease": 5}}
    with world.http("admin") as http:
        answer = http.post("/v1/licenses", json=body)
    assert answer.status_code == 400
    assert answer.json()["code"] == "BAD_REQUEST"
    assert "lease is 5s; it must be from 30s to 1d" in answer.json()["message"]


def test_service_errors_keep_their_code_and_hint(world: World) -> None:
    with world.admin() as admin:
        missing = expect_error(
            VaultRequestError, lambda: admin.show_license("lic-nope"), "NOT_FOUND: "
        )
        assert missing.status == 404
        conflict = expect_error(
            VaultRequestError, lambda: admin.create_customer("acme"), "CONFLICT: "
        )
        assert conflict.status == 409
        unknown_customer = expect_error(
            VaultRequestError,
            lambda: admin.create_enrollment_token(customer="nobody", ttl_seconds=60),
            "NOT_FOUND: there is no customer 'nobody'",
        )
    assert unknown_customer.hint == "list them with `modelseal customer list`, or create it first"


def test_a_used_enrollment_token_is_refused(world: World) -> None:
    with world.admin() as admin:
        token = admin.create_enrollment_token(customer="acme", ttl_seconds=60).token
    AgentHome.enroll(world.tmp / "second", vault_url=world.url, token=token)
    expect_error(
        VaultRequestError,
        lambda: AgentHome.enroll(world.tmp / "third", vault_url=world.url, token=token),
        "UNAUTHORIZED: ",
    )
    assert not (world.tmp / "third").exists()
    assert not [p for p in world.tmp.iterdir() if p.name.startswith(".third")]


def test_an_unexpected_error_is_500_without_details(
    world: World, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken() -> None:
        raise RuntimeError("connection to postgresql://vault:hunter2@db failed")

    monkeypatch.setattr(world.running.server.service, "list_customers", broken)
    with caplog.at_level(logging.ERROR, logger="modelseal.vault.api"), world.http("admin") as http:
        answer = http.get("/v1/customers")
    assert answer.status_code == 500
    body = answer.json()
    assert set(body) == {"code", "message", "request_id"}
    assert (body["code"], body["message"]) == ("INTERNAL", "internal error")
    assert "hunter2" not in answer.text
    assert answer.headers["x-request-id"] == body["request_id"]
    (record,) = [r for r in caplog.records if body["request_id"] in r.getMessage()]
    assert record.exc_info is not None and "hunter2" in str(record.exc_info[1])


def test_unknown_route_and_method(world: World) -> None:
    with world.http(None) as http:
        missing = http.get("/v1/nothing")
        wrong_method = http.delete("/v1/ca")
    assert (missing.status_code, missing.json()["code"]) == (404, "NOT_FOUND")
    assert (wrong_method.status_code, wrong_method.json()["code"]) == (405, "METHOD_NOT_ALLOWED")


# --- the client's own sentences ------------------------------------------------------------------


def test_nothing_listening(world: World) -> None:
    url = f"https://127.0.0.1:{free_port()}"
    with VaultClient.admin(url, world.home.path / "admin") as admin:
        expect_error(VaultConnectionError, admin.list_customers, f"no vault is listening at {url}")


def test_a_server_the_client_does_not_trust(world: World) -> None:
    other = create_ca("CN=not the vault", days=1, now=datetime.now(UTC))
    (world.tmp / "not-the-vault.pem").write_bytes(other.certificate.pem())
    with VaultClient(world.url, tls_context(world.tmp / "not-the-vault.pem")) as client:
        expect_error(VaultConnectionError, client.health, "is not the vault this client trusts")


def test_bootstrap_checks_the_pin(world: World) -> None:
    expect_error(
        VaultConnectionError,
        lambda: VaultClient.bootstrap(world.url, "0" * 64),
        "does not match the pin in the enrolment token",
    )
    client, ca_pem = VaultClient.bootstrap(world.url, spki_sha256(world.home.ca_certificate))
    with client:  # from here on the connection is verified against the pinned CA
        assert client.health().vault_id == world.home.settings.vault_id
    assert ca_pem == world.home.ca_certificate.pem()


def test_versions_spec_reaches_the_license(world: World) -> None:
    request = LicenseRequest(customer="acme", model="iris", versions="1-3,5")
    with world.admin() as admin:
        issued = admin.issue_license(request)
        shown = admin.show_license(issued.license.id)
    assert VersionSpec.parse(shown.versions) == VersionSpec.parse("1-3,5")
    assert shown.policy == issued.license.policy
    assert shown.state == "active" and shown.loads_used == 0
