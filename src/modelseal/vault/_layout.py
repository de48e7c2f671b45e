"""Where each file of a vault home lives, the label each secret is sealed under, and file I/O.

Paths are relative to the home and use ``/``; messages name files by these paths.
"""

from __future__ import annotations

import base64
import binascii
import fcntl
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

from modelseal import _files
from modelseal._files import fsync_dir, write_new
from modelseal.crypto import (
    Certificate,
    CryptoError,
    FormatError,
    SigningKey,
    canonical_json,
    load_certificates,
    parse_canonical_json,
    public_key_matches,
    verify_chain,
)
from modelseal.crypto.masterkey import data_key_context
from modelseal.errors import Error

__all__ = [
    "ADMIN_CA",
    "ADMIN_CERT",
    "ADMIN_CREDENTIAL",
    "ADMIN_DIR",
    "ADMIN_KEY",
    "CA_CERT",
    "CA_KEY",
    "DIRS",
    "HOME_KEY",
    "IMPORT_KEY",
    "IMPORT_PRIVATE_KEY",
    "LICENSE_KEY",
    "LICENSE_KEYS",
    "MASTER_KEY",
    "PRIVATE_DIR_MODE",
    "PRIVATE_FILE_MODE",
    "PUBLIC_FILE_MODE",
    "SEALED_KEYS",
    "SETTINGS",
    "STAGED_SUFFIX",
    "TLS_CERT",
    "TLS_KEY",
    "HomeError",
    "dump_wrapped_home_key",
    "fsync_dir",
    "home_key_context",
    "home_lock",
    "load_wrapped_home_key",
    "read_file",
    "replace_file",
    "seal_label",
    "settle_staged_pair",
    "staged",
    "write_file",
]

SETTINGS: Final = "vault.json"
MASTER_KEY: Final = "master-key.json"
CA_CERT: Final = "ca/ca.pem"
TLS_CERT: Final = "tls/server.pem"
LICENSE_KEYS: Final = "license-keys.json"
IMPORT_KEY: Final = "import-key.pem"
HOME_KEY: Final = "secrets/home-key.wrapped"
CA_KEY: Final = "secrets/ca-key.pem.sealed"
TLS_KEY: Final = "secrets/tls-server-key.pem.sealed"
LICENSE_KEY: Final = "secrets/license-signing-key.pem.sealed"
IMPORT_PRIVATE_KEY: Final = "secrets/import-key.pem.sealed"
SEALED_KEYS: Final = (CA_KEY, TLS_KEY, LICENSE_KEY, IMPORT_PRIVATE_KEY)
DIRS: Final = ("ca", "tls", "secrets")

ADMIN_DIR: Final = "admin"
ADMIN_CERT: Final = "client.pem"
ADMIN_KEY: Final = "client-key.pem"
ADMIN_CA: Final = "ca.pem"
ADMIN_CREDENTIAL: Final = "credential.json"

STAGED_SUFFIX: Final = ".next"
"""A replacement written beside the file it replaces, before the rename (``vault renew-cert``)."""

PRIVATE_DIR_MODE: Final = 0o700
PRIVATE_FILE_MODE: Final = 0o600
PUBLIC_FILE_MODE: Final = 0o644

_HOME_KEY_TYPE: Final = "modelseal.vault-home-key"


class HomeError(Error):
    """A vault home cannot be created, read or unlocked as it is."""

    code = "VAULT_HOME"


def home_key_context(vault_id: str, *, key_id: str, master_version: int) -> bytes:
    """What the home key is wrapped under: model id = the vault id (never a model's), version 0."""
    return data_key_context(
        model_id=vault_id, version=0, key_id=key_id, master_version=master_version
    )


def seal_label(relative: str) -> str:
    """The label a sealed file is bound to: a sealed file renamed to another one does not open."""
    return f"modelseal vault home: {relative}"


def write_file(root: Path, relative: str, data: bytes, mode: int) -> None:
    """Create ``root/relative`` (it must not exist) with exactly ``mode``, and fsync it."""
    write_new(root / relative, data, mode)


def replace_file(root: Path, relative: str, data: bytes, mode: int) -> None:
    """Atomically make ``root/relative`` hold ``data`` with ``mode``: after a crash the file is
    wholly old or wholly new, never half written."""
    _files.replace_file(root / relative, data, mode)


def read_file(home: Path, relative: str) -> bytes:
    """The bytes of ``home/relative``; a missing or unreadable file is one :class:`HomeError`."""
    try:
        return (home / relative).read_bytes()
    except FileNotFoundError:
        raise HomeError(
            f"{relative} is missing from the vault home {home}",
            hint="restore the vault home from a backup; `modelseal vault init` creates a new one",
        ) from None
    except OSError as exc:
        raise HomeError(f"cannot read {relative} in the vault home {home}: {exc.strerror}") from exc


