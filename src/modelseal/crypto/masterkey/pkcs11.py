"""The PKCS#11 master key: an AES-256 key that never leaves its token (SoftHSM2 in development).

The key object is generated inside the token with CKA_TOKEN, CKA_PRIVATE and CKA_SENSITIVE true,
CKA_EXTRACTABLE and CKA_MODIFIABLE false, and only CKA_ENCRYPT and CKA_DECRYPT allowed; its label
is ``f"{label}-v{version}"``. A data key is encrypted *as data* with ``C_Encrypt(CKM_AES_GCM)``
(12-byte IV from ``os.urandom``, 128-bit tag): SoftHSM2's ``C_WrapKey`` has no AES-GCM, and a data
key that only ever travels as data needs no object in the token. The blob has the layout shared
with the software backend (:mod:`.base`), so the vault stores one format.

Calls into a module are serialised by one lock per module and a token is logged in to once per
process (see :mod:`._token` for why). One AES-GCM operation on 32 bytes takes about 35 µs in
SoftHSM2, so the lock still allows tens of thousands of wraps or unwraps per second.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any, NoReturn

from pkcs11 import Attribute, KeyType, Mechanism, MechanismFlag, ObjectClass
from pkcs11 import exceptions as p11
from pkcs11.mechanisms import GCMParams

from modelseal._closing import Closing
from modelseal.crypto.datakey import KEY_SIZE, DataKey
from modelseal.crypto.errors import DecryptionError
from modelseal.crypto.masterkey._token import (
    Link,
    Module,
    attach,
    close_quietly,
    detach,
    load_module,
)
from modelseal.crypto.masterkey.base import (
    NONCE_SIZE,
    TAG_SIZE,
    MasterKeyError,
    associated_data,
    check_version,
    header_for,
    split_wrapped,
)

__all__ = ["DEFAULT_LABEL", "Pkcs11MasterKey"]

DEFAULT_LABEL = "modelseal-master"
_KIND = "pkcs11"
_TAG_BITS = TAG_SIZE * 8
_TOKEN = object()
# Only what a master key needs: no wrapping, signing or derivation, and nothing can be changed later.
_KEY_TEMPLATE = {
    Attribute.PRIVATE: True,
    Attribute.SENSITIVE: True,
    Attribute.EXTRACTABLE: False,
    Attribute.MODIFIABLE: False,
    Attribute.DERIVE: False,
}

log = logging.getLogger(__name__)


class Pkcs11MasterKey(Closing):
    """A master key that is a non-extractable AES-256 object in a PKCS#11 token.

    No public constructor and no pickling; :meth:`create` makes the key object in the token,
    :meth:`open` finds it again. Safe to share between threads. Close it (or use ``with``) when
    done; the token's login ends when the last key open on it is closed.
    """

    __slots__ = ("_key", "_key_session", "_link", "_module", "_object_label", "_version")

    def __init__(
        self, token: object, module: Module, link: Link, object_label: str, version: int
    ) -> None:
        if token is not _TOKEN:
            raise TypeError(
                "use Pkcs11MasterKey.create() or open(); Pkcs11MasterKey has no public constructor"
            )
        self._module = module
        self._link: Link | None = link
        self._object_label = object_label
        self._version = version
        self._key: Any = None  # pkcs11.SecretKey, bound to ``_key_session``
        self._key_session: Any = None

    @classmethod
    def create(
        cls,
        *,
        module: str,
        token_label: str,
        pin: str,
        label: str = DEFAULT_LABEL,
        version: int = 1,
    ) -> Pkcs11MasterKey:
        """Generate the key object ``f"{label}-v{version}"`` in the token; refuse if it exists."""
        object_label = _object_label(label, version)
        loaded = load_module(module)
        with loaded.lock:
            link = attach(loaded, token_label, pin)
            try:
                link.call(lambda session: _generate(link, session, object_label))
                key = cls(_TOKEN, loaded, link, object_label, version)
                link.call(key._key_in)
            except BaseException:
                detach(loaded, link)
                raise
        log.info("created master key %r on PKCS#11 token %r", object_label, token_label)
        return key

    @classmethod
    def open(
        cls,
        *,
        module: str,
        token_label: str,
        pin: str,
        label: str = DEFAULT_LABEL,
        version: int,
    ) -> Pkcs11MasterKey:
        """Find the key object ``f"{label}-v{version}"`` in the token."""
        object_label = _object_label(label, version)
        loaded = load_module(module)
        with loaded.lock:
            link = attach(loaded, token_label, pin)
            try:
                key = cls(_TOKEN, loaded, link, object_label, version)
                link.call(key._key_in)
            except BaseException:
                detach(loaded, link)
                raise
        return key

    @classmethod
    def find(
        cls,
        *,
        module: str,
        token_label: str,
        pin: str,
        label: str = DEFAULT_LABEL,
        version: int,
    ) -> Pkcs11MasterKey | None:
        """Like :meth:`open`, but None when the token holds no object ``f"{label}-v{version}"``."""
        object_label = _object_label(label, version)
        loaded = load_module(module)
        with loaded.lock:
            link = attach(loaded, token_label, pin)
            key: Pkcs11MasterKey | None = None
            try:
                if link.call(lambda session: _has_object(session, object_label)):
                    key = cls(_TOKEN, loaded, link, object_label, version)
                    link.call(key._key_in)
            except BaseException:
                detach(loaded, link)
                raise
            if key is None:
                detach(loaded, link)
        return key

    @classmethod
    def destroy(
        cls,
        *,
        module: str,
        token_label: str,
        pin: str,
        label: str = DEFAULT_LABEL,
        version: int,
    ) -> bool:
        """Destroy the key object ``f"{label}-v{version}"`` in the token; False if there was none.

        Irreversible: whatever that key wrapped no longer opens. Close every master key open on
        that object first (its next use would fail).
        """
        object_label = _object_label(label, version)
        loaded = load_module(module)
        with loaded.lock:
            link = attach(loaded, token_label, pin)
            try:
                destroyed = link.call(lambda session: _destroy(link, session, object_label))
            except p11.PKCS11Error as exc:
                raise MasterKeyError(
                    f"PKCS#11 token '{token_label}' refused to destroy master key "
                    f"'{object_label}' ({type(exc).__name__})"
                ) from exc
            finally:
                detach(loaded, link)
        if destroyed:
            log.info("destroyed master key %r on PKCS#11 token %r", object_label, token_label)
        return destroyed

    @property
    def kind(self) -> str:
        return _KIND

    @property
    def version(self) -> int:
        return self._version

    def wrap(self, key: DataKey, *, context: bytes) -> bytes:
        """The data key encrypted by the token under this master key, bound to ``context``."""
        header = header_for(self._version)
        iv = os.urandom(NONCE_SIZE)
        params = GCMParams(iv, associated_data(header, context), _TAG_BITS)
        secret = key._secret_bytes()
        try:
            ciphertext = self._run(
                lambda handle: handle.encrypt(
                    secret, mechanism=Mechanism.AES_GCM, mechanism_param=params
                )
            )
        except p11.PKCS11Error as exc:
            raise MasterKeyError(
                f"PKCS#11 token '{self._token_label}' could not encrypt with master key "
                f"'{self._object_label}' ({type(exc).__name__}); check the token's log"
            ) from exc
        if len(ciphertext) != KEY_SIZE + TAG_SIZE:
            raise MasterKeyError(
                f"PKCS#11 token '{self._token_label}' returned {len(ciphertext)} bytes for AES-GCM "
                f"of a data key, not {KEY_SIZE + TAG_SIZE}; the module is not usable"
            )
        return header + iv + ciphertext

    def unwrap(self, blob: bytes, *, context: bytes, key_id: str) -> DataKey:
        """The data key in ``blob``; any mismatch raises the fixed :class:`DecryptionError`."""
        header, iv, ciphertext = split_wrapped(blob, version=self._version)
        params = GCMParams(iv, associated_data(header, context), _TAG_BITS)
        try:
            secret = self._run(
                lambda handle: handle.decrypt(
                    ciphertext, mechanism=Mechanism.AES_GCM, mechanism_param=params
                )
            )
        except p11.PKCS11Error as exc:  # SoftHSM2 reports a bad tag as CKR_GENERAL_ERROR
            log.debug("wrapped data key %s refused by the token: %s", key_id, type(exc).__name__)
            raise DecryptionError() from None
        if len(secret) != KEY_SIZE:
            raise DecryptionError()
        return DataKey._from_secret(secret, key_id)

    def close(self) -> None:
        """End this key's use of the token; logs out when it was the last key open on it."""
        with self._module.lock:
            link, self._link = self._link, None
            self._key = self._key_session = None
            if link is not None:
                detach(self._module, link)

    @property
    def _token_label(self) -> str:
        return self._link.label if self._link is not None else "?"

    def _run(self, operation: Callable[[Any], Any]) -> bytes:
        """``operation(key object)`` under the module lock, logging in again if the session died."""
        with self._module.lock:
            link = self._link
            if link is None:
                raise MasterKeyError(
                    f"master key '{self._object_label}' was closed; open it again to use it"
                )
            result = link.call(lambda session: operation(self._key_in(session)))
        if not isinstance(result, bytes):
            raise TypeError(f"expected bytes from the PKCS#11 module, got {type(result).__name__}")
        return result

    def _key_in(self, session: Any) -> Any:
        """The key object as seen by ``session`` (looked up again after a new login)."""
        if self._key is None or self._key_session is not session:
            self._key = _find_key(session, self._object_label, self._token_label)
            self._key_session = session
        return self._key

    def __repr__(self) -> str:
        return (
            f"Pkcs11MasterKey(token={self._token_label!r}, label={self._object_label!r}, "
            f"version={self._version})"
        )

    def __reduce__(self) -> NoReturn:
        raise TypeError("a master key cannot be pickled")


