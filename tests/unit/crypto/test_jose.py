"""Compact JWS with EdDSA: round trips, interop with joserfc both ways, and every forgery refused.

joserfc is an independent JOSE implementation (its own JWS, JWK and base64url code); it verifies
our tokens from the JWKS dict alone and makes the hostile tokens (alg confusion with the public key
as an HMAC secret, another algorithm under our kid) that :func:`verify_jws` must refuse.
"""

from __future__ import annotations

import base64
import hmac
import json
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from joserfc import jws, jwt
from joserfc.errors import BadSignatureError
from joserfc.jwk import ECKey, KeySet, OctKey, OKPKey

from modelseal.crypto import (
    FormatError,
    KeyFormatError,
    SignatureError,
    SigningKey,
    VerifyingKey,
    canonical_json,
    jwk_of,
    jwk_thumbprint,
    jwks,
    keys_from_jwks,
    sign_jws,
    verify_jws,
)
from tests.conftest import expect_error

# RFC 9864 deprecates "EdDSA" in favour of the fully specified "Ed25519"; PyJWT 2.15 and many
# deployed JOSE libraries know only "EdDSA", so modelseal keeps it and joserfc warns about it.
pytestmark = pytest.mark.filterwarnings(
    "ignore:EdDSA is deprecated via RFC 9864:joserfc.errors.SecurityWarning"
)

TYP = "modelseal-license+jwt"
KID = "key-1"
CLAIMS: dict[str, Any] = {
    "iss": "vault-1",
    "jti": "lic-1",
    "exp": 1,
    "nested": {"b": [1, 2], "a": "é"},
}
KEY = SigningKey.generate()
OTHER = SigningKey.generate()
KEYS = {KID: KEY.verifying_key()}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _forge(header: bytes | dict[str, Any], payload: bytes, key: SigningKey = KEY) -> str:
    """A token with exactly these header and payload bytes and a valid Ed25519 signature."""
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    signing_input = f"{_b64(raw)}.{_b64(payload)}"
    return f"{signing_input}.{_b64(key.sign(signing_input.encode()))}"


def _header(**fields: Any) -> dict[str, Any]:
    return {"alg": "EdDSA", "kid": KID, "typ": TYP, **fields}


def _raw_public(key: VerifyingKey) -> bytes:
    public = serialization.load_der_public_key(key.public_bytes_der())
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _public_pem(key: VerifyingKey) -> bytes:
    public = serialization.load_der_public_key(key.public_bytes_der())
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _joserfc_keyset() -> KeySet:
    return KeySet.import_key_set(jwks(KEYS))  # type: ignore[arg-type]


# --- round trips ----------------------------------------------------------------------------------


def test_sign_and_verify_round_trip() -> None:
    token = sign_jws(CLAIMS, KEY, kid=KID, typ=TYP)
    assert verify_jws(token, KEYS, typ=TYP) == CLAIMS


def test_token_is_deterministic_with_canonical_payload_and_minimal_header() -> None:
    token = sign_jws(CLAIMS, KEY, kid=KID, typ=TYP)
    assert token == sign_jws(dict(reversed(CLAIMS.items())), KEY, kid=KID, typ=TYP)
    header, payload, signature = token.split(".")
    assert json.loads(_unb64(header)) == {"alg": "EdDSA", "kid": KID, "typ": TYP}
    assert _unb64(payload) == canonical_json(CLAIMS)
    assert len(_unb64(signature)) == 64


def test_time_claims_are_returned_not_checked() -> None:
    """exp = 1 (1970) and nbf far in the future: the JWS layer leaves time to the caller."""
    claims = {"exp": 1, "nbf": 4_000_000_000, "iat": 4_000_000_000}
    assert verify_jws(sign_jws(claims, KEY, kid=KID, typ=TYP), KEYS, typ=TYP) == claims


