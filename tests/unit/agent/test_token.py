"""The enrolment token's shape, as the agent reads it (the vault checks the secret)."""

from __future__ import annotations

import pytest

from modelseal.agent import parse_enrollment_token
from modelseal.errors import UsageError
from tests.conftest import expect_error

SECRET = "V-lBlrupMhABlX36caH1ZjK9hdwocaTn7bWABm0-7lE"  # noqa: S105 - a made-up token
PIN = "fc79a0b109614712d1fd875ed23b94a279f820f62f2b625120b5308c50d6cf8c"


def test_a_token_gives_its_pin_and_hides_its_secret() -> None:
    token = parse_enrollment_token(f"  mset1.{SECRET}.{PIN}\n")
    assert token.text == f"mset1.{SECRET}.{PIN}"
    assert token.ca_pin == PIN
    assert SECRET not in repr(token) and "hidden" in repr(token)


@pytest.mark.parametrize(
    "text",
    [
        "",
        f"mset2.{SECRET}.{PIN}",
        f"mset1.{SECRET[:-1]}.{PIN}",  # a secret too short
        f"mset1.{SECRET}+.{PIN}",  # not base64url
        f"mset1.{SECRET}.{PIN.upper()}",
        f"mset1.{SECRET}.{PIN[:-2]}",
        f"mset1.{SECRET}",
    ],
)
def test_anything_else_is_refused_with_the_form(text: str) -> None:
    error = expect_error(
        UsageError, lambda: parse_enrollment_token(text), "(mset1.<secret>.<CA pin>)"
    )
    assert text not in error.message or not text  # a mistyped secret is not echoed
