"""Regenerate the known-answer vectors in this folder; run ``python -m tests.vectors.generate``.

``streaming_aead.json`` is fully deterministic (fixed key, salt and nonce prefix). In
``key_wrap.json`` the case made by modelseal's own ``wrap_data_key`` uses a random ephemeral key, so
it is kept from the existing file unless ``--fresh-wrap`` is given; the pyhpke case and the RFC 9180
suite vector are deterministic. Nothing is written unless every case first passes its independent
check (Tink for the streaming format, pyhpke for key wrapping). See README.md for provenance.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pyhpke import AEADId, CipherSuite, KDFId, KEMId

from modelseal.crypto import (
    DataKey,
    ImportPrivateKey,
    encrypt_stream,
    unwrap_data_key,
    wrap_data_key,
    wrap_info,
)
from modelseal.crypto.streaming import FIRST_SEGMENT_PLAINTEXT, SEGMENT_PLAINTEXT
from tests._tink import tink_decrypt

HERE = Path(__file__).resolve().parent
STREAMING_FILE = HERE / "streaming_aead.json"
KEY_WRAP_FILE = HERE / "key_wrap.json"
PATTERN = "bytes(range(256)) repeated to size"
FULL_HEX_LIMIT = 8192  # ciphertexts up to this size are stored whole, larger ones as SHA-256 only
PYHPKE_SUITE = CipherSuite.new(KEMId.DHKEM_X25519_HKDF_SHA256, KDFId.HKDF_SHA256, AEADId.AES256_GCM)


def _derived(label: str, size: int) -> bytes:
    """Fixed test bytes: SHA-256 of a label, cut to ``size``."""
    return hashlib.sha256(label.encode()).digest()[:size]


def plaintext_of(case: dict[str, Any]) -> bytes:
    """The plaintext a streaming case describes."""
    spec = case["plaintext"]
    if "hex" in spec:
        return bytes.fromhex(spec["hex"])
    if spec.get("pattern") == PATTERN:
        size = int(spec["size"])
        return (bytes(range(256)) * (size // 256 + 1))[:size]
    raise ValueError(f"unknown plaintext description {spec!r}")


# --- streaming AEAD -----------------------------------------------------------------------------

_STREAMING_CASES: list[tuple[str, str, dict[str, Any]]] = [
    ("empty plaintext, empty associated data", "", {"hex": ""}),
    (
        "one short segment",
        "model=m-1;version=1;path=model.onnx",
        {"hex": b"Hello, sealed model!".hex()},
    ),
    (
        "one segment, 1 KiB",
        "model=m-1;version=1;path=weights.bin",
        {"pattern": PATTERN, "size": 1024},
    ),
    (
        "first segment exactly full",
        "model=m-1;version=1;path=a",
        {"pattern": PATTERN, "size": FIRST_SEGMENT_PLAINTEXT},
    ),
    (
        "two segments, one byte in the last",
        "model=m-1;version=1;path=b",
        {"pattern": PATTERN, "size": FIRST_SEGMENT_PLAINTEXT + 1},
    ),
    (
        "three segments",
        "model=m-2;version=7;path=dir/c.bin",
        {"pattern": PATTERN, "size": FIRST_SEGMENT_PLAINTEXT + SEGMENT_PLAINTEXT + 1000},
    ),
]


def streaming_vectors() -> dict[str, Any]:
    """The content of ``streaming_aead.json`` (each case checked by Tink first)."""
    cases = []
    for number, (name, ad, plaintext_spec) in enumerate(_STREAMING_CASES, start=1):
        case: dict[str, Any] = {
            "name": name,
            "key_hex": _derived(f"modelseal streaming vector {number} key", 32).hex(),
            "salt_hex": _derived(f"modelseal streaming vector {number} salt", 32).hex(),
            "nonce_prefix_hex": _derived(
                f"modelseal streaming vector {number} nonce prefix", 7
            ).hex(),
            "associated_data_hex": ad.encode().hex(),
            "plaintext": plaintext_spec,
        }
        plaintext = plaintext_of(case)
        key = DataKey._from_secret(bytes.fromhex(case["key_hex"]), f"vector-{number}")
        out = io.BytesIO()
        encrypt_stream(
            key,
            bytes.fromhex(case["associated_data_hex"]),
            io.BytesIO(plaintext),
            out.write,
            _salt=bytes.fromhex(case["salt_hex"]),
            _nonce_prefix=bytes.fromhex(case["nonce_prefix_hex"]),
        )
        ciphertext = out.getvalue()
        if tink_decrypt(key, bytes.fromhex(case["associated_data_hex"]), ciphertext) != plaintext:
            raise AssertionError(f"Tink does not decrypt streaming vector {name!r}")
        case["plaintext_size"] = len(plaintext)
        case["ciphertext_size"] = len(ciphertext)
        case["ciphertext_sha256"] = hashlib.sha256(ciphertext).hexdigest()
        if len(ciphertext) <= FULL_HEX_LIMIT:
            case["ciphertext_hex"] = ciphertext.hex()
        cases.append(case)
    return {
        "format": "Tink AES256_GCM_HKDF_1MB streaming AEAD (RAW: no key-id prefix)",
        "produced_by": "modelseal.crypto.streaming.encrypt_stream with fixed _salt and _nonce_prefix",
        "checked_by": "tink 1.16 (C++), StreamingAead.new_decrypting_stream",
        "generator": "python -m tests.vectors.generate",
        "cases": cases,
    }


# --- key wrapping -------------------------------------------------------------------------------

# DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM, base mode: mode 0, kem_id 0x0020,
# kdf_id 0x0001, aead_id 0x0002. RFC 9180 appendix A prints no vector for this suite, but the JSON
# file the RFC cites as [TestVectors] has one; it is copied here verbatim (first two encryptions).
CFRG_SOURCE = (
    "https://github.com/cfrg/draft-irtf-cfrg-hpke/blob/"
    "5f503c564da00b0687b3de75f1dfbdfc4079ad31/test-vectors.json"
)
CFRG_VECTOR: dict[str, Any] = {
    "mode": 0,
    "kem_id": 32,
    "kdf_id": 1,
    "aead_id": 2,
    "info": "4f6465206f6e2061204772656369616e2055726e",
    "ikmR": "dac33b0e9db1b59dbbea58d59a14e7b5896e9bdf98fad6891e99d1686492b9ee",
    "ikmE": "2cd7c601cefb3d42a62b04b7a9041494c06c7843818e0ce28a8f704ae7ab20f9",
    "skRm": "497b4502664cfea5d5af0b39934dac72242a74f8480451e1aee7d6a53320333d",
    "skEm": "179d4b53b6365c45b600c4163b61d95cbc2f4d9e36f1695558dce265ab8bab11",
    "pkRm": "430f4b9859665145a6b1ba274024487bd66f03a2dd577d7753c68d7d7d00c00c",
    "pkEm": "6c93e09869df3402d7bf231bf540fadd35cd56be14f97178f0954db94b7fc256",
    "enc": "6c93e09869df3402d7bf231bf540fadd35cd56be14f97178f0954db94b7fc256",
    "shared_secret": "3101c54c3a4f87439eaac080699ed9bbcc726ffe44e860c0424ccb7e3e2ead7b",
    "key": "f50b0609186798729ed0564b36ef2ef8044f1f9d05636874d1f46c819c7a669f",
    "base_nonce": "151d9929e2449747889bc923",
    "encryptions": [
        {
            "aad": "436f756e742d30",
            "nonce": "151d9929e2449747889bc923",
            "pt": "4265617574792069732074727574682c20747275746820626561757479",
            "ct": "e5d84cd531cfb583096e7cfa9641bd3079cf3a91cda813c52deb5f512be9931980a41de125a925cdad859d5b7a",
        },
        {
            "aad": "436f756e742d31",
            "nonce": "151d9929e2449747889bc922",
            "pt": "4265617574792069732074727574682c20747275746820626561757479",
            "ct": "2c43aff25343fdbff864506f0818b9d87df84ea01b1a2144d23b4d40c26bf655fdf197fe40297a8aebeed5cc2d",
        },
    ],
}


def pyhpke_key(raw_private_hex: str) -> Any:
    """pyhpke's handle of an X25519 private key given as raw hex."""
    return PYHPKE_SUITE.kem.deserialize_private_key(bytes.fromhex(raw_private_hex))


