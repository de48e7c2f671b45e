"""``modelseal seal MODEL … --vault URL``: the vault generates the data key, the package is sealed
with it and registered in one step. Against ``modelseal vault serve`` in a process of its own:
the model is listed, a device's ``agent check`` is granted, and the key the vault releases to the
device opens the package (the owner never held a key file).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelseal.agent import AgentHome, request_key
from modelseal.keys import create_keystore
from modelseal.package import SealedPackage, open_package
from modelseal.vault.client import VaultClient
from tests.conftest import read_tree
from tests.integration.vault._server import model_dir
from tests.integration.vault.test_cli_admin import (
    GRANTED,
    KEYSTORE_ENV,
    KEYSTORE_PASSPHRASE,
    Vault,
    check,
    enroll_device,
    issue,
    run,
)
from tests.integration.vault.test_cli_admin import vault as vault  # the module's serve process

pytestmark = pytest.mark.filterwarnings(
    "ignore:EdDSA is deprecated via RFC 9864:joserfc.errors.SecurityWarning"
)


@pytest.fixture
def keystore(vault: Vault, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    path = vault.tmp / "seal-keystore"
    if not path.exists():
        create_keystore(path, name="Acme Models", passphrase=KEYSTORE_PASSPHRASE.encode())
    monkeypatch.setenv(KEYSTORE_ENV, KEYSTORE_PASSPHRASE)
    yield path


def seal_with_vault(
    vault: Vault, keystore: Path, source: Path, out: Path, version: int, *extra: str
) -> str:
    """``seal --vault URL`` (the admin credential from MODELSEAL_ADMIN); its stderr."""
    result = run(vault, "seal", str(source), "--keystore", str(keystore), "--name", "lens",
                 "--version", str(version), "--out", str(out), "--vault", vault.url,
                 "--passphrase-env", KEYSTORE_ENV, *extra)  # fmt: skip
    assert result.stdout == ""
    return result.stderr


def test_seal_with_the_vault_registers_and_releases(vault: Vault, keystore: Path) -> None:
    source = model_dir(vault.tmp / "lens-src")
    package = vault.tmp / "lens-2.sealed"
    said = seal_with_vault(vault, keystore, source, package, 2)
    assert f"registered lens:2 with the vault at {vault.url}" in said
    with SealedPackage.open(package) as sealed:
        manifest = sealed.manifest
    assert manifest.wrapped_keys == ()  # no import key: only the vault holds the data key
    assert not list(vault.tmp.glob("*.key"))
    uuid.UUID(manifest.model.id)  # a fresh model id
    assert f"lens:2\t{manifest.model.id}\t" in run(vault, "model", "list").stdout

    run(vault, "customer", "create", "lensco")
    device = enroll_device(vault, "lensco", "device-lens")
    license_file = vault.tmp / "lensco.license"
    license_id = issue(vault, license_file, "--customer", "lensco", "--model", "lens:2")
    assert GRANTED.fullmatch(check(vault, device, license_file, "lens:2", code=0))

    home = AgentHome.open(device.home)
    with VaultClient.device(home.vault_url, home.cert_file, home.key_file, home.ca_file) as client:
        released = request_key(
            client,
            device_id=home.device_id,
            license_token=license_file.read_text(),
            model_name="lens",
            model_version=2,
        )
    assert released.key.key_id == manifest.key_id
    open_package(package, released.key, vault.tmp / "lens-opened")
    assert read_tree(vault.tmp / "lens-opened") == read_tree(source)
    shown = run(vault, "license", "show", license_id, "--json").stdout
    assert '"loads_used": 2' in shown


def test_seal_with_the_vault_keeps_a_given_model_id_and_key_file(
    vault: Vault, keystore: Path
) -> None:
    model_id = str(uuid.uuid4())
    source = model_dir(vault.tmp / "lens-3-src")
    key_file = vault.tmp / "lens-3.datakey"
    said = seal_with_vault(vault, keystore, source, vault.tmp / "lens-3.sealed", 3, "--model-id",
                           model_id, "--data-key-out", str(key_file), "--archive")  # fmt: skip
    assert "data key written to" in said
    assert os.stat(key_file).st_mode & 0o777 == 0o600
    run(vault, "open", str(vault.tmp / "lens-3.sealed"), "--data-key", str(key_file), "--out",
        str(vault.tmp / "lens-3-opened"), "--quiet")  # fmt: skip
    assert read_tree(vault.tmp / "lens-3-opened") == read_tree(source)
    listed = run(vault, "model", "list").stdout
    assert f"lens:3\t{model_id}\t" in listed


def test_seal_with_the_vault_needs_the_admin_credential(
    vault: Vault, keystore: Path, tmp_path: Path
) -> None:
    from click.testing import CliRunner

    from modelseal.cli.main import cli

    out = tmp_path / "never.sealed"
    result = CliRunner().invoke(
        cli,
        ["seal", str(model_dir(tmp_path)), "--keystore", str(keystore), "--name", "lens",
         "--version", "9", "--out", str(out), "--vault", vault.url, "--passphrase-env",
         KEYSTORE_ENV],
        env={"MODELSEAL_ADMIN": None},
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    assert "this command needs the admin credential" in result.stderr
    assert not out.exists()
