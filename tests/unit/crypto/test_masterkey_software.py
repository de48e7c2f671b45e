"""The software master key: wrapping round trips, context binding, tampering, and its sealed file."""

from __future__ import annotations

import base64
import copy
import json
import pickle
import struct
import subprocess
import sys
from collections.abc import Callable
from functools import partial

import pytest

from modelseal.crypto import CryptoError, DataKey, DecryptionError, FormatError, canonical_json
from modelseal.crypto.masterkey import (
    DEFAULT_SCRYPT_N,
    WRAPPED_SIZE,
    MasterKey,
    MasterKeyError,
    SoftwareMasterKey,
    data_key_context,
    generate_data_key,
    master_version_of,
)
from modelseal.crypto.masterkey.base import MAGIC
from tests.conftest import expect_error

PASSPHRASE = b"vault passphrase, long enough"
FAST_N = 2**10  # the smallest cost the backend accepts; production keeps DEFAULT_SCRYPT_N
CONTEXT = data_key_context(model_id="m-1", version=3, key_id="dk-1", master_version=1)
WRONG = "wrong passphrase for the master key"


@pytest.fixture(scope="module")
def sealed_master() -> tuple[SoftwareMasterKey, bytes]:
    return SoftwareMasterKey.create(PASSPHRASE, scrypt_n=FAST_N)


@pytest.fixture
def master(sealed_master: tuple[SoftwareMasterKey, bytes]) -> SoftwareMasterKey:
    return sealed_master[0]


def _flip(data: bytes, position: int) -> bytes:
    out = bytearray(data)
    out[position] ^= 0x01
    return bytes(out)


def _edit(sealed: bytes, fields: dict[str, object]) -> bytes:
    doc = json.loads(sealed)
    doc.update(fields)
    return canonical_json(doc)


def _unseal_edited(sealed: bytes, fields: dict[str, object]) -> Callable[[], object]:
    return lambda: SoftwareMasterKey.unseal(_edit(sealed, fields), PASSPHRASE)


# --- wrapping --------------------------------------------------------------------------------------


def test_round_trip(master: SoftwareMasterKey) -> None:
    data_key = generate_data_key()
    blob = master.wrap(data_key, context=CONTEXT)
    assert len(blob) == WRAPPED_SIZE == 68
    assert blob[:8] == MAGIC + struct.pack(">I", 1)
    assert master_version_of(blob) == 1
    assert data_key._secret_bytes() not in blob
    again = master.unwrap(blob, context=CONTEXT, key_id=data_key.key_id)
    assert again == data_key


def test_every_wrap_uses_a_fresh_nonce(master: SoftwareMasterKey) -> None:
    data_key = DataKey.generate()
    blobs = {master.wrap(data_key, context=CONTEXT) for _ in range(50)}
    assert len(blobs) == 50
    assert len({blob[8:20] for blob in blobs}) == 50


def test_satisfies_the_protocol(master: SoftwareMasterKey) -> None:
    def use(key: MasterKey) -> tuple[str, int]:
        return key.kind, key.version

    assert use(master) == ("software", 1)
    master.close()  # a no-op: the key stays usable
    master.unwrap(master.wrap(DataKey.generate(), context=CONTEXT), context=CONTEXT, key_id="k")


@pytest.mark.parametrize(
    "other",
    [
        {"model_id": "m-2"},
        {"version": 4},
        {"key_id": "dk-2"},
        {"master_version": 2},
    ],
)
def test_context_mismatch_is_refused(master: SoftwareMasterKey, other: dict[str, object]) -> None:
    blob = master.wrap(DataKey.generate(), context=CONTEXT)
    fields: dict[str, object] = {
        "model_id": "m-1",
        "version": 3,
        "key_id": "dk-1",
        "master_version": 1,
    }
    fields.update(other)
    wrong = data_key_context(**fields)  # type: ignore[arg-type]
    expect_error(DecryptionError, lambda: master.unwrap(blob, context=wrong, key_id="dk-1"))


