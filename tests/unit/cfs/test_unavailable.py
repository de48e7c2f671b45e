"""Where FUSE cannot be used: a clear error that names what is missing and points to
``modelseal serve``; unmounting what is not mounted. No real mount is needed (or touched)."""

from __future__ import annotations

import ctypes.util
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

import modelseal.cfs.mount as cfs_mount
from modelseal.cfs import (
    CfsSession,
    FuseUnavailableError,
    Mount,
    NotMountedError,
    check_fuse,
    unmount,
)
from modelseal.cli.main import cli
from tests.conftest import SealFactory, expect_error
from tests.unit.cfs.keysource import StaticKeySource


def test_a_missing_device_says_so_and_points_to_serve(tmp_path: Path) -> None:
    error = expect_error(
        FuseUnavailableError,
        lambda: check_fuse(device=tmp_path / "fuse"),
        f"cannot mount: {tmp_path / 'fuse'} does not exist",
        "--device /dev/fuse",
    )
    assert error.hint is not None and "modelseal serve" in error.hint
    assert "modelseal serve" in error.diagnostics()


def test_no_permission_on_the_device(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    device = tmp_path / "fuse"
    device.touch()
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    expect_error(FuseUnavailableError, lambda: check_fuse(device=device), "no permission to open")


def test_missing_libfuse_or_fusermount(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    device = tmp_path / "fuse"
    device.touch()
    monkeypatch.setattr(ctypes.util, "find_library", lambda name: None)
    expect_error(
        FuseUnavailableError, lambda: check_fuse(device=device), "libfuse3 library is missing"
    )
    monkeypatch.undo()
    monkeypatch.setattr(shutil, "which", lambda name: None)
    expect_error(FuseUnavailableError, lambda: check_fuse(device=device), "fusermount3 is missing")


def test_mount_checks_before_it_mounts(sealed: SealFactory, tmp_path: Path) -> None:
    package, key = sealed()
    (tmp_path / "mnt").mkdir()
    with CfsSession(package, StaticKeySource(key), "lic") as session:
        mount = Mount(session.view, tmp_path / "mnt", device=tmp_path / "no-fuse")
        expect_error(FuseUnavailableError, mount.start, "does not exist")
        assert not mount.live


@pytest.mark.parametrize("command", ["mount", "run"])
def test_the_cli_prints_the_error_and_the_alternative(
    command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cfs_mount, "FUSE_DEVICE", tmp_path / "absent-fuse")
    (tmp_path / "license.jwt").write_text("license\n")
    (tmp_path / "pkg").mkdir()
    common = ["--license", str(tmp_path / "license.jwt"), "--agent-home", str(tmp_path)]
    if command == "mount":
        args = ["mount", str(tmp_path / "pkg"), str(tmp_path), *common]
    else:
        args = [
            "run",
            "--model",
            str(tmp_path / "pkg"),
            "--at",
            str(tmp_path),
            *common,
            "--",
            "true",
        ]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1
    assert "error: cannot mount:" in result.output and "does not exist" in result.output
    assert "hint: `modelseal serve` loads sealed models in memory" in result.output


def test_an_agent_must_be_chosen(tmp_path: Path) -> None:
    (tmp_path / "license.jwt").write_text("license\n")
    result = CliRunner().invoke(
        cli, ["mount", str(tmp_path), str(tmp_path), "--license", str(tmp_path / "license.jwt")]
    )
    assert result.exit_code == 1
    assert "give exactly one of --agent-home DIR or --agent-socket PATH" in result.output


def test_unmounting_what_is_not_mounted(tmp_path: Path) -> None:
    expect_error(NotMountedError, lambda: unmount(tmp_path), f"{tmp_path} is not mounted")
    result = CliRunner().invoke(cli, ["unmount", str(tmp_path)])
    assert result.exit_code == 1 and f"error: {tmp_path} is not mounted" in result.output
