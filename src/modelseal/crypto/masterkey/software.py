"""The software master key: 32 random bytes, kept sealed on disk under a passphrase.

Sealed file (canonical JSON, RFC 8785)::

    {"type": "modelseal.master-key", "kind": "software", "version": N,
     "kdf": {"name": "scrypt", "n": 32768, "r": 8, "p": 1, "salt": "<base64, 16 bytes>"},
     "nonce": "<base64, 12 bytes>", "sealed": "<base64, 32-byte key ‖ 16-byte tag>"}

``sealed`` is the key encrypted with AES-256-GCM under ``scrypt(passphrase, salt, n, r, p)``; the
associated data is the canonical JSON of the header fields (``type``, ``kind``, ``version``,
``kdf``), so none of them can be edited without the file failing to open. Every seal draws a fresh
salt and nonce. Data keys are wrapped in the shared format of :mod:`.base`.
"""

from __future__ import annotations

import base64
import binascii
import logging
import secrets
from typing import Any, NoReturn

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from modelseal.crypto.canonical import canonical_json, parse_canonical_json
from modelseal.crypto.datakey import KEY_SIZE, DataKey
from modelseal.crypto.errors import DecryptionError, FormatError
from modelseal.crypto.masterkey.base import (
    NONCE_SIZE,
    TAG_SIZE,
    MasterKeyError,
    associated_data,
    check_version,
    header_for,
    split_wrapped,
)

__all__ = ["DEFAULT_SCRYPT_N", "SoftwareMasterKey"]

DEFAULT_SCRYPT_N = 2**15
"""scrypt cost: 32 MiB and about 0.1 s per unseal on a small server (r = 8, p = 1)."""
_MIN_SCRYPT_N = 2**10  # tests use this to stay fast; production keeps the default
_MAX_SCRYPT_N = 2**18  # 256 MiB: a file asking for more is refused, not obeyed
_SCRYPT_R = 8
_SCRYPT_P = 1
_SALT_SIZE = 16
_FILE_TYPE = "modelseal.master-key"
_KIND = "software"
_WHAT = "the sealed master key file"
_TOKEN = object()

log = logging.getLogger(__name__)


class SoftwareMasterKey:
    """A master key held in memory; on disk only sealed by a passphrase.

    No public constructor, no pickling, and no method returns the key bytes: :meth:`create` and
    :meth:`unseal` make one, :meth:`reseal` writes it sealed again.
    """

    __slots__ = ("_aead", "_scrypt_n", "_secret", "_version")

    def __init__(self, token: object, secret: bytes, version: int, scrypt_n: int) -> None:
        if token is not _TOKEN:
            raise TypeError(
                "use SoftwareMasterKey.create() or unseal(); SoftwareMasterKey has no public constructor"
            )
        self._secret = bytes(secret)
        self._aead = AESGCM(self._secret)
        self._version = check_version(version)
        self._scrypt_n = scrypt_n

    @classmethod
    def create(
        cls, passphrase: bytes, *, version: int = 1, scrypt_n: int = DEFAULT_SCRYPT_N
    ) -> tuple[SoftwareMasterKey, bytes]:
        """A fresh random master key and its sealed file bytes."""
        key = cls(_TOKEN, secrets.token_bytes(KEY_SIZE), version, _check_scrypt_n(scrypt_n))
        return key, key.reseal(passphrase)

    @classmethod
    def unseal(cls, sealed: bytes, passphrase: bytes) -> SoftwareMasterKey:
        """Open a sealed file written by :meth:`create` or :meth:`reseal`."""
        header, salt, nonce, ciphertext = _parse(sealed)
        n = header["kdf"]["n"]
        wrapping = AESGCM(_derive(passphrase, salt, n))
        try:
            secret = wrapping.decrypt(nonce, ciphertext, _header_aad(header))
        except InvalidTag:
            raise MasterKeyError(
                "wrong passphrase for the master key",
                hint="check the passphrase; if it is right, the sealed file was altered",
            ) from None
        return cls(_TOKEN, secret, header["version"], n)

    @staticmethod
    def sealed_version(sealed: bytes) -> int:
        """The version a sealed file names, read without the passphrase.

        Unauthenticated until :meth:`unseal` (which checks it): use it to pick a file, not to
        trust one. A file that is not a sealed software master key is a :class:`MasterKeyError`.
        """
        header, _salt, _nonce, _ciphertext = _parse(sealed)
        return int(header["version"])

    def reseal(self, passphrase: bytes, *, scrypt_n: int | None = None) -> bytes:
        """The key sealed under ``passphrase`` (fresh salt and nonce), e.g. to change passphrase."""
        n = self._scrypt_n if scrypt_n is None else _check_scrypt_n(scrypt_n)
        salt, nonce = secrets.token_bytes(_SALT_SIZE), secrets.token_bytes(NONCE_SIZE)
        header = _header(self._version, n, _b64(salt))
        sealed = AESGCM(_derive(passphrase, salt, n)).encrypt(
            nonce, self._secret, _header_aad(header)
        )
        return canonical_json({**header, "nonce": _b64(nonce), "sealed": _b64(sealed)})

    @property
    def kind(self) -> str:
        return _KIND

    @property
    def version(self) -> int:
        return self._version

    @property
    def scrypt_n(self) -> int:
        """The scrypt cost this key was sealed with (what :meth:`reseal` uses by default)."""
        return self._scrypt_n

    def wrap(self, key: DataKey, *, context: bytes) -> bytes:
        """The data key encrypted under this master key, bound to ``context``."""
        header = header_for(self._version)
        nonce = secrets.token_bytes(NONCE_SIZE)
        aad = associated_data(header, context)
        return header + nonce + self._aead.encrypt(nonce, key._secret_bytes(), aad)

    def unwrap(self, blob: bytes, *, context: bytes, key_id: str) -> DataKey:
        """The data key in ``blob``; any mismatch raises the fixed :class:`DecryptionError`."""
        header, nonce, ciphertext = split_wrapped(blob, version=self._version)
        try:
            secret = self._aead.decrypt(nonce, ciphertext, associated_data(header, context))
        except InvalidTag:
            log.debug("wrapped data key %s failed authentication", key_id)
            raise DecryptionError() from None
        return DataKey._from_secret(secret, key_id)

    def close(self) -> None:
        """Nothing to release (the protocol's ``close``); the key stays usable."""

    def _secret_bytes(self) -> bytes:  # for tests that check the key never reaches a file
        return self._secret

    def __repr__(self) -> str:
        return f"SoftwareMasterKey(version={self._version}, secret=<hidden>)"

    def __reduce__(self) -> NoReturn:
        raise TypeError("a master key cannot be pickled")

    def __copy__(self) -> SoftwareMasterKey:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> SoftwareMasterKey:
        return self


