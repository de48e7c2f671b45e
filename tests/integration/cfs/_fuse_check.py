"""Whether this machine can run real FUSE mounts: shared by the cfs and the jobs tests."""

from __future__ import annotations

from modelseal.cfs import FuseUnavailableError, check_fuse


def fuse_missing(who: str) -> str | None:
    """Why ``who`` (e.g. "FUSE tests") cannot run here, or None when a mount would work."""
    try:
        check_fuse()
        import mfusepy  # type: ignore[import-untyped]  # noqa: F401 - loads libfuse3
    except FuseUnavailableError as exc:
        return f"{who} need a usable /dev/fuse: {exc.message}"
    except (ImportError, OSError) as exc:
        return f"{who} need mfusepy over libfuse3: {exc}"
    return None
