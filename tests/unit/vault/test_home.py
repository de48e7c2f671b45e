"""The vault home with a software master key and SQLite: what init writes, unlock, and refusals."""

from __future__ import annotations

import base64
import json
import os
import pickle
import shutil
import stat
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, x25519

from modelseal.crypto import (
    ImportPrivateKey,
    SigningKey,
    certificate_role,
    jwk_thumbprint,
    load_certificates,
    private_key_pem_unencrypted,
    verify_chain,
)
from modelseal.crypto.masterkey import MasterKeyError, MasterKeyRing, SoftwareMasterKey
from modelseal.errors import UsageError
from modelseal.vault import _layout as layout
from modelseal.vault import home as home_module
from modelseal.vault.db import StorageError, check_schema_current, create_vault_engine
from modelseal.vault.home import (
    HomeError,
    Pkcs11Master,
    SoftwareMaster,
    UnlockedVault,
    VaultHome,
    init_vault,
)
from modelseal.vault.settings import SettingsError, VaultSettings, load_settings
from tests.conftest import expect_error, find_plaintext

PASSPHRASE = b"correct horse battery staple"
NOW = datetime(2030, 6, 1, 12, 0, tzinfo=UTC)
FAST = SoftwareMaster(PASSPHRASE, scrypt_n=2**10)

FILES = {
    "vault.json": 0o600,
    "vault.db": 0o600,
    "master-key.json": 0o600,
    "ca/ca.pem": 0o644,
    "tls/server.pem": 0o644,
    "license-keys.json": 0o644,
    "import-key.pem": 0o644,
    "secrets/home-key.wrapped": 0o600,
    "secrets/ca-key.pem.sealed": 0o600,
    "secrets/tls-server-key.pem.sealed": 0o600,
    "secrets/license-signing-key.pem.sealed": 0o600,
    "secrets/import-key.pem.sealed": 0o600,
    "admin/client.pem": 0o644,
    "admin/client-key.pem": 0o600,
    "admin/ca.pem": 0o644,
    "admin/credential.json": 0o644,
}
DIRS = {".", "ca", "tls", "secrets", "admin"}


def make_home(path: Path, **changes: object) -> VaultHome:
    arguments: dict[str, object] = {"database_url": None, "master": FAST, "now": NOW}
    arguments.update(changes)
    return init_vault(path, **arguments)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> VaultHome:
    """One vault home for the tests that only read it."""
    return make_home(tmp_path_factory.mktemp("vault") / "home")


@pytest.fixture
def copy(pristine: VaultHome, tmp_path: Path) -> VaultHome:
    """A private copy of ``pristine`` to alter (the home is relocatable: SQLite URL not stored)."""
    target = tmp_path / "copy"
    shutil.copytree(pristine.path, target)
    return VaultHome.open(target)


@pytest.fixture
def unlocked(pristine: VaultHome) -> Iterator[UnlockedVault]:
    with pristine.unlock(passphrase=PASSPHRASE) as vault:
        yield vault


def tree(root: Path) -> dict[str, int]:
    """Every path under ``root`` → its permission bits."""
    return {
        path.relative_to(root).as_posix(): stat.S_IMODE(path.stat().st_mode)
        for path in [root, *root.rglob("*")]
    }


def siblings(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir())


# --- what init writes -----------------------------------------------------------------------------


def test_init_writes_exactly_the_layout_with_private_modes(pristine: VaultHome) -> None:
    found = tree(pristine.path)
    assert {name for name, mode in found.items() if mode == 0o700} == DIRS
    assert {name: mode for name, mode in found.items() if name not in DIRS} == FILES
    assert siblings(pristine.path) == ["home"]  # no temporary directory left beside it


def secret_encodings(secret: bytes) -> list[bytes]:
    """``secret`` raw, and the part of its base64 that is the same at any alignment in a stream."""
    found = [secret]
    for shift in range(3):
        text = base64.b64encode(bytes(shift) + secret)
        found.append(text[4:-4])
    return found


