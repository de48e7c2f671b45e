"""Compact JWS (RFC 7515) signed with EdDSA over Ed25519 (RFC 8037), and the matching JWKS.

This is the only JOSE modelseal speaks: licenses and leases are compact JWS tokens that any JOSE
library can check with the JSON Web Key Set from :func:`jwks`. There is one algorithm, so there is
nothing to negotiate: a token whose header names anything but ``EdDSA`` (``none``, ``HS256`` made
with the public key as the HMAC secret, ``ES256`` …) is refused before any key is touched, and the
key comes from the caller's ``kid → key`` map, never from the token.

The payload is written as canonical JSON (RFC 8785), so a token is a deterministic function of its
claims and key. PyJWT does the signing and the signature check; it is used at the JWS level only,
so it never applies ``exp``/``nbf`` with the wall clock: the license layer checks time with an
injected ``now``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from modelseal.crypto.canonical import canonical_json
from modelseal.crypto.errors import FormatError, KeyFormatError, SignatureError
from modelseal.crypto.signing import SigningKey, VerifyingKey

__all__ = [
    "ALGORITHM",
    "jwk_of",
    "jwk_thumbprint",
    "jwks",
    "keys_from_jwks",
    "sign_jws",
    "verify_jws",
]

ALGORITHM = "EdDSA"
MAX_TOKEN_SIZE = 64 * 1024
_HEADER_NAMES = frozenset({"alg", "kid", "typ"})
_JWS = jwt.PyJWS(algorithms=[ALGORITHM])


def sign_jws(claims: Mapping[str, Any], key: SigningKey, *, kid: str, typ: str) -> str:
    """A compact JWS over ``claims`` (canonical JSON) with header ``{alg: EdDSA, kid, typ}``."""
    if key.algorithm != "ed25519":
        raise KeyFormatError(
            f"JWS tokens are signed with Ed25519 keys only; this key is {key.algorithm}"
        )
    _check_label(kid, "kid")
    _check_label(typ, "typ")
    payload = canonical_json(dict(claims))
    return _JWS.encode(
        payload, key._private_key(), algorithm=ALGORITHM, headers={"kid": kid, "typ": typ}
    )


def verify_jws(token: str, keys: Mapping[str, VerifyingKey], *, typ: str) -> dict[str, Any]:
    """Check ``token`` against the key its ``kid`` names in ``keys``; return its claims.

    Raises :class:`FormatError` naming the problem when the token or its header is not what this
    format allows (before any signature check), and :class:`SignatureError` with a fixed message
    when the signature does not verify. Claims such as ``exp`` are returned, not checked.
    """
    header = _header_of(token)
    alg = header.get("alg")
    if alg != ALGORITHM:
        raise FormatError(f"the token's algorithm is {alg!r}; only {ALGORITHM!r} is accepted")
    unexpected = sorted(set(header) - _HEADER_NAMES)
    if unexpected:
        raise FormatError(
            f"the token header has unexpected parameter(s) {', '.join(map(repr, unexpected))}; "
            "only alg, kid and typ are allowed"
        )
    if header.get("typ") != typ:
        raise FormatError(f"the token type is {header.get('typ')!r}, expected {typ!r}")
    kid = header.get("kid")
    if not isinstance(kid, str):
        raise FormatError("the token header has no key id (kid)")
    key = keys.get(kid)
    if key is None:
        raise FormatError(
            f"the token is signed by an unknown key (kid {kid!r}); "
            "refresh the issuer's key set or check where the token came from"
        )
    if key.algorithm != "ed25519":
        raise KeyFormatError(f"key {kid!r} is {key.algorithm}; JWS tokens use Ed25519 keys")
    try:
        payload = _JWS.decode_complete(token, key._key, algorithms=[ALGORITHM])["payload"]
    except jwt.InvalidSignatureError:
        raise SignatureError() from None
    except jwt.PyJWTError as exc:  # the header was already checked; anything left is shape
        raise FormatError(f"the token is not a valid compact JWS: {exc}") from exc
    return _json_object(payload, "payload")


def jwk_of(key: VerifyingKey, kid: str) -> dict[str, str]:
    """The public JWK (RFC 8037 ``OKP``/``Ed25519``) of ``key``, for verifying signatures."""
    _check_label(kid, "kid")
    return {
        "kty": "OKP",
        "crv": "Ed25519",
        "x": _b64url(_raw_public(key)),
        "kid": kid,
        "use": "sig",
        "alg": ALGORITHM,
    }


def jwks(keys: Mapping[str, VerifyingKey]) -> dict[str, list[dict[str, str]]]:
    """A JSON Web Key Set (RFC 7517 §5) holding every ``kid → key``, sorted by kid."""
    return {"keys": [jwk_of(keys[kid], kid) for kid in sorted(keys)]}


def jwk_thumbprint(key: VerifyingKey) -> str:
    """The RFC 7638 JWK thumbprint (SHA-256, base64url): a key id any JOSE library can recompute."""
    members = {"crv": "Ed25519", "kty": "OKP", "x": _b64url(_raw_public(key))}
    return _b64url(hashlib.sha256(canonical_json(members)).digest())


def keys_from_jwks(document: Mapping[str, Any]) -> dict[str, VerifyingKey]:
    """The ``kid → key`` map of a JWKS made by :func:`jwks`; anything else is a :class:`FormatError`."""
    entries = document.get("keys")
    if not isinstance(entries, list):
        raise FormatError("a JWKS must be an object with a 'keys' list")
    keys: dict[str, VerifyingKey] = {}
    for index, entry in enumerate(entries):
        kid, key = _key_from_jwk(entry, index)
        if kid in keys:
            raise FormatError(f"the JWKS lists kid {kid!r} twice")
        keys[kid] = key
    return keys


# --- internals ------------------------------------------------------------------------------------


def _key_from_jwk(entry: object, index: int) -> tuple[str, VerifyingKey]:
    where = f"JWKS key {index}"
    if not isinstance(entry, dict):
        raise FormatError(f"{where} is not an object")
    if entry.get("kty") != "OKP" or entry.get("crv") != "Ed25519":
        raise FormatError(f"{where} is not an Ed25519 key (kty OKP, crv Ed25519)")
    if entry.get("alg", ALGORITHM) != ALGORITHM or entry.get("use", "sig") != "sig":
        raise FormatError(f"{where} is not an EdDSA signature key")
    if "d" in entry:
        raise FormatError(f"{where} holds a private key; a JWKS must be public")
    kid = entry.get("kid")
    if not isinstance(kid, str) or not kid:
        raise FormatError(f"{where} has no kid")
    x = entry.get("x")
    raw = _b64url_decode(x, f"{where} 'x'") if isinstance(x, str) else b""
    if len(raw) != 32:
        raise FormatError(f"{where} ({kid!r}): 'x' is not a base64url Ed25519 public key")
    return kid, VerifyingKey._wrap(ed25519.Ed25519PublicKey.from_public_bytes(raw))


def _header_of(token: str) -> dict[str, Any]:
    """The protected header, parsed strictly (a duplicated name is refused, not resolved)."""
    if not isinstance(token, str):
        raise FormatError("the token must be text")
    if len(token) > MAX_TOKEN_SIZE:
        raise FormatError(f"the token is longer than {MAX_TOKEN_SIZE} characters")
    parts = token.split(".")
    if len(parts) != 3:
        raise FormatError(
            f"the token is not a compact JWS: it has {len(parts)} part(s) separated by '.', not 3"
        )
    header = _b64url_decode(parts[0], "the token header")
    _b64url_decode(parts[1], "the token payload")
    _b64url_decode(parts[2], "the token signature")
    return _json_object(header, "header")


def _json_object(data: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(
            data.decode("utf-8"),
            object_pairs_hook=_no_duplicates,
            parse_constant=_no_constant,
        )
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise FormatError(f"the token {what} is not UTF-8 JSON: {exc}") from None
    if not isinstance(value, dict):
        raise FormatError(f"the token {what} is not a JSON object")
    return value


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for name, value in pairs:
        if name in result:
            raise ValueError(f"duplicate name {name!r}")
        result[name] = value
    return result


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _check_label(value: str, what: str) -> None:
    if not isinstance(value, str) or not value or not value.isprintable() or len(value) > 200:
        raise KeyFormatError(f"{what} must be 1 to 200 printable characters, not {value!r}")


def _raw_public(key: VerifyingKey) -> bytes:
    if not isinstance(key._key, ed25519.Ed25519PublicKey):
        raise KeyFormatError(
            f"JWKs are published for Ed25519 keys only; this key is {key.algorithm}"
        )
    return key._key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str, what: str) -> bytes:
    """Strict unpadded base64url (RFC 7515 §2); any other spelling is a :class:`FormatError`."""
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        data = None
    if data is None or _b64url(data) != text:
        raise FormatError(f"{what} is not unpadded base64url")
    return data
