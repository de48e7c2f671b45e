"""MasterKeyRing: the newest version wraps, the blob's version unwraps, unknown versions are named."""

from __future__ import annotations

import pickle

import pytest

from modelseal.crypto import DataKey, DecryptionError
from modelseal.crypto.masterkey import (
    MasterKey,
    MasterKeyError,
    MasterKeyRing,
    SoftwareMasterKey,
    data_key_context,
    master_version_of,
)
from tests.conftest import expect_error

FAST_N = 2**10


def software(version: int) -> SoftwareMasterKey:
    return SoftwareMasterKey.create(b"passphrase", version=version, scrypt_n=FAST_N)[0]


def context(master_version: int, key: DataKey) -> bytes:
    return data_key_context(
        model_id="model", version=1, key_id=key.key_id, master_version=master_version
    )


class Closing:
    """A stand-in key that records being closed (and can fail to close)."""

    def __init__(self, version: int, *, fail: bool = False) -> None:
        self.kind, self.version, self.fail, self.closed = "software", version, fail, False

    def wrap(self, key: DataKey, *, context: bytes) -> bytes:
        raise AssertionError("not used")

    def unwrap(self, blob: bytes, *, context: bytes, key_id: str) -> DataKey:
        raise AssertionError("not used")

    def close(self) -> None:
        self.closed = True
        if self.fail:
            raise RuntimeError(f"close of version {self.version} failed")


def test_the_newest_version_wraps_and_each_blob_opens_with_its_own() -> None:
    old, new = software(1), software(2)
    ring = MasterKeyRing([new, old])
    assert (ring.kind, ring.version, ring.versions, ring.current) == ("software", 2, (1, 2), new)
    assert 1 in ring and 3 not in ring and ring.get(1) is old
    key = DataKey.generate()
    wrapped_new = ring.wrap(key, context=context(2, key))
    assert master_version_of(wrapped_new) == 2
    assert new.unwrap(wrapped_new, context=context(2, key), key_id=key.key_id) == key
    wrapped_old = old.wrap(key, context=context(1, key))
    for blob, version in ((wrapped_old, 1), (wrapped_new, 2)):
        assert ring.unwrap(blob, context=context(version, key), key_id=key.key_id) == key
    with pytest.raises(DecryptionError):  # the context names the other version
        ring.unwrap(wrapped_old, context=context(2, key), key_id=key.key_id)


def test_a_blob_of_a_version_the_ring_lacks_is_named() -> None:
    key = DataKey.generate()
    blob = software(3).wrap(key, context=context(3, key))
    ring = MasterKeyRing([software(1), software(2)])
    error = expect_error(
        MasterKeyError,
        lambda: ring.unwrap(blob, context=context(3, key), key_id=key.key_id),
        "master key version 3 is not open (this vault has versions 1, 2)",
    )
    assert "rotate-master-key" in error.diagnostics()


@pytest.mark.parametrize("blob", [b"", b"MSK1" + bytes(64), b"XXXX" + bytes(64), bytes(67)])
def test_a_malformed_blob_is_the_fixed_decryption_error(blob: bytes) -> None:
    ring = MasterKeyRing([software(1)])
    with pytest.raises(DecryptionError) as info:
        ring.unwrap(blob, context=b"context", key_id="key")
    assert str(info.value) == str(DecryptionError())


def test_close_closes_every_key_even_when_one_fails() -> None:
    keys = [Closing(1, fail=True), Closing(2), Closing(3)]
    ring = MasterKeyRing(keys)
    with pytest.raises(RuntimeError, match="close of version 1 failed"):
        ring.close()
    assert all(key.closed for key in keys)


def test_a_ring_is_refused_empty_mixed_or_with_a_version_twice() -> None:
    expect_error(ValueError, lambda: MasterKeyRing([]), "at least one key")
    expect_error(ValueError, lambda: MasterKeyRing([software(1), software(1)]), "version 1 twice")
    pkcs11_like = Closing(2)
    pkcs11_like.kind = "pkcs11"
    mixed: list[MasterKey] = [software(1), pkcs11_like]
    expect_error(ValueError, lambda: MasterKeyRing(mixed), "one kind")


def test_the_ring_shows_no_secret_and_is_not_pickled() -> None:
    key = software(1)
    ring = MasterKeyRing([key])
    assert repr(ring) == "MasterKeyRing(SoftwareMasterKey(version=1, secret=<hidden>))"
    assert key._secret_bytes().hex() not in repr(ring)
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(ring)
    with ring:
        pass