def _generate(link: Link, session: Any, object_label: str) -> None:
    """Create the key object in a read-write session (the login is the application's)."""
    if any(True for _ in session.get_objects({Attribute.LABEL: object_label})):
        raise MasterKeyError(
            f"a key labelled '{object_label}' already exists on PKCS#11 token '{link.label}'; "
            "open it, or create the next version"
        )
    writer = link.token.open(rw=True)
    try:
        writer.generate_key(
            KeyType.AES,
            KEY_SIZE * 8,
            label=object_label,
            store=True,
            capabilities=MechanismFlag.ENCRYPT | MechanismFlag.DECRYPT,
            template=_KEY_TEMPLATE,
        )
    finally:
        close_quietly(writer)


def _has_object(session: Any, object_label: str) -> bool:
    return any(True for _ in session.get_objects({Attribute.LABEL: object_label}))


def _destroy(link: Link, session: Any, object_label: str) -> bool:
    """Destroy the secret keys labelled ``object_label``, in a read-write session of the login."""
    if not _has_object(session, object_label):
        return False
    template = {Attribute.LABEL: object_label, Attribute.CLASS: ObjectClass.SECRET_KEY}
    writer = link.token.open(rw=True)
    try:
        found = list(writer.get_objects(template))
        for key in found:
            key.destroy()
    finally:
        close_quietly(writer)
    return bool(found)


