"""The keystore library: create, load, unlock, import a certificate; every refusal is exact."""

from __future__ import annotations

import datetime as dt
import json
import pickle
import re
import stat
from pathlib import Path

import pytest

import modelseal.keys
from modelseal.crypto import ALGORITHMS, Algorithm, canonical_json
from modelseal.errors import UsageError
from modelseal.keys import Keystore, KeystoreError, create_keystore, import_certificate

PASS = b"correct horse battery staple"
NOW = dt.datetime(2025, 6, 1, 12, 0, tzinfo=dt.UTC)
SRC = Path(modelseal.keys.__file__).parent


def _snapshot(path: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()
    }


@pytest.fixture
def keystore(tmp_path: Path) -> Keystore:
    return create_keystore(tmp_path / "ks", name="Acme Models", passphrase=PASS, now=NOW)


def test_public_surface() -> None:
    assert modelseal.keys.__all__ == [
        "Keystore",
        "KeystoreError",
        "create_keystore",
        "import_certificate",
    ]
    assert KeystoreError.code == "KEYSTORE"


def test_keys_code_never_imports_hazmat() -> None:
    files = [*SRC.glob("*.py"), SRC.parent / "cli" / "keys.py"]
    assert len(files) >= 4
    for file in files:
        assert "hazmat" not in file.read_text(), file


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_create_load_and_sign(tmp_path: Path, algorithm: Algorithm) -> None:
    created = create_keystore(tmp_path / "ks", name="Acme", passphrase=PASS, algorithm=algorithm)
    loaded = Keystore.load(tmp_path / "ks")
    assert loaded == created
    assert (loaded.name, loaded.algorithm, loaded.chain) == ("Acme", algorithm, ())
    assert loaded.certificate.subject == "CN=Acme"
    assert loaded.certificate.is_self_signed()
    assert loaded.certificate_chain() == [loaded.certificate]
    key = loaded.signing_key(PASS)
    assert key.algorithm == algorithm
    loaded.certificate.verifying_key().verify(key.sign(b"manifest"), b"manifest")


def test_files_and_modes(keystore: Keystore, tmp_path: Path) -> None:
    assert sorted(p.name for p in keystore.path.iterdir()) == [
        "certificate.pem",
        "keystore.json",
        "private-key.pem",
        "request.csr.pem",
    ]
    assert stat.S_IMODE(keystore.path.stat().st_mode) == 0o700
    assert stat.S_IMODE((keystore.path / "private-key.pem").stat().st_mode) == 0o600
    assert (
        (keystore.path / "private-key.pem")
        .read_bytes()
        .startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    )
    assert [p.name for p in tmp_path.iterdir()] == ["ks"]  # no temporary directory left behind


def test_keystore_json_is_canonical(keystore: Keystore) -> None:
    data = (keystore.path / "keystore.json").read_bytes()
    assert json.loads(data) == {
        "type": "modelseal.keystore",
        "version": 1,
        "name": "Acme Models",
        "algorithm": "ed25519",
        "subject": "CN=Acme Models",
        "created": "2025-06-01T12:00:00Z",
    }
    assert data == canonical_json(json.loads(data))


def test_subject_default_escapes_the_name_and_custom_subject_is_used(tmp_path: Path) -> None:
    odd = create_keystore(tmp_path / "a", name="Acme, Inc. + Co", passphrase=PASS)
    assert odd.certificate.subject == r"CN=Acme\, Inc. \+ Co"
    custom = create_keystore(
        tmp_path / "b", name="x", passphrase=PASS, subject="CN=Acme,O=Acme Ltd"
    )
    assert custom.certificate.subject == "CN=Acme,O=Acme Ltd"


def test_wrong_passphrase_is_one_exact_error(keystore: Keystore) -> None:
    with pytest.raises(KeystoreError) as info:
        keystore.signing_key(b"wrong")
    assert info.value.message == f"wrong passphrase for {keystore.path}/private-key.pem"


def test_key_that_does_not_match_the_certificate(keystore: Keystore, tmp_path: Path) -> None:
    other = create_keystore(tmp_path / "other", name="Other", passphrase=PASS)
    (keystore.path / "certificate.pem").write_bytes(other.certificate.pem())
    with pytest.raises(KeystoreError, match=r"private-key.pem does not match .*certificate.pem"):
        Keystore.load(keystore.path).signing_key(PASS)


def test_repr_never_shows_secrets(keystore: Keystore) -> None:
    key = keystore.signing_key(PASS)
    pem = (keystore.path / "private-key.pem").read_text()
    for text in (repr(keystore), str(keystore), repr(key)):
        assert PASS.decode() not in text
        assert "PRIVATE KEY" not in text
        assert pem.splitlines()[1] not in text
    assert repr(key) == "SigningKey(ed25519, <private>)"
    with pytest.raises(TypeError):
        pickle.dumps(key)


def test_existing_directory_is_refused_and_left_untouched(keystore: Keystore) -> None:
    before = _snapshot(keystore.path)
    with pytest.raises(KeystoreError) as info:
        create_keystore(keystore.path, name="Again", passphrase=PASS)
    assert info.value.message == (
        f"{keystore.path} already exists and is not an empty directory; refusing to overwrite it"
    )
    assert _snapshot(keystore.path) == before


