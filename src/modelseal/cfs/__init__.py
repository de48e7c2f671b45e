"""The crypto filesystem: a sealed package mounted read-only as plaintext files (see docs/cfs.md).

Reads decrypt only the segments they touch, with a key held under the license's lease; when the
lease ends every read fails with EIO. Importing this package loads neither mfusepy nor libfuse:
the FUSE adapter is imported when a mount starts.
"""

from modelseal.cfs.cache import DEFAULT_CACHE_SEGMENTS, SegmentCache
from modelseal.cfs.errors import CfsError, FuseUnavailableError, MountError, NotMountedError
from modelseal.cfs.lease import KEY_RECHECK_SECONDS, LeaseGuard
from modelseal.cfs.mount import (
    FUSE_DEVICE,
    FuseMount,
    Mount,
    check_fuse,
    fuse_mounts,
    serve_until_stopped,
    unmount,
)
from modelseal.cfs.run import DEFAULT_GRACE, EXIT_LEASE_ENDED, RunResult, run_program
from modelseal.cfs.session import CfsSession
from modelseal.cfs.view import PlaintextView

__all__ = [
    "DEFAULT_CACHE_SEGMENTS",
    "DEFAULT_GRACE",
    "EXIT_LEASE_ENDED",
    "FUSE_DEVICE",
    "KEY_RECHECK_SECONDS",
    "CfsError",
    "CfsSession",
    "FuseMount",
    "FuseUnavailableError",
    "LeaseGuard",
    "Mount",
    "MountError",
    "NotMountedError",
    "PlaintextView",
    "RunResult",
    "SegmentCache",
    "check_fuse",
    "fuse_mounts",
    "run_program",
    "serve_until_stopped",
    "unmount",
]
