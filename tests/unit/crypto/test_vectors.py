"""Known-answer vectors in ``tests/vectors/`` (provenance in ``tests/vectors/README.md``).

Each vector is checked three ways: modelseal reproduces or opens it, an independent implementation
(Tink for the streaming format, pyhpke for HPKE) agrees, and for the streaming format a decoder
written here from the format description (REFERENCES.md) agrees as well.
"""

from __future__ import annotations

import hashlib
import io
import json
import random
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from pyhpke import KEMKeyPair

from modelseal.crypto import (
    DataKey,
    DecryptionError,
    ImportPrivateKey,
    SegmentReader,
    encrypt_stream,
    unwrap_data_key,
    wrap_info,
)
from tests._tink import MemorySource, tink_decrypt
from tests.vectors import generate

VECTORS = Path(__file__).resolve().parents[2] / "vectors"
STREAMING: dict[str, Any] = json.loads(
    (VECTORS / "streaming_aead.json").read_text(encoding="utf-8")
)
KEY_WRAP: dict[str, Any] = json.loads((VECTORS / "key_wrap.json").read_text(encoding="utf-8"))
CFRG: dict[str, Any] = KEY_WRAP["rfc9180_suite_vectors"][0]

_streaming_cases = pytest.mark.parametrize(
    "case", STREAMING["cases"], ids=[c["name"].replace(" ", "-") for c in STREAMING["cases"]]
)
_wrap_cases = pytest.mark.parametrize(
    "case", KEY_WRAP["cases"], ids=[c["produced_by"].split()[0] for c in KEY_WRAP["cases"]]
)


def _h(value: str) -> bytes:
    return bytes.fromhex(value)


# --- streaming AEAD -----------------------------------------------------------------------------


def _key(case: dict[str, Any]) -> DataKey:
    return DataKey._from_secret(_h(case["key_hex"]), "vector")


def _ciphertext(case: dict[str, Any]) -> bytes:
    """The vector's ciphertext: stored whole for small cases, else re-made and matched by hash."""
    if "ciphertext_hex" in case:
        ciphertext = _h(case["ciphertext_hex"])
    else:
        out = io.BytesIO()
        encrypt_stream(
            _key(case),
            _h(case["associated_data_hex"]),
            io.BytesIO(generate.plaintext_of(case)),
            out.write,
            _salt=_h(case["salt_hex"]),
            _nonce_prefix=_h(case["nonce_prefix_hex"]),
        )
        ciphertext = out.getvalue()
    assert hashlib.sha256(ciphertext).hexdigest() == case["ciphertext_sha256"]
    assert len(ciphertext) == case["ciphertext_size"]
    return ciphertext


def _spec_decrypt(key: bytes, ad: bytes, ciphertext: bytes) -> bytes:
    """Decryption written from the format description alone, sharing no code with modelseal."""
    segment_size, header_size = 1 << 20, 40
    assert ciphertext[0] == header_size
    salt, prefix = ciphertext[1:33], ciphertext[33:40]
    aead = AESGCM(HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=ad).derive(key))
    body = ciphertext[header_size:]
    segments = [body[: segment_size - header_size]]
    segments += [
        body[i : i + segment_size]
        for i in range(segment_size - header_size, len(body), segment_size)
    ]
    out = []
    for index, segment in enumerate(segments):
        last = b"\x01" if index == len(segments) - 1 else b"\x00"
        out.append(aead.decrypt(prefix + index.to_bytes(4, "big") + last, segment, None))
    return b"".join(out)


def test_the_streaming_file_is_what_the_generator_makes() -> None:
    assert generate.streaming_vectors() == STREAMING


def test_the_streaming_cases_cover_one_two_and_three_segments() -> None:
    sizes = [case["ciphertext_size"] for case in STREAMING["cases"]]
    assert 56 in sizes  # the empty plaintext
    assert 1 << 20 in sizes  # first segment exactly full
    assert any(size > 2 << 20 for size in sizes)
    assert (VECTORS / "streaming_aead.json").stat().st_size < 200_000


@_streaming_cases
def test_streaming_vector_is_reproduced_by_modelseal(case: dict[str, Any]) -> None:
    plaintext = generate.plaintext_of(case)
    assert len(plaintext) == case["plaintext_size"]
    out = io.BytesIO()
    encrypt_stream(
        _key(case),
        _h(case["associated_data_hex"]),
        io.BytesIO(plaintext),
        out.write,
        _salt=_h(case["salt_hex"]),
        _nonce_prefix=_h(case["nonce_prefix_hex"]),
    )
    assert hashlib.sha256(out.getvalue()).hexdigest() == case["ciphertext_sha256"]
    if "ciphertext_hex" in case:
        assert out.getvalue().hex() == case["ciphertext_hex"]
    header = out.getvalue()[:40]
    assert header == b"\x28" + _h(case["salt_hex"]) + _h(case["nonce_prefix_hex"])


@_streaming_cases
def test_streaming_vector_decrypts_with_tink(case: dict[str, Any]) -> None:
    ciphertext = _ciphertext(case)
    assert tink_decrypt(
        _key(case), _h(case["associated_data_hex"]), ciphertext
    ) == generate.plaintext_of(case)


@_streaming_cases
def test_streaming_vector_decrypts_with_the_spec_decoder(case: dict[str, Any]) -> None:
    ciphertext = _ciphertext(case)
    plaintext = _spec_decrypt(_h(case["key_hex"]), _h(case["associated_data_hex"]), ciphertext)
    assert plaintext == generate.plaintext_of(case)


