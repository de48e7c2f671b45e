"""The PKCS#11 master key against a real SoftHSM2 token (a fresh one per test)."""

from __future__ import annotations

import pickle
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pkcs11
import pytest
from pkcs11 import Attribute, KeyType, ObjectClass
from pkcs11 import exceptions as p11

from modelseal.crypto import DataKey, DecryptionError
from modelseal.crypto.masterkey import (
    WRAPPED_SIZE,
    MasterKey,
    MasterKeyError,
    Pkcs11MasterKey,
    SoftwareMasterKey,
    data_key_context,
    master_version_of,
)
from modelseal.crypto.masterkey.base import MAGIC
from tests.conftest import expect_error
from tests.softhsm import SoftHsmToken, add_token, new_token

CONTEXT = data_key_context(model_id="m-1", version=3, key_id="dk-1", master_version=1)


@pytest.fixture
def token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SoftHsmToken:
    return new_token(tmp_path, monkeypatch)


@pytest.fixture
def master(token: SoftHsmToken) -> Iterator[Pkcs11MasterKey]:
    with Pkcs11MasterKey.create(module=token.module, token_label=token.label, pin=token.pin) as key:
        yield key


def _open(token: SoftHsmToken, **changes: object) -> Pkcs11MasterKey:
    arguments: dict[str, object] = {
        "module": token.module,
        "token_label": token.label,
        "pin": token.pin,
        "version": 1,
    }
    arguments.update(changes)
    return Pkcs11MasterKey.open(**arguments)  # type: ignore[arg-type]


def _flip(data: bytes, position: int) -> bytes:
    out = bytearray(data)
    out[position] ^= 0x01
    return bytes(out)


def test_create_open_wrap_unwrap(token: SoftHsmToken, master: Pkcs11MasterKey) -> None:
    def use(key: MasterKey) -> tuple[str, int]:
        return key.kind, key.version

    assert use(master) == ("pkcs11", 1)
    data_key = DataKey.generate()
    blob = master.wrap(data_key, context=CONTEXT)
    assert len(blob) == WRAPPED_SIZE and blob[:4] == MAGIC and master_version_of(blob) == 1
    assert data_key._secret_bytes() not in blob
    assert master.unwrap(blob, context=CONTEXT, key_id=data_key.key_id) == data_key
    with _open(token) as reopened:
        assert reopened.unwrap(blob, context=CONTEXT, key_id=data_key.key_id) == data_key
        again = reopened.wrap(data_key, context=CONTEXT)
    assert again != blob  # a fresh IV each time
    assert master.unwrap(again, context=CONTEXT, key_id=data_key.key_id) == data_key


def test_the_key_object_never_leaves_the_token(token: SoftHsmToken) -> None:
    Pkcs11MasterKey.create(
        module=token.module, token_label=token.label, pin=token.pin, label="vault", version=3
    ).close()
    lib = pkcs11.lib(token.module)
    with lib.get_token(token_label=token.label).open(user_pin=token.pin) as session:
        key = session.get_key(object_class=ObjectClass.SECRET_KEY, label="vault-v3")
        assert key.key_type == KeyType.AES
        assert key[Attribute.VALUE_LEN] == 32
        assert key[Attribute.TOKEN] is True
        assert key[Attribute.PRIVATE] is True
        assert key[Attribute.SENSITIVE] is True
        assert key[Attribute.ALWAYS_SENSITIVE] is True
        assert key[Attribute.EXTRACTABLE] is False
        assert key[Attribute.NEVER_EXTRACTABLE] is True
        assert key[Attribute.MODIFIABLE] is False
        assert (key[Attribute.ENCRYPT], key[Attribute.DECRYPT]) == (True, True)
        assert (key[Attribute.WRAP], key[Attribute.UNWRAP]) == (False, False)
        with pytest.raises(p11.AttributeSensitive):
            key[Attribute.VALUE]
    # Without a login the private key object is not even visible.
    with lib.get_token(token_label=token.label).open() as anonymous:
        assert list(anonymous.get_objects({Attribute.LABEL: "vault-v3"})) == []