def test_the_right_key_is_chosen_by_kid() -> None:
    keys = {"old": OTHER.verifying_key(), KID: KEY.verifying_key()}
    assert verify_jws(sign_jws(CLAIMS, KEY, kid=KID, typ=TYP), keys, typ=TYP) == CLAIMS
    assert verify_jws(sign_jws(CLAIMS, OTHER, kid="old", typ=TYP), keys, typ=TYP) == CLAIMS


# --- interop with joserfc -------------------------------------------------------------------------


def test_joserfc_verifies_our_token_from_the_jwks_alone() -> None:
    token = sign_jws(CLAIMS, KEY, kid=KID, typ=TYP)
    document = json.loads(json.dumps(jwks(KEYS)))  # exactly what GET /v1/license-keys serves
    keyset = KeySet.import_key_set(document)
    compact = jws.deserialize_compact(token, keyset, algorithms=["EdDSA"])
    assert compact.headers() == {"alg": "EdDSA", "kid": KID, "typ": TYP}
    assert json.loads(compact.payload) == CLAIMS
    assert jwt.decode(token, keyset, algorithms=["EdDSA"]).claims == CLAIMS


def test_joserfc_rejects_our_token_under_another_key() -> None:
    token = sign_jws(CLAIMS, OTHER, kid=KID, typ=TYP)
    with pytest.raises(BadSignatureError):
        jws.deserialize_compact(token, _joserfc_keyset(), algorithms=["EdDSA"])


def test_jwk_matches_joserfc_including_the_rfc7638_thumbprint() -> None:
    verifying = KEY.verifying_key()
    jwk = jwk_of(verifying, KID)
    assert jwk == {
        "kty": "OKP",
        "crv": "Ed25519",
        "x": _b64(_raw_public(verifying)),
        "kid": KID,
        "use": "sig",
        "alg": "EdDSA",
    }
    theirs = OKPKey.import_key(_public_pem(verifying))
    assert theirs.as_dict(private=False)["x"] == jwk["x"]
    assert jwk_thumbprint(verifying) == theirs.thumbprint()
    assert len(jwk_thumbprint(verifying)) == 43


