"""While all three servers serve sealed models, no file anywhere they could write holds a 64-byte
window of either plaintext model: everything under this run's temporary directories (the
servers' homes and TMPDIR, the repositories, the logs) and every file written since this run
started under the system temporary directory, /dev/shm and the repository."""

from __future__ import annotations

import os
import re
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import LEAK_WINDOW, _block_hashes, _leaks, find_plaintext, onnx_example_path
from tests.integration.runtime._chain import (
    ROOT,
    infer_grpc,
    infer_http,
    iris_input,
    ocr_input,
    ocr_model_path,
)
from tests.integration.runtime.conftest import SESSION_STARTED, Chain, Offline

CHUNK = 32 << 20


def distinctive(plaintext: bytes, least: int) -> list[bytes]:
    """The stretches between runs of one repeated byte (zero padding matches anything)."""
    pieces, start = [], 0
    for run in re.finditer(rb"(.)\1{7,}", plaintext, re.S):
        pieces.append(plaintext[start : run.start()])
        start = run.end()
    pieces.append(plaintext[start:])
    return [p for p in pieces if len(p) >= least and len(set(p)) > 24]


def files(root: Path, *, since: float | None, skip: tuple[Path, ...]) -> Iterator[Path]:
    """Regular files under ``root`` (modified or changed since ``since``), not under ``skip``."""
    for folder, dirs, names in os.walk(root, onerror=lambda _: None):
        here = Path(folder)
        dirs[:] = [d for d in dirs if here / d not in skip]
        for name in names:
            path = here / name
            try:
                info = path.lstat()
            except OSError:
                continue
            if not stat.S_ISREG(info.st_mode):
                continue
            if since is None or max(info.st_mtime, info.st_ctime) >= since:
                yield path


def leaking(paths: Iterator[Path], probes: list[bytes]) -> tuple[list[str], int]:
    keys = np.unique(np.concatenate([_block_hashes(p)[:: LEAK_WINDOW // 2] for p in probes]))
    found, scanned = [], 0
    for path in paths:
        try:
            with path.open("rb") as handle:
                previous = b""
                while chunk := handle.read(CHUNK):
                    scanned += len(chunk)
                    if _leaks(previous + chunk, probes, keys):
                        found.append(str(path))
                        break
                    previous = chunk[-LEAK_WINDOW:]
        except OSError:
            continue
    return found, scanned


def test_no_plaintext_model_bytes_anywhere(chain: Chain, offline: Offline) -> None:
    plaintexts = [onnx_example_path().read_bytes(), ocr_model_path().read_bytes()]
    probes = [piece for text in plaintexts for piece in distinctive(text, 128)]
    assert sum(map(len, probes)) > 9_000_000  # most of both models is searched for
    assert any(p in plaintexts[0] for p in probes)  # the small model too
    # every server is serving sealed models right now
    for server in chain.servers().values():
        infer_http(server, "iris", iris_input(), binary=True)
        infer_grpc(server, "ocr", ocr_input())
    # the scanner finds what it must find
    assert find_plaintext(onnx_example_path().parent, probes) == [onnx_example_path().name]
    base = chain.root.parent  # this session's pytest base directory
    tmp = Path(tempfile.gettempdir())
    others = tuple(p for p in tmp.glob("pytest-of-*/pytest-*") if p.resolve() != base.resolve())
    scanned = 0
    for ours in (chain.root, offline.root):  # every file of these servers' homes and repositories
        everything, count = leaking(files(ours, since=None, skip=()), probes)
        scanned += count
        assert not everything, f"plaintext in this run's files: {everything}"
    socket_dir, _ = leaking(files(chain.socket_dir, since=None, skip=()), probes)
    assert not socket_dir
    total = scanned
    for root in (tmp, Path("/dev/shm"), ROOT):
        if not root.is_dir():
            continue
        # pytest's temporary directories hold the plain model copies other tests compare with
        # (this run's other tests too), and the demo's output directory holds the owner's plain
        # models by design
        found, scanned = leaking(
            files(root, since=SESSION_STARTED, skip=(base, *others, ROOT / "demo-output")), probes
        )
        total += scanned
        assert not found, f"plaintext written under {root} during this run: {found}"
    print(f"\nscanned {total / 1e6:.0f} MB for {len(probes)} plaintext pieces")
    if offline.server.process.poll() is not None:  # pragma: no cover - a crash is a failure
        pytest.fail("the offline server died")
