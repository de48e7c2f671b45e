"""A held key: one lease, renewed by heartbeat on its own thread, until the license says stop.

The renewal itself is a function handed in (:data:`Renewer`), so this module knows no HTTP: it
gets back :class:`Renewed` (new expiry), :class:`Refused` (a definitive refusal: the lease ends
with the vault's code and sentence) or :class:`Unavailable` (the vault could not answer now:
retry with exponential backoff and jitter, never waiting longer than a heartbeat, while the
offline grace runs). Past ``usable_until`` (the last lease expiry plus the offline grace) the key
is gone: ``OFFLINE_GRACE_USED_UP``.

Every decision uses the injected clock; waiting uses a :class:`threading.Event`, so ``close`` is
immediate. The lease ends once; the key reference is dropped at that moment, and the ``on_end``
callbacks run once, on the renewal thread (or on the thread that calls ``close``).
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from modelseal.agent.meter import InferenceMeter
from modelseal.agent.release import ReleasedKey
from modelseal.agent.source import LeaseEndedError, LeaseState, LeaseStatus
from modelseal.crypto import DataKey
from modelseal.licensing import format_datetime, format_duration

__all__ = [
    "CLOSED",
    "OFFLINE_GRACE_USED_UP",
    "Clock",
    "HeldKey",
    "Outcome",
    "Refused",
    "Renewed",
    "Renewer",
    "Unavailable",
]

OFFLINE_GRACE_USED_UP: Final = "OFFLINE_GRACE_USED_UP"
CLOSED: Final = "CLOSED"
_FIRST_RETRY: Final = timedelta(milliseconds=500)
_MIN_WAIT: Final = timedelta(milliseconds=50)

Clock = Callable[[], datetime]
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Renewed:
    """The vault renewed the lease."""

    expires_at: datetime
    heartbeat: timedelta
    offline_grace: timedelta


@dataclass(frozen=True)
class Refused:
    """The vault said no for good: the lease ends with this code and sentence."""

    code: str
    reason: str


@dataclass(frozen=True)
class Unavailable:
    """The vault could not be asked or could not answer now (unreachable, 5xx, 429)."""

    code: str
    reason: str
    retry_after: timedelta | None = None


Outcome = Renewed | Refused | Unavailable
Renewer = Callable[[str, int], Outcome]
"""``renewer(lease_id, inferences)``: one renewal reporting ``inferences``."""


class HeldKey:
    """A :class:`~modelseal.agent.source.ModelKey` held in this process."""

    def __init__(
        self,
        released: ReleasedKey,
        *,
        renewer: Renewer,
        meter: InferenceMeter,
        clock: Clock,
        rng: random.Random | None = None,
    ) -> None:
        self._renewer = renewer
        self._meter = meter
        self._clock = clock
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not a secret
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._key: DataKey | None = released.key
        self._license_id = released.license.id
        self._model = released.model_name
        self._version = released.model_version
        self._lease_id = released.lease_id
        self._expires_at = released.expires_at
        self._heartbeat = released.heartbeat
        self._grace = released.offline_grace
        self._state: LeaseState = "active"
        self._code: str | None = None
        self._reason: str | None = None
        self._pending = 0
        self._reported = 0
        self._failures = 0
        self._next_attempt = clock() + self._heartbeat
        self._offline_since: datetime | None = None
        self._problem: str | None = None
        self._callbacks: list[Callable[[LeaseStatus], None]] = []
        self._fired = False
        self._thread: threading.Thread | None = None

    # --- the ModelKey contract --------------------------------------------------------------------

    @property
    def key(self) -> DataKey:
        with self._lock:
            self._check_deadline(self._clock())
            if self._key is None:
                raise LeaseEndedError(self._status())
            return self._key

    def status(self) -> LeaseStatus:
        with self._lock:
            self._check_deadline(self._clock())
            return self._status()

    def count_inferences(self, count: int = 1) -> None:
        with self._lock:
            now = self._clock()
            self._check_deadline(now)
            if self._state == "ended":
                raise LeaseEndedError(self._status())
            self._meter.take(count, now)
            self._pending += count

    def on_end(self, callback: Callable[[LeaseStatus], None]) -> None:
        with self._lock:
            if not self._fired:
                self._callbacks.append(callback)
                return
            status = self._status()
        _run(callback, status)

    def close(self) -> None:
        self.end(CLOSED, "The holder let go of the key")

    # --- for the agent ----------------------------------------------------------------------------

    def start(self) -> None:
        """Start renewing (once)."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name=f"modelseal-lease-{self._lease_id}", daemon=True
            )
            self._thread.start()

    def end(self, code: str, reason: str) -> None:
        """End the lease now (unless it has ended) and run the callbacks on this thread."""
        with self._lock:
            self._end(code, reason)
        self._fire()

    def join(self, timeout: float) -> None:
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def step(self) -> None:
        """One renewal when one is due, and the callbacks when the lease has ended (the renewal
        thread's work; tests call it directly)."""
        self._step()
        self._fire()

    def _step(self) -> None:
        with self._lock:
            now = self._clock()
            if self._state == "ended" or self._check_deadline(now) or now < self._next_attempt:
                return
            lease_id, report = self._lease_id, self._pending
        try:
            outcome = self._renewer(lease_id, report)
        except Exception as exc:  # a bug (or the agent closing the client) must not stop this
            with self._lock:
                if self._has_ended():
                    return
            log.exception("renewal of lease %s failed unexpectedly", lease_id)
            outcome = Unavailable("INTERNAL", f"the renewal failed unexpectedly ({exc!r})")
        with self._lock:
            if self._has_ended():  # closed while the request was on its way
                return
            now = self._clock()
            if isinstance(outcome, Renewed):
                self._renewed(outcome, report, now)
            elif isinstance(outcome, Refused):
                log.warning("lease %s ended by the vault: %s", lease_id, outcome.code)
                self._end(outcome.code, outcome.reason)
            else:
                self._unavailable(outcome, now)

    # --- inside -----------------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            self.step()
            with self._lock:
                if self._state == "ended":
                    break
                due = min(self._next_attempt, self._usable_until() + _MIN_WAIT)
                wait = min(max(due - self._clock(), _MIN_WAIT), self._heartbeat)
            self._wake.wait(wait.total_seconds())
            self._wake.clear()
        self._fire()  # when another thread ended the lease after the last step

    def _renewed(self, grant: Renewed, report: int, now: datetime) -> None:
        if self._state == "offline":
            log.warning("lease %s renewed again after being offline", self._lease_id)
        self._expires_at = grant.expires_at
        self._heartbeat = grant.heartbeat
        self._grace = grant.offline_grace
        self._pending -= report
        self._reported += report
        self._state = "active"
        self._failures = 0
        self._offline_since = None
        self._problem = None
        self._next_attempt = now + self._heartbeat

    def _unavailable(self, outcome: Unavailable, now: datetime) -> None:
        if self._state == "active":
            log.warning("lease %s could not be renewed: %s", self._lease_id, outcome.reason)
        self._state = "offline"
        self._failures += 1
        self._offline_since = self._offline_since or now
        self._problem = outcome.reason
        delay = min(_FIRST_RETRY * 2 ** min(self._failures - 1, 30), self._heartbeat)
        delay = delay * self._rng.uniform(0.5, 1.0)
        if outcome.retry_after is not None:
            if outcome.code == "RATE_LIMITED":
                self._meter.block_until(now + outcome.retry_after)
            delay = min(max(delay, outcome.retry_after), self._heartbeat)
        self._next_attempt = now + max(delay, _MIN_WAIT)
        self._check_deadline(now)

    def _has_ended(self) -> bool:
        return self._state == "ended"

    def _usable_until(self) -> datetime:
        return self._expires_at + self._grace

    def _check_deadline(self, now: datetime) -> bool:
        """End the lease when ``now`` is past ``usable_until``; True when it has ended."""
        if self._state == "ended":
            return True
        until = self._usable_until()
        if now <= until:
            return False
        if self._offline_since is not None:
            reason = (
                f"The vault could not be reached since {format_datetime(self._offline_since)} "
                f"({self._problem}), and the lease with its offline grace of "
                f"{format_duration(self._grace)} ran out at {format_datetime(until)}; restore "
                "the connection to the vault and load the model again"
            )
        else:
            reason = (
                f"The lease was not renewed before it ran out at {format_datetime(until)} "
                f"(expiry plus an offline grace of {format_duration(self._grace)}); check that "
                "this machine's clock is right and load the model again"
            )
        self._end(OFFLINE_GRACE_USED_UP, reason)
        return True

    def _end(self, code: str, reason: str) -> None:
        if self._state == "ended":
            return
        self._state = "ended"
        self._code, self._reason = code, reason
        self._key = None  # the only reference this agent had
        self._wake.set()

    def _fire(self) -> None:
        with self._lock:
            if self._state != "ended":
                return
            callbacks, self._callbacks = self._callbacks, []
            self._fired = True
            status = self._status()
        for callback in callbacks:
            _run(callback, status)

    def _status(self) -> LeaseStatus:
        return LeaseStatus(
            state=self._state,
            license_id=self._license_id,
            model_name=self._model,
            model_version=self._version,
            lease_id=self._lease_id,
            expires_at=self._expires_at,
            usable_until=self._usable_until(),
            heartbeat=self._heartbeat,
            inferences_reported=self._reported,
            code=self._code,
            reason=self._reason,
        )

    def __repr__(self) -> str:
        return f"HeldKey({self._model} version {self._version}, lease {self._lease_id})"


def _run(callback: Callable[[LeaseStatus], None], status: LeaseStatus) -> None:
    try:
        callback(status)
    except Exception:
        log.exception("an on_end callback failed")