def raw_private_value(pem: bytes) -> bytes:
    key = serialization.load_pem_private_key(pem, password=None)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.private_numbers().private_value.to_bytes(32, "big")
    assert isinstance(key, ed25519.Ed25519PrivateKey | x25519.X25519PrivateKey)
    return key.private_bytes_raw()


def test_no_private_key_is_in_clear_under_the_home(unlocked: UnlockedVault) -> None:
    home = unlocked.home.path
    pems = [
        private_key_pem_unencrypted(unlocked.ca.key),
        private_key_pem_unencrypted(unlocked.license_key),
        unlocked.import_key.to_pem(None),
        unlocked.tls_key_pem,
    ]
    assert all(pem.startswith(b"-----BEGIN PRIVATE KEY-----") for pem in pems)
    # Whole PEMs (64-byte windows) anywhere but the admin credential, whose own key shares the
    # PKCS#8 header with them; then the bare secrets in every file, the admin's included.
    leaks = find_plaintext(home, pems)
    assert leaks in ([], ["admin/client-key.pem"])
    ring = unlocked.master_key
    assert isinstance(ring, MasterKeyRing) and ring.versions == (1,)
    master = ring.current
    assert isinstance(master, SoftwareMasterKey)
    home_key = unlocked.home.unwrap_home_key(ring)
    secrets = [raw_private_value(pem) for pem in pems]
    secrets += [master._secret_bytes(), home_key._secret_bytes()]
    needles = [needle for secret in secrets for needle in secret_encodings(secret)]
    for path in home.rglob("*"):
        if path.is_file():
            content = path.read_bytes().replace(b"\n", b"")
            assert not any(needle in content for needle in needles), path


