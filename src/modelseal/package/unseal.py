"""Opening a sealed package for its owner: decrypt every file into a new directory.

Plaintext goes to a private temporary directory beside the destination and is renamed into place
only when every segment authenticated and every ciphertext matched its signed SHA-256; on any
failure the temporary directory is removed, so no plaintext is left behind.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
import shutil
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path

from modelseal.crypto import Certificate, DataKey
from modelseal.package.errors import PackageError
from modelseal.package.manifest import Manifest
from modelseal.package.sealed import SealedPackage
from modelseal.progress import NO_PROGRESS, Progress

__all__ = ["open_package"]


def open_package(
    path: Path,
    key: DataKey,
    out: Path,
    *,
    trust: Sequence[Certificate] = (),
    workers: int | None = None,
    progress: Progress = NO_PROGRESS,
    now: dt.datetime | None = None,
) -> Manifest:
    """Decrypt the package at ``path`` into the new directory ``out``; return its manifest."""
    if out.exists() or out.is_symlink():
        raise PackageError(
            f"{out} already exists; nothing was written", hint="choose a new --out directory"
        )
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise PackageError(f"{out.parent} is not a directory") from None
    # One core goes to the SHA-256 check of the ciphertext, which bounds the whole run.
    workers = workers or max(1, (os.cpu_count() or 1) - 1)
    with SealedPackage.open(path) as package:
        if trust:
            package.check_trust(trust, now=now)
        package.check_key(key)
        manifest = package.manifest
        tmp = out.with_name(f".{out.name}.partial-{secrets.token_hex(4)}")
        tmp.mkdir(mode=0o700)
        try:
            progress.start("opening", manifest.total_size)
            with ThreadPoolExecutor(1, thread_name_prefix="digest") as digests:
                for entry in manifest.files:
                    target = tmp / entry.path
                    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                    check = digests.submit(package.verify_ciphertext, entry)
                    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
                    try:
                        package.reader(entry.path, key).write_to_fd(
                            fd, workers=workers, progress=progress
                        )
                    except BaseException:
                        wait([check])  # report the decryption failure: it names the segment
                        raise
                    finally:
                        os.close(fd)
                    check.result()  # raises IntegrityError on a digest mismatch
            if out.exists() or out.is_symlink():
                raise PackageError(f"{out} appeared while opening; nothing was written")
            os.rename(tmp, out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return manifest
