"""PlaintextView, the core behind the FUSE adapter: tree, byte ranges, lease end, tampering."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelseal.agent.source import LeaseEndedError
from modelseal.cfs import CfsSession
from modelseal.crypto import DataKey
from modelseal.crypto.streaming import FIRST_SEGMENT_PLAINTEXT
from modelseal.package import IntegrityError, PackageError
from tests.conftest import MiB, SealFactory, expect_error, flip_byte
from tests.unit.cfs.keysource import StaticKeySource


def test_the_tree_lists_files_and_directories(sealed: SealFactory, model_dir: Path) -> None:
    package, key = sealed()
    source = StaticKeySource(key)
    with CfsSession(package, source, "the license") as session:
        view = session.view
        root = view.node("/")
        assert root is not None and root.is_dir
        assert root.children == ["config.json", "empty.txt", "model.onnx", "weights"]
        big = view.node("/weights/big.bin")
        assert big is not None and not big.is_dir and big.size == 5 * MiB // 2
        assert view.node("/weights/extra/small.bin") is not None
        assert view.node("/nope") is None and view.node("weights") is None
        assert view.read(view.node("/empty.txt").index, 0, 10) == b""  # type: ignore[union-attr]
    held = source.held[0]
    assert held.license_token == "the license" and held.closed  # noqa: S105 - not a secret
    assert held.status().model_name == "iris" and held.status().model_version == 1


def test_byte_ranges_equal_the_plaintext(sealed: SealFactory, model_dir: Path) -> None:
    package, key = sealed()
    plain = (model_dir / "weights" / "big.bin").read_bytes()
    with CfsSession(package, StaticKeySource(key), "lic", cache_segments=1) as session:
        index = session.view.node("/weights/big.bin").index  # type: ignore[union-attr]

        @settings(max_examples=80, deadline=None)
        @given(offset=st.integers(0, 3 * MiB), length=st.integers(0, 2 * MiB))
        def check(offset: int, length: int) -> None:
            assert session.view.read(index, offset, length) == plain[offset : offset + length]

        check()


def test_reads_after_the_end_of_the_lease_raise_and_the_cache_is_empty(
    sealed: SealFactory,
) -> None:
    package, key = sealed()
    source = StaticKeySource(key)
    with CfsSession(package, source, "lic", readahead=2) as session:
        view = session.view
        index = view.node("/weights/big.bin").index  # type: ignore[union-attr]
        view.read(index, 0, 10)
        view.read(index, FIRST_SEGMENT_PLAINTEXT, 10)  # sequential: the rest is read ahead
        assert len(view.cache) >= 2
        thread = source.held[0].end("REVOKED", "revoked")
        assert thread is not None
        thread.join()
        assert len(view.cache) == 0
        error = expect_error(LeaseEndedError, lambda: view.read(index, 0, 10), "revoked")
        assert error.code == "REVOKED"


def test_a_tampered_segment_fails_authentication(sealed: SealFactory) -> None:
    package, key = sealed()
    flip_byte(package, "payload/weights/big.bin", 2 * MiB)  # inside segment 2
    with CfsSession(package, StaticKeySource(key), "lic") as session:
        index = session.view.node("/weights/big.bin").index  # type: ignore[union-attr]
        assert len(session.view.read(index, 0, MiB)) == MiB  # untouched segments still read
        expect_error(
            IntegrityError,
            lambda: session.view.read(index, 2 * MiB, 10),
            "payload/weights/big.bin, segment 2: failed authentication",
        )


def test_a_key_for_another_package_is_refused_and_released(sealed: SealFactory) -> None:
    package, _ = sealed()
    source = StaticKeySource(DataKey.generate())
    expect_error(PackageError, lambda: CfsSession(package, source, "lic"), "wrong data key")
    assert source.held[0].closed


def test_readahead_must_not_be_negative(sealed: SealFactory) -> None:
    package, key = sealed()
    with pytest.raises(ValueError, match="readahead"):
        CfsSession(package, StaticKeySource(key), "lic", readahead=-1)
