"""Where each version of the master key lives in a vault home, and opening them as one ring.

Software master key (files in the home, each sealed with scrypt from a passphrase)::

    master-key.json           the key ``vault init`` wrote (version 1); opened as the version its
                              header names, so homes made before rotation existed keep working
    master-key.v<N>.json      version N, written by ``vault rotate-master-key``
    <either>.retired          a retired version, kept by the rotation; never opened again

A rotation never renames the current file: it writes ``master-key.v<N+1>.json`` beside it and
retires the old one only at the end, so every crash leaves each version wholly present or wholly
retired. PKCS#11 master key: the token objects ``<key_label>-v<N>``.

The vault opens every version still present: the one ``vault.json`` names (required) and, for a
software key, every other file the passphrase opens; for PKCS#11, the next version too when the
token holds it (an interrupted rotation). A retired or destroyed version is not opened, and a
PKCS#11 object of an older version kept by a rotation without ``--destroy-old`` counts as retired.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Final

from modelseal.crypto.masterkey import (
    MasterKey,
    MasterKeyError,
    MasterKeyRing,
    SoftwareMasterKey,
)
from modelseal.vault import _layout as layout
from modelseal.vault._layout import HomeError
from modelseal.vault.settings import Pkcs11MasterKeySettings, VaultSettings

__all__ = [
    "RETIRED_SUFFIX",
    "open_keys",
    "open_ring",
    "software_key_files",
    "unseal_file",
    "versioned_name",
]

RETIRED_SUFFIX: Final = ".retired"
_VERSIONED: Final = re.compile(r"master-key\.v([1-9][0-9]{0,9})\.json")

log = logging.getLogger(__name__)


def versioned_name(version: int) -> str:
    """The file a rotation writes master-key ``version`` to."""
    return f"master-key.v{version}.json"


def software_key_files(home: Path) -> dict[int, str]:
    """Every software master key file in ``home`` that is not retired, by version."""
    names = [layout.MASTER_KEY] if (home / layout.MASTER_KEY).is_file() else []
    names += sorted(
        path.name for path in home.glob("master-key.v*.json") if _VERSIONED.fullmatch(path.name)
    )
    files: dict[int, str] = {}
    for name in names:
        try:
            version = SoftwareMasterKey.sealed_version(layout.read_file(home, name))
        except MasterKeyError as exc:
            raise HomeError(f"{name} in {home}: {exc.message}", hint=exc.hint) from exc
        match = _VERSIONED.fullmatch(name)
        if match is not None and int(match[1]) != version:
            raise HomeError(
                f"{name} in {home} holds master key version {version}, not {match[1]}",
                hint="restore the file from a backup",
            )
        if version in files:
            raise HomeError(
                f"{files[version]} and {name} in {home} both hold master key version {version}",
                hint="keep the one the vault was rotated to and move the other away",
            )
        files[version] = name
    return files


def unseal_file(
    home: Path, relative: str, passphrases: Sequence[bytes]
) -> tuple[SoftwareMasterKey, bytes]:
    """The key in ``relative`` and the first of ``passphrases`` that opens it.

    When none does, the :class:`MasterKeyError` of the last one tried ("wrong passphrase …").
    """
    sealed = layout.read_file(home, relative)
    error = MasterKeyError("no passphrase was given for the master key")
    for passphrase in passphrases:
        try:
            return SoftwareMasterKey.unseal(sealed, passphrase), passphrase
        except MasterKeyError as exc:
            error = exc
    raise error


def open_keys(
    home: Path,
    settings: VaultSettings,
    *,
    passphrases: Sequence[bytes] = (),
    pin: str | None = None,
    skip: Collection[int] = (),
    also: Collection[int] = (),
) -> dict[int, MasterKey]:
    """Every version of the master key present in ``home`` (see the module docstring).

    The version ``settings`` names must open (a wrong passphrase or PIN raises); the others are
    opened when they can be. ``skip`` names versions not to open; ``also`` names older PKCS#11
    versions to look for (a rotation that must still rewrap something under them).
    """
    chosen = settings.master_key
    current = settings.master_version
    keys: dict[int, MasterKey] = {}
    try:
        if isinstance(chosen, Pkcs11MasterKeySettings):
            _open_pkcs11(keys, chosen, pin, current, skip=skip, also=also)
        else:
            _open_software(keys, home, passphrases, current, skip=skip)
    except BaseException:
        for key in keys.values():
            key.close()
        raise
    return keys


def open_ring(
    home: Path,
    settings: VaultSettings,
    *,
    passphrases: Sequence[bytes] = (),
    pin: str | None = None,
) -> MasterKeyRing:
    """:func:`open_keys` as one :class:`MasterKeyRing`."""
    return MasterKeyRing(open_keys(home, settings, passphrases=passphrases, pin=pin).values())


def _open_software(
    keys: dict[int, MasterKey],
    home: Path,
    passphrases: Sequence[bytes],
    current: int,
    *,
    skip: Collection[int],
) -> None:
    files = software_key_files(home)
    if current not in files:
        raise HomeError(
            f"the vault home {home} has no file for master key version {current} (the version "
            f"{layout.SETTINGS} names): neither {layout.MASTER_KEY} nor {versioned_name(current)}",
            hint="restore the master key file and vault.json from the same backup",
        )
    for version, relative in files.items():
        if version in skip:
            continue
        try:
            keys[version] = unseal_file(home, relative, passphrases)[0]
        except MasterKeyError:
            if version == current:
                raise
            log.warning(
                "%s (master key version %d) does not open with this passphrase; not using it",
                relative,
                version,
            )


def _open_pkcs11(
    keys: dict[int, MasterKey],
    chosen: Pkcs11MasterKeySettings,
    pin: str | None,
    current: int,
    *,
    skip: Collection[int],
    also: Collection[int],
) -> None:
    from modelseal.crypto.masterkey import Pkcs11MasterKey

    if pin is None:
        raise ValueError("a PKCS#11 master key needs the token's PIN")
    where = {"module": chosen.module, "token_label": chosen.token_label, "pin": pin}
    if current not in skip:
        keys[current] = Pkcs11MasterKey.open(**where, label=chosen.key_label, version=current)
    for version in sorted({current + 1, *also} - {current, *skip}):
        found = Pkcs11MasterKey.find(**where, label=chosen.key_label, version=version)
        if found is not None:
            keys[version] = found
