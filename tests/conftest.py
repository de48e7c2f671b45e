"""Shared fixtures: an owner identity, real models, sealed packages, and the leak detector.

Helpers used by several test modules (``assert_no_plaintext``, ``expect_error``, the package
tampering functions) are plain functions here; import them from ``tests.conftest``.
"""

from __future__ import annotations

import io
import itertools
import os
import random
import shutil
import tarfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

import numpy as np
import numpy.typing as npt
import pytest

from modelseal.crypto import (
    Certificate,
    DataKey,
    SigningKey,
    create_self_signed,
    parse_subject,
)
from modelseal.keys import create_keystore
from modelseal.package import seal

E = TypeVar("E", bound=BaseException)

MiB = 1 << 20
LEAK_WINDOW = 64
PASSPHRASE = "correct horse battery staple"  # noqa: S105 - a test passphrase
PASSPHRASE_ENV = "MODELSEAL_TEST_PASSPHRASE"  # noqa: S105 - a variable name
ONNX_EXAMPLE = "logreg_iris.onnx"


# --- identities ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Identity:
    """A signing key and its self-signed certificate."""

    key: SigningKey
    cert: Certificate


def make_identity(common_name: str) -> Identity:
    key = SigningKey.generate()
    return Identity(key, create_self_signed(key, parse_subject(f"CN={common_name}")))


@pytest.fixture(scope="session")
def owner() -> Identity:
    return make_identity("Acme Models")


@pytest.fixture(scope="session")
def attacker() -> Identity:
    return make_identity("Mallory")


