"""The manifest: exact layout, canonical bytes, and strict parsing that names the bad field."""

from __future__ import annotations

import copy
import hashlib
import json
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelseal.crypto import SEGMENT_SIZE, SUITE, canonical_json, ciphertext_size
from modelseal.package import FileEntry, Manifest, ModelInfo, PackageError, WrappedKey
from modelseal.package.manifest import (
    file_associated_data,
    files_digest,
    validate_model_name,
    validate_relative_path,
)
from tests.conftest import expect_error

MODEL_ID = "0b6f7c8e-4d2a-4c1e-9a57-3f1d2e8b9c10"


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def entry(path: str, size: int) -> FileEntry:
    return FileEntry(
        path=path,
        size=size,
        sha256=digest(f"plain {path}"),
        ciphertext_size=ciphertext_size(size),
        ciphertext_sha256=digest(f"cipher {path}"),
    )


def make_manifest(*files: FileEntry, wrapped: tuple[WrappedKey, ...] = ()) -> Manifest:
    return Manifest(
        model=ModelInfo(id=MODEL_ID, name="ocr-rec", version=3),
        key_id="dk-5f0c2b8a-1111-4222-8333-944445555666",
        files=files or (entry("model.onnx", 1000), entry("weights/w.bin", 3 * SEGMENT_SIZE)),
        created="2026-01-02T03:04:05Z",
        tool="modelseal 0.1.0",
        wrapped_keys=wrapped,
    )


def manifest_doc() -> dict[str, Any]:
    wrapped = WrappedKey("HPKE-Base-X25519-SHA256-AES256GCM", digest("recipient"), "AAAA")
    return make_manifest(wrapped=(wrapped,)).to_dict()


def test_layout_is_exactly_the_documented_one() -> None:
    doc = manifest_doc()
    assert doc == {
        "format": "modelseal.sealed-package",
        "format_version": 1,
        "model": {"id": MODEL_ID, "name": "ocr-rec", "version": 3},
        "created": "2026-01-02T03:04:05Z",
        "tool": "modelseal 0.1.0",
        "encryption": {
            "suite": "AES256_GCM_HKDF_1MB",
            "segment_size": 1048576,
            "key_id": "dk-5f0c2b8a-1111-4222-8333-944445555666",
            "wrapped_keys": [
                {
                    "algorithm": "HPKE-Base-X25519-SHA256-AES256GCM",
                    "recipient": digest("recipient"),
                    "wrapped": "AAAA",
                }
            ],
        },
        "files": [
            {
                "path": "model.onnx",
                "size": 1000,
                "sha256": digest("plain model.onnx"),
                "ciphertext_size": 1056,
                "ciphertext_sha256": digest("cipher model.onnx"),
            },
            {
                "path": "weights/w.bin",
                "size": 3 * SEGMENT_SIZE,
                "sha256": digest("plain weights/w.bin"),
                "ciphertext_size": ciphertext_size(3 * SEGMENT_SIZE),
                "ciphertext_sha256": digest("cipher weights/w.bin"),
            },
        ],
    }


def test_bytes_are_canonical_and_round_trip() -> None:
    manifest = make_manifest()
    data = manifest.to_bytes()
    assert data == canonical_json(json.loads(data))
    assert data.startswith(b'{"created":"2026-01-02T03:04:05Z","encryption":{')
    parsed = Manifest.from_bytes(data)
    assert parsed == manifest
    assert parsed.file("weights/w.bin") == manifest.files[1]
    assert parsed.total_size == 1000 + 3 * SEGMENT_SIZE
    assert parsed.suite == SUITE
    assert parsed.files[1].payload_name == "payload/weights/w.bin"


def test_unknown_file_is_refused_by_name() -> None:
    expect_error(PackageError, lambda: make_manifest().file("other.bin"), "has no file 'other.bin'")


