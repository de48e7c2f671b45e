"""The arguments of ``vault init``: the master key chosen, and what is checked before any secret."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from modelseal.crypto.masterkey import DEFAULT_SCRYPT_N
from modelseal.errors import UsageError
from modelseal.vault import _layout as layout
from modelseal.vault.settings import (
    DEFAULT_PIN_ENV,
    DEFAULT_TLS_HOSTS,
    check_tls_host,
    default_public_url,
    normalize_public_url,
    url_host,
)

__all__ = [
    "MasterKeyChoice",
    "Pkcs11Master",
    "Plan",
    "SoftwareMaster",
    "check_master_choice",
    "plan_home",
]

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class SoftwareMaster:
    """``vault init`` with a software master key sealed by ``passphrase`` (scrypt)."""

    passphrase: bytes = field(repr=False)
    scrypt_n: int = DEFAULT_SCRYPT_N


@dataclass(frozen=True)
class Pkcs11Master:
    """``vault init`` with a master key created in a PKCS#11 token.

    ``key_label`` defaults to ``modelseal-<vault id>``, so vaults sharing a token never collide;
    ``pin_env`` is the variable the vault will read the PIN from (stored, unlike the PIN).
    """

    module: str
    token_label: str
    pin: str = field(repr=False)
    pin_env: str = DEFAULT_PIN_ENV
    key_label: str | None = None


MasterKeyChoice = SoftwareMaster | Pkcs11Master


def check_master_choice(master: MasterKeyChoice) -> None:
    """Refuse a master-key choice that cannot work, before anything is created."""
    if isinstance(master, SoftwareMaster):
        if not master.passphrase:
            raise UsageError("the master key passphrase is empty; give a non-empty passphrase")
        return
    if not master.module or not master.token_label or not master.pin:
        raise UsageError("a PKCS#11 master key needs the module path, the token label and a PIN")
    if not _ENV_NAME.fullmatch(master.pin_env):
        raise UsageError(f"{master.pin_env!r} is not an environment variable name")
    if master.key_label is not None and not master.key_label:
        raise UsageError("the PKCS#11 key label is empty; give one, or leave it out")


@dataclass(frozen=True)
class Plan:
    """The checked arguments of ``vault init``."""

    home: Path
    admin: Path
    urls: list[str]
    hosts: list[str]


def plan_home(
    home: Path, *, admin_out: Path | None, public_urls: list[str], tls_hosts: list[str], port: int
) -> Plan:
    """Check what can be checked without secrets or a database; :class:`UsageError` otherwise."""
    home = _check_new_dir(home, "the vault home")
    admin = _admin_dir(home, admin_out)
    if not 1 <= port <= 65535:
        raise UsageError(f"--port must be from 1 to 65535, not {port}")
    try:
        urls = [normalize_public_url(url) for url in public_urls] or [default_public_url(port)]
        hosts = _unique(
            check_tls_host(host) for host in [*DEFAULT_TLS_HOSTS, *tls_hosts, *map(url_host, urls)]
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return Plan(home, admin, urls, hosts)


def _check_new_dir(path: Path, what: str) -> Path:
    """``path`` made absolute, if it is absent or an empty directory whose parent exists."""
    path = Path(os.path.abspath(path))
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        raise UsageError(f"{what} {path} exists and is not a directory; choose a new path")
    if path.is_dir() and any(path.iterdir()):
        raise UsageError(
            f"{what} {path} already exists and is not empty; vault init never overwrites one",
            hint="choose a new directory, or open the existing vault",
        )
    if not path.parent.is_dir():
        raise UsageError(f"the directory {path.parent} for {what} does not exist; create it first")
    return path


def _admin_dir(home: Path, admin_out: Path | None) -> Path:
    if admin_out is None:
        return home / layout.ADMIN_DIR
    admin = Path(os.path.abspath(admin_out))
    if admin == home / layout.ADMIN_DIR:
        return admin
    if admin == home or home in admin.parents or admin in home.parents:
        raise UsageError(
            f"--admin-out {admin} must be outside the vault home {home} (or left out, to use "
            f"{home / layout.ADMIN_DIR})"
        )
    return _check_new_dir(admin, "the admin credential directory")


def _unique(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(values))
