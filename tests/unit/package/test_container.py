"""Reading package entries from a directory or an archive, and refusing anything unsafe."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from modelseal.package import PackageError
from modelseal.package.container import Container, FileSource, open_container
from tests.conftest import expect_error

ENTRIES = {
    "manifest.json": b'{"format":"x"}',
    "manifest.sig": b"sig",
    "payload/model.onnx": b"\x01" * 700,
    "payload/weights/w.bin": bytes(range(256)) * 5,
    "payload/empty": b"",
}


def file_member(name: str, data: bytes = b"data") -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def special_member(name: str, kind: bytes, linkname: str = "") -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    return info, b""


def write_tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes]]) -> Path:
    with tarfile.open(path, "w:", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return path


def good_members() -> list[tuple[tarfile.TarInfo, bytes]]:
    return [file_member(name, data) for name, data in ENTRIES.items()]


@pytest.fixture
def directory(tmp_path: Path) -> Path:
    root = tmp_path / "pkg"
    for name, data in ENTRIES.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    return write_tar(tmp_path / "pkg.tar", good_members())


def assert_holds_entries(container: Container) -> None:
    assert container.names() == sorted(ENTRIES)
    for name, data in ENTRIES.items():
        assert container.has(name)
        assert container.read(name) == data
        assert container.source(name).size == len(data)
    assert not container.has("payload")  # directories are not entries


def test_directory_entries(directory: Path) -> None:
    with open_container(directory) as container:
        assert container.kind == "directory"
        assert container.path == directory
        assert_holds_entries(container)


def test_archive_entries_are_read_in_place(archive: Path) -> None:
    with open_container(archive) as container:
        assert container.kind == "archive"
        assert_holds_entries(container)
        source = container.source("payload/weights/w.bin")
        with tarfile.open(archive) as tar:
            assert source.base == tar.getmember("payload/weights/w.bin").offset_data


def test_archive_with_directory_members_and_dot_slash_names(tmp_path: Path) -> None:
    payload_dir = tarfile.TarInfo("./payload/")
    payload_dir.type = tarfile.DIRTYPE
    members = [(payload_dir, b""), *[file_member(f"./{n}", d) for n, d in ENTRIES.items()]]
    with open_container(write_tar(tmp_path / "dot.tar", members)) as container:
        assert_holds_entries(container)


def test_close_releases_every_file_descriptor(directory: Path) -> None:
    container = open_container(directory)
    fds = [container.source(name).fd for name in ENTRIES]
    container.close()
    for fd in fds:
        with pytest.raises(OSError, match="Bad file descriptor"):
            os.fstat(fd)
    container.close()  # idempotent


def test_missing_entry_is_named(directory: Path) -> None:
    with open_container(directory) as container:
        expect_error(
            PackageError, lambda: container.source("manifest.jsn"), "manifest.jsn is missing"
        )


def test_file_source_reads_only_its_own_range(archive: Path) -> None:
    with open_container(archive) as container:
        source = container.source("payload/weights/w.bin")
        assert source.pread(250, 10) == bytes(range(250, 256)) + bytes(range(4))
        assert source.pread(len(ENTRIES["payload/weights/w.bin"]) - 2, 100) == bytes([254, 255])
        assert source.pread(source.size, 10) == b""
        assert FileSource(source.fd, source.base, 0).pread(0, 10) == b""


def test_an_oversized_small_entry_is_refused_before_reading(directory: Path) -> None:
    os.truncate(directory / "manifest.sig", 17 << 20)  # sparse: costs no disk
    with open_container(directory) as container:
        expect_error(
            PackageError,
            lambda: container.read("manifest.sig"),
            "manifest.sig is 17825792 bytes, far larger than it can be",
        )


def test_a_path_that_does_not_exist(tmp_path: Path) -> None:
    expect_error(PackageError, lambda: open_container(tmp_path / "nope"), "nope does not exist")


def test_a_fifo_is_neither_a_directory_nor_a_file(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo")
    expect_error(
        PackageError, lambda: open_container(tmp_path / "fifo"), "is neither a directory nor a file"
    )


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 not a tar at all" * 40, b"\x00" * 100])
def test_a_file_that_is_not_a_tar_is_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "package.bin"
    path.write_bytes(content)
    expect_error(
        PackageError,
        lambda: open_container(path),
        f"{path} is not a sealed package (neither a directory nor a tar archive)",
    )


def test_an_empty_tar_has_no_entries(tmp_path: Path) -> None:
    path = tmp_path / "empty.tar"
    path.write_bytes(bytes(2 * 512))  # the end-of-archive marker alone
    with open_container(path) as container:
        assert container.names() == []


# --- unsafe directory packages ------------------------------------------------------------------


def test_directory_with_a_symlinked_file_is_refused(directory: Path) -> None:
    (directory / "payload" / "link").symlink_to(directory / "manifest.sig")
    expect_error(
        PackageError,
        lambda: open_container(directory),
        "payload/link is a symbolic link; sealed packages hold only plain files",
    )


def test_directory_with_a_symlinked_directory_is_refused(directory: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"x")
    (directory / "payload" / "more").symlink_to(outside, target_is_directory=True)
    expect_error(PackageError, lambda: open_container(directory), "payload/more is a symbolic link")


def test_directory_with_a_fifo_is_refused(directory: Path) -> None:
    os.mkfifo(directory / "payload" / "pipe")
    expect_error(
        PackageError, lambda: open_container(directory), "payload/pipe is not a regular file"
    )


# --- unsafe archives ----------------------------------------------------------------------------

UNSAFE_MEMBERS = {
    "dotdot": (
        file_member("payload/../../escape"),
        "archive entry 'payload/../../escape' has an absolute or '..' path",
    ),
    "leading-dotdot": (
        file_member("../escape"),
        "archive entry '../escape' has an absolute or '..' path",
    ),
    "absolute": (
        file_member("/etc/cron.d/evil"),
        "archive entry '/etc/cron.d/evil' has an absolute or '..' path",
    ),
    "symlink": (
        special_member("payload/link", tarfile.SYMTYPE, "/etc/passwd"),
        "archive entry 'payload/link' is a link; only plain files are allowed",
    ),
    "hardlink": (
        special_member("payload/hard", tarfile.LNKTYPE, "manifest.json"),
        "archive entry 'payload/hard' is a link; only plain files are allowed",
    ),
    "duplicate": (
        file_member("payload/model.onnx", b"\x02" * 700),
        "archive entry 'payload/model.onnx' appears twice",
    ),
    "fifo": (
        special_member("payload/pipe", tarfile.FIFOTYPE),
        "archive entry 'payload/pipe' is not a plain file",
    ),
    "char-device": (
        special_member("payload/tty", tarfile.CHRTYPE),
        "archive entry 'payload/tty' is not a plain file",
    ),
    "backslash": (file_member("payload\\x"), "unsafe path 'payload\\\\x'"),
    "empty-part": (file_member("payload//x"), "unsafe path 'payload//x'"),
}


@pytest.mark.parametrize("where", ["first", "last"])
@pytest.mark.parametrize("kind", list(UNSAFE_MEMBERS))
def test_unsafe_archive_member_is_refused_by_name(tmp_path: Path, kind: str, where: str) -> None:
    member, message = UNSAFE_MEMBERS[kind]
    members = good_members()
    members.insert(0 if where == "first" else len(members), member)
    path = write_tar(tmp_path / "evil.tar", members)
    error = expect_error(PackageError, lambda: open_container(path), message)
    if kind not in ("backslash", "empty-part"):
        assert error.message.startswith(f"{path}: archive entry")


@pytest.mark.parametrize(("member", "keep"), [("payload/model.onnx", 100), ("z", 4000)])
def test_archive_cut_inside_a_member_is_truncated(tmp_path: Path, member: str, keep: int) -> None:
    archive = write_tar(tmp_path / "pkg.tar", [*good_members(), file_member("z", b"z" * 5000)])
    with tarfile.open(archive) as tar:
        offset = tar.getmember(member).offset_data
    os.truncate(archive, offset + keep)
    expect_error(
        PackageError,
        lambda: open_container(archive),
        f"{archive}: the archive is damaged or truncated",
    )


def test_archive_cut_after_a_member_still_lists_what_is_complete(archive: Path) -> None:
    """A tar cut exactly between members loses the rest: the package check reports it missing."""
    with tarfile.open(archive) as tar:
        member = tar.getmember("payload/model.onnx")
    os.truncate(archive, member.offset_data + 1024)  # data (700 bytes) plus padding, no more
    with open_container(archive) as container:
        assert container.names() == ["manifest.json", "manifest.sig", "payload/model.onnx"]


@pytest.mark.parametrize("change", ["cut-in-a-header", "junk-appended"])
def test_archive_that_is_not_whole_blocks_is_refused(archive: Path, change: str) -> None:
    """A cut inside a header block reads as a clean end to tarfile; the size gives it away."""
    with tarfile.open(archive) as tar:
        last = tar.getmembers()[-1]
    if change == "cut-in-a-header":
        os.truncate(archive, last.offset + 300)
    else:
        with open(archive, "ab") as handle:
            handle.write(b"junk" * 25)
    expect_error(
        PackageError,
        lambda: open_container(archive),
        f"{archive}: the archive is damaged or truncated (not a whole number of 512-byte blocks)",
    )