def pyhpke_open(case: dict[str, Any]) -> bytes:
    """pyhpke's single-shot open of ``wrapped_hex`` (enc ‖ ct, empty AEAD associated data)."""
    wrapped = bytes.fromhex(case["wrapped_hex"])
    context = PYHPKE_SUITE.create_recipient_context(
        wrapped[:32], pyhpke_key(case["recipient_private_key_hex"]), bytes.fromhex(case["info_hex"])
    )
    opened: bytes = context.open(wrapped[32:])
    return opened


def _recipient(label: str) -> dict[str, str]:
    private = x25519.X25519PrivateKey.from_private_bytes(_derived(label, 32))
    return {
        "recipient_private_key_hex": private.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        ).hex(),
        "recipient_private_key_pem": private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode(),
        "recipient_public_key_hex": private.public_key()
        .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        .hex(),
    }


def _context(number: int) -> dict[str, Any]:
    context: dict[str, Any] = {
        "key_id": f"dk-vector-{number}",
        "model_id": f"m-vector-{number}",
        "version": number,
    }
    return {"context": context, "info_hex": wrap_info(**context).hex()}


def _modelseal_case() -> dict[str, Any]:
    case: dict[str, Any] = {
        "name": "wrapped by modelseal (random ephemeral key, generated once)",
        "produced_by": "modelseal.crypto.wrap.wrap_data_key",
        **_recipient("modelseal key-wrap vector 1 recipient"),
        **_context(1),
        "data_key_hex": _derived("modelseal key-wrap vector 1 data key", 32).hex(),
    }
    recipient = ImportPrivateKey.from_pem(case["recipient_private_key_pem"].encode())
    key = DataKey._from_secret(bytes.fromhex(case["data_key_hex"]), case["context"]["key_id"])
    case["wrapped_hex"] = wrap_data_key(
        key, recipient.public_key(), info=bytes.fromhex(case["info_hex"])
    ).hex()
    return case


