"""Fixtures of the vault unit tests: vault homes and services (see ``tests/vaulthome.py``)."""

from __future__ import annotations

from tests.vaulthome import (
    clock,
    pristine_vault_home,
    seeded_vault_home,
    service,
    unlocked_vault,
    vault_home,
)

__all__ = [
    "clock",
    "pristine_vault_home",
    "seeded_vault_home",
    "service",
    "unlocked_vault",
    "vault_home",
]
