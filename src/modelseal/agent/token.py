"""The enrolment token a model controller hands to a device: ``mset1.<secret>.<CA pin>``.

``secret`` is 32 random bytes in base64url (the vault stores only its SHA-256); ``CA pin`` is the
hex SHA-256 of the vault CA's SubjectPublicKeyInfo, so the device can check the vault on first
contact without being given a CA file (as ``kubeadm join`` does with its discovery hash).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from modelseal.errors import UsageError

__all__ = ["TOKEN_PREFIX", "EnrollmentToken", "parse_enrollment_token"]

TOKEN_PREFIX: Final = "mset1"  # noqa: S105 - a format tag, not a secret
_TOKEN = re.compile(r"mset1\.([A-Za-z0-9_-]{43})\.([0-9a-f]{64})", re.ASCII)


@dataclass(frozen=True)
class EnrollmentToken:
    """A parsed token; ``repr`` hides it (the whole token is the secret the vault checks)."""

    text: str
    ca_pin: str

    def __repr__(self) -> str:
        return f"EnrollmentToken(ca_pin={self.ca_pin[:16]}…, secret=<hidden>)"


def parse_enrollment_token(text: str) -> EnrollmentToken:
    """Check the shape of a token; the secret itself is checked by the vault."""
    text = text.strip()
    match = _TOKEN.fullmatch(text)
    if match is None:
        raise UsageError(
            "the enrolment token is not a modelseal token (mset1.<secret>.<CA pin>)",
            hint="copy the whole line `modelseal device enroll-token` printed",
        )
    return EnrollmentToken(text, match[2])