def test_existing_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "ks").write_bytes(b"mine")
    with pytest.raises(KeystoreError, match="already exists"):
        create_keystore(tmp_path / "ks", name="Acme", passphrase=PASS)
    assert (tmp_path / "ks").read_bytes() == b"mine"


def test_empty_directory_is_used(tmp_path: Path) -> None:
    (tmp_path / "ks").mkdir(mode=0o755)
    keystore = create_keystore(tmp_path / "ks", name="Acme", passphrase=PASS)
    assert stat.S_IMODE(keystore.path.stat().st_mode) == 0o700


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"passphrase": b""}, "an empty passphrase is not allowed for the private key"),
        ({"name": " "}, "a keystore needs a non-empty name"),
        ({"subject": "O=Acme"}, "subject 'O=Acme' needs a CN= part"),
        (
            {"algorithm": "rsa"},
            "unknown algorithm 'rsa'; choose one of ed25519, ecdsa-p256, ecdsa-p384",
        ),
    ],
)
def test_bad_arguments_write_nothing(
    tmp_path: Path, kwargs: dict[str, object], message: str
) -> None:
    arguments: dict[str, object] = {"name": "Acme", "passphrase": PASS, **kwargs}
    with pytest.raises(KeystoreError) as info:
        create_keystore(tmp_path / "ks", **arguments)  # type: ignore[arg-type]
    assert info.value.message == message
    assert list(tmp_path.iterdir()) == []


def test_naive_now_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="timezone-aware"):
        create_keystore(tmp_path / "ks", name="Acme", passphrase=PASS, now=dt.datetime(2025, 1, 1))


def test_load_names_what_is_wrong(tmp_path: Path, keystore: Keystore) -> None:
    with pytest.raises(
        KeystoreError, match=f"^no keystore at {re.escape(str(tmp_path))}/nope: it does not exist$"
    ):
        Keystore.load(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(
        KeystoreError, match=r"is not a modelseal keystore: keystore\.json is missing"
    ):
        Keystore.load(tmp_path / "empty")
    meta = keystore.path / "keystore.json"
    meta.write_bytes(meta.read_bytes().replace(b'"version":1', b'"version":2'))
    with pytest.raises(
        KeystoreError, match="has keystore version 2; this modelseal reads version 1"
    ):
        Keystore.load(keystore.path)
    meta.write_bytes(json.dumps(json.loads(meta.read_bytes()), indent=1).encode())
    with pytest.raises(KeystoreError, match="not in canonical JSON form"):
        Keystore.load(keystore.path)


def test_load_refuses_an_incomplete_keystore(keystore: Keystore) -> None:
    (keystore.path / "certificate.pem").unlink()
    with pytest.raises(KeystoreError) as info:
        Keystore.load(keystore.path)
    assert (
        info.value.message == f"keystore {keystore.path} is incomplete: certificate.pem is missing"
    )


def test_import_of_a_certificate_for_another_key_changes_nothing(
    keystore: Keystore, tmp_path: Path
) -> None:
    other = create_keystore(tmp_path / "other", name="Other", passphrase=PASS, now=NOW)
    before = _snapshot(keystore.path)
    with pytest.raises(KeystoreError) as info:
        import_certificate(keystore.path, other.certificate.pem(), now=NOW)
    assert info.value.message == (
        f"the certificate for 'CN=Other' certifies a different key than keystore {keystore.path}; "
        "nothing was changed"
    )
    assert _snapshot(keystore.path) == before


@pytest.mark.parametrize("days", [-1, 900])
def test_import_of_a_certificate_not_valid_now_is_refused(keystore: Keystore, days: int) -> None:
    before = _snapshot(keystore.path)
    when = NOW + dt.timedelta(days=days)
    with pytest.raises(
        KeystoreError, match=r"^the certificate for 'CN=Acme Models' is not valid at "
    ):
        import_certificate(keystore.path, keystore.certificate.pem(), now=when)
    assert _snapshot(keystore.path) == before


def test_import_with_a_chain_that_does_not_issue_it(keystore: Keystore, tmp_path: Path) -> None:
    other = create_keystore(tmp_path / "other", name="Other", passphrase=PASS, now=NOW)
    before = _snapshot(keystore.path)
    with pytest.raises(KeystoreError, match=r"^the chain does not issue the certificate: "):
        import_certificate(
            keystore.path, keystore.certificate.pem(), other.certificate.pem(), now=NOW
        )
    assert _snapshot(keystore.path) == before


def test_import_accepts_der_and_keeps_the_previous_certificate(keystore: Keystore) -> None:
    old = (keystore.path / "certificate.pem").read_bytes()
    (keystore.path / "chain.pem").write_bytes(old)  # a stale chain is dropped by the import
    updated = import_certificate(keystore.path, keystore.certificate.der(), now=NOW)
    assert updated.certificate == keystore.certificate
    assert updated.chain == ()
    assert (keystore.path / "certificate.previous.pem").read_bytes() == old
    assert not (keystore.path / "chain.pem").exists()
    assert updated.signing_key(PASS).algorithm == "ed25519"


def test_import_of_garbage_is_refused(keystore: Keystore) -> None:
    with pytest.raises(KeystoreError) as info:
        import_certificate(keystore.path, b"not a certificate", now=NOW)
    assert info.value.message == "the certificate holds no readable X.509 certificate (PEM or DER)"