def _set(path: str, value: object) -> Callable[[dict[str, Any]], None]:
    def edit(doc: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target: Any = doc
        for part in parents:
            target = target[int(part)] if part.isdigit() else target[part]
        if value is _DELETE:
            del target[last]
        else:
            target[int(last) if last.isdigit() else last] = value

    return edit


_DELETE = object()
_FILE_0 = manifest_doc()["files"][0]

BAD_FIELDS = [
    ("format", "modelseal.other", "not a modelseal sealed package (format is 'modelseal.other')"),
    ("format", _DELETE, "not a modelseal sealed package (format is None)"),
    ("format_version", 2, "unknown format version 2; this modelseal reads version 1"),
    ("format_version", "1", "unknown format version '1'"),
    ("format_version", _DELETE, "unknown format version None"),
    ("model", _DELETE, "model is missing or not a dict"),
    ("model.version", True, "model.version is missing or not a int"),
    ("model.version", 0, "model.version must be ≥ 1"),
    ("model.id", "not-a-uuid", "model.id 'not-a-uuid' is not a UUID"),
    ("model.name", "../evil", "model.name: model name '../evil' is not allowed"),
    ("encryption.suite", "AES128_GCM_HKDF_4KB", "unsupported cipher suite AES128_GCM_HKDF_4KB"),
    ("encryption.segment_size", 4096, "with segment size 4096"),
    ("encryption.key_id", 7, "encryption.key_id is missing or not a str"),
    ("encryption.wrapped_keys.0.recipient", "ab", "encryption.wrapped_keys[0].recipient must be"),
    ("encryption.wrapped_keys.0.wrapped", None, "encryption.wrapped_keys[0].wrapped is missing"),
    ("files", {}, "files is missing or not a list"),
    ("files.0", "model.onnx", "files[0] must be an object"),
    ("files.0.sha256", digest("x").upper(), "files[0].sha256 must be 64 lowercase hex"),
    ("files.0.size", -1, "files[0].size must be ≥ 0"),
    ("files.0.size", 1.5, "files[0].size is missing or not a int"),
    ("files.0.ciphertext_size", 1057, "model.onnx: ciphertext_size 1057 does not fit size 1000"),
    ("files.0.path", "../etc/passwd", "files[0].path: unsafe path '../etc/passwd'"),
    ("files.0.path", "/etc/passwd", "files[0].path: unsafe path '/etc/passwd'"),
    ("files.1", _FILE_0, "files must be sorted by path and unique"),
    ("files.0.path", "z.onnx", "files must be sorted by path and unique"),
    ("files.0.path", "weights", "'weights' is both a file and a directory"),
    ("created", 20260102, "created is missing or not a str"),
    ("tool", _DELETE, "tool is missing or not a str"),
]


@pytest.mark.parametrize(
    ("field", "value", "message"), BAD_FIELDS, ids=[f"{f}={v!r}" for f, v, _ in BAD_FIELDS]
)
def test_bad_field_is_refused_by_name(field: str, value: object, message: str) -> None:
    doc = copy.deepcopy(manifest_doc())
    _set(field, value)(doc)
    error = expect_error(PackageError, lambda: Manifest.from_bytes(canonical_json(doc)), message)
    assert error.message.startswith("manifest.json: ")


def test_unknown_format_version_gives_a_hint() -> None:
    doc = manifest_doc() | {"format_version": 2}
    error = expect_error(PackageError, lambda: Manifest.from_bytes(canonical_json(doc)))
    assert error.hint is not None and "upgrade modelseal" in error.hint


@pytest.mark.parametrize("document", [b"[]", b'"manifest"', b"null"])
def test_a_document_that_is_not_an_object_is_refused(document: bytes) -> None:
    expect_error(
        PackageError, lambda: Manifest.from_bytes(document), "the document must be an object"
    )


def test_non_canonical_bytes_are_refused() -> None:
    doc = manifest_doc()
    for data in (
        json.dumps(doc, indent=2, sort_keys=True).encode(),
        json.dumps(doc).encode(),  # compact but unsorted keys
        canonical_json(doc) + b"\n",
    ):
        expect_error(
            PackageError,
            lambda data=data: Manifest.from_bytes(data),  # type: ignore[misc]
            "manifest.json is not in canonical JSON form",
        )


@pytest.mark.parametrize("data", [b"", b"\xff\xfe{}", b'{"format": '])
def test_bytes_that_are_not_json_are_refused(data: bytes) -> None:
    expect_error(
        PackageError, lambda: Manifest.from_bytes(data), "manifest.json is not valid UTF-8 JSON"
    )


@pytest.mark.parametrize(
    "path",
    ["", "/abs", "a//b", "a/", "./a", "a/./b", "..", "a/..", "../a", "a\\b", "a\x00b", "a\nb"],
)
def test_unsafe_relative_paths_are_refused(path: str) -> None:
    expect_error(PackageError, lambda: validate_relative_path(path), f"unsafe path {path!r}")


@pytest.mark.parametrize("path", ["a", "model.onnx", "a/b/c.bin", "..a", "a..", "dir ü/x y"])
def test_safe_relative_paths_pass(path: str) -> None:
    assert validate_relative_path(path) == path


@pytest.mark.parametrize("name", ["", "-x", ".x", "_x", "a b", "a/b", "x" * 129, "é"])
def test_bad_model_names_are_refused(name: str) -> None:
    expect_error(PackageError, lambda: validate_model_name(name), f"model name {name!r}")


@pytest.mark.parametrize("name", ["a", "ocr-rec", "Model_2.1", "9" + "x" * 127])
def test_good_model_names_pass(name: str) -> None:
    assert validate_model_name(name) == name


def test_associated_data_is_the_documented_canonical_json() -> None:
    model = ModelInfo(id=MODEL_ID, name="ocr", version=3)
    digest = files_digest([("weights/w.bin", 10), ("a.onnx", 5)])
    expected_list = b'[["a.onnx",5],["weights/w.bin",10]]'
    assert digest == hashlib.sha256(expected_list).hexdigest()
    assert file_associated_data(model, digest, "weights/w.bin") == (
        b'{"files":"' + digest.encode() + b'","format":"modelseal.sealed-package/1",'
        b'"model_id":"' + MODEL_ID.encode() + b'","name":"ocr","path":"weights/w.bin","version":3}'
    )
    manifest = make_manifest()
    assert manifest.associated_data(manifest.files[1]) == file_associated_data(
        manifest.model,
        files_digest((e.path, e.size) for e in manifest.files),
        manifest.files[1].path,
    )


def test_associated_data_binds_model_file_set_and_path() -> None:
    model = ModelInfo(id=MODEL_ID, name="m", version=1)
    files = files_digest([("a", 1), ("b", 2)])
    variants = {
        file_associated_data(model, files, "a"),
        file_associated_data(ModelInfo(id=str(uuid.UUID(int=1)), name="m", version=1), files, "a"),
        file_associated_data(ModelInfo(id=MODEL_ID, name="n", version=1), files, "a"),
        file_associated_data(ModelInfo(id=MODEL_ID, name="m", version=2), files, "a"),
        file_associated_data(model, files, "b"),
        file_associated_data(model, files_digest([("a", 1)]), "a"),
        file_associated_data(model, files_digest([("a", 1), ("b", 3)]), "a"),
    }
    assert len(variants) == 7


_segments = st.sampled_from([0, 1, SEGMENT_SIZE - 56, SEGMENT_SIZE - 55, 5 * SEGMENT_SIZE + 3])
# no 'd', 'e' or 'f': a file name never clashes with the directories below
_names = st.text(alphabet="abcxyz.-_", min_size=1, max_size=8).filter(
    lambda s: s not in (".", "..")
)


@st.composite
def manifests(draw: st.DrawFn) -> Manifest:
    paths = sorted(
        draw(st.sets(st.tuples(st.sampled_from(["", "d/", "e/f/"]), _names), max_size=6))
    )
    files = tuple(
        FileEntry(
            path=prefix + name,
            size=(size := draw(st.one_of(_segments, st.integers(0, 1 << 40)))),
            sha256=draw(st.binary(min_size=32, max_size=32)).hex(),
            ciphertext_size=ciphertext_size(size),
            ciphertext_sha256=draw(st.binary(min_size=32, max_size=32)).hex(),
        )
        for prefix, name in paths
    )
    files = tuple(sorted(files, key=lambda f: f.path))
    wrapped = tuple(
        WrappedKey(draw(st.text(max_size=20)), draw(st.binary(min_size=32, max_size=32)).hex(), w)
        for w in draw(st.lists(st.text(max_size=30), max_size=2))
    )
    return Manifest(
        model=ModelInfo(
            id=str(uuid.UUID(int=draw(st.integers(0, (1 << 128) - 1)))),
            name=draw(st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9._-]{0,20}\Z")),
            version=draw(st.integers(1, (1 << 53) - 1)),
        ),
        key_id=draw(st.text(max_size=40)),
        files=files,
        created=draw(st.text(max_size=25)),
        tool=draw(st.text(max_size=25)),
        wrapped_keys=wrapped,
    )


@given(manifests())
def test_any_valid_manifest_round_trips_through_its_canonical_bytes(manifest: Manifest) -> None:
    data = manifest.to_bytes()
    assert canonical_json(json.loads(data)) == data
    assert Manifest.from_bytes(data) == manifest