def test_the_context_is_labelled_canonical_json() -> None:
    assert CONTEXT == (
        b"modelseal/v1 master-key-wrap\x00"
        b'{"key_id":"dk-1","master_version":1,"model_id":"m-1","version":3}'
    )


@pytest.mark.parametrize(
    ("region", "positions"),
    [
        ("magic", range(0, 4)),
        ("version", range(4, 8)),
        ("nonce", range(8, 20)),
        ("ciphertext", range(20, 52)),
        ("tag", range(52, 68)),
    ],
)
def test_tampering_with_any_byte_is_refused(
    master: SoftwareMasterKey, region: str, positions: range
) -> None:
    blob = master.wrap(DataKey.generate(), context=CONTEXT)
    for position in positions:
        error = expect_error(
            DecryptionError,
            partial(master.unwrap, _flip(blob, position), context=CONTEXT, key_id="dk-1"),
        )
        assert str(error) == str(DecryptionError()), region  # one fixed message, no detail


def test_wrong_lengths_are_refused(master: SoftwareMasterKey) -> None:
    blob = master.wrap(DataKey.generate(), context=CONTEXT)
    for bad in (b"", MAGIC, blob[:8], blob[:-1], blob + b"\x00", blob + blob):
        expect_error(DecryptionError, partial(master.unwrap, bad, context=CONTEXT, key_id="dk-1"))


def test_another_master_key_cannot_unwrap(master: SoftwareMasterKey) -> None:
    other, _ = SoftwareMasterKey.create(PASSPHRASE, scrypt_n=FAST_N)
    blob = master.wrap(DataKey.generate(), context=CONTEXT)
    expect_error(DecryptionError, lambda: other.unwrap(blob, context=CONTEXT, key_id="dk-1"))


def test_version_mismatch_is_refused(master: SoftwareMasterKey) -> None:
    newer, _ = SoftwareMasterKey.create(PASSPHRASE, version=2, scrypt_n=FAST_N)
    assert newer.version == 2
    old_blob = master.wrap(DataKey.generate(), context=CONTEXT)
    new_blob = newer.wrap(DataKey.generate(), context=CONTEXT)
    assert master_version_of(new_blob) == 2
    expect_error(DecryptionError, lambda: newer.unwrap(old_blob, context=CONTEXT, key_id="k"))
    expect_error(DecryptionError, lambda: master.unwrap(new_blob, context=CONTEXT, key_id="k"))
    # Relabelling the blob's version does not help: the header is authenticated.
    relabelled = old_blob[:4] + struct.pack(">I", 2) + old_blob[8:]
    expect_error(DecryptionError, lambda: newer.unwrap(relabelled, context=CONTEXT, key_id="k"))


def test_master_version_of_refuses_other_bytes() -> None:
    expect_error(FormatError, lambda: master_version_of(b"x" * WRAPPED_SIZE), "MSK1")
    expect_error(FormatError, lambda: master_version_of(MAGIC), "MSK1")


def test_context_is_required_and_checked(master: SoftwareMasterKey) -> None:
    with pytest.raises(ValueError, match="context"):
        master.wrap(DataKey.generate(), context=b"")
    with pytest.raises(ValueError, match="master key version"):
        data_key_context(model_id="m", version=1, key_id="k", master_version=0)
    with pytest.raises(ValueError, match="model version"):
        data_key_context(model_id="m", version=-1, key_id="k", master_version=1)
    with pytest.raises(ValueError, match="model id"):
        data_key_context(model_id="", version=1, key_id="k", master_version=1)


# --- the sealed file -------------------------------------------------------------------------------


def test_unseal_round_trip(sealed_master: tuple[SoftwareMasterKey, bytes]) -> None:
    master, sealed = sealed_master
    blob = master.wrap(DataKey.generate(), context=CONTEXT)
    opened = SoftwareMasterKey.unseal(sealed, PASSPHRASE)
    assert opened.version == 1
    assert opened._secret_bytes() == master._secret_bytes()
    opened.unwrap(blob, context=CONTEXT, key_id="dk-1")