def dump_wrapped_home_key(*, key_id: str, master_version: int, wrapped: bytes) -> bytes:
    """``secrets/home-key.wrapped``: the home key's id and its master-key-wrapped bytes."""
    return canonical_json(
        {
            "type": _HOME_KEY_TYPE,
            "key_id": key_id,
            "master_version": master_version,
            "wrapped": base64.b64encode(wrapped).decode("ascii"),
        }
    )


def load_wrapped_home_key(data: bytes, *, home: Path) -> tuple[str, int, bytes]:
    """``(key id, master-key version, wrapped bytes)`` of ``secrets/home-key.wrapped``."""
    problem = f"{HOME_KEY} in the vault home {home} is damaged"
    try:
        document = parse_canonical_json(data, what=HOME_KEY)
    except FormatError as exc:
        raise HomeError(f"{problem}: {exc}", hint="restore it from a backup") from None
    if not isinstance(document, dict) or set(document) != {
        "type",
        "key_id",
        "master_version",
        "wrapped",
    }:
        raise HomeError(f"{problem}: it lacks or adds fields", hint="restore it from a backup")
    key_id, version, wrapped = (
        document["key_id"],
        document["master_version"],
        document["wrapped"],
    )
    if (
        document["type"] != _HOME_KEY_TYPE
        or not isinstance(key_id, str)
        or not isinstance(version, int)
        or not isinstance(wrapped, str)
    ):
        raise HomeError(f"{problem}: a field has the wrong type", hint="restore it from a backup")
    try:
        blob = base64.b64decode(wrapped, validate=True)
    except binascii.Error:
        raise HomeError(f"{problem}: 'wrapped' is not base64", hint="restore it") from None
    return key_id, version, blob


def staged(relative: str) -> str:
    """Where the replacement of ``relative`` waits for its rename: ``<relative>.next``."""
    return relative + STAGED_SUFFIX


_HELD: set[tuple[int, int, int]] = set()  # (device, inode, thread) of the locks held here


@contextmanager
def home_lock(path: Path, *, busy: Callable[[], Exception], wait: float = 0.0) -> Iterator[None]:
    """An exclusive lock on the home directory, so that no two rotations or certificate renewals
    (nor a renewal and the unlock that finishes a half-done one) change its files at once.

    Raises ``busy()`` when another process (or thread) still holds it after ``wait`` seconds.
    Re-entrant within one thread: a renewal holds it while it unlocks the home.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise HomeError(
            f"{path} is not a vault home (it does not exist)",
            hint="create one with `modelseal vault init --home DIR`, or check the path",
        ) from None
    except OSError as exc:
        raise HomeError(f"cannot open the vault home {path}: {exc.strerror}") from exc
    try:
        info = os.fstat(fd)
        held = (info.st_dev, info.st_ino, threading.get_ident())
        if held in _HELD:
            yield
            return
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise busy() from None
                time.sleep(0.05)
        _HELD.add(held)
        try:
            yield
        finally:
            _HELD.discard(held)
    finally:
        os.close(fd)


def settle_staged_pair(
    root: Path,
    key: str,
    cert: str,
    *,
    ca: Certificate,
    open_key: Callable[[bytes], SigningKey],
) -> Certificate | None:
    """Finish or discard a replacement of the key ``root/key`` and certificate ``root/cert`` that
    stopped half-way; returns the certificate now in place when it finished one.

    A replacement stages ``<key>.next`` and ``<cert>.next`` (each fsynced), then renames the key
    and then the certificate. So what is found is: nothing staged (done); both staged; or only
    ``<cert>.next`` with the new key already in place. The staged certificate is used only when
    it is signed by ``ca`` and holds the public half of the staged key (or, once that was renamed,
    the key in place); ``open_key`` reads a key file (it raises a :class:`CryptoError` for one
    that does not open). Anything else — a half-written or altered file, an orphan — is deleted,
    and the pair in place stays.
    """
    key_next, cert_next = root / staged(key), root / staged(cert)
    if not (os.path.lexists(key_next) or os.path.lexists(cert_next)):
        return None
    key_staged = os.path.lexists(key_next)
    try:
        certificates = load_certificates(cert_next.read_bytes(), what=staged(cert))
        new_key = open_key((key_next if key_staged else root / key).read_bytes())
        if len(certificates) != 1:
            raise FormatError(f"{staged(cert)} holds {len(certificates)} certificates")
        new_cert = certificates[0]
        # Signed by the CA: checked at the certificate's own start, as renewal made it then.
        verify_chain(new_cert, [], [ca], now=new_cert.not_before)
        usable = public_key_matches(new_cert, new_key)
    except (OSError, CryptoError):
        usable = False
    if not usable:
        for leftover in (key_next, cert_next):
            leftover.unlink(missing_ok=True)
            fsync_dir(leftover.parent)
        return None
    if key_staged:
        os.replace(key_next, root / key)
        fsync_dir((root / key).parent)
    os.replace(cert_next, root / cert)
    fsync_dir((root / cert).parent)
    return new_cert
