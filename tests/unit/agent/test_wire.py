"""The agent socket's message framing and its JSON forms of a lease status and a data key."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelseal.agent import AgentSocketError, LeaseStatus
from modelseal.agent._wire import (
    MAX_MESSAGE,
    encode,
    key_from_wire,
    key_to_wire,
    read_message,
    status_from_wire,
    status_to_wire,
)
from modelseal.crypto import DataKey
from tests.conftest import expect_error

STATUS = LeaseStatus(
    state="ended",
    license_id="lic-1",
    model_name="iris",
    model_version=2,
    lease_id="lease-1",
    expires_at=datetime(2030, 6, 1, 12, 0, 30, tzinfo=UTC),
    usable_until=datetime(2030, 6, 1, 12, 1, 30, tzinfo=UTC),
    heartbeat=timedelta(seconds=10),
    inferences_reported=7,
    code="REVOKED",
    reason="License lic-1 was revoked",
)


def stream(data: bytes) -> io.BufferedReader:
    return io.BufferedReader(io.BytesIO(data))


@settings(max_examples=50)
@given(
    st.dictionaries(
        st.text(), st.recursive(st.text() | st.integers(), st.lists, max_leaves=8), max_size=4
    )
)
def test_messages_round_trip_one_per_line(message: dict[str, Any]) -> None:
    data = encode(message)
    assert data.endswith(b"\n") and data.count(b"\n") == 1
    assert read_message(stream(data + data)) == message


def test_the_end_of_the_stream_is_none() -> None:
    assert read_message(stream(b"")) is None
    assert read_message(stream(b'{"op": "sta')) is None  # the peer left mid-message


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (b"not json\n", "a message is not JSON; send one JSON object per line"),
        (b"\xff\xfe\n", "a message is not JSON; send one JSON object per line"),
        (b"[1, 2]\n", "a message must be a JSON object, not another JSON value"),
        (b'"op"\n', "a message must be a JSON object, not another JSON value"),
    ],
)
def test_a_bad_line_is_bad_message_and_the_next_one_still_reads(line: bytes, message: str) -> None:
    source = stream(line + b'{"op": "status"}\n')
    error = expect_error(AgentSocketError, lambda: read_message(source), message)
    assert error.code == "BAD_MESSAGE"
    assert read_message(source) == {"op": "status"}


def test_an_oversized_line_is_refused_without_reading_it_all() -> None:
    source = stream(b"x" * (3 * MAX_MESSAGE))
    error = expect_error(
        AgentSocketError,
        lambda: read_message(source),
        f"a message is longer than {MAX_MESSAGE} bytes; the connection is closed",
    )
    assert error.code == "MESSAGE_TOO_LARGE"
    assert source.tell() <= MAX_MESSAGE + io.DEFAULT_BUFFER_SIZE + 1


def test_a_line_of_exactly_the_limit_is_read() -> None:
    body = b'{"pad": "' + b"x" * (MAX_MESSAGE - 12) + b'"}\n'
    assert len(body) == MAX_MESSAGE
    assert read_message(stream(body)) == {"pad": "x" * (MAX_MESSAGE - 12)}


def test_a_status_round_trips() -> None:
    wire = json.loads(encode(status_to_wire(STATUS)))
    assert status_from_wire(wire) == STATUS
    assert wire["heartbeat"] == 10 and wire["expires_at"] == "2030-06-01T12:00:30+00:00"


@pytest.mark.parametrize(
    "change",
    [
        {"state": "gone"},
        {"heartbeat": "10"},
        {"model_version": -1},
        {"expires_at": "2030-06-01T12:00:30"},
        {"lease_id": None},
    ],
)
def test_a_malformed_status_is_bad_message(change: dict[str, Any]) -> None:
    wire = status_to_wire(STATUS) | change
    error = expect_error(
        AgentSocketError,
        lambda: status_from_wire(wire),
        "a lease status from the agent is malformed",
    )
    assert error.code == "BAD_MESSAGE"


def test_a_data_key_round_trips_and_a_bad_one_is_refused() -> None:
    key = DataKey.generate()
    assert key_from_wire(json.loads(encode(key_to_wire(key)))) == key
    for bad in ({"type": "modelseal.data-key", "version": 1}, "key", None):
        error = expect_error(
            AgentSocketError,
            partial(key_from_wire, bad),
            "the agent sent a data key this client cannot read",
        )
        assert error.code == "BAD_MESSAGE"
