"""Sealing, verifying and opening packages through the library: the happy paths, byte for byte."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import os
import stat
import tarfile
import tempfile
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import modelseal.package
from modelseal.crypto import (
    DataKey,
    DecryptionError,
    ImportPrivateKey,
    ciphertext_size,
    load_data_key,
    unwrap_data_key,
    wrap_info,
)
from modelseal.crypto.streaming import FIRST_SEGMENT_PLAINTEXT, SEGMENT_PLAINTEXT
from modelseal.package import (
    IntegrityError,
    PackageError,
    SealedPackage,
    open_package,
    seal,
    verify_package,
)
from tests.conftest import (
    Identity,
    MiB,
    SealFactory,
    assert_no_plaintext,
    entry_bytes,
    expect_error,
    flip_byte,
    random_bytes,
    read_tree,
)

NOW = dt.datetime(2026, 3, 4, 5, 6, 7, tzinfo=dt.UTC)
BIG = "weights/big.bin"


# --- sealing -------------------------------------------------------------------------------------


def test_seal_a_single_file(tmp_path: Path, owner: Identity, onnx_model: Path) -> None:
    out = tmp_path / "sealed"
    result = seal(
        onnx_model,
        out,
        name="iris",
        version=2,
        signing_key=owner.key,
        certificates=[owner.cert],
        data_key_out=tmp_path / "iris.key",
        now=NOW,
    )
    plain = onnx_model.read_bytes()
    manifest = result.manifest
    assert result.path == out
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == [
        "manifest.json",
        "manifest.sig",
        "payload",
        "payload/model.onnx",
    ]
    assert (manifest.model.name, manifest.model.version) == ("iris", 2)
    assert uuid.UUID(manifest.model.id).version == 4
    assert manifest.key_id == result.data_key.key_id
    assert manifest.created == "2026-03-04T05:06:07Z"
    assert manifest.tool == f"modelseal {modelseal.__version__}"
    assert manifest.wrapped_keys == ()
    (entry,) = manifest.files
    ciphertext = (out / "payload" / "model.onnx").read_bytes()
    assert (entry.path, entry.size) == ("model.onnx", len(plain))
    assert entry.sha256 == hashlib.sha256(plain).hexdigest()
    assert entry.ciphertext_size == len(ciphertext) == ciphertext_size(len(plain))
    assert entry.ciphertext_sha256 == hashlib.sha256(ciphertext).hexdigest()
    assert (out / "manifest.json").read_bytes() == manifest.to_bytes()
    assert_no_plaintext(out, [plain])


@pytest.mark.parametrize("archive", [False, True], ids=["directory", "archive"])
def test_seal_a_directory(
    sealed: SealFactory, model_dir: Path, plaintexts: list[bytes], archive: bool
) -> None:
    path, key = sealed(archive=archive)
    tree = read_tree(model_dir)
    with SealedPackage.open(path) as package:
        assert package.container.kind == ("archive" if archive else "directory")
        manifest = package.manifest
        assert [e.path for e in manifest.files] == sorted(tree)
        assert "weights/extra/small.bin" in tree and "empty.txt" in tree
        for entry in manifest.files:
            assert entry.size == len(tree[entry.path])
            assert entry.sha256 == hashlib.sha256(tree[entry.path]).hexdigest()
            ciphertext = entry_bytes(path, entry.payload_name)
            assert entry.ciphertext_sha256 == hashlib.sha256(ciphertext).hexdigest()
        assert manifest.key_id == key.key_id
        assert manifest.total_size == sum(map(len, tree.values()))
    if archive:
        assert path.is_file()
        assert_no_plaintext(path.parent, plaintexts)
    else:
        assert_no_plaintext(path, plaintexts)


def test_archive_is_a_plain_tar_with_the_manifest_last(sealed: SealFactory) -> None:
    path, _ = sealed(archive=True)
    with tarfile.open(path) as tar:
        members = tar.getmembers()
    assert [m.name for m in members] == [
        "payload/config.json",
        "payload/empty.txt",
        "payload/model.onnx",
        "payload/weights/big.bin",
        "payload/weights/extra/small.bin",
        "manifest.json",
        "manifest.sig",
    ]
    assert all(m.isreg() and m.mode == 0o644 and not m.uname for m in members)


def test_each_seal_has_a_fresh_key_and_model_id(
    tmp_path: Path, owner: Identity, model_dir: Path
) -> None:
    results = [
        seal(
            model_dir,
            tmp_path / f"out{i}",
            name="iris",
            version=1,
            signing_key=owner.key,
            certificates=[owner.cert],
            data_key_out=tmp_path / f"key{i}",
        )
        for i in range(2)
    ]
    first, second = (r.manifest for r in results)
    assert first.key_id != second.key_id
    assert first.model.id != second.model.id
    assert results[0].data_key != results[1].data_key
    assert first.files[0].sha256 == second.files[0].sha256
    assert first.files[0].ciphertext_sha256 != second.files[0].ciphertext_sha256


def test_model_id_can_be_reused_across_versions(sealed: SealFactory) -> None:
    model_id = str(uuid.uuid4())
    path, _ = sealed(version=7, model_id=model_id)
    with SealedPackage.open(path) as package:
        assert (package.manifest.model.id, package.manifest.model.version) == (model_id, 7)


def test_data_key_file_is_private_and_loads(
    tmp_path: Path, owner: Identity, onnx_model: Path
) -> None:
    key_file = tmp_path / "keys" / "iris.key"
    key_file.parent.mkdir()
    result = seal(
        onnx_model,
        tmp_path / "sealed",
        name="iris",
        version=1,
        signing_key=owner.key,
        certificates=[owner.cert],
        data_key_out=key_file,
    )
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert load_data_key(key_file.read_bytes()) == result.data_key


def test_sealing_without_any_key_destination_is_refused(
    tmp_path: Path, owner: Identity, onnx_model: Path
) -> None:
    error = expect_error(
        PackageError,
        lambda: seal(
            onnx_model,
            tmp_path / "sealed",
            name="iris",
            version=1,
            signing_key=owner.key,
            certificates=[owner.cert],
        ),
        "the data key would be lost: nobody could ever open this package",
    )
    assert error.hint is not None and "--vault-import-key" in error.hint
    assert sorted(p.name for p in tmp_path.iterdir()) == ["onnx"]


@pytest.mark.parametrize(
    ("name", "version", "message"),
    [
        ("bad name", 1, "model name 'bad name' is not allowed"),
        ("../up", 1, "model name '../up' is not allowed"),
        ("iris", 0, "version must be a positive integer, not 0"),
    ],
)
def test_bad_name_or_version_is_refused(
    tmp_path: Path, owner: Identity, onnx_model: Path, name: str, version: int, message: str
) -> None:
    expect_error(
        PackageError,
        lambda: seal(
            onnx_model,
            tmp_path / "sealed",
            name=name,
            version=version,
            signing_key=owner.key,
            certificates=[owner.cert],
            data_key_out=tmp_path / "k",
        ),
        message,
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["onnx"]


# --- the vault import key ------------------------------------------------------------------------


@pytest.mark.parametrize("archive", [False, True], ids=["directory", "archive"])
def test_data_key_wrapped_to_the_vault_import_key(
    tmp_path: Path,
    owner: Identity,
    model_dir: Path,
    opened_parent: Path,
    archive: bool,
) -> None:
    vault = ImportPrivateKey.generate()
    other_vault = ImportPrivateKey.generate()
    result = seal(
        model_dir,
        tmp_path / "sealed",
        name="iris",
        version=4,
        signing_key=owner.key,
        certificates=[owner.cert],
        import_keys=[vault.public_key(), other_vault.public_key()],
        archive=archive,
    )
    with SealedPackage.open(result.path) as package:
        manifest = package.manifest
    assert [w.recipient for w in manifest.wrapped_keys] == [
        vault.public_key().key_id,
        other_vault.public_key().key_id,
    ]
    assert {w.algorithm for w in manifest.wrapped_keys} == {"HPKE-Base-X25519-SHA256-AES256GCM"}
    info = wrap_info(key_id=manifest.key_id, model_id=manifest.model.id, version=4)
    for recipient, wrapped in zip((vault, other_vault), manifest.wrapped_keys, strict=True):
        key = unwrap_data_key(
            base64.b64decode(wrapped.wrapped), recipient, key_id=manifest.key_id, info=info
        )
        assert key == result.data_key
    key = unwrap_data_key(
        base64.b64decode(manifest.wrapped_keys[0].wrapped), vault, key_id=manifest.key_id, info=info
    )
    open_package(result.path, key, opened_parent / "out")
    assert read_tree(opened_parent / "out") == read_tree(model_dir)


def test_wrapped_key_is_bound_to_model_and_version(
    tmp_path: Path, owner: Identity, onnx_model: Path
) -> None:
    vault = ImportPrivateKey.generate()
    result = seal(
        onnx_model,
        tmp_path / "sealed",
        name="iris",
        version=4,
        signing_key=owner.key,
        certificates=[owner.cert],
        import_keys=[vault.public_key()],
    )
    m = result.manifest
    wrapped = base64.b64decode(m.wrapped_keys[0].wrapped)
    for info in (
        wrap_info(key_id=m.key_id, model_id=str(uuid.uuid4()), version=4),
        wrap_info(key_id=m.key_id, model_id=m.model.id, version=5),
        wrap_info(key_id="dk-other", model_id=m.model.id, version=4),
    ):
        expect_error(
            DecryptionError,
            lambda info=info: unwrap_data_key(  # type: ignore[misc]
                wrapped, vault, key_id=m.key_id, info=info
            ),
            "ciphertext failed authentication",
        )
    expect_error(
        DecryptionError,
        lambda: unwrap_data_key(
            wrapped,
            ImportPrivateKey.generate(),
            key_id=m.key_id,
            info=wrap_info(key_id=m.key_id, model_id=m.model.id, version=4),
        ),
    )


# --- verifying -----------------------------------------------------------------------------------


@pytest.mark.parametrize("archive", [False, True], ids=["directory", "archive"])
def test_verify_with_and_without_trust(sealed: SealFactory, owner: Identity, archive: bool) -> None:
    path, _ = sealed(archive=archive)
    trusted = verify_package(path, trust=[owner.cert])
    assert trusted.trusted_by == owner.cert
    assert trusted.signer.certificate == owner.cert
    assert trusted.signer.algorithm == "ed25519"
    assert trusted.path == path
    assert verify_package(path).trusted_by is None


# --- opening -------------------------------------------------------------------------------------


@pytest.mark.parametrize("archive", [False, True], ids=["directory", "archive"])
def test_open_gives_back_identical_files(
    sealed: SealFactory, model_dir: Path, opened_parent: Path, owner: Identity, archive: bool
) -> None:
    path, key = sealed(archive=archive)
    out = opened_parent / "out"
    manifest = open_package(path, key, out, trust=[owner.cert])
    assert read_tree(out) == read_tree(model_dir)
    assert (out / "empty.txt").stat().st_size == 0
    assert manifest.key_id == key.key_id
    assert sorted(p.name for p in opened_parent.iterdir()) == ["out"]  # no temporary left
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    assert stat.S_IMODE((out / BIG).stat().st_mode) == 0o600


@pytest.mark.parametrize("workers", [1, 2])
def test_open_with_several_workers(
    tmp_path: Path, sealed: SealFactory, opened_parent: Path, workers: int
) -> None:
    model = tmp_path / "large"
    model.mkdir()
    data = random_bytes(19 * MiB // 2, seed=3)  # 10 segments: two chunks of work
    (model / "weights.bin").write_bytes(data)
    (model / "small.txt").write_bytes(b"a small file beside a large one" * 3)
    path, key = sealed(model)
    open_package(path, key, opened_parent / "out", workers=workers)
    assert (opened_parent / "out" / "weights.bin").read_bytes() == data
    assert read_tree(opened_parent / "out") == read_tree(model)


def test_a_damaged_segment_is_named_when_workers_decrypt_it(
    tmp_path: Path, sealed: SealFactory, opened_parent: Path
) -> None:
    model = tmp_path / "large"
    model.mkdir()
    data = random_bytes(19 * MiB // 2, seed=4)
    (model / "weights.bin").write_bytes(data)
    path, key = sealed(model)
    flip_byte(path, "payload/weights.bin", 9 * MiB + 12345)  # segment 9, the second worker's
    expect_error(
        IntegrityError,
        lambda: open_package(path, key, opened_parent / "out", workers=2),
        "payload/weights.bin, segment 9: failed authentication",
    )
    assert list(opened_parent.iterdir()) == []
    assert_no_plaintext(opened_parent, [data])


def iris_outputs(model: bytes) -> tuple[Any, Any]:
    import onnxruntime

    session = onnxruntime.InferenceSession(model, providers=["CPUExecutionProvider"])
    features = np.array([[5.1, 3.5], [6.2, 2.9], [7.7, 3.8]], dtype=np.float32)
    labels, probabilities = session.run(None, {"float_input": features})
    return labels.tolist(), probabilities


@pytest.mark.parametrize("archive", [False, True], ids=["directory", "archive"])
def test_the_opened_model_runs_in_onnxruntime(
    sealed: SealFactory, onnx_model: Path, opened_parent: Path, archive: bool
) -> None:
    expected = iris_outputs(onnx_model.read_bytes())
    assert len(expected[0]) == 3
    path, key = sealed(onnx_model, archive=archive)
    open_package(path, key, opened_parent / "out")
    assert iris_outputs((opened_parent / "out" / "model.onnx").read_bytes()) == expected
    with SealedPackage.open(path) as package:  # straight from memory, never on disk
        assert iris_outputs(bytes(package.reader("model.onnx", key).read_all())) == expected


# --- random access -------------------------------------------------------------------------------

F, S = FIRST_SEGMENT_PLAINTEXT, SEGMENT_PLAINTEXT
READS = [
    (0, 0),
    (0, 100),
    (F - 1, 1),
    (F - 1, 2),  # last byte of segment 0, first of segment 1
    (F, 1),
    (F - 10, 20),
    (F + S - 5, 10),  # segment 1 → 2
    (F - 5, S + 10),  # segments 0, 1 and 2
    (0, 5 * MiB),  # the whole file, clipped
    (5 * MiB // 2 - 3, 10),  # clipped at the end
    (5 * MiB // 2, 10),  # at the end: nothing
    (10 * MiB, 1),  # past the end: nothing
]


@pytest.mark.parametrize("archive", [False, True], ids=["directory", "archive"])
def test_random_access_across_segment_boundaries(
    sealed: SealFactory, model_dir: Path, archive: bool
) -> None:
    plain = (model_dir / BIG).read_bytes()
    path, key = sealed(archive=archive)
    with SealedPackage.open(path) as package:
        reader = package.reader(BIG, key)
        assert (reader.size, reader.segment_count) == (len(plain), 3)
        for offset, length in READS:
            assert reader.read(offset, length) == plain[offset : offset + length], (offset, length)
        assert reader.segment(1) == plain[F : F + S]
        assert bytes(reader.read_all()) == plain
        assert bytes(reader.read_all(workers=2)) == plain
        empty = package.reader("empty.txt", key)
        assert (empty.size, empty.read(0, 10), bytes(empty.read_all())) == (0, b"", b"")


def test_random_access_decrypts_only_the_segments_it_touches(
    sealed: SealFactory, model_dir: Path
) -> None:
    plain = (model_dir / BIG).read_bytes()
    path, key = sealed()
    flip_byte(path, f"payload/{BIG}", -100)  # inside segment 2
    with SealedPackage.open(path) as package:
        reader = package.reader(BIG, key)
        assert reader.read(F - 10, S) == plain[F - 10 : F - 10 + S]  # segments 0 and 1
        expect_error(
            IntegrityError,
            lambda: reader.read(F + S + 1, 1),
            f"payload/{BIG}, segment 2: failed authentication",
        )


def test_reader_of_an_unknown_file_is_refused(sealed: SealFactory) -> None:
    path, key = sealed()
    with SealedPackage.open(path) as package:
        expect_error(
            PackageError, lambda: package.reader("nope.bin", key), "has no file 'nope.bin'"
        )


# --- the round trip, for any small model ---------------------------------------------------------

_BOUNDARIES = [0, 1, F - 1, F, F + 1, F + S - 1, F + S, F + S + 1, 3 * MiB]
_sizes = st.one_of(st.sampled_from(_BOUNDARIES), st.integers(0, 3 * MiB))
_models = st.dictionaries(
    st.sampled_from(["model.onnx", "model.bin", "sub/weights.bin", "sub/deep/x", "README"]),
    _sizes,
    min_size=1,
    max_size=3,
)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(files=_models, archive=st.booleans(), seed=st.integers(0, 2**32))
def test_seal_then_open_is_the_identity(
    owner: Identity, files: dict[str, int], archive: bool, seed: int
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model = root / "model"
        for index, (name, size) in enumerate(sorted(files.items())):
            (model / name).parent.mkdir(parents=True, exist_ok=True)
            (model / name).write_bytes(random_bytes(size, seed=seed + index))
        sealed_path = root / ("sealed.tar" if archive else "sealed")
        result = seal(
            model,
            sealed_path,
            name="prop",
            version=1,
            signing_key=owner.key,
            certificates=[owner.cert],
            data_key=DataKey.generate(),
            archive=archive,
        )
        verify_package(sealed_path, trust=[owner.cert])
        open_package(sealed_path, result.data_key, root / "opened", workers=1)
        assert read_tree(root / "opened") == read_tree(model)
        assert set(os.listdir(root)) == {"model", sealed_path.name, "opened"}