def _header(version: int, n: int, salt: str) -> dict[str, Any]:
    return {
        "type": _FILE_TYPE,
        "kind": _KIND,
        "version": version,
        "kdf": {"name": "scrypt", "n": n, "r": _SCRYPT_R, "p": _SCRYPT_P, "salt": salt},
    }


def _header_aad(header: dict[str, Any]) -> bytes:
    return canonical_json({name: header[name] for name in ("type", "kind", "version", "kdf")})


def _derive(passphrase: bytes, salt: bytes, n: int) -> bytes:
    if not isinstance(passphrase, bytes) or not passphrase:
        raise MasterKeyError("the master key passphrase is empty; give a non-empty passphrase")
    return Scrypt(salt=salt, length=KEY_SIZE, n=n, r=_SCRYPT_R, p=_SCRYPT_P).derive(passphrase)


def _check_scrypt_n(n: int) -> int:
    if (
        isinstance(n, bool)
        or not isinstance(n, int)
        or not _MIN_SCRYPT_N <= n <= _MAX_SCRYPT_N
        or n & (n - 1)
    ):
        raise ValueError(
            f"scrypt n must be a power of two from {_MIN_SCRYPT_N} to {_MAX_SCRYPT_N}, not {n!r}"
        )
    return n


def _parse(sealed: bytes) -> tuple[dict[str, Any], bytes, bytes, bytes]:
    """The header, salt, nonce and ciphertext of a sealed file, each checked for shape."""
    try:
        doc = parse_canonical_json(sealed, what=_WHAT)
    except FormatError as exc:
        raise MasterKeyError(f"{exc}; restore the file from a backup") from exc
    if not isinstance(doc, dict) or doc.get("type") != _FILE_TYPE:
        raise MasterKeyError(f"{_WHAT} is not a modelseal master key (type is not {_FILE_TYPE!r})")
    if doc.get("kind") != _KIND:
        raise MasterKeyError(
            f"{_WHAT} holds a {doc.get('kind')!r} master key, not a software one; "
            "open it with the matching backend"
        )
    expected = {"type", "kind", "version", "kdf", "nonce", "sealed"}
    if set(doc) != expected:
        raise MasterKeyError(f"{_WHAT} must have exactly the fields {sorted(expected)}")
    kdf = doc["kdf"]
    if (
        not isinstance(kdf, dict)
        or set(kdf) != {"name", "n", "r", "p", "salt"}
        or kdf["name"] != "scrypt"
        or kdf["r"] != _SCRYPT_R
        or kdf["p"] != _SCRYPT_P
        or not isinstance(kdf["salt"], str)
    ):
        raise MasterKeyError(f"{_WHAT} has unsupported KDF parameters (expected scrypt, r=8, p=1)")
    try:
        check_version(doc["version"])
        _check_scrypt_n(kdf["n"])
    except ValueError as exc:
        raise MasterKeyError(f"{_WHAT}: {exc}") from None
    salt = _unb64(kdf["salt"], "kdf.salt")
    nonce, ciphertext = _unb64(doc["nonce"], "nonce"), _unb64(doc["sealed"], "sealed")
    if (
        len(salt) != _SALT_SIZE
        or len(nonce) != NONCE_SIZE
        or len(ciphertext) != KEY_SIZE + TAG_SIZE
    ):
        raise MasterKeyError(f"{_WHAT}: the salt, nonce or sealed key has the wrong length")
    header = {name: doc[name] for name in ("type", "kind", "version", "kdf")}
    return header, salt, nonce, ciphertext


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(value: object, field: str) -> bytes:
    if not isinstance(value, str):
        raise MasterKeyError(f"{_WHAT}: {field!r} must be a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except binascii.Error:
        raise MasterKeyError(f"{_WHAT}: {field!r} is not valid base64") from None