def test_the_admin_credential_is_a_client_certificate_of_the_vault_ca(
    pristine: VaultHome,
) -> None:
    admin = pristine.path / "admin"
    cert = load_certificates((admin / "client.pem").read_bytes(), what="client.pem")[0]
    assert certificate_role(cert) == "admin"
    assert "CN=admin" in cert.subject
    verify_chain(cert, [], [pristine.ca_certificate], now=NOW)
    key = SigningKey.from_pem((admin / "client-key.pem").read_bytes(), None)
    assert key.verifying_key() == cert.verifying_key()
    assert (admin / "ca.pem").read_bytes() == (pristine.path / "ca/ca.pem").read_bytes()
    credential = json.loads((admin / "credential.json").read_bytes())
    assert credential == {"vault_url": "https://127.0.0.1:8443", "created": "2030-06-01T12:00:00Z"}


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl binary")
@pytest.mark.parametrize("leaf", ["tls/server.pem", "admin/client.pem"])
def test_openssl_verifies_the_certificates(pristine: VaultHome, leaf: str) -> None:
    result = subprocess.run(
        ["openssl", "verify", "-attime", str(int(NOW.timestamp())), "-CAfile", "ca/ca.pem", leaf],
        cwd=pristine.path,
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert result.returncode == 0 and result.stdout.strip() == f"{leaf}: OK", result.stderr


def test_settings_are_canonical_and_complete(pristine: VaultHome) -> None:
    data = (pristine.path / "vault.json").read_bytes()
    settings = load_settings(data, where="vault.json")
    assert settings == pristine.settings
    assert settings.vault_id.startswith("vault-")
    assert settings.database_url is None
    assert settings.master_key.kind == "software"
    assert (settings.host, settings.port, settings.master_version) == ("127.0.0.1", 8443, 1)
    assert settings.public_urls == ["https://127.0.0.1:8443"]
    assert settings.tls_hosts == ["127.0.0.1", "localhost"]
    assert json.loads(data) == settings.model_dump(mode="json")
    assert all(field.description for field in VaultSettings.model_fields.values())


def test_the_license_kid_is_the_jwk_thumbprint(unlocked: UnlockedVault) -> None:
    kid = jwk_thumbprint(unlocked.license_key.verifying_key())
    assert unlocked.license_kid == kid == unlocked.settings.license_kid
    assert list(unlocked.home.license_keys) == [kid]
    assert unlocked.home.license_keys[kid] == unlocked.license_key.verifying_key()


def test_unlock_opens_every_key_and_the_database(unlocked: UnlockedVault) -> None:
    home = unlocked.home
    assert unlocked.ca.certificate == home.ca_certificate
    assert unlocked.ca.pin.startswith("sha256:")
    assert SigningKey.from_pem(unlocked.tls_key_pem, None).verifying_key() == (
        home.tls_certificate.verifying_key()
    )
    assert unlocked.import_key.public_key().to_pem() == home.import_public_key.to_pem()
    assert isinstance(ImportPrivateKey.from_pem(unlocked.import_key.to_pem(None)), ImportPrivateKey)
    engine = unlocked.engine()
    try:
        check_schema_current(engine)
        assert engine.url.database == str(home.path / "vault.db")
    finally:
        engine.dispose()


def test_unlocked_vault_shows_and_pickles_no_secret(unlocked: UnlockedVault) -> None:
    text = repr(unlocked)
    assert unlocked.settings.vault_id in text and "PRIVATE" not in text
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(unlocked)


def test_a_moved_home_still_finds_its_database(copy: VaultHome) -> None:
    with copy.unlock(passphrase=PASSPHRASE) as vault:
        engine = vault.engine()
        try:
            assert engine.url.database == str(copy.path / "vault.db")
        finally:
            engine.dispose()


# --- refusals -------------------------------------------------------------------------------------


def test_wrong_passphrase_is_refused(pristine: VaultHome) -> None:
    expect_error(
        MasterKeyError,
        lambda: pristine.unlock(passphrase=b"not the passphrase"),
        "wrong passphrase for the master key",
    )


def test_unlock_without_a_passphrase_says_what_is_needed(pristine: VaultHome) -> None:
    expect_error(
        UsageError,
        lambda: pristine.unlock(pin="1234"),
        "sealed by a passphrase; give the passphrase",
    )


@pytest.mark.parametrize("relative", layout.SEALED_KEYS)
def test_a_tampered_sealed_key_is_refused_by_name(copy: VaultHome, relative: str) -> None:
    path = copy.path / relative
    data = bytearray(path.read_bytes())
    data[-5] ^= 0x01
    path.write_bytes(bytes(data))
    expect_error(
        HomeError,
        lambda: copy.unlock(passphrase=PASSPHRASE),
        f"{relative} in {copy.path} failed authentication: it was altered or replaced",
    )


def test_a_sealed_key_moved_to_another_name_is_refused(copy: VaultHome) -> None:
    shutil.copyfile(copy.path / layout.CA_KEY, copy.path / layout.TLS_KEY)
    expect_error(
        HomeError, lambda: copy.unlock(passphrase=PASSPHRASE), f"{layout.TLS_KEY} in {copy.path}"
    )


def test_a_tampered_home_key_is_refused_by_name(copy: VaultHome) -> None:
    path = copy.path / layout.HOME_KEY
    document = json.loads(path.read_bytes())
    wrapped = bytearray(base64.b64decode(document["wrapped"]))
    wrapped[-1] ^= 0x01
    document["wrapped"] = base64.b64encode(bytes(wrapped)).decode()
    path.write_bytes(json.dumps(document, separators=(",", ":"), sort_keys=True).encode())
    expect_error(
        HomeError,
        lambda: copy.unlock(passphrase=PASSPHRASE),
        f"{layout.HOME_KEY} in {copy.path} does not open with the master key",
    )


def test_a_home_key_from_another_vault_is_refused(copy: VaultHome, tmp_path: Path) -> None:
    other = make_home(tmp_path / "other")
    shutil.copyfile(other.path / layout.HOME_KEY, copy.path / layout.HOME_KEY)
    expect_error(HomeError, lambda: copy.unlock(passphrase=PASSPHRASE), layout.HOME_KEY)


def test_a_certificate_swapped_for_another_vaults_is_refused(
    copy: VaultHome, tmp_path: Path
) -> None:
    other = make_home(tmp_path / "other")
    shutil.copyfile(other.path / layout.TLS_CERT, copy.path / layout.TLS_CERT)
    expect_error(
        HomeError,
        lambda: VaultHome.open(copy.path).unlock(passphrase=PASSPHRASE),
        f"{layout.TLS_KEY} in {copy.path} does not belong to {layout.TLS_CERT}",
    )


def test_a_missing_sealed_file_is_named(copy: VaultHome) -> None:
    (copy.path / layout.LICENSE_KEY).unlink()
    expect_error(
        HomeError,
        lambda: copy.unlock(passphrase=PASSPHRASE),
        f"{layout.LICENSE_KEY} is missing from the vault home {copy.path}",
    )


def test_opening_a_directory_that_is_no_home_is_refused(tmp_path: Path) -> None:
    expect_error(HomeError, lambda: VaultHome.open(tmp_path), "is not a vault home")


def test_broken_settings_are_named(copy: VaultHome) -> None:
    path = copy.path / "vault.json"
    document = json.loads(path.read_bytes())
    document["port"] = 0
    document["surprise"] = True
    path.write_text(json.dumps(document, indent=2))
    error = expect_error(SettingsError, lambda: VaultHome.open(copy.path), f"{path} is not valid")
    assert "port" in str(error) and "surprise" in str(error)


def test_hand_edited_settings_need_not_be_canonical(copy: VaultHome) -> None:
    path = copy.path / "vault.json"
    document = json.loads(path.read_bytes())
    document["public_urls"] = ["https://vault.example.com/"]
    path.write_text(json.dumps(document, indent=2))
    assert VaultHome.open(copy.path).settings.public_urls == ["https://vault.example.com"]


def test_an_existing_home_is_refused_and_left_untouched(pristine: VaultHome) -> None:
    before = {p: p.read_bytes() for p in pristine.path.rglob("*") if p.is_file()}
    expect_error(
        UsageError,
        lambda: make_home(pristine.path),
        f"the vault home {pristine.path} already exists and is not empty",
    )
    assert {p: p.read_bytes() for p in pristine.path.rglob("*") if p.is_file()} == before
    assert siblings(pristine.path) == ["home"]


def test_an_empty_existing_directory_is_accepted(tmp_path: Path) -> None:
    (tmp_path / "home").mkdir(mode=0o755)
    home = make_home(tmp_path / "home")
    assert stat.S_IMODE(home.path.stat().st_mode) == 0o700


def test_a_file_in_the_way_is_refused(tmp_path: Path) -> None:
    (tmp_path / "home").write_text("not a directory")
    expect_error(UsageError, lambda: make_home(tmp_path / "home"), "is not a directory")


def test_admin_out_puts_the_credential_elsewhere(tmp_path: Path) -> None:
    home = make_home(tmp_path / "home", admin_out=tmp_path / "admin")
    assert not (home.path / "admin").exists()
    assert sorted(os.listdir(tmp_path / "admin")) == [
        "ca.pem",
        "client-key.pem",
        "client.pem",
        "credential.json",
    ]
    assert stat.S_IMODE((tmp_path / "admin").stat().st_mode) == 0o700
    assert sorted(os.listdir(tmp_path)) == ["admin", "home"]


def test_admin_out_inside_the_home_is_refused(tmp_path: Path) -> None:
    expect_error(
        UsageError,
        lambda: make_home(tmp_path / "home", admin_out=tmp_path / "home" / "creds"),
        "must be outside the vault home",
    )
    assert os.listdir(tmp_path) == []


def test_urls_and_hosts_reach_the_settings_and_the_certificate(tmp_path: Path) -> None:
    home = make_home(
        tmp_path / "home",
        public_urls=["https://vault.example.com:9443/"],
        tls_hosts=["10.0.0.5", "localhost"],
        port=9000,
    )
    settings = home.settings
    assert settings.public_urls == ["https://vault.example.com:9443"]
    assert settings.tls_hosts == ["127.0.0.1", "localhost", "10.0.0.5", "vault.example.com"]
    assert settings.port == 9000


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"public_urls": ["http://vault.example.com"]}, "is not an https:// URL"),
        ({"public_urls": ["https://vault.example.com/api"]}, "must be https://HOST[:PORT] alone"),
        ({"tls_hosts": ["bad host"]}, "is neither a DNS name nor an IP address"),
        ({"port": 70000}, "--port must be from 1 to 65535"),
        ({"now": datetime(2030, 6, 1)}, "needs an aware time"),
    ],
)
def test_bad_arguments_are_refused_before_anything_is_written(
    tmp_path: Path, changes: dict[str, object], message: str
) -> None:
    expect_error(UsageError, lambda: make_home(tmp_path / "home", **changes), message)
    assert os.listdir(tmp_path) == []


