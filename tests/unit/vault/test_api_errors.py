"""The API's one error table: each error kind → status, code and body; base64url fields."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.exceptions import HTTPException

from modelseal.crypto import SigningKey, private_key_pem_unencrypted
from modelseal.errors import Error, UsageError
from modelseal.licensing import Refusal, RefusalCode
from modelseal.vault.api.errors import error_response
from modelseal.vault.api.schemas import ModelRegistration, b64url
from modelseal.vault.auth import ClientCertRequiredError, WrongRoleError
from modelseal.vault.server import _key_in_memory
from modelseal.vault.service import BadRequest, Conflict, NotFound, Unauthorized, VaultError


def answer(exc: Exception) -> tuple[int, dict[str, object], dict[str, str]]:
    response = error_response(exc)
    return response.status_code, json.loads(bytes(response.body)), dict(response.headers)


@pytest.mark.parametrize(
    ("exc", "status", "code"),
    [
        (NotFound("there is no customer 'x'"), 404, "NOT_FOUND"),
        (Conflict("customer 'x' exists already"), 409, "CONFLICT"),
        (BadRequest("the CSR is not valid"), 400, "BAD_REQUEST"),
        (Unauthorized("the enrolment token is used"), 401, "UNAUTHORIZED"),
        (VaultError("a data key does not unwrap"), 500, "VAULT"),
        (UsageError("lease is 5s"), 400, "BAD_REQUEST"),
        (ClientCertRequiredError("needs a certificate"), 401, "CLIENT_CERT_REQUIRED"),
        (WrongRoleError("needs an admin certificate"), 403, "WRONG_ROLE"),
    ],
)
def test_known_errors(exc: Error, status: int, code: str) -> None:
    assert answer(exc)[:2] == (status, {"code": code, "message": exc.message})


def test_a_hint_travels_with_the_message() -> None:
    _, body, _ = answer(NotFound("there is no license 'x'", hint="list them"))
    assert body == {"code": "NOT_FOUND", "message": "there is no license 'x'", "hint": "list them"}


@pytest.mark.parametrize("code", list(RefusalCode))
def test_every_refusal_has_its_status(code: RefusalCode) -> None:
    status, body, headers = answer(Refusal(code))
    assert status == code.http_status
    assert body == {"code": code.value, "message": code.sentence}
    assert "retry-after" not in headers


def test_retry_after_is_a_header_too() -> None:
    status, body, headers = answer(Refusal(RefusalCode.RATE_LIMITED, retry_after=3600))
    assert (status, body["retry_after"], headers["retry-after"]) == (429, 3600, "3600")


def test_validation_errors_are_422_bad_request() -> None:
    with pytest.raises(ValidationError) as info:
        ModelRegistration.model_validate({"manifest": "!!", "signature": "", "other": 1})
    exc = RequestValidationError(info.value.errors())
    status, body, _ = answer(exc)
    assert (status, body["code"]) == (422, "BAD_REQUEST")
    assert str(body["message"]).startswith("the request is not valid: manifest: ")
    assert "other: Extra inputs are not permitted" in str(body["message"])


def test_http_errors_get_a_code() -> None:
    assert answer(HTTPException(404))[:2] == (404, {"code": "NOT_FOUND", "message": "Not Found."})
    status, body, headers = answer(HTTPException(405, headers={"Allow": "GET"}))
    assert (status, body["code"], headers["allow"]) == (405, "METHOD_NOT_ALLOWED", "GET")


def test_anything_else_is_500_without_its_text() -> None:
    status, body, headers = answer(RuntimeError("password=hunter2"))
    assert status == 500
    assert body == {
        "code": "INTERNAL",
        "message": "internal error",
        "request_id": headers["x-request-id"],
    }
    assert "hunter2" not in json.dumps(body)


@pytest.mark.parametrize("data", [b"", b"\x00", b"\xfb\xff", bytes(range(256))])
def test_base64url_round_trip(data: bytes) -> None:
    text = b64url(data)
    assert "=" not in text and "+" not in text and "/" not in text
    document = {"manifest": text, "signature": text + "=" * (-len(text) % 4)}
    parsed = ModelRegistration.model_validate_json(json.dumps(document))
    assert parsed.manifest == parsed.signature == data
    assert json.loads(parsed.model_dump_json())["manifest"] == text


@pytest.mark.parametrize("text", ["a", "ab+c", "ab/c", "a b", "abc=d"])
def test_bad_base64url_is_refused(text: str) -> None:
    with pytest.raises(ValidationError, match="is not base64url"):
        ModelRegistration.model_validate({"manifest": text, "signature": ""})


def test_the_tls_key_reaches_openssl_encrypted_and_in_memory_only() -> None:
    key = SigningKey.generate("ecdsa-p256")
    with _key_in_memory(private_key_pem_unencrypted(key)) as (path, password):
        assert os.readlink(path).startswith("/memfd:modelseal-tls-key")  # no file on any disk
        content = Path(path).read_bytes()  # as OpenSSL reads it
        assert content.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
        assert SigningKey.from_pem(content, password).verifying_key() == key.verifying_key()
    try:
        after = os.readlink(path)
    except OSError:
        after = ""
    assert not after.startswith("/memfd:modelseal-tls-key"), "the key file outlived the context"