@pytest.fixture(scope="session")
def owner_keystore(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An owner keystore on disk for the CLI (passphrase in ``PASSPHRASE_ENV``)."""
    path = tmp_path_factory.mktemp("keystore") / "owner"
    create_keystore(path, name="Acme Models", passphrase=PASSPHRASE.encode())
    return path


# --- models --------------------------------------------------------------------------------------


def onnx_example_path() -> Path:
    from onnxruntime.datasets import get_example

    return Path(get_example(ONNX_EXAMPLE))


@pytest.fixture
def onnx_model(tmp_path: Path) -> Path:
    """A copy of a small real ONNX model (logistic regression on iris), alone in its directory."""
    folder = tmp_path / "onnx"
    folder.mkdir()
    target = folder / "model.onnx"
    shutil.copyfile(onnx_example_path(), target)
    return target


def random_bytes(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)  # noqa: S311 - test data, not secrets


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    """A multi-file model: the ONNX model, a config, 2.5 MiB of weights (3 segments), a nested
    subdirectory and an empty file."""
    root = tmp_path / "model"
    (root / "weights" / "extra").mkdir(parents=True)
    shutil.copyfile(onnx_example_path(), root / "model.onnx")
    (root / "config.json").write_text(
        '{"architecture": "logistic-regression", "inputs": ["sepal", "petal"], "classes": 3}\n'
    )
    (root / "weights" / "big.bin").write_bytes(random_bytes(5 * MiB // 2, seed=1))
    (root / "weights" / "extra" / "small.bin").write_bytes(random_bytes(4096, seed=2))
    (root / "empty.txt").write_bytes(b"")
    return root


@pytest.fixture
def plaintexts(model_dir: Path) -> list[bytes]:
    """The contents of every ``model_dir`` file long enough to be searched for leaks."""
    return [data for data in read_tree(model_dir).values() if len(data) >= LEAK_WINDOW]


def read_tree(root: Path) -> dict[str, bytes]:
    """Every regular file under ``root``: relative POSIX path → content."""
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


# --- sealing -------------------------------------------------------------------------------------


class SealFactory(Protocol):
    def __call__(
        self,
        model: Path | None = None,
        *,
        archive: bool = False,
        name: str = "iris",
        version: int = 1,
        data_key: DataKey | None = None,
        model_id: str | None = None,
    ) -> tuple[Path, DataKey]: ...


@pytest.fixture
def sealed(tmp_path: Path, owner: Identity, model_dir: Path) -> SealFactory:
    """Seal a model (default: ``model_dir``) by ``owner`` into a new package under ``pkgs/``."""
    packages = tmp_path / "pkgs"
    packages.mkdir()
    counter = itertools.count()

    def factory(
        model: Path | None = None,
        *,
        archive: bool = False,
        name: str = "iris",
        version: int = 1,
        data_key: DataKey | None = None,
        model_id: str | None = None,
    ) -> tuple[Path, DataKey]:
        out = packages / f"pkg{next(counter)}{'.tar' if archive else ''}"
        result = seal(
            model or model_dir,
            out,
            name=name,
            version=version,
            signing_key=owner.key,
            certificates=[owner.cert],
            data_key=data_key or DataKey.generate(),
            archive=archive,
            model_id=model_id,
        )
        return result.path, result.data_key

    return factory


@pytest.fixture
def opened_parent(tmp_path: Path) -> Path:
    """An empty directory to open packages into (nothing else lives there)."""
    parent = tmp_path / "opened"
    parent.mkdir()
    return parent


# --- the leak detector ---------------------------------------------------------------------------
#
# Every 64-byte window of a plaintext contains one of its 32-byte blocks that start at a multiple
# of 32. So the plaintexts are indexed by the hashes of those blocks, each file is hashed at every
# offset (vectorised), and each hit is confirmed byte for byte by looking for a 64-byte match
# around it. Exact, and fast enough to run after every failure.

_BLOCK = LEAK_WINDOW // 2
_BASE = 0x100000001B3  # odd, so it has an inverse modulo 2**64
_BASE_INVERSE = pow(_BASE, -1, 1 << 64)


def _powers(base: int, count: int) -> npt.NDArray[np.uint64]:
    steps = np.full(count, base, dtype=np.uint64)
    steps[0] = 1
    return np.cumprod(steps, dtype=np.uint64)  # wraps modulo 2**64, as intended


def _block_hashes(data: bytes) -> npt.NDArray[np.uint64]:
    """A polynomial hash (mod 2**64) of the ``_BLOCK`` bytes starting at every offset."""
    count = len(data) - _BLOCK + 1
    if count <= 0:
        return np.empty(0, dtype=np.uint64)
    values = np.frombuffer(data, dtype=np.uint8).astype(np.uint64)
    prefix = np.zeros(len(data) + 1, dtype=np.uint64)
    np.cumsum(values * _powers(_BASE, len(data)), dtype=np.uint64, out=prefix[1:])
    shifted = prefix[_BLOCK:] - prefix[:count]  # base**i * hash(block at i)
    return shifted * _powers(_BASE_INVERSE, count)


def _leaks(content: bytes, probes: list[bytes], keys: npt.NDArray[np.uint64]) -> bool:
    hashes = _block_hashes(content)
    if not len(hashes):
        return False
    ordered = np.sort(hashes)
    slots = np.minimum(np.searchsorted(ordered, keys), len(ordered) - 1)
    present = keys[ordered[slots] == keys]
    if not len(present):
        return False
    for offset in np.flatnonzero(np.isin(hashes, present)).tolist():
        block = content[offset : offset + _BLOCK]
        for probe in probes:
            start = probe.find(block)
            while start != -1:
                for back in range(min(offset, start, _BLOCK) + 1):
                    window = content[offset - back : offset - back + LEAK_WINDOW]
                    if len(window) == LEAK_WINDOW and window == probe[start - back :][:LEAK_WINDOW]:
                        return True
                start = probe.find(block, start + 1)
    return False


def find_plaintext(root: Path, plaintexts: Iterable[bytes]) -> list[str]:
    """Files under ``root`` (hidden ones too) that hold a 64-byte window of any plaintext."""
    probes = list(plaintexts)
    if not probes or any(len(p) < LEAK_WINDOW for p in probes):
        raise ValueError(f"give plaintexts of at least {LEAK_WINDOW} bytes to search for")
    keys = np.unique(np.concatenate([_block_hashes(p)[::_BLOCK] for p in probes]))
    return sorted(
        path.relative_to(root).as_posix()
        for path in (Path(d, f) for d, _, files in os.walk(root) for f in files)
        if _leaks(path.read_bytes(), probes, keys)
    )


def assert_no_plaintext(root: Path, plaintexts: Iterable[bytes]) -> None:
    """Fail if any file under ``root`` (including hidden ``.partial-*`` paths) leaks plaintext."""
    leaks = find_plaintext(root, plaintexts)
    assert not leaks, f"plaintext left on disk under {root}: {leaks}"


def assert_failed_cleanly(parent: Path, plaintexts: Iterable[bytes], *keep: str) -> None:
    """After a failure: ``parent`` holds only ``keep`` (no output, no temporary) and no plaintext."""
    assert sorted(p.name for p in parent.iterdir()) == sorted(keep)
    if any(parent.iterdir()):
        assert_no_plaintext(parent, plaintexts)


# --- errors --------------------------------------------------------------------------------------


def expect_error(kind: type[E], call: Callable[[], object], *fragments: str) -> E:
    """Run ``call``; it must raise exactly ``kind`` with every fragment in its message."""
    with pytest.raises(kind) as info:
        call()
    assert info.type is kind, f"expected {kind.__name__}, got {info.type.__name__}: {info.value}"
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    return info.value


# --- reading and tampering with packages in either form -------------------------------------------


def _member(tar_path: Path, name: str) -> tarfile.TarInfo:
    with tarfile.open(tar_path, "r:") as tar:
        return tar.getmember(name)


def entry_bytes(package: Path, name: str) -> bytes:
    """The bytes of entry ``name`` (``manifest.json``, ``payload/x``) of a package."""
    if package.is_dir():
        return (package / name).read_bytes()
    member = _member(package, name)
    with open(package, "rb") as handle:
        handle.seek(member.offset_data)
        return handle.read(member.size)


def entry_file_offset(package: Path, name: str, offset: int) -> tuple[Path, int]:
    """(file, absolute offset) of byte ``offset`` of entry ``name``; negative counts from its end."""
    if package.is_dir():
        path = package / name
        return path, offset if offset >= 0 else path.stat().st_size + offset
    member = _member(package, name)
    assert -member.size <= offset < member.size
    return package, member.offset_data + (offset if offset >= 0 else member.size + offset)


def flip_byte(package: Path, name: str, offset: int, mask: int = 0x01) -> None:
    """XOR one byte of entry ``name`` in place (inside the member data for an archive)."""
    path, position = entry_file_offset(package, name, offset)
    with open(path, "r+b") as handle:
        handle.seek(position)
        byte = handle.read(1)
        assert len(byte) == 1
        handle.seek(position)
        handle.write(bytes([byte[0] ^ mask]))


def replace_entries(package: Path, replacements: dict[str, bytes | None]) -> None:
    """Give entries new content (any length), remove them (``None``) or add them, in either form."""
    if package.is_dir():
        for name, data in replacements.items():
            if data is None:
                (package / name).unlink()
            else:
                (package / name).parent.mkdir(parents=True, exist_ok=True)
                (package / name).write_bytes(data)
        return
    entries: dict[str, bytes | None] = {}
    with tarfile.open(package, "r:") as source:
        for member in source.getmembers():
            extracted = source.extractfile(member)
            assert extracted is not None
            entries[member.name] = extracted.read()
    entries.update(replacements)
    write_archive(package, [(name, data) for name, data in entries.items() if data is not None])


def write_archive(path: Path, entries: list[tuple[str, bytes]]) -> None:
    """A tar holding ``entries`` as plain files, in that order."""
    with tarfile.open(path, "w:", format=tarfile.PAX_FORMAT) as out:
        for name, data in entries:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            out.addfile(info, io.BytesIO(data))