def test_a_failure_late_in_init_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import modelseal.vault.db as db

    def broken(*_args: object, **_kwargs: object) -> None:
        raise StorageError("the disk is full")

    monkeypatch.setattr(db, "upgrade", broken)
    expect_error(StorageError, lambda: make_home(tmp_path / "home"), "the disk is full")
    assert os.listdir(tmp_path) == []


def test_the_public_surface(pristine: VaultHome) -> None:
    assert set(home_module.__all__) == {
        "HomeError",
        "MasterKeyChoice",
        "Pkcs11Master",
        "SoftwareMaster",
        "UnlockedVault",
        "VaultHome",
        "check_init_arguments",
        "home_key_context",
        "init_vault",
    }
    assert "secret" not in repr(FAST) and "horse" not in repr(FAST)
    assert str(pristine.path) in repr(pristine)


def test_the_cli_default_pin_variable_matches_the_settings() -> None:
    from modelseal.cli import vault as cli_vault
    from modelseal.vault.settings import DEFAULT_PIN_ENV

    assert cli_vault._DEFAULT_PIN_ENV == DEFAULT_PIN_ENV


def test_the_database_url_is_the_homes_sqlite_file(pristine: VaultHome) -> None:
    """Without --database-url the settings store no URL; it resolves to vault.db in the home."""
    assert pristine.database_url.endswith(f"{pristine.path}/vault.db")
    engine = create_vault_engine(pristine.database_url)
    try:
        check_schema_current(engine)
    finally:
        engine.dispose()


