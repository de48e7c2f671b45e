"""Mounting and unmounting: what the machine must offer, the FUSE thread, and clean unmounts.

A :class:`Mount` serves a :class:`PlaintextView` from a thread of this process and is live once
the kernel's INIT request reached it. Unmounting asks ``fusermount3 -u``; if programs still hold
files open, it detaches the mount lazily and aborts the FUSE connection so nothing keeps reading.
"""

from __future__ import annotations

import ctypes.util
import logging
import os
import shutil
import signal
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType

from modelseal.cfs.errors import CfsError, FuseUnavailableError, MountError, NotMountedError
from modelseal.cfs.view import PlaintextView

__all__ = [
    "DEFAULT_THREADS",
    "FUSE_DEVICE",
    "FuseMount",
    "Mount",
    "check_fuse",
    "fuse_mounts",
    "serve_until_stopped",
    "unmount",
]

FUSE_DEVICE = Path("/dev/fuse")
FSTYPE = "fuse.modelseal"
DEFAULT_THREADS = 8
READ_AHEAD_KB = 1024
_START_TIMEOUT = 30.0
_STOP_TIMEOUT = 15.0
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)

log = logging.getLogger(__name__)


# --- what the machine offers ---------------------------------------------------------------------


def check_fuse(*, device: Path | None = None, allow_other: bool = False) -> None:
    """Raise :class:`FuseUnavailableError` naming what is missing for a FUSE mount here
    (``device`` defaults to :data:`FUSE_DEVICE`, looked up at call time)."""
    device = FUSE_DEVICE if device is None else device
    if not device.exists():
        raise FuseUnavailableError(
            f"cannot mount: {device} does not exist (the fuse kernel module is not loaded, or this "
            "container was started without the FUSE device, e.g. docker run --device /dev/fuse "
            "--cap-add SYS_ADMIN)"
        )
    if not os.access(device, os.R_OK | os.W_OK):
        raise FuseUnavailableError(
            f"cannot mount: no permission to open {device} for reading and writing (run as a user "
            "allowed to use FUSE, or ask the administrator for access)"
        )
    if ctypes.util.find_library("fuse3") is None:
        raise FuseUnavailableError(
            "cannot mount: the libfuse3 library is missing (install the fuse3 package, e.g. "
            "apt-get install fuse3)"
        )
    if shutil.which("fusermount3") is None:
        raise FuseUnavailableError(
            "cannot mount: fusermount3 is missing (install the fuse3 package, e.g. "
            "apt-get install fuse3)"
        )
    if allow_other and os.geteuid() != 0 and not _user_allow_other():
        raise FuseUnavailableError(
            "cannot mount with --allow-other: /etc/fuse.conf does not contain user_allow_other",
            hint="mount without --allow-other (only you can read the files), or ask the "
            "administrator to enable user_allow_other",
        )


def _user_allow_other() -> bool:
    try:
        text = Path("/etc/fuse.conf").read_text(encoding="utf-8")
    except OSError:
        return False
    return any(line.strip() == "user_allow_other" for line in text.splitlines())


# --- the mount table -----------------------------------------------------------------------------


@dataclass(frozen=True)
class FuseMount:
    """One line of /proc/self/mountinfo for a FUSE filesystem."""

    mountpoint: str
    fstype: str
    source: str
    device: str  # major:minor; the minor number names the FUSE connection


def _unescape(field: str) -> str:
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(code, char)
    return field


def fuse_mounts() -> list[FuseMount]:
    """Every FUSE mount this process can see."""
    found = []
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as table:
        for line in table:
            left, _, right = line.partition(" - ")
            fields, tail = left.split(), right.split()
            if len(fields) < 5 or len(tail) < 2 or not tail[0].startswith("fuse"):
                continue
            found.append(FuseMount(_unescape(fields[4]), tail[0], _unescape(tail[1]), fields[2]))
    return found


def _mounted_at(mountpoint: Path) -> FuseMount | None:
    target = os.path.realpath(mountpoint)
    for mount in reversed(fuse_mounts()):
        if mount.mountpoint == target:
            return mount
    return None


