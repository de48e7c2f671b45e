"""Errors of the vault service layer that are not license refusals.

A refusal of a key release or renewal is a :class:`modelseal.licensing.Refusal` (a stable code the
device branches on). Everything else the service says no to is a :class:`VaultError`; the REST
adapter maps each ``code`` to a status in its one error table:

=============== ============================================================== ======
code            meaning                                                        status
=============== ============================================================== ======
NOT_FOUND       no customer, model, device or license by that name or id       404
CONFLICT        it exists already (same customer name, same model version)     409
BAD_REQUEST     the request itself is wrong (a bad signature, CSR or key)      400
UNAUTHORIZED    the enrolment token is unknown, expired, used or for another   401
                vault
VAULT           the vault cannot do it (a data key that does not unwrap)       500
=============== ============================================================== ======
"""

from __future__ import annotations

from modelseal.errors import Error

__all__ = ["BadRequest", "Conflict", "NotFound", "Unauthorized", "VaultError"]


class VaultError(Error):
    """The vault cannot do what was asked; the subclass says why."""

    code = "VAULT"


class NotFound(VaultError):  # noqa: N818 - named for the answer, like the HTTP status
    """The customer, model, device or license named does not exist."""

    code = "NOT_FOUND"


class Conflict(VaultError):  # noqa: N818
    """It exists already (a customer name, a model name and version)."""

    code = "CONFLICT"


class BadRequest(VaultError):  # noqa: N818
    """The request is malformed or its content does not check out."""

    code = "BAD_REQUEST"


class Unauthorized(VaultError):  # noqa: N818
    """The enrolment token does not admit this request (unknown, expired, used, another vault)."""

    code = "UNAUTHORIZED"
