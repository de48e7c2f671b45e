"""``modelseal vault rotate-master-key``: a new master key version, and every wrapped key under it.

A rotation from version N to T = N + 1 runs these steps, in an order that lets a second run finish
whatever a crash interrupted (nothing is ever wrapped only by a key that is gone):

a. **Create version T**: software — seal a new random key into ``master-key.v<T>.json`` beside the
   current file (temporary file, then rename), under the new passphrase if one was given;
   PKCS#11 — generate the token object ``<key_label>-v<T>``.
b. **Rewrap the database** in one transaction: every ``models`` row whose ``master_version`` is
   below T (unwrapped by the version it names, wrapped by T under the context naming T), every
   master-key-wrapped secret in ``vault_meta`` (the audit HMAC key), the rotation state row
   ``vault_meta["master_key"]`` = ``{"version": T, "previous": N, "previous_retired": false}``,
   and the audit entry ``master_key.rotate``. All or nothing.
c. **Rewrap the home key** (``secrets/home-key.wrapped``; atomic replace).
d. **Point vault.json at T** (atomic replace).
e. **Retire N**: rewrap any row still below T (written meanwhile by a vault process that opened
   only N), then move the old key file to ``<name>.retired`` (or delete it with
   ``--destroy-old``) or, for PKCS#11 with ``--destroy-old``, destroy the old token object; then
   mark the state row retired with the audit entry ``master_key.retire``.

A second run reads where the first stopped: a version-T key in the home means a) is done (the
file is opened with the new passphrase, or the old one and then resealed under the new); the state
row at T means b) is done; the home key at T means c) is done; ``vault.json`` at T with the state
row not yet retired means only e) is left. Steps a to e each succeed or leave nothing behind.

Stop every vault process before rotating: a process that started earlier holds only version N
and would wrap new keys under it (step e rewraps what it finds, but cannot see the future).
Vault homes copied to other machines need the new ``vault.json``, ``secrets/home-key.wrapped``
and (software) ``master-key.v<T>.json`` afterwards; a copy left behind is refused by its next
rotation, which sees the database ahead of it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Final, TypeVar

from modelseal.crypto.masterkey import (
    MasterKey,
    MasterKeyError,
    MasterKeyRing,
    SoftwareMasterKey,
)
from modelseal.errors import UsageError
from modelseal.vault import _layout as layout
from modelseal.vault._layout import PRIVATE_FILE_MODE, HomeError, home_key_context
from modelseal.vault._master import (
    RETIRED_SUFFIX,
    open_keys,
    software_key_files,
    unseal_file,
    versioned_name,
)
from modelseal.vault._rewrap import (
    STATE_META,
    RotationError,
    RotationState,
    read_state,
    rewrap_rows,
    unwrap,
    write_state,
)
from modelseal.vault.home import VaultHome
from modelseal.vault.settings import Pkcs11MasterKeySettings, VaultSettings, dump_settings

if TYPE_CHECKING:
    from sqlalchemy import Connection, Engine

__all__ = [
    "ACTOR",
    "STATE_META",
    "RotationError",
    "RotationReport",
    "check_secrets",
    "in_transaction",
    "rotate_master_key",
]

T = TypeVar("T")

ACTOR: Final = "vault-admin(local)"
"""The audit actor of a rotation: an operator on the vault's host, not a REST client."""


@dataclass(frozen=True)
class RotationReport:
    """What :func:`rotate_master_key` did (on a resumed run: what was left to do)."""

    kind: str
    previous_version: int
    version: int
    data_keys_rewrapped: int
    """Rows of ``models`` rewrapped (in step b and the sweep of step e)."""
    vault_keys_rewrapped: int
    """Master-key-wrapped secrets in ``vault_meta`` rewrapped (the audit key)."""
    home_key_rewrapped: bool
    resumed: bool
    """True when a previous, interrupted run had done part of the work."""
    retired: str
    """What happened to the old version, in words."""


