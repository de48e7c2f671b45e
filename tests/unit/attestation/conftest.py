"""Attestation samples (tests/vectors/attestation, see its README for provenance) and times."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from modelseal.attestation import Collateral, load_collateral

VECTORS = Path(__file__).resolve().parents[2] / "vectors" / "attestation"

# The "now" each sample is documented at (tests/vectors/attestation/README.md).
SGX_NOW = dt.datetime.fromtimestamp(1752919277, dt.UTC)
TDX_NOW = dt.datetime.fromtimestamp(1752919234, dt.UTC)
TDX_OUTDATED_NOW = dt.datetime.fromtimestamp(1774003274, dt.UTC)
SPR_E4_NOW = dt.datetime(2023, 7, 1, 1, 0, tzinfo=dt.UTC)
V5_SAMPLE_NOW = dt.datetime(2026, 2, 3, 1, 0, tzinfo=dt.UTC)
TRUSTEE_NOW = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)  # inside every certificate's validity
SNP_NOW = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)


def vector(name: str) -> bytes:
    return (VECTORS / name).read_bytes()


def collateral(name: str) -> Collateral:
    return load_collateral(vector(name), what=name)


def snp_report(name: str) -> bytes:
    data = vector(name)
    return bytes.fromhex(data.decode("ascii")) if name.endswith(".hex") else data


@pytest.fixture(scope="session")
def milan_chain() -> bytes:
    return vector("go-sev-guest/ask_ark_milan.pem")