def test_backends_do_not_open_each_other(master: Pkcs11MasterKey) -> None:
    software, _ = SoftwareMasterKey.create(b"passphrase", scrypt_n=2**10)
    from_software = software.wrap(DataKey.generate(), context=CONTEXT)
    from_token = master.wrap(DataKey.generate(), context=CONTEXT)
    expect_error(DecryptionError, lambda: master.unwrap(from_software, context=CONTEXT, key_id="k"))
    expect_error(DecryptionError, lambda: software.unwrap(from_token, context=CONTEXT, key_id="k"))


def test_context_tampering_and_version_are_refused(
    token: SoftHsmToken, master: Pkcs11MasterKey
) -> None:
    blob = master.wrap(DataKey.generate(), context=CONTEXT)
    other = data_key_context(model_id="m-1", version=4, key_id="dk-1", master_version=1)
    expect_error(DecryptionError, lambda: master.unwrap(blob, context=other, key_id="dk-1"))
    for position in (0, 5, 8, 20, 51, 52, WRAPPED_SIZE - 1):
        tampered = _flip(blob, position)
        expect_error(DecryptionError, partial(master.unwrap, tampered, context=CONTEXT, key_id="k"))
    expect_error(DecryptionError, lambda: master.unwrap(blob[:-1], context=CONTEXT, key_id="k"))
    with Pkcs11MasterKey.create(
        module=token.module, token_label=token.label, pin=token.pin, version=2
    ) as newer:
        expect_error(DecryptionError, lambda: newer.unwrap(blob, context=CONTEXT, key_id="k"))
        newer_blob = newer.wrap(DataKey.generate(), context=CONTEXT)
        assert master_version_of(newer_blob) == 2
        expect_error(
            DecryptionError, lambda: master.unwrap(newer_blob, context=CONTEXT, key_id="k")
        )
    # The token still works after refusals (no operation left half-done in the session).
    master.unwrap(blob, context=CONTEXT, key_id="dk-1")


def test_wrong_pin(token: SoftHsmToken) -> None:
    message = f"wrong PIN for PKCS#11 token '{token.label}'"
    Pkcs11MasterKey.create(module=token.module, token_label=token.label, pin=token.pin).close()
    error = expect_error(MasterKeyError, lambda: _open(token, pin="0000"))
    assert str(error) == message and error.code == "MASTER_KEY"
    assert error.hint is not None and "locks" in error.hint
    # While another key holds the login, a wrong PIN is still refused.
    with _open(token):
        assert str(expect_error(MasterKeyError, lambda: _open(token, pin="0000"))) == message
        with _open(token) as second:  # the right PIN shares the login
            assert second.version == 1


def test_unknown_token_label(token: SoftHsmToken) -> None:
    unknown = "no-such-token"
    error = expect_error(MasterKeyError, lambda: _open(token, token_label=unknown))
    assert str(error) == (
        f"PKCS#11 token 'no-such-token' not found in {token.module}; run softhsm2-util --show-slots"
    )


def test_missing_key(token: SoftHsmToken) -> None:
    error = expect_error(MasterKeyError, lambda: _open(token, version=9))
    assert str(error) == (
        f"master key 'modelseal-master-v9' not found on PKCS#11 token '{token.label}'; "
        "check the label and version, or create the key with `modelseal vault init`"
    )


def test_create_refuses_an_existing_label(token: SoftHsmToken, master: Pkcs11MasterKey) -> None:
    error = expect_error(
        MasterKeyError,
        lambda: Pkcs11MasterKey.create(module=token.module, token_label=token.label, pin=token.pin),
    )
    assert str(error) == (
        f"a key labelled 'modelseal-master-v1' already exists on PKCS#11 token '{token.label}'; "
        "open it, or create the next version"
    )