def test_rfc8037_example_thumbprint() -> None:
    """RFC 8037 appendix A.3: the thumbprint of the A.2 public key."""
    x = _unb64("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo")
    key = keys_from_jwks({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": _b64(x), "kid": "a"}]})
    assert jwk_thumbprint(key["a"]) == "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"


# RFC 8037 appendix A.1/A.4: the Ed25519 example key and the JWS of "Example of Ed25519 signing".
RFC8037_D = "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A"
RFC8037_JWS = (
    "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc."
    "hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg"
)
# Produced by modelseal's sign_jws with the RFC 8037 key (deterministic: canonical payload,
# sorted header, Ed25519); checked below by joserfc, which verifies it from the JWKS alone.
KNOWN_JWS = (
    "eyJhbGciOiJFZERTQSIsImtpZCI6ImtQcktfcW14VldhWVZBOXd3QkY2SXVvM3ZWeno3VHhIQ1R3WEJ5Z3JTNGsi"
    "LCJ0eXAiOiJtb2RlbHNlYWwtbGljZW5zZStqd3QifQ."
    "eyJleHAiOjE4MDAwMDAwMDAsImlzcyI6InZhdWx0LTEiLCJqdGkiOiJsaWMtMDAwMDAwMDAtMDAwMC00MDAwLTgw"
    "MDAtMDAwMDAwMDAwMDAwIn0."
    "vCUBCXtqpOpYi2TEQmHeq_CrW3VpVCRUr2gRMl3tgyi--6HvhZ6WOJowr1qpOopLaOUxuET5ffI1j4xuvNg6Bg"
)


def _rfc8037_key() -> SigningKey:
    private = ed25519.Ed25519PrivateKey.from_private_bytes(_unb64(RFC8037_D))
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return SigningKey.from_pem(pem, None)


def test_rfc8037_known_answers() -> None:
    key = _rfc8037_key()
    signing_input, _, signature = RFC8037_JWS.rpartition(".")
    assert _b64(key.sign(signing_input.encode())) == signature
    kid = jwk_thumbprint(key.verifying_key())
    assert kid == "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
    claims = {
        "iss": "vault-1",
        "jti": "lic-00000000-0000-4000-8000-000000000000",
        "exp": 1800000000,
    }
    assert sign_jws(claims, key, kid=kid, typ=TYP) == KNOWN_JWS
    keyset = KeySet.import_key_set(jwks({kid: key.verifying_key()}))  # type: ignore[arg-type]
    assert jwt.decode(KNOWN_JWS, keyset, algorithms=["EdDSA"]).claims == claims
    assert verify_jws(KNOWN_JWS, {kid: key.verifying_key()}, typ=TYP) == claims


def test_we_verify_a_token_joserfc_signed() -> None:
    theirs = OKPKey.generate_key("Ed25519")
    ours = SigningKey.from_pem(theirs.as_pem(private=True), None)
    token = jws.serialize_compact(_header(), canonical_json(CLAIMS), theirs, algorithms=["EdDSA"])
    assert verify_jws(token, {KID: ours.verifying_key()}, typ=TYP) == CLAIMS


def test_jwks_sorted_and_read_back() -> None:
    keys = {"b": OTHER.verifying_key(), "a": KEY.verifying_key()}
    document = jwks(keys)
    assert [entry["kid"] for entry in document["keys"]] == ["a", "b"]
    assert keys_from_jwks(document) == keys
    assert keys_from_jwks(_joserfc_keyset().as_dict()) == KEYS


# --- refusals: algorithms -------------------------------------------------------------------------


def _expect_format_error(token: str, message: str, keys: dict[str, VerifyingKey] = KEYS) -> None:
    error = expect_error(FormatError, lambda: verify_jws(token, keys, typ=TYP))
    assert str(error) == message


def test_alg_none_is_refused() -> None:
    header = _b64(json.dumps({"alg": "none", "kid": KID, "typ": TYP}).encode())
    token = f"{header}.{_b64(canonical_json(CLAIMS))}."
    _expect_format_error(token, "the token's algorithm is 'none'; only 'EdDSA' is accepted")


@pytest.mark.parametrize("alg", ["HS256", "HS384", "HS512"])
def test_alg_confusion_joserfc_hmac_with_the_raw_public_key_is_refused(alg: str) -> None:
    token = jws.serialize_compact(
        {"alg": alg, "kid": KID, "typ": TYP},
        canonical_json(CLAIMS),
        OctKey.import_key(_raw_public(KEY.verifying_key())),
        algorithms=[alg],
    )
    _expect_format_error(token, f"the token's algorithm is {alg!r}; only 'EdDSA' is accepted")


@pytest.mark.parametrize(
    "secret",
    [
        pytest.param(lambda: _public_pem(KEY.verifying_key()), id="PEM"),
        pytest.param(lambda: KEY.verifying_key().public_bytes_der(), id="DER"),
        pytest.param(lambda: json.dumps(jwks(KEYS)).encode(), id="JWKS"),
    ],
)
@pytest.mark.parametrize("alg", ["HS256", "HS384", "HS512"])
def test_alg_confusion_hmac_with_other_public_key_encodings_is_refused(
    secret: Callable[[], bytes], alg: str
) -> None:
    """joserfc refuses to use these as HMAC secrets, so the token is made with ``hmac``."""
    header = _b64(json.dumps({"alg": alg, "kid": KID, "typ": TYP}).encode())
    signing_input = f"{header}.{_b64(canonical_json(CLAIMS))}"
    digest = {"HS256": "sha256", "HS384": "sha384", "HS512": "sha512"}[alg]
    mac = hmac.new(secret(), signing_input.encode(), digest).digest()
    token = f"{signing_input}.{_b64(mac)}"
    _expect_format_error(token, f"the token's algorithm is {alg!r}; only 'EdDSA' is accepted")


@pytest.mark.parametrize("alg", ["ES256", "Ed25519", "EdDSA ", "eddsa", None, 1])
def test_other_algorithms_are_refused(alg: object) -> None:
    token = _forge(_header(alg=alg), canonical_json(CLAIMS))
    _expect_format_error(token, f"the token's algorithm is {alg!r}; only 'EdDSA' is accepted")


def test_an_es256_token_made_by_joserfc_under_our_kid_is_refused() -> None:
    token = jws.serialize_compact(
        {"alg": "ES256", "kid": KID, "typ": TYP},
        canonical_json(CLAIMS),
        ECKey.generate_key("P-256"),
        algorithms=["ES256"],
    )
    _expect_format_error(token, "the token's algorithm is 'ES256'; only 'EdDSA' is accepted")


def test_missing_alg_is_refused() -> None:
    header = {"kid": KID, "typ": TYP}
    _expect_format_error(
        _forge(header, canonical_json(CLAIMS)),
        "the token's algorithm is None; only 'EdDSA' is accepted",
    )


# --- refusals: kid, typ and header ----------------------------------------------------------------


def test_unknown_kid_is_refused() -> None:
    token = sign_jws(CLAIMS, OTHER, kid="someone-else", typ=TYP)
    _expect_format_error(
        token,
        "the token is signed by an unknown key (kid 'someone-else'); "
        "refresh the issuer's key set or check where the token came from",
    )
    _expect_format_error(
        sign_jws(CLAIMS, KEY, kid=KID, typ=TYP),
        "the token is signed by an unknown key (kid 'key-1'); "
        "refresh the issuer's key set or check where the token came from",
        keys={},
    )


@pytest.mark.parametrize("kid", [None, 7, ["key-1"]])
def test_missing_or_mistyped_kid_is_refused(kid: object) -> None:
    header = _header(kid=kid) if kid is not None else {"alg": "EdDSA", "typ": TYP}
    _expect_format_error(
        _forge(header, canonical_json(CLAIMS)), "the token header has no key id (kid)"
    )


@pytest.mark.parametrize("typ", ["JWT", "modelseal-lease+jwt", "", None])
def test_wrong_typ_is_refused(typ: str | None) -> None:
    header = _header(typ=typ) if typ is not None else {"alg": "EdDSA", "kid": KID}
    _expect_format_error(
        _forge(header, canonical_json(CLAIMS)),
        f"the token type is {typ!r}, expected 'modelseal-license+jwt'",
    )


@pytest.mark.parametrize(
    ("extra", "names"),
    [
        ({"crit": ["exp"]}, "'crit'"),
        ({"b64": False, "crit": ["b64"]}, "'b64', 'crit'"),
        ({"jku": "https://evil.example/jwks"}, "'jku'"),
        ({"jwk": jwk_of(OTHER.verifying_key(), KID)}, "'jwk'"),
        ({"x5c": ["MIIB"]}, "'x5c'"),
    ],
)
def test_unexpected_header_parameters_are_refused(extra: dict[str, Any], names: str) -> None:
    _expect_format_error(
        _forge(_header(**extra), canonical_json(CLAIMS)),
        f"the token header has unexpected parameter(s) {names}; only alg, kid and typ are allowed",
    )


def test_a_duplicated_header_name_is_refused() -> None:
    raw = b'{"alg":"none","alg":"EdDSA","kid":"key-1","typ":"modelseal-license+jwt"}'
    _expect_format_error(
        _forge(raw, canonical_json(CLAIMS)),
        "the token header is not UTF-8 JSON: duplicate name 'alg'",
    )


# --- refusals: signature --------------------------------------------------------------------------


def _expect_signature_error(token: str) -> None:
    error = expect_error(SignatureError, lambda: verify_jws(token, KEYS, typ=TYP))
    assert str(error) == "signature verification failed"


def test_tampered_payload_is_refused() -> None:
    header, _, signature = sign_jws(CLAIMS, KEY, kid=KID, typ=TYP).split(".")
    tampered = canonical_json({**CLAIMS, "exp": 9_999_999_999})
    _expect_signature_error(f"{header}.{_b64(tampered)}.{signature}")


def test_tampered_header_is_refused() -> None:
    _, payload, signature = sign_jws(CLAIMS, KEY, kid=KID, typ=TYP).split(".")
    header = _b64(json.dumps({"typ": TYP, "kid": KID, "alg": "EdDSA"}).encode())
    _expect_signature_error(f"{header}.{payload}.{signature}")


def test_swapped_signature_is_refused() -> None:
    header, payload, _ = sign_jws(CLAIMS, KEY, kid=KID, typ=TYP).split(".")
    other_signature = sign_jws({"jti": "lic-2"}, KEY, kid=KID, typ=TYP).split(".")[2]
    _expect_signature_error(f"{header}.{payload}.{other_signature}")


def test_signed_by_another_key_under_our_kid_is_refused() -> None:
    _expect_signature_error(sign_jws(CLAIMS, OTHER, kid=KID, typ=TYP))


@pytest.mark.parametrize(
    "mangle",
    [
        lambda s: s[:-2],  # 63 bytes
        lambda s: s + "AA",  # 65 bytes
        lambda s: "",
        lambda s: "A" * 86,  # 64 zero bytes
        lambda s: ("B" if s[0] != "B" else "C") + s[1:],
    ],
)
def test_mangled_signature_is_refused(mangle: Callable[[str], str]) -> None:
    header, payload, signature = sign_jws(CLAIMS, KEY, kid=KID, typ=TYP).split(".")
    _expect_signature_error(f"{header}.{payload}.{mangle(signature)}")


# --- refusals: shape ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("token", "message"),
    [
        ("", "the token is not a compact JWS: it has 1 part(s) separated by '.', not 3"),
        ("a.b", "the token is not a compact JWS: it has 2 part(s) separated by '.', not 3"),
        ("a.b.c.d.e", "the token is not a compact JWS: it has 5 part(s) separated by '.', not 3"),
        ("e30=.e30.AA", "the token header is not unpadded base64url"),
        ("e3!0.e30.AA", "the token header is not unpadded base64url"),
        ("e30.e3+0.AA", "the token payload is not unpadded base64url"),
        ("e30.e30.A", "the token signature is not unpadded base64url"),
        ("e30.e30.AB", "the token signature is not unpadded base64url"),  # non-zero spare bits
        ("W10.e30.AA", "the token header is not a JSON object"),
        ("bnVsbA.e30.AA", "the token header is not a JSON object"),
        (
            "_w.e30.AA",
            "the token header is not UTF-8 JSON: 'utf-8' codec can't decode byte 0xff "
            "in position 0: invalid start byte",
        ),
        ("e30.e30.AA", "the token's algorithm is None; only 'EdDSA' is accepted"),
    ],
)
def test_malformed_tokens_are_refused(token: str, message: str) -> None:
    _expect_format_error(token, message)


def test_an_oversized_token_is_refused_before_parsing() -> None:
    _expect_format_error("a" * 70_000, "the token is longer than 65536 characters")


def test_a_non_string_token_is_refused() -> None:
    _expect_format_error(b"e30.e30.AA", "the token must be text")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"[1, 2]", "the token payload is not a JSON object"),
        (
            b"not json",
            "the token payload is not UTF-8 JSON: Expecting value: line 1 column 1 (char 0)",
        ),
        (b'{"exp": NaN}', "the token payload is not UTF-8 JSON: NaN is not JSON"),
        (b'{"exp": 1, "exp": 2}', "the token payload is not UTF-8 JSON: duplicate name 'exp'"),
    ],
)
def test_a_validly_signed_payload_that_is_not_a_json_object_is_refused(
    payload: bytes, message: str
) -> None:
    _expect_format_error(_forge(_header(), payload), message)


