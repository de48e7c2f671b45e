"""The vault's service layer: every vault operation, protocol-free (docs/vault.md).

The REST routes only translate HTTP to these calls and back. Importing this package imports
SQLAlchemy (through :mod:`modelseal.vault.db`).
"""

from modelseal.vault.service._core import utc_now
from modelseal.vault.service.errors import (
    BadRequest,
    Conflict,
    NotFound,
    Unauthorized,
    VaultError,
)
from modelseal.vault.service.leases import LEASE_TYP
from modelseal.vault.service.service import VaultService
from modelseal.vault.service.views import (
    AuditReport,
    Challenge,
    CustomerView,
    DeviceView,
    Enrollment,
    GeneratedKey,
    LeaseGrant,
    LicenseState,
    LicenseView,
    ModelView,
    ReleaseGrant,
    ReleaseRequest,
)

__all__ = [
    "LEASE_TYP",
    "AuditReport",
    "BadRequest",
    "Challenge",
    "Conflict",
    "CustomerView",
    "DeviceView",
    "Enrollment",
    "GeneratedKey",
    "LeaseGrant",
    "LicenseState",
    "LicenseView",
    "ModelView",
    "NotFound",
    "ReleaseGrant",
    "ReleaseRequest",
    "Unauthorized",
    "VaultError",
    "VaultService",
    "utc_now",
]