def _find_key(session: Any, object_label: str, token_label: str) -> Any:
    try:
        key = session.get_key(
            object_class=ObjectClass.SECRET_KEY, key_type=KeyType.AES, label=object_label
        )
    except p11.NoSuchKey:
        raise MasterKeyError(
            f"master key '{object_label}' not found on PKCS#11 token '{token_label}'; "
            "check the label and version, or create the key with `modelseal vault init`"
        ) from None
    except p11.MultipleObjectsReturned:
        raise MasterKeyError(
            f"more than one key on PKCS#11 token '{token_label}' is labelled '{object_label}'; "
            "remove the duplicates"
        ) from None
    if (
        key[Attribute.EXTRACTABLE]
        or not key[Attribute.SENSITIVE]
        or not key[Attribute.ENCRYPT]
        or not key[Attribute.DECRYPT]
        or key[Attribute.VALUE_LEN] != KEY_SIZE
    ):
        raise MasterKeyError(
            f"key '{object_label}' on PKCS#11 token '{token_label}' is not a usable master key "
            "(it must be a sensitive, non-extractable AES-256 key for encrypt and decrypt); "
            "create master keys with modelseal"
        )
    return key


def _object_label(label: str, version: int) -> str:
    if not label:
        raise ValueError("a PKCS#11 master key needs a non-empty label")
    return f"{label}-v{check_version(version)}"
