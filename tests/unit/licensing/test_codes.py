"""Refusal codes: the documented HTTP status of each, and sentences a person can act on."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from modelseal.errors import Error
from modelseal.licensing import Refusal, RefusalCode

# The documented table (DESIGN.md §3.2 codes; statuses as the REST adapter answers).
STATUS = {
    "EXPIRED": 403,
    "NOT_YET_VALID": 403,
    "REVOKED": 403,
    "USAGE_EXHAUSTED": 403,
    "RATE_LIMITED": 429,
    "DEVICE_NOT_ALLOWED": 403,
    "TOO_MANY_DEVICES": 409,
    "EVIDENCE_REJECTED": 403,
    "LICENSE_INVALID": 401,
    "MODEL_NOT_LICENSED": 403,
    "DEVICE_REVOKED": 401,
    "DEVICE_UNKNOWN": 401,
    "WRONG_CUSTOMER": 403,
    "NONCE_INVALID": 401,
    "LEASE_EXPIRED": 410,
    "LEASE_UNKNOWN": 404,
    "GRACE_EXHAUSTED": 403,
    "MODEL_UNKNOWN": 404,
}


def test_every_code_is_documented_and_nothing_else_exists() -> None:
    assert {code.value for code in RefusalCode} == set(STATUS)


@pytest.mark.parametrize(("name", "status"), sorted(STATUS.items()))
def test_code_maps_to_its_status_and_a_sentence(name: str, status: int) -> None:
    code = RefusalCode(name)
    assert code == name and code.name == name and str(code) == name
    assert code.http_status == status
    refusal = Refusal(code)
    assert isinstance(refusal, Error)
    assert refusal.code is code and refusal.http_status == status
    assert refusal.message == code.sentence == f"{code.summary}; {code.action}."
    assert refusal.message[0].isupper() and refusal.message.count(".") == 1
    assert refusal.diagnostics() == refusal.message
    assert refusal.as_dict() == {"code": name, "message": refusal.message}
    assert json.loads(json.dumps(refusal.as_dict())) == refusal.as_dict()


def test_detail_replaces_the_summary_and_keeps_the_action() -> None:
    refusal = Refusal(RefusalCode.USAGE_EXHAUSTED, "All 20 loads of license lic-1 are used")
    assert refusal.message == (
        "All 20 loads of license lic-1 are used; ask the model controller for a license with a "
        "higher limit."
    )
    assert refusal.detail == "All 20 loads of license lic-1 are used"
    assert repr(refusal) == f"Refusal(USAGE_EXHAUSTED, {refusal.message!r})"


def test_retry_after() -> None:
    refusal = Refusal(RefusalCode.RATE_LIMITED, retry_after=120)
    assert refusal.retry_after == 120
    assert refusal.as_dict() == {
        "code": "RATE_LIMITED",
        "message": "The license's limit for this period is reached; try again after the time "
        "given in Retry-After.",
        "retry_after": 120,
    }
    for bad in (-1, 1.5, True, "60"):
        with pytest.raises(ValueError, match="retry_after must be whole seconds"):
            Refusal(RefusalCode.RATE_LIMITED, retry_after=bad)  # type: ignore[arg-type]


def test_the_code_is_a_string_for_clients_that_branch_on_it() -> None:
    assert RefusalCode.EXPIRED == "EXPIRED"
    assert json.dumps({"code": RefusalCode.EXPIRED}) == '{"code": "EXPIRED"}'


def test_light_import() -> None:
    """The vault and the device agent both import this package: no web or database framework."""
    code = "import json, sys, modelseal.licensing\nprint(json.dumps(sorted(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, check=True, timeout=60
    )
    loaded = json.loads(result.stdout)
    heavy = ("sqlalchemy", "fastapi", "starlette", "uvicorn", "grpc", "onnxruntime", "numpy")
    assert sorted(name for name in loaded if name.split(".")[0] in heavy) == []
