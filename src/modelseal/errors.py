"""The root of every error modelseal raises on purpose.

Each error carries one sentence a person can act on. The CLI prints :meth:`Error.diagnostics`
and exits non-zero; adapters map the error's ``code`` to a status.
"""

from __future__ import annotations

__all__ = ["Error", "UsageError"]


class Error(Exception):
    """Base class of all modelseal errors.

    ``code`` is a stable machine-readable identifier; ``hint`` is an optional next step.
    """

    code: str = "ERROR"

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def diagnostics(self) -> str:
        """The text shown to a person: what went wrong and, when known, what to do."""
        if self.hint:
            return f"{self.message}\n  hint: {self.hint}"
        return self.message


class UsageError(Error):
    """The caller asked for something that cannot be done as asked."""

    code = "USAGE"