def rotate_master_key(
    home: Path | VaultHome,
    *,
    passphrase: bytes | None = None,
    pin: str | None = None,
    new_passphrase: bytes | None = None,
    destroy_old: bool = False,
    now: dt.datetime,
    scrypt_n: int | None = None,
    report: Callable[[str], None] | None = None,
) -> RotationReport:
    """Rotate the master key of the vault home ``home`` (or finish an interrupted rotation).

    ``passphrase`` opens a software master key (``new_passphrase`` seals the new version; default:
    the same passphrase), ``pin`` a PKCS#11 one. ``scrypt_n`` is the new file's scrypt cost
    (default: the current file's). ``report`` receives one line per finished step.
    """
    if now.tzinfo is None:
        raise UsageError("the rotation needs an aware time (with a time zone)")
    path = home.path if isinstance(home, VaultHome) else Path(home).absolute()
    say = report or (lambda _line: None)
    with _home_lock(path):
        vault_home = VaultHome.open(path)  # read again under the lock
        check_secrets(vault_home.settings, passphrase, pin, new_passphrase)
        engine = _engine(vault_home)
        try:
            return _Rotation(vault_home, engine, now, say).run(
                passphrase=passphrase,
                pin=pin,
                new_passphrase=new_passphrase,
                destroy_old=destroy_old,
                scrypt_n=scrypt_n,
            )
        finally:
            engine.dispose()