def test_missing_module(tmp_path: Path) -> None:
    path, token_label = str(tmp_path / "libnothing.so"), "any"
    error = expect_error(
        MasterKeyError,
        lambda: Pkcs11MasterKey.open(module=path, token_label=token_label, pin="1", version=1),
    )
    assert str(error) == (
        f"PKCS#11 module {path} does not exist; give the path of the module's shared library "
        "(SoftHSM2: /usr/lib/softhsm/libsofthsm2.so)"
    )
    not_a_library = tmp_path / "not-a-library.so"
    not_a_library.write_bytes(b"plain text")
    expect_error(
        MasterKeyError,
        lambda: Pkcs11MasterKey.open(
            module=str(not_a_library), token_label=token_label, pin="1", version=1
        ),
        f"PKCS#11 module {not_a_library} could not be loaded",
    )


def test_a_foreign_extractable_key_is_refused(token: SoftHsmToken) -> None:
    lib = pkcs11.lib(token.module)
    with lib.get_token(token_label=token.label).open(user_pin=token.pin, rw=True) as session:
        session.generate_key(
            KeyType.AES,
            256,
            label="modelseal-master-v1",
            store=True,
            template={Attribute.EXTRACTABLE: True, Attribute.SENSITIVE: False},
        )
    expect_error(MasterKeyError, lambda: _open(token), "not a usable master key")


def test_closed_keys_refuse_and_others_keep_working(token: SoftHsmToken) -> None:
    first = Pkcs11MasterKey.create(module=token.module, token_label=token.label, pin=token.pin)
    second = _open(token)
    blob = first.wrap(DataKey.generate(), context=CONTEXT)
    first.close()
    first.close()  # idempotent
    expect_error(
        MasterKeyError,
        lambda: first.unwrap(blob, context=CONTEXT, key_id="k"),
        "was closed; open it again",
    )
    second.unwrap(blob, context=CONTEXT, key_id="k")  # the shared login survives the first close
    second.close()


def test_logs_in_again_after_the_token_drops_the_session(
    token: SoftHsmToken, master: Pkcs11MasterKey
) -> None:
    blob = master.wrap(DataKey.generate(), context=CONTEXT)
    pkcs11.lib(token.module).reinitialize()  # every session and the login are gone
    master.unwrap(blob, context=CONTEXT, key_id="dk-1")
    master.wrap(DataKey.generate(), context=CONTEXT)


def test_two_tokens_in_one_module(token: SoftHsmToken, master: Pkcs11MasterKey) -> None:
    other = add_token(token, label="second", pin="2222-user", so_pin="3333-officer")
    # add_token reloaded the module, so ``master`` logs in again on first use.
    blob = master.wrap(DataKey.generate(), context=CONTEXT)
    with Pkcs11MasterKey.create(module=other.module, token_label=other.label, pin=other.pin) as key:
        expect_error(DecryptionError, lambda: key.unwrap(blob, context=CONTEXT, key_id="k"))
        master.unwrap(blob, context=CONTEXT, key_id="k")


def test_concurrent_unwraps_from_two_keys(token: SoftHsmToken, master: Pkcs11MasterKey) -> None:
    second = _open(token)
    keys = [DataKey.generate() for _ in range(40)]
    contexts = [
        data_key_context(model_id=f"m-{i}", version=1, key_id=k.key_id, master_version=1)
        for i, k in enumerate(keys)
    ]
    blobs = [master.wrap(k, context=c) for k, c in zip(keys, contexts, strict=True)]
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def worker(index: int) -> None:
        user = (master, second)[index % 2]
        try:
            start.wait()
            for _ in range(10):
                for k, c, b in zip(keys, contexts, blobs, strict=True):
                    assert user.unwrap(b, context=c, key_id=k.key_id) == k
                    rewrapped = user.wrap(k, context=c)
                    assert master.unwrap(rewrapped, context=c, key_id=k.key_id) == k
                expect_error(
                    DecryptionError, lambda: user.unwrap(blobs[0], context=contexts[1], key_id="k")
                )
        except BaseException as exc:  # reported below, with the thread's traceback
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    second.close()
    assert errors == []


def test_the_handle_is_opaque(master: Pkcs11MasterKey) -> None:
    with pytest.raises(TypeError, match="no public constructor"):
        Pkcs11MasterKey(object(), None, None, "x", 1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(master)
    assert repr(master) == (
        "Pkcs11MasterKey(token='modelseal-test', label='modelseal-master-v1', version=1)"
    )
