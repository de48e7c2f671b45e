"""Attested key release end to end: a license that requires ``software`` evidence, a reference TCB
the owner signed for this runtime, the real vault verifying what the real agent measured."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

import modelseal
from modelseal.agent import KeyAgent
from modelseal.attestation import (
    collect_evidence,
    license_measurements,
    load_reference_tcb,
    measure_runtime,
    reference_measurements,
    sign_reference_tcb,
)
from modelseal.licensing import Policy
from modelseal.vault.api.schemas import LicenseRequest, PolicyTerms
from modelseal.vault.client import VaultRequestError
from tests.conftest import make_identity
from tests.integration.agent._world import HEARTBEAT, World


def software_license(world: World) -> str:
    """The owner measures this runtime and signs it; the controller issues a license accepting
    exactly that TCB (what `tcb create --from-runtime` and `license issue --tcb` do)."""
    owner = make_identity("Acme Models")
    now = datetime.now(UTC)
    signed = sign_reference_tcb(
        "software",
        reference_measurements("software", runtime=measure_runtime()),
        key=owner.key,
        chain=[owner.cert],
        name="modelseal runtime",
        now=now,
    )
    tcb = load_reference_tcb(signed, trust=[owner.cert], now=now)
    kind, allowed = license_measurements([tcb])
    assert kind == "software" and allowed
    policy = Policy(heartbeat=HEARTBEAT, require_evidence=kind, allowed_measurements=allowed)
    request = LicenseRequest(
        customer="acme", model="iris", versions="1", policy=PolicyTerms.of(policy)
    )
    with world.admin() as admin:
        return admin.issue_license(request).token


@pytest.fixture(scope="module")
def license_jws(world: World) -> str:
    return software_license(world)


def test_the_unchanged_runtime_gets_the_key(running: World, license_jws: str) -> None:
    with KeyAgent(running.device) as agent:
        held = agent.acquire(license_jws, "iris", 1)
        assert held.key == running.data_key
        held.close()


def test_a_modified_runtime_is_refused(running: World, license_jws: str, tmp_path: Path) -> None:
    """One changed file in a copy of the installed package: the measurement no longer matches."""
    copy = tmp_path / "modelseal"
    shutil.copytree(
        Path(modelseal.__file__).parent, copy, ignore=shutil.ignore_patterns("__pycache__")
    )
    with (copy / "errors.py").open("a") as changed:
        changed.write("\n# patched\n")

    def modified(kind: str, report_data: bytes) -> bytes:
        return collect_evidence(kind, report_data, package_dir=copy)

    with (
        KeyAgent(running.device, evidence=modified) as agent,
        pytest.raises(VaultRequestError) as refused,
    ):
        agent.acquire(license_jws, "iris", 1)
    assert refused.value.code == "EVIDENCE_REJECTED"
    assert "measurement" in refused.value.reason, refused.value.reason
    assert agent.held() == []


def test_evidence_bound_to_another_request_is_refused(running: World, license_jws: str) -> None:
    """Evidence is bound to the nonce and one-time key of its own request (report data): the
    evidence of an earlier request, replayed, is refused."""
    earlier = collect_evidence("software", bytes(64))

    def replayed(kind: str, report_data: bytes) -> bytes:
        assert report_data != bytes(64)
        return earlier

    with (
        KeyAgent(running.device, evidence=replayed) as agent,
        pytest.raises(VaultRequestError) as refused,
    ):
        agent.acquire(license_jws, "iris", 1)
    assert refused.value.code == "EVIDENCE_REJECTED"
    assert "report_data: the evidence carries 0000" in refused.value.reason, refused.value.reason


def test_no_evidence_for_a_license_that_requires_it(running: World, license_jws: str) -> None:
    def none(kind: str, report_data: bytes) -> bytes:
        return b""

    with (
        KeyAgent(running.device, evidence=none) as agent,
        pytest.raises(VaultRequestError) as refused,
    ):
        agent.acquire(license_jws, "iris", 1)
    assert refused.value.code == "EVIDENCE_REJECTED"