def test_default_cost_round_trip() -> None:
    _, sealed = SoftwareMasterKey.create(PASSPHRASE, version=7)
    assert json.loads(sealed)["kdf"]["n"] == DEFAULT_SCRYPT_N == 2**15
    assert SoftwareMasterKey.unseal(sealed, PASSPHRASE).version == 7


def test_sealed_file_is_canonical_json_without_the_key(
    sealed_master: tuple[SoftwareMasterKey, bytes],
) -> None:
    master, sealed = sealed_master
    doc = json.loads(sealed)
    assert canonical_json(doc) == sealed
    assert set(doc) == {"type", "kind", "version", "kdf", "nonce", "sealed"}
    assert (doc["type"], doc["kind"], doc["version"]) == ("modelseal.master-key", "software", 1)
    assert doc["kdf"] == {
        "name": "scrypt",
        "n": FAST_N,
        "r": 8,
        "p": 1,
        "salt": doc["kdf"]["salt"],
    }
    assert len(base64.b64decode(doc["kdf"]["salt"])) == 16
    assert len(base64.b64decode(doc["nonce"])) == 12
    assert len(base64.b64decode(doc["sealed"])) == 48
    secret = master._secret_bytes()
    for form in (secret, secret.hex().encode(), base64.b64encode(secret)):
        assert form not in sealed
    assert secret not in base64.b64decode(doc["sealed"])


def test_wrong_passphrase(sealed_master: tuple[SoftwareMasterKey, bytes]) -> None:
    _, sealed = sealed_master
    error = expect_error(
        MasterKeyError, lambda: SoftwareMasterKey.unseal(sealed, b"not the passphrase")
    )
    assert str(error) == WRONG
    assert error.code == "MASTER_KEY"
    expect_error(MasterKeyError, lambda: SoftwareMasterKey.unseal(sealed, b""), "empty")


@pytest.mark.parametrize(
    "fields",
    [
        {"version": 2},
        {"kind": "software", "type": "modelseal.master-key", "version": 3},
    ],
)
def test_edited_header_fails_like_a_wrong_passphrase(
    sealed_master: tuple[SoftwareMasterKey, bytes], fields: dict[str, object]
) -> None:
    _, sealed = sealed_master
    error = expect_error(MasterKeyError, _unseal_edited(sealed, fields))
    assert str(error) == WRONG


def test_edited_salt_or_nonce_or_sealed_key_fails(
    sealed_master: tuple[SoftwareMasterKey, bytes],
) -> None:
    _, sealed = sealed_master
    doc = json.loads(sealed)
    salt = base64.b64encode(_flip(base64.b64decode(doc["kdf"]["salt"]), 0)).decode()
    edits: list[dict[str, object]] = [
        {"kdf": {**doc["kdf"], "salt": salt}},
        {"kdf": {**doc["kdf"], "n": FAST_N * 2}},
        {"nonce": base64.b64encode(_flip(base64.b64decode(doc["nonce"]), 5)).decode()},
        {"sealed": base64.b64encode(_flip(base64.b64decode(doc["sealed"]), 40)).decode()},
    ]
    for edit in edits:
        error = expect_error(MasterKeyError, _unseal_edited(sealed, edit))
        assert str(error) == WRONG


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"type": "modelseal.data-key"}, "not a modelseal master key"),
        ({"kind": "pkcs11"}, "not a software one"),
        ({"extra": 1}, "exactly the fields"),
        ({"version": 0}, "master key version"),
        ({"nonce": "!!"}, "'nonce' is not valid base64"),
        ({"sealed": base64.b64encode(b"short").decode()}, "wrong length"),
    ],
)
def test_malformed_files_are_refused(
    sealed_master: tuple[SoftwareMasterKey, bytes], change: dict[str, object], fragment: str
) -> None:
    _, sealed = sealed_master
    expect_error(
        MasterKeyError,
        _unseal_edited(sealed, change),
        fragment,
    )


