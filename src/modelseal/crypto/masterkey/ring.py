"""Several versions of one master key behind the :class:`MasterKey` protocol.

A master-key rotation (``modelseal vault rotate-master-key``) creates version N + 1 before it
rewraps anything, and retires version N only after every wrapped key names N + 1. In between —
and after an interrupted rotation — wrapped keys of both versions exist, so the vault holds every
version still present in its home in one ring: :meth:`MasterKeyRing.wrap` always uses the newest
(so nothing new is wrapped under a key about to be retired), :meth:`MasterKeyRing.unwrap` picks
the version a blob names in its header.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NoReturn

from modelseal._closing import Closing
from modelseal.crypto.datakey import DataKey
from modelseal.crypto.errors import DecryptionError, FormatError
from modelseal.crypto.masterkey.base import MasterKey, MasterKeyError, master_version_of

__all__ = ["MasterKeyRing"]


class MasterKeyRing(Closing):
    """Master keys of one kind by version; the newest is the current one.

    The ring owns its keys: :meth:`close` closes every one of them. A ring is never pickled
    (its keys refuse it as well) and its ``repr`` shows the keys' own, secret-free ``repr``.
    """

    __slots__ = ("_current", "_keys")

    def __init__(self, keys: Iterable[MasterKey]) -> None:
        by_version: dict[int, MasterKey] = {}
        for key in keys:
            if key.version in by_version:
                raise ValueError(f"the ring holds master key version {key.version} twice")
            by_version[key.version] = key
        if not by_version:
            raise ValueError("a master key ring needs at least one key")
        kinds = {key.kind for key in by_version.values()}
        if len(kinds) != 1:
            raise ValueError(f"a master key ring holds keys of one kind, not {sorted(kinds)}")
        self._keys = dict(sorted(by_version.items()))
        self._current = by_version[max(by_version)]

    @property
    def kind(self) -> str:
        return self._current.kind

    @property
    def version(self) -> int:
        """The current (newest) version: what :meth:`wrap` wraps under."""
        return self._current.version

    @property
    def versions(self) -> tuple[int, ...]:
        """Every version in the ring, oldest first."""
        return tuple(self._keys)

    @property
    def current(self) -> MasterKey:
        return self._current

    def get(self, version: int) -> MasterKey:
        """The key of ``version``; a version the ring lacks is a :class:`MasterKeyError`."""
        key = self._keys.get(version)
        if key is None:
            raise MasterKeyError(
                f"master key version {version} is not open (this vault has version"
                f"{'s' if len(self._keys) > 1 else ''} {_list(self._keys)})",
                hint="a key wrapped by a retired master key no longer opens; restore the "
                "retired key, or finish the master-key rotation with "
                "`modelseal vault rotate-master-key`",
            )
        return key

    def __contains__(self, version: object) -> bool:
        return version in self._keys

    def wrap(self, key: DataKey, *, context: bytes) -> bytes:
        """``key`` wrapped by the current version (the context names that version)."""
        return self._current.wrap(key, context=context)

    def unwrap(self, blob: bytes, *, context: bytes, key_id: str) -> DataKey:
        """The data key in ``blob``, opened by the version its header names.

        A malformed blob is the fixed :class:`DecryptionError`, as with a single key; a version
        the ring does not hold is a :class:`MasterKeyError` naming it.
        """
        try:
            version = master_version_of(blob)
        except FormatError:
            raise DecryptionError() from None
        if version < 1:  # no master key ever has version 0
            raise DecryptionError()
        return self.get(version).unwrap(blob, context=context, key_id=key_id)

    def close(self) -> None:
        """Close every key (each one even when another's close fails)."""
        failure: BaseException | None = None
        for key in self._keys.values():
            try:
                key.close()
            except BaseException as exc:  # closes the others first, raises below
                failure = failure or exc
        if failure is not None:
            raise failure

    def __repr__(self) -> str:
        return f"MasterKeyRing({', '.join(map(repr, self._keys.values()))})"

    def __reduce__(self) -> NoReturn:
        raise TypeError("a master key ring cannot be pickled")


def _list(keys: dict[int, MasterKey]) -> str:
    return ", ".join(str(version) for version in keys)
