"""Fixtures of the crypto filesystem tests: real FUSE mounts, skipped with the reason printed
where this machine cannot mount, and a session check that no mount is left behind."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from modelseal.cfs import fuse_mounts
from modelseal.crypto import DataKey, dump_data_key
from modelseal.package import seal
from tests.conftest import MiB, make_identity, random_bytes
from tests.integration.cfs._fuse_check import fuse_missing

REPO = Path(__file__).resolve().parents[3]


FUSE_MISSING = fuse_missing("FUSE tests")


def modelseal_mounts() -> list[str]:
    return [m.mountpoint for m in fuse_mounts() if m.fstype == "fuse.modelseal"]


@pytest.fixture(autouse=True)
def _needs_fuse() -> None:
    if FUSE_MISSING:
        pytest.skip(FUSE_MISSING)


@pytest.fixture(scope="session", autouse=True)
def _no_stale_mounts() -> Iterator[None]:
    before = set(modelseal_mounts())
    yield
    left = [m for m in modelseal_mounts() if m not in before]
    for mountpoint in left:  # clean up, then fail
        subprocess.run(["fusermount3", "-u", "-z", mountpoint], check=False)
    assert not left, f"mounts left behind: {left}"


@dataclass(frozen=True)
class Sealed:
    package: Path
    key: DataKey
    key_file: Path
    plain: Path  # the plaintext model (outside ``work``)
    work: Path  # everything the tests write (packages, mount points, logs): searched for leaks

    def plaintexts(self) -> list[bytes]:
        return [
            p.read_bytes() for p in self.plain.rglob("*") if p.is_file() and p.stat().st_size >= 64
        ]


BIG = 6 * MiB + 12_345  # seven segments, the last one short


def make_model(root: Path) -> Path:
    from tests.conftest import onnx_example_path

    (root / "weights" / "extra").mkdir(parents=True)
    (root / "weights" / "big.bin").write_bytes(random_bytes(BIG, seed=11))
    (root / "weights" / "extra" / "small.bin").write_bytes(random_bytes(4096, seed=12))
    (root / "config.json").write_text('{"classes": 3}\n')
    (root / "empty.txt").write_bytes(b"")
    (root / "model.onnx").write_bytes(onnx_example_path().read_bytes())
    return root


def seal_model(plain: Path, work: Path, *, archive: bool = False, name: str = "iris") -> Sealed:
    owner = make_identity("Acme Models")
    work.mkdir(parents=True, exist_ok=True)
    key = DataKey.generate()
    result = seal(
        plain,
        work / f"{name}{'.tar' if archive else ''}",
        name=name,
        version=1,
        signing_key=owner.key,
        certificates=[owner.cert],
        data_key=key,
        archive=archive,
    )
    key_file = work / "data-key.json"
    key_file.write_bytes(dump_data_key(key))  # the key file itself is ciphertext-free test data
    return Sealed(result.path, key, key_file, plain, work)


@pytest.fixture(scope="module")
def sealed_model(tmp_path_factory: pytest.TempPathFactory) -> Sealed:
    plain = make_model(tmp_path_factory.mktemp("plain") / "model")
    return seal_model(plain, tmp_path_factory.mktemp("work"))


def static_cli(*args: str) -> list[str]:
    """argv of ``modelseal`` with the test KeySource (see static_cli.py); its key comes from
    :func:`cli_env`."""
    return [sys.executable, "-m", "tests.integration.cfs.static_cli", *args]


def cli_env(key_file: Path) -> dict[str, str]:
    return {
        **os.environ,
        "MODELSEAL_TEST_DATA_KEY_FILE": str(key_file),
        "PYTHONPATH": str(REPO),
    }