def test_kdf_parameters_are_bounded(sealed_master: tuple[SoftwareMasterKey, bytes]) -> None:
    _, sealed = sealed_master
    kdf = json.loads(sealed)["kdf"]
    for bad in ({"n": 2**30}, {"n": 3000}, {"r": 1}, {"name": "pbkdf2"}):
        expect_error(
            MasterKeyError,
            _unseal_edited(sealed, {"kdf": {**kdf, **bad}}),
        )
    with pytest.raises(ValueError, match="power of two"):
        SoftwareMasterKey.create(PASSPHRASE, scrypt_n=1000)


def test_non_canonical_file_is_refused(sealed_master: tuple[SoftwareMasterKey, bytes]) -> None:
    _, sealed = sealed_master
    pretty = json.dumps(json.loads(sealed), indent=2).encode()
    expect_error(MasterKeyError, lambda: SoftwareMasterKey.unseal(pretty, PASSPHRASE), "canonical")
    expect_error(MasterKeyError, lambda: SoftwareMasterKey.unseal(b"\xff", PASSPHRASE), "UTF-8")


def test_reseal_with_a_new_passphrase(sealed_master: tuple[SoftwareMasterKey, bytes]) -> None:
    master, sealed = sealed_master
    blob = master.wrap(DataKey.generate(), context=CONTEXT)
    resealed = master.reseal(b"a brand new passphrase")
    assert resealed != sealed
    assert json.loads(resealed)["kdf"]["salt"] != json.loads(sealed)["kdf"]["salt"]
    expect_error(MasterKeyError, lambda: SoftwareMasterKey.unseal(resealed, PASSPHRASE), WRONG)
    opened = SoftwareMasterKey.unseal(resealed, b"a brand new passphrase")
    opened.unwrap(blob, context=CONTEXT, key_id="dk-1")
    assert json.loads(master.reseal(PASSPHRASE, scrypt_n=2**11))["kdf"]["n"] == 2**11


# --- opacity ---------------------------------------------------------------------------------------


def test_the_key_is_opaque(master: SoftwareMasterKey) -> None:
    secret = master._secret_bytes()
    with pytest.raises(TypeError, match="no public constructor"):
        SoftwareMasterKey(object(), secret, 1, FAST_N)
    for text in (repr(master), str(master)):
        assert "hidden" in text
        assert secret.hex() not in text and base64.b64encode(secret).decode() not in text
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(master)
    assert copy.copy(master) is master and copy.deepcopy(master) is master
    assert not hasattr(master, "__dict__")
    public = {name for name in dir(master) if not name.startswith("_")}
    assert public == {
        "create",
        "unseal",
        "reseal",
        "sealed_version",
        "kind",
        "version",
        "scrypt_n",
        "wrap",
        "unwrap",
        "close",
    }
    for name in ("kind", "version", "scrypt_n"):
        assert not isinstance(getattr(master, name), bytes | bytearray)


def test_public_surface_and_light_import() -> None:
    import modelseal.crypto.masterkey as package

    assert set(package.__all__) == {
        "DEFAULT_SCRYPT_N",
        "WRAPPED_SIZE",
        "MasterKey",
        "MasterKeyError",
        "MasterKeyRing",
        "Pkcs11MasterKey",
        "SoftwareMasterKey",
        "data_key_context",
        "generate_data_key",
        "master_version_of",
    }
    assert all(hasattr(package, name) for name in package.__all__)
    assert issubclass(MasterKeyError, CryptoError) and MasterKeyError.code == "MASTER_KEY"
    code = (
        "import sys\n"
        "from modelseal.crypto.masterkey import SoftwareMasterKey\n"
        "assert 'pkcs11' not in sys.modules, 'the software backend loaded python-pkcs11'\n"
        "from modelseal.crypto.masterkey import Pkcs11MasterKey\n"
        "assert 'pkcs11' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