class _Rotation:
    def __init__(
        self, home: VaultHome, engine: Engine, now: dt.datetime, say: Callable[[str], None]
    ) -> None:
        self.home, self.path, self.settings = home, home.path, home.settings
        self.engine, self.now, self.say = engine, now, say
        self.vault_id = self.settings.vault_id

    def run(
        self,
        *,
        passphrase: bytes | None,
        pin: str | None,
        new_passphrase: bytes | None,
        destroy_old: bool,
        scrypt_n: int | None,
    ) -> RotationReport:
        current = self.settings.master_version
        state = self._read_state()
        passphrases = [p for p in (passphrase, new_passphrase) if p is not None]
        keys = open_keys(
            self.path,
            self.settings,
            passphrases=list(dict.fromkeys(passphrases)),
            pin=pin,
            skip={current + 1} if pin is None else (),
            also=(  # an interrupted retirement may still need the previous token object
                {state.previous}
                if state is not None and not state.previous_retired and pin is not None
                else ()
            ),
        )
        ring: MasterKeyRing | None = None
        try:
            if (
                state is not None
                and state.version == current
                and state.previous < current
                and not state.previous_retired
            ):
                target, previous, resumed = current, state.previous, True
                new_key = keys[current]
                self.say(f"finishing the rotation to master key version {target}")
            else:
                target, previous = current + 1, current
                pending = target in keys or (
                    pin is None and target in software_key_files(self.path)
                )
                if state is not None and state.version > current:
                    if not (state.version == target and pending):
                        raise self._behind(state.version)
                new_key, resumed = self._key_for(
                    target, keys, passphrase, new_passphrase, scrypt_n, pin
                )
            keys[target] = new_key
            ring = MasterKeyRing(keys.values())
            keys = {}
            if ring.version != target:
                raise RotationError(
                    f"the vault home {self.path} holds master key version {ring.version}, newer "
                    f"than the version {target} this rotation makes",
                    hint=f"move the stray {versioned_name(ring.version)} out of the home",
                )
            data_keys = vault_keys = 0
            if state is None or state.version < target:  # b
                data_keys, vault_keys = self._rewrap_database(ring, previous, target)
                self.say(
                    f"rewrapped {data_keys} data key{'s' if data_keys != 1 else ''} and "
                    f"{vault_keys} vault key{'s' if vault_keys != 1 else ''} in the database "
                    f"under master key version {target}"
                )
            home_key_rewrapped = self._rewrap_home_key(ring, target)  # c
            if home_key_rewrapped:
                self.say(f"rewrapped the home key ({layout.HOME_KEY})")
            if current != target:  # d
                self._write_settings(target)
                self.say(f"{layout.SETTINGS} now names master key version {target}")
            swept = self._sweep(ring, target)  # e
            data_keys, vault_keys = data_keys + swept[0], vault_keys + swept[1]
        finally:
            for key in keys.values():
                key.close()
            if ring is not None:
                ring.close()
        retired = self._retire(previous, target, destroy_old=destroy_old, pin=pin)
        self.say(f"retired master key version {previous}: {retired}")
        return RotationReport(
            kind=self.settings.master_key.kind,
            previous_version=previous,
            version=target,
            data_keys_rewrapped=data_keys,
            vault_keys_rewrapped=vault_keys,
            home_key_rewrapped=home_key_rewrapped,
            resumed=resumed,
            retired=retired,
        )

    # --- a: the new key ---------------------------------------------------------------------------

    def _key_for(
        self,
        target: int,
        keys: dict[int, MasterKey],
        passphrase: bytes | None,
        new_passphrase: bytes | None,
        scrypt_n: int | None,
        pin: str | None,
    ) -> tuple[MasterKey, bool]:
        """Master key ``target``: the one an interrupted run created, or a new one (step a)."""
        chosen = self.settings.master_key
        if isinstance(chosen, Pkcs11MasterKeySettings):
            found = keys.pop(target, None)
            if found is not None:
                return found, True
            from modelseal.crypto.masterkey import Pkcs11MasterKey

            assert pin is not None  # noqa: S101 - checked by check_secrets
            token_key = Pkcs11MasterKey.create(
                module=chosen.module,
                token_label=chosen.token_label,
                pin=pin,
                label=chosen.key_label,
                version=target,
            )
            self.say(
                f"created master key '{chosen.key_label}-v{target}' in PKCS#11 token "
                f"'{chosen.token_label}'"
            )
            return token_key, False
        assert passphrase is not None  # noqa: S101 - checked by check_secrets
        seal_with = new_passphrase or passphrase
        relative = versioned_name(target)
        files = software_key_files(self.path)
        if target in files:
            relative = files[target]
            try:
                key, used = unseal_file(self.path, relative, [seal_with, passphrase])
            except MasterKeyError:
                raise RotationError(
                    f"{relative} in {self.path}, left by an interrupted rotation, opens with "
                    "neither passphrase given",
                    hint="run the rotation again with the new passphrase of the interrupted run "
                    "(--new-passphrase-env)",
                ) from None
            if used != seal_with:  # the interrupted run had no new passphrase; this one does
                self._replace(relative, key.reseal(seal_with))
            return key, True
        current = keys[self.settings.master_version]
        cost = scrypt_n or (current.scrypt_n if isinstance(current, SoftwareMasterKey) else None)
        created, sealed = (
            SoftwareMasterKey.create(seal_with, version=target)
            if cost is None
            else SoftwareMasterKey.create(seal_with, version=target, scrypt_n=cost)
        )
        self._replace(relative, sealed)
        self.say(f"created master key version {target} ({relative})")
        return created, False

    # --- b and the sweep of e: the database ---------------------------------------------------

    def _rewrap_database(self, ring: MasterKeyRing, previous: int, target: int) -> tuple[int, int]:
        from modelseal.vault.db import append_audit

        def step(conn: Connection) -> tuple[int, int]:
            state = read_state(conn, lock=True)
            if state is not None and state.version >= target:
                raise RotationError(
                    f"another rotation moved the vault database to master key version "
                    f"{state.version} meanwhile",
                    hint="this home is out of date: copy the vault home that rotated",
                )
            counts = rewrap_rows(conn, ring, target, vault_id=self.vault_id)
            write_state(conn, RotationState(target, previous, previous_retired=False))
            append_audit(
                conn,
                at=self.now,
                actor=ACTOR,
                action="master_key.rotate",
                subject=f"master-key-v{target}",
                outcome="ok",
                details={
                    "kind": ring.kind,
                    "from_version": previous,
                    "to_version": target,
                    "data_keys": counts[0],
                    "vault_keys": counts[1],
                },
            )
            return counts

        return self._transaction("rewrap the data keys in", step)

    def _sweep(self, ring: MasterKeyRing, target: int) -> tuple[int, int]:
        """Rewrap what was wrapped under an older version after step b (by an older process)."""
        from modelseal.vault.db import append_audit

        def step(conn: Connection) -> tuple[int, int]:
            counts = rewrap_rows(conn, ring, target, vault_id=self.vault_id)
            if any(counts):
                append_audit(
                    conn,
                    at=self.now,
                    actor=ACTOR,
                    action="master_key.rewrap",
                    subject=f"master-key-v{target}",
                    outcome="ok",
                    details={"data_keys": counts[0], "vault_keys": counts[1]},
                )
            return counts

        counts = self._transaction("rewrap the newest data keys in", step)
        if any(counts):
            self.say(f"rewrapped {sum(counts)} key(s) written under an older version meanwhile")
        return counts

    # --- c, d: the home's files ---------------------------------------------------------------

    def _rewrap_home_key(self, ring: MasterKeyRing, target: int) -> bool:
        key_id, version, blob = layout.load_wrapped_home_key(
            layout.read_file(self.path, layout.HOME_KEY), home=self.path
        )
        if version == target:
            return False
        old = home_key_context(self.vault_id, key_id=key_id, master_version=version)
        home_key = unwrap(ring, blob, old, key_id, layout.HOME_KEY, version)
        new = home_key_context(self.vault_id, key_id=key_id, master_version=target)
        wrapped = ring.get(target).wrap(home_key, context=new)
        document = layout.dump_wrapped_home_key(
            key_id=key_id, master_version=target, wrapped=wrapped
        )
        self._replace(layout.HOME_KEY, document)
        return True

    def _write_settings(self, target: int) -> None:
        fields = self.settings.model_dump(mode="json")
        fields["master_version"] = target
        self._replace(layout.SETTINGS, dump_settings(VaultSettings.model_validate(fields)))

    # --- e: retire the old version -------------------------------------------------------------

    def _retire(self, previous: int, target: int, *, destroy_old: bool, pin: str | None) -> str:
        chosen = self.settings.master_key
        if isinstance(chosen, Pkcs11MasterKeySettings):
            destroyed = False
            if destroy_old:
                from modelseal.crypto.masterkey import Pkcs11MasterKey

                assert pin is not None  # noqa: S101 - checked by check_secrets
                destroyed = Pkcs11MasterKey.destroy(
                    module=chosen.module,
                    token_label=chosen.token_label,
                    pin=pin,
                    label=chosen.key_label,
                    version=previous,
                )
            label = f"'{chosen.key_label}-v{previous}'"
            done = (
                f"destroyed {label} in PKCS#11 token '{chosen.token_label}'"
                if destroy_old
                else f"{label} stays in PKCS#11 token '{chosen.token_label}' (unused; "
                "--destroy-old deletes it)"
            )
            if destroy_old and not destroyed:
                done = f"{label} was already gone from PKCS#11 token '{chosen.token_label}'"
        else:
            destroyed, moved = False, []
            for version, relative in software_key_files(self.path).items():
                if version >= target:
                    continue
                source = self.path / relative
                if destroy_old:
                    self._os(f"delete {relative} in", partial(source.unlink))
                    destroyed = True
                    moved.append(f"deleted {relative}")
                else:
                    retired = self._retired_name(relative)
                    self._os(f"rename {relative} in", partial(source.rename, self.path / retired))
                    moved.append(f"{relative} → {retired}")
            layout.fsync_dir(self.path)
            done = "; ".join(moved) or "its file was already retired"
        self._mark_retired(previous, target, destroyed)
        return done

    def _mark_retired(self, previous: int, target: int, destroyed: bool) -> None:
        from modelseal.vault.db import append_audit

        def step(conn: Connection) -> None:
            state = read_state(conn, lock=True)
            if state is not None and state.previous_retired and state.version == target:
                return
            write_state(conn, RotationState(target, previous, previous_retired=True))
            append_audit(
                conn,
                at=self.now,
                actor=ACTOR,
                action="master_key.retire",
                subject=f"master-key-v{previous}",
                outcome="ok",
                details={
                    "kind": self.settings.master_key.kind,
                    "version": previous,
                    "destroyed": destroyed,
                },
            )

        self._transaction("record the retirement in", step)

    def _retired_name(self, relative: str) -> str:
        candidate, number = f"{relative}{RETIRED_SUFFIX}", 1
        while (self.path / candidate).exists():
            number += 1
            candidate = f"{relative}.{number}{RETIRED_SUFFIX}"
        return candidate

    # --- helpers ------------------------------------------------------------------------------

    def _read_state(self) -> RotationState | None:
        from modelseal.vault.db import read_only

        return self._run(read_only(self.engine), "read the rotation state of", read_state)

    def _transaction(self, doing: str, step: Callable[[Connection], T]) -> T:
        return self._run(self.engine, doing, step)

    def _run(self, engine: Engine, doing: str, step: Callable[[Connection], T]) -> T:
        return in_transaction(
            engine, doing, step, hint="nothing of this step was kept; run the rotation again"
        )

    def _replace(self, relative: str, data: bytes) -> None:
        self._os(
            f"write {relative} in",
            partial(layout.replace_file, self.path, relative, data, PRIVATE_FILE_MODE),
        )

    def _os(self, doing: str, action: Callable[[], object]) -> None:
        try:
            action()
        except OSError as exc:
            raise HomeError(
                f"cannot {doing} the vault home {self.path}: {exc.strerror}",
                hint="fix the cause and run the rotation again; it continues where it stopped",
            ) from exc

    def _behind(self, version: int) -> RotationError:
        return RotationError(
            f"the vault database records master key version {version}, but the vault home "
            f"{self.path} is at version {self.settings.master_version}: another copy of the home "
            "rotated the master key",
            hint="use the vault home that rotated (copy its vault.json, secrets/home-key.wrapped "
            "and master key file here)",
        )


