"""The license document: issue, verify (also with joserfc), refuse, and check its time window."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from joserfc import jws, jwt
from joserfc.errors import ExpiredTokenError, InvalidTokenError
from joserfc.jwk import KeySet, OctKey
from joserfc.jwt import JWTClaimsRegistry

from modelseal.crypto import SigningKey, canonical_json, jwk_thumbprint, jwks, sign_jws
from modelseal.errors import UsageError
from modelseal.licensing import (
    LICENSE_TYP,
    License,
    Policy,
    Refusal,
    RefusalCode,
    VersionSpec,
    check_model,
    check_time_window,
    issue_license,
    parse_license,
)
from tests.conftest import expect_error

# See tests/unit/crypto/test_jose.py: joserfc warns that RFC 9864 deprecates "EdDSA".
pytestmark = pytest.mark.filterwarnings(
    "ignore:EdDSA is deprecated via RFC 9864:joserfc.errors.SecurityWarning"
)

KEY = SigningKey.generate()
KID = jwk_thumbprint(KEY.verifying_key())
KEYS = {KID: KEY.verifying_key()}
NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
EXPIRES = datetime(2026, 4, 1, tzinfo=UTC)
PIN = "0f" * 32
NEXT_PIN = "1e" * 32
URL = "https://vault.example.com:8443"
INVALID_ACTION = "; use the license file exactly as the model controller issued it."


def _issue(policy: Policy | None = None, **overrides: Any) -> tuple[License, str]:
    arguments: dict[str, Any] = {
        "key": KEY,
        "kid": KID,
        "issuer": "vault-7",
        "customer": "Acme Robotics",
        "model_name": "iris",
        "versions": VersionSpec.parse("1,2,5-7"),
        "policy": policy or Policy(expires_at=EXPIRES, max_loads=20),
        "vault_urls": [URL],
        "vault_pins": [PIN, NEXT_PIN],
        "now": NOW,
    }
    arguments.update(overrides)
    return issue_license(**arguments)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _refusal(call: object, code: RefusalCode) -> Refusal:
    assert callable(call)
    refusal = expect_error(Refusal, call)
    assert refusal.code is code
    return refusal


# --- issue and parse ------------------------------------------------------------------------------


def test_issue_and_parse_round_trip() -> None:
    license_, token = _issue()
    assert license_.id.startswith("lic-")
    assert license_.issued_at == license_.not_before == NOW
    assert license_.expires_at == EXPIRES
    assert parse_license(token, KEYS, now=NOW) == license_
    assert parse_license(token + "\n", KEYS, now=NOW) == license_  # as read from a file


def test_the_header_and_claims_are_exactly_the_documented_ones() -> None:
    license_, token = _issue()
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    assert header == {"alg": "EdDSA", "kid": KID, "typ": "modelseal-license+jwt"}
    assert LICENSE_TYP == "modelseal-license+jwt"
    claims = license_.to_claims()
    assert claims == {
        "iss": "vault-7",
        "jti": license_.id,
        "sub": "Acme Robotics",
        "iat": int(NOW.timestamp()),
        "nbf": int(NOW.timestamp()),
        "exp": int(EXPIRES.timestamp()),
        "model": {"name": "iris", "versions": "1,2,5-7"},
        "policy": Policy(expires_at=EXPIRES, max_loads=20).to_claims(),
        "vault": {"urls": [URL], "pins": [PIN, NEXT_PIN]},
    }
    assert token.split(".")[1] == _b64(canonical_json(claims))


def test_a_license_without_expiry_has_no_exp_claim() -> None:
    license_, token = _issue(Policy(duration_from_first_use=timedelta(days=30)))
    assert "exp" not in license_.to_claims()
    assert parse_license(token, KEYS, now=NOW + timedelta(days=3650)) == license_


def test_explicit_id_and_not_before() -> None:
    license_id = "lic-12345678-1234-4234-8234-123456789abc"
    later = NOW + timedelta(days=1)
    license_, token = _issue(license_id=license_id, not_before=later)
    assert license_.id == license_id and license_.not_before == later
    assert parse_license(token, KEYS, now=later) == license_


def test_times_are_utc_whole_seconds() -> None:
    odd = datetime(2026, 3, 1, 13, 0, 0, 987_654, tzinfo=UTC).astimezone()
    license_, token = _issue(now=odd)
    assert license_.issued_at == datetime(2026, 3, 1, 13, tzinfo=UTC)
    assert license_.issued_at.tzinfo is UTC
    assert parse_license(token, KEYS, now=odd) == license_


def test_describe() -> None:
    license_, _ = _issue()
    assert license_.describe() == [
        f"license {license_.id} for Acme Robotics",
        "model iris versions 1,2,5-7",
        "issued 2026-03-01T12:00:00Z by vault-7, valid from 2026-03-01T12:00:00Z",
        "expires at 2026-04-01T00:00:00Z",
        "at most 20 loads in total",
        "lease 10m, heartbeat 200s, offline grace 0s",
        f"vault {URL}",
    ]


# --- an independent verifier: joserfc with the JWKS alone ------------------------------------------


def test_joserfc_verifies_the_license_with_the_jwks_alone() -> None:
    license_, token = _issue()
    keyset = KeySet.import_key_set(json.loads(json.dumps(jwks(KEYS))))
    decoded = jwt.decode(token, keyset, algorithms=["EdDSA"])
    assert decoded.header == {"alg": "EdDSA", "kid": KID, "typ": LICENSE_TYP}
    assert decoded.claims == license_.to_claims()
    JWTClaimsRegistry(now=int(NOW.timestamp()), leeway=0).validate(decoded.claims)


@pytest.mark.parametrize(
    ("offset", "ours", "theirs"),
    [
        (timedelta(seconds=-1), RefusalCode.NOT_YET_VALID, InvalidTokenError),
        (timedelta(0), None, None),
        (EXPIRES - NOW - timedelta(seconds=1), None, None),
        (EXPIRES - NOW, RefusalCode.EXPIRED, ExpiredTokenError),
    ],
)
def test_joserfc_and_modelseal_agree_on_the_time_window(
    offset: timedelta, ours: RefusalCode | None, theirs: type[Exception] | None
) -> None:
    license_, _ = _issue()
    at = NOW + offset
    registry = JWTClaimsRegistry(now=int(at.timestamp()), leeway=0)
    if ours is None:
        check_time_window(license_, at, None)
        registry.validate(license_.to_claims())
    else:
        assert theirs is not None
        _refusal(lambda: check_time_window(license_, at, None), ours)
        with pytest.raises(theirs):
            registry.validate(license_.to_claims())


# --- refusals: the token --------------------------------------------------------------------------


def test_a_license_signed_by_another_vault_is_refused() -> None:
    _, token = _issue(key=SigningKey.generate())
    refusal = _refusal(lambda: parse_license(token, KEYS, now=NOW), RefusalCode.LICENSE_INVALID)
    assert refusal.message == (
        "The license signature does not verify: the license was altered or was not issued by "
        "this vault" + INVALID_ACTION
    )
    assert refusal.http_status == 401


def test_a_tampered_license_is_refused() -> None:
    license_, token = _issue()
    header, _, signature = token.split(".")
    claims = license_.to_claims()
    claims["policy"]["max_loads"] = 1_000_000
    forged = f"{header}.{_b64(canonical_json(claims))}.{signature}"
    refusal = _refusal(lambda: parse_license(forged, KEYS, now=NOW), RefusalCode.LICENSE_INVALID)
    assert "signature does not verify" in refusal.message


@pytest.mark.parametrize(
    ("make", "detail"),
    [
        (
            lambda: _issue(kid="retired-key")[1],
            "the token is signed by an unknown key (kid 'retired-key'); refresh the issuer's key "
            "set or check where the token came from",
        ),
        (
            lambda: sign_jws(_issue()[0].to_claims(), KEY, kid=KID, typ="modelseal-lease+jwt"),
            "the token type is 'modelseal-lease+jwt', expected 'modelseal-license+jwt'",
        ),
        (
            lambda: jws.serialize_compact(
                {"alg": "HS256", "kid": KID, "typ": LICENSE_TYP},
                canonical_json(_issue()[0].to_claims()),
                OctKey.import_key(base64.urlsafe_b64decode(jwks(KEYS)["keys"][0]["x"] + "=")),
                algorithms=["HS256"],
            ),
            "the token's algorithm is 'HS256'; only 'EdDSA' is accepted",
        ),
        (
            lambda: "not a license",
            "the token is not a compact JWS: it has 1 part(s) separated by '.', not 3",
        ),
    ],
)
def test_unreadable_licenses_are_refused(make: Any, detail: str) -> None:
    token = make()
    refusal = _refusal(lambda: parse_license(token, KEYS, now=NOW), RefusalCode.LICENSE_INVALID)
    assert refusal.message == f"The license cannot be read: {detail}{INVALID_ACTION}"


# --- refusals: validly signed, but not a license --------------------------------------------------


def _claims(**changes: Any) -> dict[str, Any]:
    claims = _issue()[0].to_claims()
    for name, value in changes.items():
        if value is None:
            del claims[name]
        else:
            claims[name] = value
    return claims


@pytest.mark.parametrize(
    ("claims", "detail"),
    [
        (_claims(aud="someone"), "unknown claim(s) 'aud'"),
        (_claims(jti=None), "jti must be a string, not None"),
        (_claims(jti="lic-1"), "license id 'lic-1' is not 'lic-' and a lowercase UUID4"),
        (_claims(sub=""), "customer (sub) must be 1 to 200 printable characters without "
         "surrounding spaces, not ''"),
        (_claims(iss=7), "iss must be a string, not 7"),
        (_claims(iat=None), "iat is missing"),
        (_claims(iat="2026-03-01"), "iat must be whole seconds since 1970 (before year 10000), "
         "not '2026-03-01'"),
        (_claims(nbf=True), "nbf must be whole seconds since 1970 (before year 10000), not True"),
        (_claims(nbf=1.5), "nbf must be whole seconds since 1970 (before year 10000), not 1.5"),
        (_claims(exp=1), "exp does not match the policy's expires_at"),
        (_claims(exp=None), "exp is missing although the policy has an expiry"),
        (_claims(model={"name": "iris"}), "model must be an object with exactly name, versions"),
        (_claims(model={"name": "iris", "versions": 1}), "model.versions must be a string, not 1"),
        (_claims(model={"name": "iris", "versions": "0"}), "'0' is not a version spec: in '0' "
         "versions start at 1 and a range goes from low to high"),
        (_claims(model={"name": "../iris", "versions": "1"}), "model name '../iris' is not "
         "allowed: use letters, digits, '.', '_' or '-' (max 128), starting with a letter or digit"),
        (_claims(vault={"urls": [URL]}), "vault must be an object with exactly pins, urls"),
        (_claims(vault={"urls": ["http://vault.example.com"], "pins": [PIN]}), "vault URL "
         "'http://vault.example.com' is not an https:// URL with a host and no user, query or "
         "fragment"),
        (_claims(vault={"urls": [], "pins": [PIN]}), "a license names 1 to 8 vault URLs, not 0"),
        (_claims(vault={"urls": [URL], "pins": []}), "a license names 1 to 4 vault certificate "
         "pins (current and next), not 0"),
        (_claims(vault={"urls": [URL], "pins": [PIN.upper()]}), f"vault pin {PIN.upper()!r} is "
         "not a SHA-256 as 64 lowercase hex characters"),
        (_claims(policy=None), "policy: must be an object"),
        (_claims(policy={**Policy().to_claims(), "watermark": True}), "policy: unknown field(s) "
         "'watermark'; this modelseal cannot enforce them (upgrade it)"),
    ],
)  # fmt: skip
def test_malformed_claims_are_refused_by_name(claims: dict[str, Any], detail: str) -> None:
    token = sign_jws(claims, KEY, kid=KID, typ=LICENSE_TYP)
    refusal = _refusal(lambda: parse_license(token, KEYS, now=NOW), RefusalCode.LICENSE_INVALID)
    assert refusal.message == f"The license is malformed: {detail}{INVALID_ACTION}"


def test_an_exp_claim_without_a_policy_expiry_is_refused() -> None:
    claims = _issue(Policy())[0].to_claims()
    claims["exp"] = int(EXPIRES.timestamp())
    token = sign_jws(claims, KEY, kid=KID, typ=LICENSE_TYP)
    refusal = _refusal(lambda: parse_license(token, KEYS, now=NOW), RefusalCode.LICENSE_INVALID)
    assert "exp does not match the policy's expires_at" in refusal.message


# --- the time window ------------------------------------------------------------------------------


def test_expired() -> None:
    license_, token = _issue()
    later = EXPIRES + timedelta(days=1, hours=3)
    refusal = _refusal(lambda: parse_license(token, KEYS, now=later), RefusalCode.EXPIRED)
    assert refusal.message == (
        "The license expired at 2026-04-01T00:00:00Z, and it is now 2026-04-02T03:00:00Z; "
        "ask the model controller for a renewed license."
    )
    assert refusal.http_status == 403
    assert parse_license(token, KEYS, now=None) == license_  # reading it for display still works


def test_not_yet_valid() -> None:
    later = NOW + timedelta(days=2)
    license_, token = _issue(not_before=later)
    refusal = _refusal(lambda: parse_license(token, KEYS, now=NOW), RefusalCode.NOT_YET_VALID)
    assert refusal.message == (
        "The license is valid from 2026-03-03T12:00:00Z, and it is now 2026-03-01T12:00:00Z; "
        "wait until its start date, or check that this machine's clock is right."
    )
    check_time_window(license_, later, None)


def test_skew_tolerates_small_clock_differences() -> None:
    license_, _ = _issue()
    minute = timedelta(minutes=1)
    check_time_window(license_, NOW - minute, None, skew=minute)
    check_time_window(license_, EXPIRES + minute - timedelta(seconds=1), None, skew=minute)
    _refusal(
        lambda: check_time_window(license_, EXPIRES + minute, None, skew=minute),
        RefusalCode.EXPIRED,
    )


def test_duration_from_first_use() -> None:
    license_, _ = _issue(Policy(duration_from_first_use=timedelta(days=30)))
    first_use = NOW + timedelta(days=10)
    end = first_use + timedelta(days=30)
    assert license_.end(None) is None
    assert license_.end(first_use) == end
    check_time_window(license_, NOW + timedelta(days=5000), None)  # never used: the clock waits
    check_time_window(license_, end - timedelta(seconds=1), first_use)
    refusal = _refusal(lambda: check_time_window(license_, end, first_use), RefusalCode.EXPIRED)
    assert refusal.message == (
        "The license expired at 2026-04-10T12:00:00Z, 30d after its first use at "
        "2026-03-11T12:00:00Z, and it is now 2026-04-10T12:00:00Z; ask the model controller "
        "for a renewed license."
    )


def test_a_fixed_expiry_ignores_first_use() -> None:
    license_, _ = _issue()
    assert license_.end(NOW) == EXPIRES
    _refusal(lambda: check_time_window(license_, EXPIRES, NOW), RefusalCode.EXPIRED)


def test_now_must_be_aware() -> None:
    license_, _ = _issue()
    naive = datetime(2026, 3, 2)  # naive on purpose
    assert str(expect_error(UsageError, lambda: check_time_window(license_, naive, None))) == (
        f"now must be a time with a time zone, not {naive!r}"
    )


# --- models ---------------------------------------------------------------------------------------


def test_covers_and_check_model() -> None:
    license_, _ = _issue()
    assert license_.covers("iris", 1) and license_.covers("iris", 6)
    assert not license_.covers("iris", 3)
    assert not license_.covers("Iris", 1)
    check_model(license_, "iris", 7)
    refusal = _refusal(lambda: check_model(license_, "iris", 3), RefusalCode.MODEL_NOT_LICENSED)
    assert refusal.message == (
        "The license covers model 'iris' versions 1,2,5-7, not 'iris' version 3; load a model "
        "version the license names, or ask the model controller to extend it."
    )
    _refusal(lambda: check_model(license_, "resnet", 1), RefusalCode.MODEL_NOT_LICENSED)


# --- issuing refuses what it could not sign honestly ----------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"policy": Policy(expires_at=NOW)},
            "the license would expire (2026-03-01T12:00:00Z) before it becomes valid "
            "(2026-03-01T12:00:00Z)",
        ),
        ({"license_id": "lic-42"}, "license id 'lic-42' is not 'lic-' and a lowercase UUID4"),
        ({"customer": " Acme"}, "customer (sub) must be 1 to 200 printable characters without "
         "surrounding spaces, not ' Acme'"),
        ({"issuer": "a\tb"}, "issuer (iss) must be 1 to 200 printable characters without "
         "surrounding spaces, not 'a\\tb'"),
        ({"model_name": ""}, "model name '' is not allowed: use letters, digits, '.', '_' or "
         "'-' (max 128), starting with a letter or digit"),
        ({"vault_urls": [URL, URL]}, "the vault URLs are listed more than once"),
        ({"vault_urls": URL}, f"vault_urls must be a list of strings, not the single string {URL!r}"),
        ({"vault_pins": PIN}, f"vault_pins must be a list of strings, not the single string {PIN!r}"),
        ({"vault_urls": [URL] * 9}, "a license names 1 to 8 vault URLs, not 9"),
        ({"vault_pins": [PIN, PIN]}, "the vault pins are listed more than once"),
        ({"vault_pins": [PIN, NEXT_PIN, "2d" * 32, "3c" * 32, "4b" * 32]},
         "a license names 1 to 4 vault certificate pins (current and next), not 5"),
        ({"now": datetime(2026, 3, 1)}, "now must be a time with a time zone, not "  # naive
         "datetime.datetime(2026, 3, 1, 0, 0)"),
    ],
)  # fmt: skip
def test_issue_refuses_bad_licenses(overrides: dict[str, Any], message: str) -> None:
    assert str(expect_error(UsageError, lambda: _issue(**overrides))) == message


@pytest.mark.parametrize(
    "url",
    [
        "http://vault.example.com",
        "https://",
        "https://user:pw@vault.example.com",
        "https://vault.example.com/?x=1",
        "https://vault.example.com/#frag",
        "https://vault.example.com:99999",
        "https://vault.example.com/a b",
        "ftp://vault.example.com",
        "vault.example.com",
    ],
)
def test_vault_urls_must_be_plain_https(url: str) -> None:
    expect_error(UsageError, lambda: _issue(vault_urls=[url]), f"vault URL {url!r} is not")


def test_vault_urls_may_have_ports_paths_and_ip_literals() -> None:
    urls = ["https://127.0.0.1:8443", "https://[::1]:8443/vault", "https://vault.example.com"]
    _, token = _issue(vault_urls=urls)
    assert parse_license(token, KEYS, now=NOW).vault_urls == tuple(urls)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
VALID_CLAIMS = _issue(Policy(max_loads=3, devices=("d1",)))[0].to_claims()


@settings(max_examples=150)
@given(
    st.sampled_from(
        ["iss", "jti", "sub", "iat", "nbf", "exp", "model", "policy", "vault", "extra",
         "model.name", "model.versions", "vault.urls", "vault.pins", "policy.lease",
         "policy.devices", "policy.loads_per", "policy.max_loads"]
    ),
    JSON,
)  # fmt: skip
def test_any_signed_mutation_is_a_license_or_license_invalid(path: str, value: Any) -> None:
    claims = json.loads(json.dumps(VALID_CLAIMS))
    *parents, field = path.split(".")
    target = claims
    for parent in parents:
        target = target[parent]
    target[field] = value
    token = sign_jws(claims, KEY, kid=KID, typ=LICENSE_TYP)
    try:
        license_ = parse_license(token, KEYS, now=None)
    except Refusal as refusal:
        assert refusal.code is RefusalCode.LICENSE_INVALID
        assert refusal.message.startswith("The license is malformed: ")
    else:
        assert License.from_claims(license_.to_claims()) == license_