# --- unmounting ----------------------------------------------------------------------------------


def _fusermount(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - fixed program, arguments are paths
        ["fusermount3", *args],  # noqa: S607 - found on PATH, as libfuse itself does
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def _abort_connection(mount: FuseMount) -> None:
    """Abort the FUSE connection (root only): pending and future requests fail at once."""
    minor = mount.device.partition(":")[2]
    try:
        Path(f"/sys/fs/fuse/connections/{minor}/abort").write_text("1", encoding="ascii")
    except OSError:
        log.debug("cannot abort FUSE connection %s", minor, exc_info=True)


def unmount(mountpoint: Path, *, lazy: bool = False) -> None:
    """Unmount a modelseal mount; raise :class:`NotMountedError` when there is none."""
    mount = _mounted_at(mountpoint)
    if mount is None:
        raise NotMountedError(
            f"{mountpoint} is not mounted (no FUSE filesystem is mounted there)",
            hint="see the mounts with `grep fuse /proc/mounts`",
        )
    if mount.fstype != FSTYPE:
        raise NotMountedError(
            f"{mountpoint} is a {mount.fstype} mount, not a modelseal mount; not touching it"
        )
    if shutil.which("fusermount3") is None:
        raise FuseUnavailableError("cannot unmount: fusermount3 is missing (install fuse3)")
    done = _fusermount("-u", *(["-z"] if lazy else []), mount.mountpoint)
    if done.returncode != 0:
        detail = done.stderr.strip().removeprefix("fusermount3: ") or f"exit code {done.returncode}"
        busy = "busy" in detail.lower()
        raise CfsError(
            f"cannot unmount {mountpoint}: {detail}",
            hint="close the programs that use files under it (see `fuser -vm "
            f"{mountpoint}`), or unmount lazily with --lazy"
            if busy
            else None,
        )


def _raise_readahead(mountpoint: Path) -> None:
    """Let the kernel read ahead a whole segment per request instead of 128 KiB (root only):
    fewer, larger FUSE requests; sequential reads run ~20-40 % faster (see docs/cfs.md)."""
    device = os.stat(mountpoint).st_dev
    knob = Path(f"/sys/class/bdi/{os.major(device)}:{os.minor(device)}/read_ahead_kb")
    try:
        knob.write_text(str(READ_AHEAD_KB), encoding="ascii")
    except OSError:
        log.debug("cannot raise the read-ahead of %s", mountpoint, exc_info=True)


# --- a live mount --------------------------------------------------------------------------------


class Mount:
    """``view`` mounted read-only at ``mountpoint``, served by a thread of this process.

    Use as a context manager, or call :meth:`start` and :meth:`unmount`. ``device`` is the FUSE
    device checked before mounting (a test can point it elsewhere to see the error).
    """

    def __init__(
        self,
        view: PlaintextView,
        mountpoint: Path,
        *,
        allow_other: bool = False,
        threads: int = DEFAULT_THREADS,
        device: Path | None = None,
    ) -> None:
        self.view = view
        self.mountpoint = Path(os.path.abspath(mountpoint))
        self.allow_other = allow_other
        self._threads = threads
        self._device = device
        self._ready = threading.Event()
        self._stopped = threading.Event()
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._connection: FuseMount | None = None

    @property
    def live(self) -> bool:
        """True from the moment the kernel talks to us until the FUSE session ends."""
        return self._ready.is_set() and not self._stopped.is_set()

    def start(self, timeout: float = _START_TIMEOUT) -> None:
        check_fuse(device=self._device, allow_other=self.allow_other)
        if not self.mountpoint.is_dir():
            raise MountError(f"cannot mount at {self.mountpoint}: it is not an existing directory")
        if _mounted_at(self.mountpoint) is not None:
            raise MountError(
                f"cannot mount at {self.mountpoint}: a FUSE filesystem is already mounted there",
                hint=f"modelseal unmount {self.mountpoint}",
            )
        cwd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            self._thread = threading.Thread(target=self._serve, name="cfs-fuse", daemon=True)
            self._thread.start()
            while not self._ready.wait(0.05):
                if self._stopped.is_set() or (timeout := timeout - 0.05) <= 0:
                    break
        finally:
            os.fchdir(cwd)  # libfuse changes to / before serving, even in the foreground
            os.close(cwd)
        if not self._ready.is_set():
            if not self._stopped.is_set():
                self.unmount()
            reason = f": {self._error}" if self._error else " (see the messages above)"
            raise MountError(f"mounting {self.view.model} at {self.mountpoint} failed{reason}")
        self._connection = _mounted_at(self.mountpoint)
        _raise_readahead(self.mountpoint)
        self.view.guard.on_end(self._lease_ended)
        log.info("mounted %s read-only at %s", self.view.model, self.mountpoint)

    def _lease_ended(self, status: object) -> None:
        # Called on the agent's thread, which must not block: evict the kernel's cached pages
        # from another thread, so reads that the page cache would have answered fail too.
        threading.Thread(target=self._evict_page_cache, name="cfs-evict", daemon=True).start()

    def _evict_page_cache(self) -> None:
        """Open every file once: an open without FOPEN_KEEP_CACHE makes the kernel drop the
        file's cached pages (and unmap them), so every later read comes to us and fails."""
        for entry in self.view.tree.files:
            if not self.live:
                return
            try:
                os.close(os.open(self.mountpoint / entry.path, os.O_RDONLY | os.O_CLOEXEC))
            except OSError:
                log.debug("cannot evict the cached pages of %s", entry.path, exc_info=True)

    def _serve(self) -> None:
        try:
            from modelseal.cfs import _fuse
        except (OSError, ImportError) as exc:  # mfusepy raises OSError when libfuse is missing
            self._error = FuseUnavailableError(f"cannot load libfuse3 through mfusepy: {exc}")
            self._stopped.set()
            return
        try:
            _fuse.serve(
                self.view,
                str(self.mountpoint),
                self._ready.set,
                allow_other=self.allow_other,
                threads=self._threads,
            )
        except BaseException as exc:  # reported by start() or wait()
            self._error = exc
        finally:
            self._stopped.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the FUSE session ends (someone unmounted); True if it has."""
        return self._stopped.wait(timeout)

    def unmount(self) -> None:
        """Unmount (lazily if files are still open) and wait for the FUSE thread to end."""
        if self._thread is None or self._stopped.is_set():
            self._join()
            return
        done = _fusermount("-u", str(self.mountpoint))
        if done.returncode != 0 and not self._stopped.is_set():
            log.warning(
                "%s is still in use (%s); detaching it lazily and aborting its connection",
                self.mountpoint,
                done.stderr.strip(),
            )
            self.view.drop_key()
            _fusermount("-u", "-z", str(self.mountpoint))
            if self._connection is not None:
                _abort_connection(self._connection)
        self._join()

    def _join(self) -> None:
        if self._thread is not None:
            self._thread.join(_STOP_TIMEOUT)
            if self._thread.is_alive():
                log.warning("the FUSE session at %s did not end", self.mountpoint)

    def __enter__(self) -> Mount:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.unmount()


def serve_until_stopped(
    view: PlaintextView,
    mountpoint: Path,
    *,
    allow_other: bool = False,
    threads: int = DEFAULT_THREADS,
    device: Path | None = None,
    ready: Callable[[], None] | None = None,
) -> None:
    """Mount and serve until ``modelseal unmount`` (or ``fusermount3 -u``), SIGTERM, SIGINT or
    SIGHUP; then unmount. Call from the main thread."""
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {signum: signal.signal(signum, on_signal) for signum in _STOP_SIGNALS}
    try:
        with Mount(
            view, mountpoint, allow_other=allow_other, threads=threads, device=device
        ) as mount:
            if ready is not None:
                ready()
            while not stop.wait(0.2) and not mount.wait(0):
                pass
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
