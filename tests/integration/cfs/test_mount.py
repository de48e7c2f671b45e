"""A sealed package mounted through real FUSE: names, sizes, random byte ranges, read-only,
the end of a lease (EIO, also for pages the kernel had cached), and the mount CLI."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from modelseal.cfs import CfsSession, Mount, MountError
from modelseal.crypto.streaming import FIRST_SEGMENT_PLAINTEXT, SEGMENT_PLAINTEXT
from tests.conftest import MiB, assert_no_plaintext, expect_error, read_tree
from tests.integration.cfs.conftest import (
    BIG,
    REPO,
    Sealed,
    cli_env,
    make_model,
    modelseal_mounts,
    seal_model,
    static_cli,
)
from tests.unit.cfs.keysource import StaticKeySource

BOUNDARY = FIRST_SEGMENT_PLAINTEXT + SEGMENT_PLAINTEXT  # start of segment 2


@pytest.fixture(scope="module")
def mounted(sealed_model: Sealed) -> Iterator[Path]:
    mountpoint = sealed_model.work / "mnt"
    mountpoint.mkdir()
    with (
        CfsSession(sealed_model.package, StaticKeySource(sealed_model.key), "license") as session,
        Mount(session.view, mountpoint),
    ):
        yield mountpoint
    assert not mountpoint.is_mount()
    assert_no_plaintext(sealed_model.work, sealed_model.plaintexts())  # nothing decrypted on disk


@pytest.fixture(scope="module")
def big_fd(mounted: Path) -> Iterator[int]:
    fd = os.open(mounted / "weights" / "big.bin", os.O_RDONLY)
    yield fd
    os.close(fd)


@pytest.fixture(scope="module")
def big_plain(sealed_model: Sealed) -> bytes:
    return (sealed_model.plain / "weights" / "big.bin").read_bytes()


def test_files_have_their_names_sizes_and_directories(sealed_model: Sealed, mounted: Path) -> None:
    assert read_tree(mounted) == read_tree(sealed_model.plain)
    assert sorted(os.listdir(mounted)) == ["config.json", "empty.txt", "model.onnx", "weights"]
    assert (mounted / "weights" / "extra").is_dir()
    info = os.stat(mounted / "weights" / "big.bin")
    assert info.st_size == BIG and oct(info.st_mode & 0o777) == "0o400"
    assert oct(os.stat(mounted).st_mode & 0o777) == "0o500"
    assert (mounted / "weights").stat().st_uid == os.getuid()
    assert not (mounted / "nothing-here").exists()


@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(offset=st.integers(0, BIG + 2 * MiB), length=st.integers(0, 3 * MiB))
@example(offset=FIRST_SEGMENT_PLAINTEXT - 1, length=2)  # across the first boundary
@example(offset=BOUNDARY - 5, length=SEGMENT_PLAINTEXT + 10)  # three segments
@example(offset=BIG - 1, length=10)  # at EOF
@example(offset=BIG, length=1)  # exactly at EOF
@example(offset=BIG + 1, length=MiB)  # past EOF
@example(offset=0, length=BIG)  # everything
def test_random_ranges_equal_the_plaintext(
    big_fd: int, big_plain: bytes, offset: int, length: int
) -> None:
    assert os.pread(big_fd, length, offset) == big_plain[offset : offset + length]


def test_an_archive_package_mounts_too(tmp_path: Path) -> None:
    plain = make_model(tmp_path / "plain")
    sealed = seal_model(plain, tmp_path / "work", archive=True)
    mountpoint = tmp_path / "work" / "mnt"
    mountpoint.mkdir()
    with (
        CfsSession(sealed.package, StaticKeySource(sealed.key), "license") as session,
        Mount(session.view, mountpoint),
    ):
        assert read_tree(mountpoint) == read_tree(plain)
    assert_no_plaintext(sealed.work, sealed.plaintexts())


@pytest.mark.parametrize("flags", [os.O_WRONLY, os.O_RDWR, os.O_RDONLY | os.O_TRUNC])
def test_the_mount_is_read_only(mounted: Path, flags: int) -> None:
    with pytest.raises(OSError) as info:
        os.open(mounted / "config.json", flags)
    assert info.value.errno == errno.EROFS


def test_nothing_can_be_created(mounted: Path) -> None:
    with pytest.raises(OSError) as info:
        (mounted / "new").mkdir()
    assert info.value.errno == errno.EROFS
    with pytest.raises(OSError) as info:
        (mounted / "new.txt").touch()
    assert info.value.errno == errno.EROFS


def test_mounting_twice_at_one_place_is_refused(sealed_model: Sealed, mounted: Path) -> None:
    with CfsSession(sealed_model.package, StaticKeySource(sealed_model.key), "x") as session:
        expect_error(MountError, lambda: Mount(session.view, mounted).start(), "already mounted")
        missing = mounted.parent / "missing"
        expect_error(
            MountError, lambda: Mount(session.view, missing).start(), "not an existing directory"
        )


def test_the_end_of_the_lease_fails_reads_even_of_cached_pages(
    sealed_model: Sealed, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    source = StaticKeySource(sealed_model.key)
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    plain = (sealed_model.plain / "weights" / "big.bin").read_bytes()
    with (
        CfsSession(sealed_model.package, source, "license") as session,
        Mount(session.view, mountpoint),
    ):
        fd = os.open(mountpoint / "weights" / "big.bin", os.O_RDONLY)
        try:
            assert os.pread(fd, MiB, 0) == plain[:MiB]  # now in the page cache too
            source.held[0].end("REVOKED", "the license was revoked").join()  # type: ignore[union-attr]
            assert len(session.view.cache) == 0
            deadline = time.monotonic() + 5
            while True:  # the page cache is evicted on another thread
                try:
                    os.pread(fd, 4096, 0)
                except OSError as exc:
                    assert exc.errno == errno.EIO
                    break
                assert time.monotonic() < deadline, "cached pages were still readable"
                time.sleep(0.02)
            for path in ("weights/big.bin", "config.json"):
                with pytest.raises(OSError) as info:
                    (mountpoint / path).read_bytes()
                assert info.value.errno == errno.EIO
            assert os.stat(mountpoint / "config.json").st_size > 0  # names stay, data does not
        finally:
            os.close(fd)
    assert "ended (REVOKED)" in caplog.text and "reads now fail with EIO" in caplog.text


def test_mount_detaches_and_unmount_ends_it(sealed_model: Sealed, tmp_path: Path) -> None:
    mountpoint = sealed_model.work / "detached"
    mountpoint.mkdir()
    license_file = tmp_path / "license.jwt"
    license_file.write_text("test-license\n")
    env = cli_env(sealed_model.key_file)
    args = ["--license", str(license_file), "--agent-home", str(tmp_path)]
    done = subprocess.run(
        static_cli("mount", str(sealed_model.package), str(mountpoint), *args),
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "mounted" in done.stderr
    try:
        assert str(mountpoint) in modelseal_mounts()
        expected = (sealed_model.plain / "config.json").read_bytes()
        assert (mountpoint / "config.json").read_bytes() == expected
    finally:
        unmounted = subprocess.run(
            [sys.executable, "-m", "modelseal", "unmount", str(mountpoint)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    assert unmounted.returncode == 0, unmounted.stderr
    assert str(mountpoint) not in modelseal_mounts()
    again = subprocess.run(
        [sys.executable, "-m", "modelseal", "unmount", str(mountpoint)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert again.returncode == 1
    assert f"error: {mountpoint} is not mounted" in again.stderr


def test_a_failed_detached_mount_reports_the_error(sealed_model: Sealed, tmp_path: Path) -> None:
    license_file = tmp_path / "license.jwt"
    license_file.write_text("test-license\n")
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    other = seal_model(make_model(tmp_path / "other"), tmp_path / "other-work")  # another key
    done = subprocess.run(
        static_cli(
            "mount",
            str(other.package),
            str(mountpoint),
            "--license",
            str(license_file),
            "--agent-home",
            str(tmp_path),
        ),
        env=cli_env(sealed_model.key_file),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 1
    assert "error: wrong data key" in done.stderr
    assert str(mountpoint) not in modelseal_mounts()
