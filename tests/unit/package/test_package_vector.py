"""The committed sealed-package vector (tests/vectors/package_v1) read three ways.

modelseal must keep reading it (format compatibility), and independent code must agree with
docs/format.md on every byte: the standard library's JSON for the canonical manifest, PyNaCl for
the Ed25519 signature, Tink for each payload under the documented associated data, pyhpke for the
wrapped data key, and the openssl binary for the ECDSA manifest signatures.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import io
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import x25519
from nacl.signing import SigningKey as NaclSigningKey
from pyhpke import AEADId, CipherSuite, KDFId, KEMId, KEMKey

from modelseal.crypto import Certificate, DataKey, load_certificates, load_data_key
from modelseal.package import Manifest, SealedPackage, open_package, verify_package
from modelseal.package.signature import verify_manifest_signature
from tests._tink import tink_streaming_aead
from tests.vectors.generate_package import (
    PACKAGE_DIR,
    PACKAGE_INFO,
    PACKAGE_KEY,
    SIGNATURE_FILE,
    plaintext_for,
)

INFO: dict[str, Any] = json.loads(PACKAGE_INFO.read_text())
CREATED = dt.datetime.fromisoformat(INFO["created"])


def _manifest_bytes() -> bytes:
    return (PACKAGE_DIR / "manifest.json").read_bytes()


def _envelope() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((PACKAGE_DIR / "manifest.sig").read_bytes())
    return doc


def _owner_certificate() -> Certificate:
    return load_certificates(base64.b64decode(_envelope()["certificates"][0]), what="vector")[0]


def test_modelseal_verifies_and_opens_the_vector(tmp_path: Path) -> None:
    report = verify_package(PACKAGE_DIR, trust=[_owner_certificate()], now=CREATED)
    assert report.manifest.model.name == "vector-model"
    key = load_data_key(PACKAGE_KEY.read_bytes())
    assert key._secret_bytes().hex() == INFO["data_key_hex"]
    open_package(PACKAGE_DIR, key, tmp_path / "out", workers=1)
    for path, size in INFO["files"].items():
        assert (tmp_path / "out" / path).read_bytes() == plaintext_for(path, size)


def test_manifest_is_canonical_by_the_standard_library() -> None:
    raw = _manifest_bytes()
    doc = json.loads(raw)
    # For ASCII strings and integers, RFC 8785 equals sorted keys with no whitespace.
    assert json.dumps(doc, sort_keys=True, separators=(",", ":")).encode() == raw
    assert Manifest.from_bytes(raw).to_bytes() == raw
    for entry in doc["files"]:
        plain = plaintext_for(entry["path"], entry["size"])
        assert entry["sha256"] == hashlib.sha256(plain).hexdigest()
        payload = (PACKAGE_DIR / "payload" / entry["path"]).read_bytes()
        assert entry["ciphertext_sha256"] == hashlib.sha256(payload).hexdigest()
        assert entry["ciphertext_size"] == len(payload)


def test_ed25519_signature_matches_pynacl() -> None:
    signer = NaclSigningKey(bytes.fromhex(INFO["owner_ed25519_seed_hex"]))
    expected = signer.sign(_manifest_bytes()).signature
    assert base64.b64decode(_envelope()["signature"]) == expected
    assert _envelope()["algorithm"] == "ed25519"


def test_each_payload_decrypts_with_tink_under_the_documented_associated_data() -> None:
    doc = json.loads(_manifest_bytes())
    aead = tink_streaming_aead(DataKey._from_secret(bytes.fromhex(INFO["data_key_hex"]), "dk-x"))
    for entry in doc["files"]:
        file_set = sorted([e["path"], e["size"]] for e in doc["files"])
        files = hashlib.sha256(json.dumps(file_set, separators=(",", ":")).encode()).hexdigest()
        associated = json.dumps(
            {
                "files": files,
                "format": "modelseal.sealed-package/1",
                "name": doc["model"]["name"],
                "model_id": doc["model"]["id"],
                "path": entry["path"],
                "version": doc["model"]["version"],
            },
            sort_keys=True,
            separators=(",", ":"),
        ).encode()
        payload = (PACKAGE_DIR / "payload" / entry["path"]).read_bytes()
        with aead.new_decrypting_stream(io.BytesIO(payload), associated) as stream:
            assert stream.read() == plaintext_for(entry["path"], entry["size"])


def test_wrapped_key_opens_with_pyhpke() -> None:
    doc = json.loads(_manifest_bytes())
    (wrapped_entry,) = doc["encryption"]["wrapped_keys"]
    private = x25519.X25519PrivateKey.from_private_bytes(
        bytes.fromhex(INFO["vault_import_x25519_private_hex"])
    )
    der = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert wrapped_entry["recipient"] == hashlib.sha256(der).hexdigest()
    info = (
        b"modelseal/v1 data-key-wrap\x00"
        + json.dumps(
            {
                "key_id": doc["encryption"]["key_id"],
                "model_id": doc["model"]["id"],
                "version": doc["model"]["version"],
            },
            sort_keys=True,
            separators=(",", ":"),
        ).encode()
    )
    wrapped = base64.b64decode(wrapped_entry["wrapped"])
    suite = CipherSuite.new(KEMId.DHKEM_X25519_HKDF_SHA256, KDFId.HKDF_SHA256, AEADId.AES256_GCM)
    context = suite.create_recipient_context(
        wrapped[:32], KEMKey.from_pyca_cryptography_key(private), info
    )
    assert context.open(wrapped[32:]).hex() == INFO["data_key_hex"]


CASES: list[dict[str, Any]] = json.loads(SIGNATURE_FILE.read_text())["cases"]


@pytest.mark.parametrize("case", CASES, ids=[c["algorithm"] for c in CASES])
def test_ecdsa_manifest_signatures(case: dict[str, Any], tmp_path: Path) -> None:
    envelope = case["manifest_sig"].encode()
    signer = verify_manifest_signature(_manifest_bytes(), envelope)
    assert signer.algorithm == case["algorithm"]
    doc = json.loads(envelope)
    cert = tmp_path / "cert.der"
    cert.write_bytes(base64.b64decode(doc["certificates"][0]))
    (tmp_path / "sig").write_bytes(base64.b64decode(doc["signature"]))
    (tmp_path / "manifest.json").write_bytes(_manifest_bytes())
    pub = subprocess.run(
        ["openssl", "x509", "-inform", "DER", "-in", str(cert), "-pubkey", "-noout"],
        check=True,
        capture_output=True,
    ).stdout
    (tmp_path / "pub.pem").write_bytes(pub)
    digest = f"-{case['openssl_digest']}"
    verify = ["openssl", "dgst", digest, "-verify", "pub.pem", "-signature", "sig", "manifest.json"]
    assert subprocess.run(verify, cwd=tmp_path, capture_output=True).returncode == 0
    (tmp_path / "manifest.json").write_bytes(
        _manifest_bytes().replace(b"vector-model", b"vector-modeL")
    )
    assert subprocess.run(verify, cwd=tmp_path, capture_output=True).returncode != 0


def test_ed25519_signature_checks_with_openssl(tmp_path: Path) -> None:
    """docs/format.md §4 promises openssl can check a package by hand: it can."""
    (tmp_path / "cert.der").write_bytes(base64.b64decode(_envelope()["certificates"][0]))
    (tmp_path / "sig").write_bytes(base64.b64decode(_envelope()["signature"]))
    pub = subprocess.run(
        ["openssl", "x509", "-inform", "DER", "-in", "cert.der", "-pubkey", "-noout"],
        cwd=tmp_path,
        check=True,
        capture_output=True,
    ).stdout
    (tmp_path / "pub.pem").write_bytes(pub)
    result = subprocess.run(
        [
            "openssl",
            "pkeyutl",
            "-verify",
            "-pubin",
            "-inkey",
            "pub.pem",
            "-rawin",
            "-in",
            str(PACKAGE_DIR / "manifest.json"),
            "-sigfile",
            "sig",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr


def test_reader_sees_the_vector_at_random_offsets() -> None:
    key = load_data_key(PACKAGE_KEY.read_bytes())
    plain = plaintext_for("weights/params.bin", INFO["files"]["weights/params.bin"])
    with SealedPackage.open(PACKAGE_DIR) as package:
        reader = package.reader("weights/params.bin", key)
        for offset in (0, 1_048_519, 1_048_520, 1_048_590, len(plain) - 1, len(plain) + 5):
            assert reader.read(offset, 64) == plain[offset : offset + 64]
