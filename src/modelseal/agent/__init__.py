"""The device agent: the device's identity (enrolment with the vault) and key release.

Importing this package pulls in no web framework; the HTTP client is imported when a call needs it.
"""

from modelseal.agent.home import AgentHome, AgentHomeError
from modelseal.agent.release import ReleasedKey, ReleaseError, request_key
from modelseal.agent.token import EnrollmentToken, parse_enrollment_token

__all__ = [
    "AgentHome",
    "AgentHomeError",
    "EnrollmentToken",
    "ReleaseError",
    "ReleasedKey",
    "parse_enrollment_token",
    "request_key",
]