# --- key handling ---------------------------------------------------------------------------------


def test_only_ed25519_keys_sign_and_verify() -> None:
    ecdsa = SigningKey.generate("ecdsa-p256")
    error = expect_error(KeyFormatError, lambda: sign_jws(CLAIMS, ecdsa, kid=KID, typ=TYP))
    assert str(error) == "JWS tokens are signed with Ed25519 keys only; this key is ecdsa-p256"
    error = expect_error(
        KeyFormatError,
        lambda: verify_jws(
            sign_jws(CLAIMS, KEY, kid=KID, typ=TYP), {KID: ecdsa.verifying_key()}, typ=TYP
        ),
    )
    assert str(error) == "key 'key-1' is ecdsa-p256; JWS tokens use Ed25519 keys"
    expect_error(KeyFormatError, lambda: jwk_of(ecdsa.verifying_key(), KID), "Ed25519 keys only")


@pytest.mark.parametrize("kid", ["", "a\nb", "x" * 201])
def test_bad_kid_or_typ_cannot_be_signed(kid: str) -> None:
    expect_error(KeyFormatError, lambda: sign_jws(CLAIMS, KEY, kid=kid, typ=TYP), "kid must be")
    expect_error(KeyFormatError, lambda: sign_jws(CLAIMS, KEY, kid=KID, typ=kid), "typ must be")


