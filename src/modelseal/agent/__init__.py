"""The device agent: the device's identity (enrolment with the vault), key releases, and keys
held under renewed leases for local workloads.

- :class:`KeyAgent` holds keys in this process (it reads the device key);
- ``modelseal agent serve`` (:class:`AgentSocketServer`) serves them over a Unix socket, and
  :class:`AgentSocketClient` is the workload's side of it (the device key stays with the agent);
- both are a :class:`KeySource` of :class:`ModelKey`\\ s (:mod:`modelseal.agent.source`).

Importing this package pulls in no web framework; the HTTP client is imported when a call needs it.
"""

from modelseal.agent._wire import AgentSocketError
from modelseal.agent.home import AgentHome, AgentHomeError
from modelseal.agent.keyagent import KeyAgent
from modelseal.agent.release import (
    EvidenceSource,
    ReleasedKey,
    ReleaseError,
    default_evidence,
    request_key,
)
from modelseal.agent.socket_client import AgentSocketClient
from modelseal.agent.socket_server import AgentSocketServer
from modelseal.agent.source import (
    InferenceLimitError,
    KeySource,
    LeaseEndedError,
    LeaseState,
    LeaseStatus,
    ModelKey,
)
from modelseal.agent.token import EnrollmentToken, parse_enrollment_token

__all__ = [
    "AgentHome",
    "AgentHomeError",
    "AgentSocketClient",
    "AgentSocketError",
    "AgentSocketServer",
    "EnrollmentToken",
    "EvidenceSource",
    "InferenceLimitError",
    "KeyAgent",
    "KeySource",
    "LeaseEndedError",
    "LeaseState",
    "LeaseStatus",
    "ModelKey",
    "ReleaseError",
    "ReleasedKey",
    "default_evidence",
    "parse_enrollment_token",
    "request_key",
]