def in_transaction(engine: Engine, doing: str, step: Callable[[Connection], T], *, hint: str) -> T:
    """``step`` in one database transaction; a database failure is one :class:`StorageError`
    saying what could not be done (``cannot <doing> the vault database …``)."""
    from sqlalchemy.exc import SQLAlchemyError

    from modelseal.vault.db import StorageError, redact_url

    try:
        with engine.begin() as conn:
            return step(conn)
    except SQLAlchemyError as exc:
        reason = " ".join(str(getattr(exc, "orig", None) or exc).split())
        raise StorageError(
            f"cannot {doing} the vault database {redact_url(engine.url)}: {reason}", hint=hint
        ) from exc


def check_secrets(
    settings: VaultSettings, passphrase: bytes | None, pin: str | None, new: bytes | None = None
) -> None:
    """Refuse a missing secret, or one of the wrong kind, for the home's master key."""
    chosen = settings.master_key
    if isinstance(chosen, Pkcs11MasterKeySettings):
        if pin is None:
            raise UsageError(
                f"the master key is in PKCS#11 token '{chosen.token_label}'; give its user PIN",
                hint=f"export {chosen.pin_env}=…",
            )
        if passphrase is not None or new is not None:
            raise UsageError("a PKCS#11 master key takes a PIN, not a passphrase")
    else:
        if passphrase is None:
            raise UsageError("the master key is sealed by a passphrase; give the passphrase")
        if pin is not None:
            raise UsageError("a software master key takes a passphrase, not a PKCS#11 PIN")


def _engine(home: VaultHome) -> Engine:
    from modelseal.vault.db import check_schema_current, create_vault_engine

    engine = create_vault_engine(home.database_url, pool_size=1, max_overflow=0)
    try:
        check_schema_current(engine)
    except BaseException:
        engine.dispose()
        raise
    return engine


def _home_lock(path: Path) -> AbstractContextManager[None]:
    """An exclusive lock on the home directory: one rotation or certificate renewal at a time."""
    return layout.home_lock(
        path,
        busy=lambda: RotationError(
            f"another master-key rotation or certificate renewal of {path} is running",
            hint="wait for it to finish",
        ),
    )