def test_claims_that_are_not_canonical_json_cannot_be_signed() -> None:
    expect_error(FormatError, lambda: sign_jws({"x": 1.5e400}, KEY, kid=KID, typ=TYP))
    expect_error(FormatError, lambda: sign_jws({"x": 2**60}, KEY, kid=KID, typ=TYP))


def _good_jwk() -> dict[str, Any]:
    return jwk_of(KEY.verifying_key(), KID)


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({}, "a JWKS must be an object with a 'keys' list"),
        ({"keys": {}}, "a JWKS must be an object with a 'keys' list"),
        ({"keys": ["x"]}, "JWKS key 0 is not an object"),
        (
            {"keys": [{**_good_jwk(), "kty": "EC"}]},
            "JWKS key 0 is not an Ed25519 key (kty OKP, crv Ed25519)",
        ),
        (
            {"keys": [{**_good_jwk(), "crv": "X25519"}]},
            "JWKS key 0 is not an Ed25519 key (kty OKP, crv Ed25519)",
        ),
        ({"keys": [{**_good_jwk(), "alg": "HS256"}]}, "JWKS key 0 is not an EdDSA signature key"),
        ({"keys": [{**_good_jwk(), "use": "enc"}]}, "JWKS key 0 is not an EdDSA signature key"),
        (
            {"keys": [{**_good_jwk(), "d": "AAAA"}]},
            "JWKS key 0 holds a private key; a JWKS must be public",
        ),
        ({"keys": [{**_good_jwk(), "kid": ""}]}, "JWKS key 0 has no kid"),
        (
            {"keys": [{**_good_jwk(), "x": "AAAA"}]},
            "JWKS key 0 ('key-1'): 'x' is not a base64url Ed25519 public key",
        ),
        (
            {"keys": [{**_good_jwk(), "x": 5}]},
            "JWKS key 0 ('key-1'): 'x' is not a base64url Ed25519 public key",
        ),
        ({"keys": [{**_good_jwk(), "x": "a+b/"}]}, "JWKS key 0 'x' is not unpadded base64url"),
        ({"keys": [_good_jwk(), _good_jwk()]}, "the JWKS lists kid 'key-1' twice"),
    ],
)
def test_bad_jwks_are_refused(document: dict[str, Any], message: str) -> None:
    error = expect_error(FormatError, lambda: keys_from_jwks(document))
    assert str(error) == message
