"""The data key handle: opaque, unpicklable, and its key file round-trips exactly."""

from __future__ import annotations

import base64
import copy
import json
import pickle
import re

import pytest

from modelseal.crypto import DataKey, KeyFormatError, dump_data_key, load_data_key
from modelseal.crypto.datakey import KEY_SIZE

SECRET = bytes(range(100, 132))


def _file(**fields: object) -> bytes:
    doc: dict[str, object] = {
        "type": "modelseal.data-key",
        "version": 1,
        "key_id": "dk-1",
        "key": base64.b64encode(SECRET).decode(),
    }
    doc.update(fields)
    return json.dumps({k: v for k, v in doc.items() if v is not None}).encode()


def test_generate_gives_fresh_keys_and_ids() -> None:
    first, second = DataKey.generate(), DataKey.generate()
    assert len(first._secret_bytes()) == KEY_SIZE == 32
    assert first._secret_bytes() != second._secret_bytes()
    assert first.key_id != second.key_id
    assert re.fullmatch(
        r"dk-[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", first.key_id
    )


def test_no_public_constructor() -> None:
    with pytest.raises(TypeError, match="no public constructor"):
        DataKey(object(), SECRET, "dk-1")


@pytest.mark.parametrize("size", [0, 16, 31, 33, 64])
def test_a_key_has_exactly_32_bytes(size: int) -> None:
    with pytest.raises(KeyFormatError, match=str(size)):
        DataKey._from_secret(bytes(size), "dk-1")


def test_repr_and_str_hide_the_secret() -> None:
    key = DataKey._from_secret(SECRET, "dk-visible")
    for text in (repr(key), str(key), f"{key}", f"{key!r}"):
        assert "dk-visible" in text
        assert "hidden" in text
        for form in (
            SECRET.hex(),
            SECRET.hex().upper(),
            base64.b64encode(SECRET).decode(),
            repr(SECRET),
        ):
            assert form not in text


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_cannot_be_pickled(protocol: int) -> None:
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(DataKey.generate(), protocol=protocol)


def test_copies_are_the_same_handle() -> None:
    key = DataKey.generate()
    assert copy.copy(key) is key
    assert copy.deepcopy({"k": key})["k"] is key


def test_no_instance_dict_to_leak_through() -> None:
    key = DataKey.generate()
    assert not hasattr(key, "__dict__")
    with pytest.raises(AttributeError):
        key.extra = 1  # type: ignore[attr-defined]


def test_equality_needs_both_id_and_secret() -> None:
    key = DataKey._from_secret(SECRET, "dk-1")
    assert key == DataKey._from_secret(SECRET, "dk-1")
    assert hash(key) == hash(DataKey._from_secret(SECRET, "dk-1"))
    assert key != DataKey._from_secret(SECRET, "dk-2")
    assert key != DataKey._from_secret(bytes(32), "dk-1")
    assert key != SECRET


def test_key_file_round_trip_is_canonical() -> None:
    key = DataKey._from_secret(SECRET, "dk-1")
    data = dump_data_key(key)
    assert data == (
        b'{"key":"'
        + base64.b64encode(SECRET)
        + b'","key_id":"dk-1","type":"modelseal.data-key","version":1}'
    )
    loaded = load_data_key(data)
    assert loaded == key
    assert loaded._secret_bytes() == SECRET
    assert load_data_key(dump_data_key(DataKey.generate())) != key


def test_loads_a_hand_written_file() -> None:
    assert load_data_key(_file())._secret_bytes() == SECRET


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b"[1, 2]", "type is not"),
        (_file(type="modelseal.signing-key"), "type is not"),
        (_file(version=2), "unsupported data key file version 2"),
        (_file(version="1"), "unsupported data key file version"),
        (_file(key_id=None), "lacks 'key_id' or 'key'"),
        (_file(key=None), "lacks 'key_id' or 'key'"),
        (_file(key_id=7), "lacks 'key_id' or 'key'"),
        (_file(key="not base64!"), "not base64"),
        (_file(key=base64.b64encode(SECRET[:31]).decode()), "32 bytes, not 31"),
    ],
)
def test_bad_key_files_raise_key_format_error(data: bytes, message: str) -> None:
    with pytest.raises(KeyFormatError, match=re.escape(message)):
        load_data_key(data)