def test_an_external_sqlite_database_is_used_and_recorded(tmp_path: Path) -> None:
    url = f"sqlite+pysqlite:///{tmp_path / 'shared.db'}"
    home = make_home(tmp_path / "home", database_url=url)
    assert home.settings.database_url == url and home.database_url == url
    assert not (home.path / "vault.db").exists()
    with home.unlock(passphrase=PASSPHRASE) as vault:
        vault.engine().dispose()
    expect_error(
        HomeError,
        lambda: make_home(tmp_path / "second", database_url=url),
        "already holds a vault's tables",
    )
    assert sorted(os.listdir(tmp_path)) == ["home", "shared.db"]


def test_a_database_url_inside_the_new_home_is_refused(tmp_path: Path) -> None:
    url = f"sqlite+pysqlite:///{tmp_path / 'home' / 'vault.db'}"
    expect_error(
        UsageError,
        lambda: make_home(tmp_path / "home", database_url=url),
        "--database-url points into the new vault home",
    )
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    ("master", "message"),
    [
        (SoftwareMaster(b""), "the master key passphrase is empty"),
        (Pkcs11Master("/lib/x.so", "t", "1234", pin_env="1-BAD"), "is not an environment variable"),
        (Pkcs11Master("/lib/x.so", "", "1234"), "needs the module path, the token label and a PIN"),
    ],
)
def test_an_unusable_master_key_choice_is_refused_first(
    tmp_path: Path, master: SoftwareMaster | Pkcs11Master, message: str
) -> None:
    expect_error(UsageError, lambda: make_home(tmp_path / "home", master=master), message)
    assert os.listdir(tmp_path) == []
