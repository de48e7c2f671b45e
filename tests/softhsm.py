"""A fresh SoftHSM2 token per test, in the test's own directory.

``new_token(tmp_path, monkeypatch)`` writes a ``softhsm2.conf`` whose token directory is under
``tmp_path``, points ``SOFTHSM2_CONF`` at it for the test, initialises a token with
``softhsm2-util`` and returns what a PKCS#11 caller needs (module, token label, PIN). Wrap it in a
fixture in the test module::

    @pytest.fixture
    def token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SoftHsmToken:
        return new_token(tmp_path, monkeypatch)

SoftHSM2 reads its configuration in ``C_Initialize`` and lists its tokens only then, and
python-pkcs11 keeps one initialised copy of a module per process; so ``new_token`` re-initialises
that copy after creating the token. That closes every PKCS#11 session this process had open,
which is what a test that starts from a fresh token wants. Skips the test when SoftHSM2 is absent.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

SOFTHSM_MODULE = "/usr/lib/softhsm/libsofthsm2.so"
LABEL = "modelseal-test"
USER_PIN = "4711-user"
SO_PIN = "0815-officer"

__all__ = [
    "SOFTHSM_MODULE",
    "SoftHsmToken",
    "add_token",
    "new_token",
    "softhsm_missing",
]


@dataclass(frozen=True)
class SoftHsmToken:
    """An initialised SoftHSM2 token: the module to load, the token's label and PINs."""

    module: str
    label: str
    pin: str
    so_pin: str
    conf: Path


def softhsm_missing() -> str | None:
    """Why SoftHSM2 cannot be used here, or ``None`` when it can."""
    if not os.path.isfile(SOFTHSM_MODULE):
        return f"SoftHSM2 is not installed ({SOFTHSM_MODULE} is missing; apt-get install softhsm2)"
    if shutil.which("softhsm2-util") is None:
        return "SoftHSM2 is not installed (softhsm2-util is not on PATH; apt-get install softhsm2)"
    return None


def new_token(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    *,
    label: str = LABEL,
    pin: str = USER_PIN,
    so_pin: str = SO_PIN,
) -> SoftHsmToken:
    """A new SoftHSM2 configuration under ``tmp_path`` holding one fresh token."""
    reason = softhsm_missing()
    if reason is not None:
        pytest.skip(reason)
    root = tmp_path / "softhsm"
    (root / "tokens").mkdir(parents=True)
    conf = root / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {root / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n",
        encoding="utf-8",
    )
    monkeypatch.setenv("SOFTHSM2_CONF", str(conf))
    token = SoftHsmToken(SOFTHSM_MODULE, label, pin, so_pin, conf)
    add_token(token, label=label, pin=pin, so_pin=so_pin)
    return token


def add_token(token: SoftHsmToken, *, label: str, pin: str, so_pin: str) -> SoftHsmToken:
    """Initialise one more token in ``token``'s configuration (which must be the active one)."""
    assert os.environ.get("SOFTHSM2_CONF") == str(token.conf), "activate the configuration first"
    command = ["softhsm2-util", "--init-token", "--free", "--label", label]
    command += ["--pin", pin, "--so-pin", so_pin]
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, f"softhsm2-util --init-token failed: {result.stderr}"
    _reload_module(token.module)
    return SoftHsmToken(token.module, label, pin, so_pin, token.conf)


def _reload_module(module: str) -> None:
    """Make this process's copy of the module read the configuration and token list again."""
    import pkcs11

    pkcs11.lib(module).reinitialize()
