"""Errors of the crypto filesystem: each says what is missing and what to do instead."""

from __future__ import annotations

from modelseal.errors import Error

__all__ = ["CfsError", "FuseUnavailableError", "MountError", "NotMountedError"]

SERVE_HINT = (
    "`modelseal serve` loads sealed models in memory and needs no FUSE; use it where mounting "
    "is not possible"
)


class CfsError(Error):
    """Something about a crypto filesystem mount went wrong."""

    code = "CFS"


class FuseUnavailableError(CfsError):
    """This machine (or this user) cannot mount FUSE filesystems."""

    code = "FUSE_UNAVAILABLE"

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message, hint=hint or SERVE_HINT)


class MountError(CfsError):
    """The mount itself failed (mount point, options, or the FUSE session)."""

    code = "MOUNT_FAILED"


class NotMountedError(CfsError):
    """``unmount`` was asked for a directory that is not a FUSE mount."""

    code = "NOT_MOUNTED"