@_streaming_cases
def test_streaming_vector_decrypts_with_segment_reader(case: dict[str, Any]) -> None:
    ciphertext, plaintext = _ciphertext(case), generate.plaintext_of(case)
    reader = SegmentReader(_key(case), _h(case["associated_data_hex"]), MemorySource(ciphertext))
    assert reader.plaintext_size == case["plaintext_size"]
    assert reader.read(0, len(plaintext)) == plaintext
    rng = random.Random(case["ciphertext_sha256"])  # noqa: S311 - test data, not secrets
    for _ in range(10):
        offset, length = rng.randrange(len(plaintext) + 1), rng.randrange(70_000)
        assert reader.read(offset, length) == plaintext[offset : offset + length]
    with pytest.raises(DecryptionError):
        SegmentReader(
            _key(case), _h(case["associated_data_hex"]) + b"x", MemorySource(ciphertext)
        ).segment(0)


# --- HPKE key wrapping --------------------------------------------------------------------------


def test_the_key_wrap_file_matches_the_generator() -> None:
    """Deterministic parts are regenerated; the randomized modelseal case is kept as stored."""
    assert generate.key_wrap_vectors(KEY_WRAP) == KEY_WRAP


@_wrap_cases
def test_wrap_vector_unwraps_with_modelseal(case: dict[str, Any]) -> None:
    context = case["context"]
    info = wrap_info(
        key_id=context["key_id"], model_id=context["model_id"], version=context["version"]
    )
    assert info.hex() == case["info_hex"]
    recipient = ImportPrivateKey.from_pem(case["recipient_private_key_pem"].encode())
    key = unwrap_data_key(_h(case["wrapped_hex"]), recipient, key_id=context["key_id"], info=info)
    assert key._secret_bytes().hex() == case["data_key_hex"]
    assert key.key_id == context["key_id"]
    next_version = wrap_info(
        key_id=context["key_id"], model_id=context["model_id"], version=context["version"] + 1
    )
    with pytest.raises(DecryptionError):
        unwrap_data_key(_h(case["wrapped_hex"]), recipient, key_id="x", info=next_version)


@_wrap_cases
def test_wrap_vector_opens_with_pyhpke(case: dict[str, Any]) -> None:
    assert generate.pyhpke_open(case).hex() == case["data_key_hex"]


@_wrap_cases
def test_wrap_vector_keys_agree(case: dict[str, Any]) -> None:
    private = serialization.load_pem_private_key(
        case["recipient_private_key_pem"].encode(), password=None
    )
    assert isinstance(private, x25519.X25519PrivateKey)
    raw = private.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    assert raw.hex() == case["recipient_private_key_hex"]
    public = private.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    assert public.hex() == case["recipient_public_key_hex"]


def _cfrg_private_pem(raw_hex: str) -> bytes:
    return x25519.X25519PrivateKey.from_private_bytes(_h(raw_hex)).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def test_cfrg_vector_is_this_exact_suite() -> None:
    vector = CFRG["vector"]
    assert (vector["mode"], vector["kem_id"], vector["kdf_id"], vector["aead_id"]) == (
        0,
        0x20,
        1,
        2,
    )
    assert vector == generate.CFRG_VECTOR
    assert "cfrg/draft-irtf-cfrg-hpke" in CFRG["source"]


def test_cfrg_vector_is_reproduced_by_pyhpke() -> None:
    """Shows the checker itself implements the suite: same enc and ciphertexts as the vector."""
    vector, suite = CFRG["vector"], generate.PYHPKE_SUITE
    derived = suite.kem.derive_key_pair(_h(vector["ikmR"]))
    assert derived.private_key.to_private_bytes().hex() == vector["skRm"]
    ephemeral = suite.kem.derive_key_pair(_h(vector["ikmE"]))
    assert ephemeral.private_key.to_private_bytes().hex() == vector["skEm"]
    recipient_public = suite.kem.deserialize_public_key(_h(vector["pkRm"]))
    enc, sender = suite.create_sender_context(recipient_public, _h(vector["info"]), eks=ephemeral)
    assert enc.hex() == vector["enc"]
    receiver = suite.create_recipient_context(
        enc, generate.pyhpke_key(vector["skRm"]), _h(vector["info"])
    )
    for encryption in vector["encryptions"]:
        sealed = sender.seal(_h(encryption["pt"]), _h(encryption["aad"]))
        assert sealed.hex() == encryption["ct"]
        assert receiver.open(sealed, _h(encryption["aad"])).hex() == encryption["pt"]
    assert isinstance(ephemeral, KEMKeyPair)


def test_cfrg_vector_unwraps_with_modelseal() -> None:
    """modelseal's KEM decapsulation and key schedule give the vector's key and base nonce."""
    vector, derived = CFRG["vector"], CFRG["derived_single_shot"]
    recipient = ImportPrivateKey.from_pem(_cfrg_private_pem(vector["skRm"]))
    public = serialization.load_pem_public_key(recipient.public_key().to_pem())
    assert isinstance(public, x25519.X25519PublicKey)
    assert (
        public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()
        == vector["pkRm"]
    )

    sealed = AESGCM(_h(vector["key"])).encrypt(
        _h(vector["base_nonce"]), _h(derived["data_key_hex"]), b""
    )
    assert derived["wrapped_hex"] == vector["enc"] + sealed.hex()
    key = unwrap_data_key(
        _h(derived["wrapped_hex"]), recipient, key_id="dk-cfrg", info=_h(vector["info"])
    )
    assert key._secret_bytes().hex() == derived["data_key_hex"]
    with pytest.raises(DecryptionError):  # the info is bound in too
        unwrap_data_key(
            _h(derived["wrapped_hex"]), recipient, key_id="dk-cfrg", info=b"Ode on a Grecian Urn!"
        )
