"""Make the sealed-package vectors; run ``python -m tests.vectors.generate_package [--fresh]``.

Sealing draws a fresh salt and nonce prefix per file and certificates carry random serial
numbers, so these vectors are generated once and kept; ``--fresh`` replaces them. Keys, the data
key, the model id, the time and the plaintexts are fixed (derived from labels), so a reader can
rebuild the plaintexts and check every step. See README.md for what checks them independently.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import hashlib
import json
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, x25519

from modelseal.crypto import (
    DataKey,
    ImportPrivateKey,
    SigningKey,
    create_self_signed,
    dump_data_key,
    parse_subject,
)
from modelseal.package import seal
from modelseal.package.signature import sign_manifest

HERE = Path(__file__).resolve().parent
PACKAGE_DIR = HERE / "package_v1"
PACKAGE_KEY = HERE / "package_v1.key.json"
PACKAGE_INFO = HERE / "package_v1.json"
SIGNATURE_FILE = HERE / "manifest_signature.json"
CREATED = dt.datetime(2026, 11, 21, 12, 0, 0, tzinfo=dt.UTC)
MODEL_ID = "5b0c1f9e-8a55-4c1e-9d3a-6f0e2b7c4d21"
ED25519_SEED = hashlib.sha256(b"modelseal vector: owner ed25519 seed").digest()
DATA_KEY = hashlib.sha256(b"modelseal vector: package data key").digest()
IMPORT_KEY = hashlib.sha256(b"modelseal vector: vault import key").digest()
FILES = {  # path -> size; content = SHA-256 counter stream of the path (see plaintext_for)
    "model.onnx": 700,
    "weights/params.bin": 1_048_600,  # two segments
    "empty.txt": 0,
}


def plaintext_for(path: str, size: int) -> bytes:
    """SHA-256(path ‖ u32be(i)) for i = 0, 1, … concatenated and cut to ``size``."""
    blocks = (
        hashlib.sha256(path.encode() + i.to_bytes(4, "big")).digest() for i in range(size // 32 + 1)
    )
    return b"".join(blocks)[:size]


def owner_pem() -> bytes:
    key = ed25519.Ed25519PrivateKey.from_private_bytes(ED25519_SEED)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def import_key_pem() -> bytes:
    key = x25519.X25519PrivateKey.from_private_bytes(IMPORT_KEY)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def make_package() -> None:
    key = SigningKey.from_pem(owner_pem(), None)
    cert = create_self_signed(
        key, parse_subject("CN=modelseal test vector owner"), days=36500, now=CREATED
    )
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp, "model")
        for path, size in FILES.items():
            (model / path).parent.mkdir(parents=True, exist_ok=True)
            (model / path).write_bytes(plaintext_for(path, size))
        data_key = DataKey._from_secret(DATA_KEY, "dk-00000000-0000-4000-8000-000000000001")
        shutil.rmtree(PACKAGE_DIR, ignore_errors=True)
        seal(
            model,
            PACKAGE_DIR,
            name="vector-model",
            version=3,
            signing_key=key,
            certificates=[cert],
            data_key=data_key,
            import_keys=[ImportPrivateKey.from_pem(import_key_pem()).public_key()],
            model_id=MODEL_ID,
            now=CREATED,
        )
    PACKAGE_KEY.write_bytes(dump_data_key(data_key))
    PACKAGE_INFO.write_text(
        json.dumps(
            {
                "description": "a sealed package (format version 1) of three files; see README.md",
                "created": CREATED.isoformat(),
                "owner_ed25519_seed_hex": ED25519_SEED.hex(),
                "data_key_hex": DATA_KEY.hex(),
                "vault_import_x25519_private_hex": IMPORT_KEY.hex(),
                "files": FILES,
                "plaintext": "SHA-256(path || u32be(i)) for i = 0, 1, ... concatenated, cut to size",
            },
            indent=2,
        )
        + "\n"
    )


def _ecdsa_case(curve: str, digest: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        algorithm = {"prime256v1": "ecdsa-p256", "secp384r1": "ecdsa-p384"}[curve]
        key = SigningKey.generate(algorithm)  # type: ignore[arg-type]
        cert = create_self_signed(
            key, parse_subject(f"CN=vector {algorithm}"), days=36500, now=CREATED
        )
        manifest = (PACKAGE_DIR / "manifest.json").read_bytes()
        envelope = sign_manifest(manifest, key, [cert])
        signature = base64.b64decode(json.loads(envelope)["signature"])
        Path(tmp, "pub.pem").write_bytes(
            cert.verifying_key()._key.public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        Path(tmp, "sig").write_bytes(signature)
        Path(tmp, "m").write_bytes(manifest)
        subprocess.run(
            ["openssl", "dgst", f"-{digest}", "-verify", "pub.pem", "-signature", "sig", "m"],
            cwd=tmp,
            check=True,
            capture_output=True,
        )
        return {"algorithm": algorithm, "openssl_digest": digest, "manifest_sig": envelope.decode()}


def make_signatures() -> None:
    SIGNATURE_FILE.write_text(
        json.dumps(
            {
                "description": "manifest.sig envelopes over package_v1/manifest.json; see README.md",
                "cases": [_ecdsa_case("prime256v1", "sha256"), _ecdsa_case("secp384r1", "sha384")],
            },
            indent=2,
        )
        + "\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--fresh", action="store_true", help="replace the kept vectors")
    args = parser.parse_args()
    if PACKAGE_DIR.exists() and not args.fresh:
        raise SystemExit("vectors exist; pass --fresh to replace them")
    make_package()
    make_signatures()


if __name__ == "__main__":
    main()
