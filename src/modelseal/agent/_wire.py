"""The agent socket's messages: newline-delimited JSON objects, at most 1 MiB each.

Both ends use this module: framing (:func:`encode`, :func:`read_message`), the lease status and
the data key as JSON, and :class:`AgentSocketError`. See ``docs/agent.md`` for the protocol.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any, BinaryIO, Final

from modelseal.agent.source import LeaseStatus
from modelseal.crypto import DataKey, KeyFormatError, dump_data_key, load_data_key
from modelseal.errors import Error

__all__ = [
    "BAD_MESSAGE",
    "MAX_MESSAGE",
    "MESSAGE_TOO_LARGE",
    "AgentSocketError",
    "encode",
    "error_message",
    "key_from_wire",
    "key_to_wire",
    "read_message",
    "status_from_wire",
    "status_to_wire",
]

MAX_MESSAGE: Final = 1 << 20
"""The longest message either end accepts, in bytes, newline included."""
BAD_MESSAGE: Final = "BAD_MESSAGE"
MESSAGE_TOO_LARGE: Final = "MESSAGE_TOO_LARGE"
_STATES: Final = ("active", "offline", "ended")


class AgentSocketError(Error):
    """The agent socket could not be used: nothing listens there, this process may not use it,
    or a message broke the protocol. ``code`` says which."""

    code = "AGENT_SOCKET"

    def __init__(self, message: str, *, code: str | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        if code is not None:
            self.code = code


def encode(message: dict[str, Any]) -> bytes:
    """One message on the wire: compact JSON (ASCII, so no raw newline) and a newline."""
    return json.dumps(message, separators=(",", ":"), ensure_ascii=True).encode("ascii") + b"\n"


def read_message(stream: BinaryIO) -> dict[str, Any] | None:
    """The next message from ``stream``, or None at the end of the stream.

    :class:`AgentSocketError` ``MESSAGE_TOO_LARGE`` for a line longer than :data:`MAX_MESSAGE`
    (the stream cannot be trusted after it) and ``BAD_MESSAGE`` for one that is not a JSON
    object (the next line can still be read).
    """
    line = stream.readline(MAX_MESSAGE + 1)
    if not line:
        return None
    if not line.endswith(b"\n"):
        if len(line) > MAX_MESSAGE:
            raise AgentSocketError(
                f"a message is longer than {MAX_MESSAGE} bytes; the connection is closed",
                code=MESSAGE_TOO_LARGE,
            )
        return None  # the peer went away in the middle of a message
    try:
        message = json.loads(line)
    except (UnicodeDecodeError, ValueError):
        raise AgentSocketError(
            "a message is not JSON; send one JSON object per line", code=BAD_MESSAGE
        ) from None
    if not isinstance(message, dict):
        raise AgentSocketError(
            "a message must be a JSON object, not another JSON value", code=BAD_MESSAGE
        )
    return message


def error_message(code: str, message: str, **extra: Any) -> dict[str, Any]:
    """An ``error`` message (fields that are None are left out)."""
    body = {"type": "error", "code": code, "message": message}
    body.update({name: value for name, value in extra.items() if value is not None})
    return body


def key_to_wire(key: DataKey) -> dict[str, Any]:
    """The data key as the JSON object of its key file (the secret in base64)."""
    value: dict[str, Any] = json.loads(dump_data_key(key))
    return value


def key_from_wire(value: object) -> DataKey:
    try:
        return load_data_key(json.dumps(value).encode("utf-8"))
    except (KeyFormatError, TypeError, ValueError) as exc:
        raise AgentSocketError(
            "the agent sent a data key this client cannot read", code=BAD_MESSAGE
        ) from exc


def status_to_wire(status: LeaseStatus) -> dict[str, Any]:
    return {
        "state": status.state,
        "license_id": status.license_id,
        "model_name": status.model_name,
        "model_version": status.model_version,
        "lease_id": status.lease_id,
        "expires_at": status.expires_at.isoformat(),
        "usable_until": status.usable_until.isoformat(),
        "heartbeat": status.heartbeat.total_seconds(),
        "inferences_reported": status.inferences_reported,
        "code": status.code,
        "reason": status.reason,
    }


def status_from_wire(value: object) -> LeaseStatus:
    """The inverse of :func:`status_to_wire`; any other shape is ``BAD_MESSAGE``."""
    try:
        if not isinstance(value, dict):
            raise TypeError("not an object")
        state = value["state"]
        if state not in _STATES:
            raise ValueError(f"unknown state {state!r}")
        heartbeat = value["heartbeat"]
        if isinstance(heartbeat, bool) or not isinstance(heartbeat, int | float):
            raise TypeError("heartbeat")
        return LeaseStatus(
            state=state,
            license_id=_text(value["license_id"]),
            model_name=_text(value["model_name"]),
            model_version=_whole(value["model_version"]),
            lease_id=_text(value["lease_id"]),
            expires_at=_instant(value["expires_at"]),
            usable_until=_instant(value["usable_until"]),
            heartbeat=timedelta(seconds=heartbeat),
            inferences_reported=_whole(value["inferences_reported"]),
            code=_optional_text(value.get("code")),
            reason=_optional_text(value.get("reason")),
        )
    except (KeyError, TypeError, ValueError, OverflowError) as exc:
        raise AgentSocketError(
            f"a lease status from the agent is malformed ({exc})", code=BAD_MESSAGE
        ) from None


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{value!r} is not text")
    return value


def _optional_text(value: object) -> str | None:
    return None if value is None else _text(value)


def _whole(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise TypeError(f"{value!r} is not a whole number")
    return value


def _instant(value: object) -> datetime:
    moment = datetime.fromisoformat(_text(value))
    if moment.tzinfo is None:
        raise ValueError(f"{value!r} has no time zone")
    return moment
