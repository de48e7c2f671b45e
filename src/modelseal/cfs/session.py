"""Everything one mount holds: the open package, the held key, and the plaintext view over both."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from modelseal._closing import Closing
from modelseal.agent.source import KeySource, ModelKey
from modelseal.cfs.cache import DEFAULT_CACHE_SEGMENTS
from modelseal.cfs.lease import KEY_RECHECK_SECONDS, LeaseGuard
from modelseal.cfs.view import DEFAULT_READAHEAD, PlaintextView
from modelseal.package import SealedPackage

__all__ = ["CfsSession"]

log = logging.getLogger(__name__)


class CfsSession(Closing):
    """Open ``sealed``, acquire its key from ``source`` under ``license_token``, and offer the
    plaintext view. The model name and version come from the signed manifest. Closing releases
    the key (the lease then runs out at the vault) and the package; the source stays open."""

    def __init__(
        self,
        sealed: Path,
        source: KeySource,
        license_token: str,
        *,
        cache_segments: int = DEFAULT_CACHE_SEGMENTS,
        readahead: int = DEFAULT_READAHEAD,
        recheck: float = KEY_RECHECK_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.package = SealedPackage.open(sealed)
        try:
            info = self.package.manifest.model
            self.model_key: ModelKey = source.acquire(license_token, info.name, info.version)
            try:
                self.package.check_key(self.model_key.key)
                self.guard = LeaseGuard(self.model_key, recheck=recheck, clock=clock)
                self.view = PlaintextView(
                    self.package, self.guard, cache_segments=cache_segments, readahead=readahead
                )
            except BaseException:
                self.model_key.close()
                raise
        except BaseException:
            self.package.close()
            raise

    def close(self) -> None:
        self.guard.close()
        self.view.close()
        self.model_key.close()
        self.package.close()
