"""The license policy: defaults, validation with exact errors, and claims round trips."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelseal.crypto import canonical_json
from modelseal.errors import UsageError
from modelseal.licensing import EVIDENCE_TYPES, Policy, Rate
from tests.conftest import expect_error

MEASUREMENT = "ab" * 32
EMPTY_CLAIMS: dict[str, Any] = {
    "expires_at": None,
    "duration_from_first_use": None,
    "max_loads": None,
    "loads_per": None,
    "max_devices": None,
    "devices": [],
    "lease": 600,
    "heartbeat": 200,
    "offline_grace": 0,
    "max_inferences_per": None,
    "require_evidence": "none",
    "allowed_measurements": [],
}


def _error(call: object) -> str:
    assert callable(call)
    return str(expect_error(UsageError, call))


def test_defaults_are_unlimited_and_explicit() -> None:
    policy = Policy()
    assert policy.is_unlimited
    assert policy.lease == timedelta(minutes=10)
    assert policy.heartbeat == timedelta(seconds=200)
    assert policy.offline_grace == timedelta(0)
    assert policy.require_evidence == "none"
    assert policy.to_claims() == EMPTY_CLAIMS
    assert Policy.from_claims(EMPTY_CLAIMS) == policy


def test_heartbeat_defaults_to_a_third_of_the_lease_in_whole_seconds() -> None:
    assert Policy(lease=timedelta(seconds=31)).heartbeat == timedelta(seconds=10)
    assert Policy(lease=timedelta(hours=1)).heartbeat == timedelta(minutes=20)
    assert Policy(lease=timedelta(hours=1), heartbeat=timedelta(minutes=5)).heartbeat == (
        timedelta(minutes=5)
    )


def test_a_full_policy_round_trips_through_json() -> None:
    policy = Policy(
        expires_at=datetime(2027, 1, 31, 14, 0, 0, 999_999, tzinfo=timezone(timedelta(hours=2))),
        max_loads=20,
        loads_per=(timedelta(days=1), 100),
        max_devices=2,
        devices=("dev-a", "dev-b", "dev-c"),
        lease=timedelta(minutes=5),
        heartbeat=timedelta(minutes=1),
        offline_grace=timedelta(hours=1),
        max_inferences_per=(timedelta(hours=1), 10_000),
        require_evidence="sgx",
        allowed_measurements=(MEASUREMENT.upper(), "cd" * 48),
    )
    assert policy.expires_at == datetime(2027, 1, 31, 12, tzinfo=UTC)  # UTC, whole seconds
    assert policy.allowed_measurements == (MEASUREMENT, "cd" * 48)
    claims = policy.to_claims()
    assert claims == {
        "expires_at": 1801396800,
        "duration_from_first_use": None,
        "max_loads": 20,
        "loads_per": {"period": 86400, "count": 100},
        "max_devices": 2,
        "devices": ["dev-a", "dev-b", "dev-c"],
        "lease": 300,
        "heartbeat": 60,
        "offline_grace": 3600,
        "max_inferences_per": {"period": 3600, "count": 10000},
        "require_evidence": "sgx",
        "allowed_measurements": [MEASUREMENT, "cd" * 48],
    }
    assert Policy.from_claims(json.loads(canonical_json(claims))) == policy
    assert not policy.is_unlimited


def test_duration_from_first_use_round_trips() -> None:
    policy = Policy(duration_from_first_use=timedelta(days=30))
    assert policy.to_claims()["duration_from_first_use"] == 30 * 86400
    assert Policy.from_claims(policy.to_claims()) == policy


def test_describe() -> None:
    policy = Policy(
        duration_from_first_use=timedelta(days=30),
        max_loads=20,
        loads_per=(timedelta(days=1), 100),
        devices=("dev-a",),
        max_devices=1,
        max_inferences_per=(timedelta(hours=1), 50),
        require_evidence="tdx",
        allowed_measurements=(MEASUREMENT,),
    )
    assert policy.describe() == [
        "expires 30d after first use",
        "at most 20 loads in total",
        "at most 100 loads per 1d",
        "locked to device(s) dev-a",
        "at most 1 device(s) at once",
        "at most 50 inferences per 1h",
        "requires tdx evidence",
        f"allowed measurements: {MEASUREMENT}",
        "lease 10m, heartbeat 200s, offline grace 0s",
    ]
    assert Policy(expires_at=datetime(2027, 1, 31, tzinfo=UTC)).describe()[0] == (
        "expires at 2027-01-31T00:00:00Z"
    )


# --- validation -----------------------------------------------------------------------------------

LEASE_RANGE = "it must be from 30s to 1d"
NAIVE = datetime(2027, 1, 31)  # naive on purpose


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {
                "expires_at": datetime(2027, 1, 1, tzinfo=UTC),
                "duration_from_first_use": timedelta(1),
            },
            "expires_at and duration_from_first_use cannot both be set: a license expires on a "
            "date or a time after its first use, not both",
        ),
        ({"expires_at": NAIVE}, f"expires_at must be a time with a time zone, not {NAIVE!r}"),
        (
            {"expires_at": "2027-01-31"},
            "expires_at must be a time with a time zone, not '2027-01-31'",
        ),
        (
            {"duration_from_first_use": timedelta(0)},
            "duration_from_first_use is 0s; it must be from 1s to 36500d",
        ),
        (
            {"duration_from_first_use": timedelta(seconds=1.5)},
            "duration_from_first_use must be a whole number of seconds, not "
            "datetime.timedelta(seconds=1, microseconds=500000)",
        ),
        ({"max_loads": 0}, "max_loads must be a whole number from 1 to 2^53-1, not 0"),
        ({"max_loads": -5}, "max_loads must be a whole number from 1 to 2^53-1, not -5"),
        ({"max_loads": True}, "max_loads must be a whole number from 1 to 2^53-1, not True"),
        ({"max_loads": 2.0}, "max_loads must be a whole number from 1 to 2^53-1, not 2.0"),
        ({"max_loads": 2**53}, f"max_loads must be a whole number from 1 to 2^53-1, not {2**53}"),
        ({"max_devices": 0}, "max_devices must be a whole number from 1 to 2^53-1, not 0"),
        (
            {"loads_per": (timedelta(days=1), 0)},
            "loads_per count must be a whole number from 1 to 2^53-1, not 0",
        ),
        ({"loads_per": (timedelta(0), 5)}, "loads_per period is 0s; it must be from 1s to 366d"),
        (
            {"loads_per": (timedelta(days=400), 5)},
            "loads_per period is 400d; it must be from 1s to 366d",
        ),
        (
            {"loads_per": (5, timedelta(days=1))},
            "loads_per period must be a whole number of seconds, not 5",
        ),
        (
            {"loads_per": [timedelta(days=1), 5]},
            "loads_per must be a (period, count) pair, not [datetime.timedelta(days=1), 5]",
        ),
        (
            {"max_inferences_per": (timedelta(hours=1), -1)},
            "max_inferences_per count must be a whole number from 1 to 2^53-1, not -1",
        ),
        ({"lease": timedelta(seconds=29)}, f"lease is 29s; {LEASE_RANGE}"),
        ({"lease": timedelta(days=2)}, f"lease is 2d; {LEASE_RANGE}"),
        ({"lease": timedelta(seconds=-30)}, f"lease is -1 day, 23:59:30; {LEASE_RANGE}"),
        ({"lease": 600}, "lease must be a whole number of seconds, not 600"),
        ({"heartbeat": timedelta(0)}, "heartbeat is 0s; it must be from 1s to 10m"),
        (
            {"heartbeat": timedelta(minutes=10)},
            "heartbeat (10m) must be shorter than the lease (10m), or the lease ends before it "
            "is renewed",
        ),
        ({"heartbeat": timedelta(minutes=11)}, "heartbeat is 11m; it must be from 1s to 10m"),
        (
            {"offline_grace": timedelta(seconds=-1)},
            "offline_grace is -1 day, 23:59:59; it must be from 0s to 30d",
        ),
        ({"offline_grace": timedelta(days=31)}, "offline_grace is 31d; it must be from 0s to 30d"),
        (
            {"devices": ("dev a",)},
            "device id 'dev a' is not 1 to 200 printable characters without spaces",
        ),
        ({"devices": ("",)}, "device id '' is not 1 to 200 printable characters without spaces"),
        ({"devices": (7,)}, "device id 7 is not 1 to 200 printable characters without spaces"),
        ({"devices": ("d1", "d1")}, "devices lists 'd1' twice"),
        (
            {"devices": "dev-a"},
            "devices must be a list of strings, not the single string 'dev-a'",
        ),
        (
            {"require_evidence": "sgx", "allowed_measurements": MEASUREMENT},
            f"allowed_measurements must be a list of strings, not the single string {MEASUREMENT!r}",
        ),
        (
            {"devices": ("d1", "d2"), "max_devices": 3},
            "max_devices (3) is more than the 2 node-locked device(s); add devices or lower "
            "max_devices",
        ),
        (
            {"require_evidence": "tpm"},
            "require_evidence 'tpm' is not one of none, software, sgx, tdx, sev-snp",
        ),
        (
            {"require_evidence": "SGX"},
            "require_evidence 'SGX' is not one of none, software, sgx, tdx, sev-snp",
        ),
        (
            {"allowed_measurements": (MEASUREMENT,)},
            "allowed_measurements need evidence to check them against; set require_evidence too",
        ),
        (
            {"require_evidence": "sgx", "allowed_measurements": ("abc",)},
            "measurement 'abc' is not 16 to 64 bytes written as hex",
        ),
        (
            {"require_evidence": "sgx", "allowed_measurements": ("zz" * 32,)},
            f"measurement {'zz' * 32!r} is not 16 to 64 bytes written as hex",
        ),
        (
            {"require_evidence": "sgx", "allowed_measurements": (MEASUREMENT, MEASUREMENT.upper())},
            f"allowed_measurements lists {MEASUREMENT!r} twice",
        ),
    ],
)
def test_invalid_policies_name_the_field(kwargs: dict[str, Any], message: str) -> None:
    assert _error(lambda: Policy(**kwargs)) == message


def test_node_locked_and_floating_together() -> None:
    policy = Policy(devices=("d1", "d2", "d3"), max_devices=2)
    assert policy.devices == ("d1", "d2", "d3") and policy.max_devices == 2


def test_replace_revalidates() -> None:
    policy = Policy(max_loads=3)
    assert dataclasses.replace(policy, max_loads=4).max_loads == 4
    assert _error(lambda: dataclasses.replace(policy, max_loads=0)) == (
        "max_loads must be a whole number from 1 to 2^53-1, not 0"
    )


def test_policies_are_frozen_and_hashable() -> None:
    policy = Policy(max_loads=3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        policy.max_loads = 4  # type: ignore[misc]
    assert hash(policy) == hash(Policy(max_loads=3))


# --- reading claims -------------------------------------------------------------------------------


def _with(**changes: Any) -> dict[str, Any]:
    return {**EMPTY_CLAIMS, **changes}


@pytest.mark.parametrize(
    ("claims", "message"),
    [
        (None, "policy: must be an object"),
        ([], "policy: must be an object"),
        (
            _with(max_uses=5),
            "policy: unknown field(s) 'max_uses'; this modelseal cannot enforce them (upgrade it)",
        ),
        (
            {k: v for k, v in EMPTY_CLAIMS.items() if k not in ("lease", "devices")},
            "policy: missing field(s) 'devices', 'lease'",
        ),
        (_with(max_loads="5"), "policy: max_loads must be a whole number or null, not '5'"),
        (_with(max_loads=True), "policy: max_loads must be a whole number or null, not True"),
        (_with(max_loads=5.0), "policy: max_loads must be a whole number or null, not 5.0"),
        (_with(max_loads=0), "policy: max_loads must be a whole number from 1 to 2^53-1, not 0"),
        (
            _with(expires_at="2027-01-31"),
            "policy: expires_at must be a whole number or null, not '2027-01-31'",
        ),
        (_with(expires_at=10**20), "policy: a time or duration is out of range"),
        (_with(lease=None), "policy: lease must be whole seconds, not None"),
        (_with(lease=-600), "policy: lease must be whole seconds, not -600"),
        (_with(lease=10), "policy: lease is 10s; it must be from 30s to 1d"),
        (_with(offline_grace=10**18), "policy: a time or duration is out of range"),
        (
            _with(duration_from_first_use=0),
            "policy: duration_from_first_use is 0s; it must be from 1s to 36500d",
        ),
        (
            _with(loads_per=[86400, 5]),
            'policy: loads_per must be null or {"period": seconds, "count": N}, not [86400, 5]',
        ),
        (
            _with(loads_per={"period": 86400}),
            'policy: loads_per must be null or {"period": seconds, "count": N}, not {\'period\': 86400}',
        ),
        (
            _with(loads_per={"period": 86400, "count": 5, "burst": 1}),
            'policy: loads_per must be null or {"period": seconds, "count": N}, not '
            "{'period': 86400, 'count': 5, 'burst': 1}",
        ),
        (
            _with(max_inferences_per={"period": -1, "count": 5}),
            'policy: max_inferences_per must be null or {"period": seconds, "count": N}, not '
            "{'period': -1, 'count': 5}",
        ),
        (_with(devices="dev-a"), "policy: devices must be a list of strings, not 'dev-a'"),
        (_with(devices=[1]), "policy: devices must be a list of strings, not [1]"),
        (_with(require_evidence=None), "policy: require_evidence must be a string, not None"),
        (
            _with(allowed_measurements=None),
            "policy: allowed_measurements must be a list of strings, not None",
        ),
    ],
)
def test_malformed_claims_name_the_field(claims: Any, message: str) -> None:
    assert _error(lambda: Policy.from_claims(claims)) == message


# --- property: every valid policy survives its claims ---------------------------------------------

seconds = st.integers(1, 366 * 86400).map(lambda s: timedelta(seconds=s))
rates: st.SearchStrategy[Rate | None] = st.none() | st.tuples(seconds, st.integers(1, 2**53 - 1))
counts = st.none() | st.integers(1, 2**53 - 1)


@st.composite
def policies(draw: st.DrawFn) -> Policy:
    lease = timedelta(seconds=draw(st.integers(30, 86400)))
    expiry = draw(
        st.sampled_from(["none", "date", "first-use"]),
    )
    devices = tuple(draw(st.sets(st.from_regex(r"[a-z0-9-]{1,12}", fullmatch=True), max_size=3)))
    evidence = draw(st.sampled_from(EVIDENCE_TYPES))
    measurements: tuple[str, ...] = ()
    if evidence != "none":
        raw = draw(st.sets(st.binary(min_size=32, max_size=48), max_size=2))
        measurements = tuple(m.hex() for m in raw)
    max_devices = draw(counts)
    if devices and max_devices is not None:
        max_devices = min(max_devices, len(devices))
    return Policy(
        expires_at=draw(
            st.datetimes(
                min_value=datetime(2000, 1, 1),
                max_value=datetime(9000, 1, 1),
                timezones=st.just(UTC),
            )
        )
        if expiry == "date"
        else None,
        duration_from_first_use=draw(seconds) if expiry == "first-use" else None,
        max_loads=draw(counts),
        loads_per=draw(rates),
        max_devices=max_devices,
        devices=devices,
        lease=lease,
        heartbeat=draw(
            st.none()
            | st.integers(1, int(lease.total_seconds()) - 1).map(lambda s: timedelta(seconds=s))
        ),
        offline_grace=timedelta(seconds=draw(st.integers(0, 30 * 86400))),
        max_inferences_per=draw(rates),
        require_evidence=evidence,
        allowed_measurements=measurements,
    )


@given(policies())
def test_claims_round_trip(policy: Policy) -> None:
    claims = json.loads(canonical_json(policy.to_claims()))
    assert Policy.from_claims(claims) == policy
    assert claims == policy.to_claims()


def test_claims_name_every_field_of_the_dataclass() -> None:
    assert list(Policy().to_claims()) == [field.name for field in dataclasses.fields(Policy)]