def _pyhpke_case() -> dict[str, Any]:
    case: dict[str, Any] = {
        "name": "sealed by pyhpke (ephemeral key from DeriveKeyPair(ephemeral_ikm))",
        "produced_by": "pyhpke CipherSuite.create_sender_context(..., eks=DeriveKeyPair(ikm)).seal",
        **_recipient("modelseal key-wrap vector 2 recipient"),
        **_context(2),
        "ephemeral_ikm_hex": _derived("modelseal key-wrap vector 2 ephemeral ikm", 32).hex(),
        "data_key_hex": _derived("modelseal key-wrap vector 2 data key", 32).hex(),
    }
    recipient_public = PYHPKE_SUITE.kem.deserialize_public_key(
        bytes.fromhex(case["recipient_public_key_hex"])
    )
    ephemeral = PYHPKE_SUITE.kem.derive_key_pair(bytes.fromhex(case["ephemeral_ikm_hex"]))
    enc, sender = PYHPKE_SUITE.create_sender_context(
        recipient_public, bytes.fromhex(case["info_hex"]), eks=ephemeral
    )
    case["wrapped_hex"] = (enc + sender.seal(bytes.fromhex(case["data_key_hex"]))).hex()
    return case


def _cfrg_entry() -> dict[str, Any]:
    """The CFRG vector plus a single-shot wrap derived from its key schedule (key, base_nonce)."""
    data_key = _derived("modelseal key-wrap rfc9180 data key", 32)
    sealed = AESGCM(bytes.fromhex(CFRG_VECTOR["key"])).encrypt(
        bytes.fromhex(CFRG_VECTOR["base_nonce"]), data_key, b""
    )
    return {
        "source": CFRG_SOURCE,
        "vector": CFRG_VECTOR,
        "derived_single_shot": {
            "note": "AES-256-GCM(key, base_nonce, data key, aad='') from the vector's key schedule, "
            "i.e. the first Seal of the context, which is what a single-shot wrap is",
            "data_key_hex": data_key.hex(),
            "wrapped_hex": CFRG_VECTOR["enc"] + sealed.hex(),
        },
    }


def _check_wrap_case(case: dict[str, Any]) -> None:
    data_key = bytes.fromhex(case["data_key_hex"])
    if pyhpke_open(case) != data_key:
        raise AssertionError(f"pyhpke does not open key-wrap vector {case['name']!r}")
    recipient = ImportPrivateKey.from_pem(case["recipient_private_key_pem"].encode())
    unwrapped = unwrap_data_key(
        bytes.fromhex(case["wrapped_hex"]),
        recipient,
        key_id="check",
        info=bytes.fromhex(case["info_hex"]),
    )
    if unwrapped._secret_bytes() != data_key:
        raise AssertionError(f"modelseal does not unwrap key-wrap vector {case['name']!r}")


def key_wrap_vectors(previous: dict[str, Any] | None) -> dict[str, Any]:
    """The content of ``key_wrap.json``; keeps the randomized case from ``previous`` if given."""
    modelseal_case = previous["cases"][0] if previous is not None else _modelseal_case()
    cases = [modelseal_case, _pyhpke_case()]
    for case in cases:
        _check_wrap_case(case)
    return {
        "suite": "HPKE (RFC 9180) base mode, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM",
        "wrapped_form": "enc (32 bytes) || AES-256-GCM ciphertext and tag of the 32-byte data key",
        "checked_by": "pyhpke 0.6 (pure-Python HPKE key schedule over pyca/cryptography primitives)",
        "generator": "python -m tests.vectors.generate",
        "cases": cases,
        "rfc9180_suite_vectors": [_cfrg_entry()],
    }


def _write(path: Path, content: dict[str, Any]) -> None:
    path.write_text(json.dumps(content, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {path.relative_to(HERE.parent.parent)} ({path.stat().st_size} bytes)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--fresh-wrap", action="store_true", help="make a new randomized modelseal key-wrap case"
    )
    args = parser.parse_args()
    previous = None
    if KEY_WRAP_FILE.exists() and not args.fresh_wrap:
        previous = json.loads(KEY_WRAP_FILE.read_text(encoding="utf-8"))
    _write(STREAMING_FILE, streaming_vectors())
    _write(KEY_WRAP_FILE, key_wrap_vectors(previous))


if __name__ == "__main__":
    main()
