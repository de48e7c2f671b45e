"""HPKE key wrapping: round trips, context binding, tampering, and pyhpke in both directions."""

from __future__ import annotations

import hashlib
import json
import pickle

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, x25519
from pyhpke import AEADId, CipherSuite, KDFId, KEMId, KEMKey, OpenError

from modelseal.crypto import (
    WRAP_ALGORITHM,
    DataKey,
    DecryptionError,
    ImportPrivateKey,
    ImportPublicKey,
    KeyFormatError,
    unwrap_data_key,
    wrap_data_key,
    wrap_info,
)

PYHPKE_SUITE = CipherSuite.new(KEMId.DHKEM_X25519_HKDF_SHA256, KDFId.HKDF_SHA256, AEADId.AES256_GCM)
INFO = wrap_info(key_id="dk-1", model_id="m-1", version=3)


def _private_x25519(key: ImportPrivateKey) -> x25519.X25519PrivateKey:
    loaded = serialization.load_pem_private_key(key.to_pem(None), password=None)
    assert isinstance(loaded, x25519.X25519PrivateKey)
    return loaded


def _flip(data: bytes, position: int) -> bytes:
    out = bytearray(data)
    out[position] ^= 0x01
    return bytes(out)


@pytest.fixture(scope="module")
def recipient() -> ImportPrivateKey:
    return ImportPrivateKey.generate()


def test_algorithm_name() -> None:
    assert WRAP_ALGORITHM == "HPKE-Base-X25519-SHA256-AES256GCM"


def test_wrap_info_is_a_label_then_canonical_json() -> None:
    assert INFO == b'modelseal/v1 data-key-wrap\x00{"key_id":"dk-1","model_id":"m-1","version":3}'
    label, _, body = INFO.partition(b"\x00")
    assert json.loads(body) == {"key_id": "dk-1", "model_id": "m-1", "version": 3}
    assert label == b"modelseal/v1 data-key-wrap"
    assert wrap_info(version=3, model_id="m-1", key_id="dk-1") == INFO


def test_round_trip(recipient: ImportPrivateKey) -> None:
    key = DataKey.generate()
    wrapped = wrap_data_key(key, recipient.public_key(), info=INFO)
    assert len(wrapped) == 32 + 32 + 16  # enc ‖ AES-256-GCM(data key) ‖ tag
    unwrapped = unwrap_data_key(wrapped, recipient, key_id=key.key_id, info=INFO)
    assert unwrapped == key
    assert unwrapped.key_id == key.key_id


def test_every_wrap_is_fresh(recipient: ImportPrivateKey) -> None:
    key = DataKey.generate()
    first = wrap_data_key(key, recipient.public_key(), info=INFO)
    second = wrap_data_key(key, recipient.public_key(), info=INFO)
    assert first[:32] != second[:32]  # a new ephemeral key each time
    assert first != second


@pytest.mark.parametrize(
    "context",
    [
        {"key_id": "dk-2", "model_id": "m-1", "version": 3},
        {"key_id": "dk-1", "model_id": "m-2", "version": 3},
        {"key_id": "dk-1", "model_id": "m-1", "version": 4},
    ],
)
def test_a_wrapped_key_does_not_open_in_another_context(
    recipient: ImportPrivateKey, context: dict[str, str | int]
) -> None:
    wrapped = wrap_data_key(DataKey.generate(), recipient.public_key(), info=INFO)
    other = wrap_info(
        key_id=str(context["key_id"]),
        model_id=str(context["model_id"]),
        version=int(context["version"]),
    )
    assert other != INFO
    with pytest.raises(DecryptionError):
        unwrap_data_key(wrapped, recipient, key_id="dk-1", info=other)
    for info in (b"", INFO[:-1], INFO + b" "):
        with pytest.raises(DecryptionError):
            unwrap_data_key(wrapped, recipient, key_id="dk-1", info=info)


def test_another_recipient_cannot_unwrap(recipient: ImportPrivateKey) -> None:
    wrapped = wrap_data_key(DataKey.generate(), recipient.public_key(), info=INFO)
    with pytest.raises(DecryptionError):
        unwrap_data_key(wrapped, ImportPrivateKey.generate(), key_id="dk-1", info=INFO)


def test_tampered_or_truncated_wraps_are_refused(recipient: ImportPrivateKey) -> None:
    wrapped = wrap_data_key(DataKey.generate(), recipient.public_key(), info=INFO)
    variants = [_flip(wrapped, position) for position in (0, 31, 32, 50, 63, 64, 79)]
    variants += [wrapped[:-1], wrapped[:32], wrapped[:31], b"", wrapped + b"\x00", bytes(80)]
    for bad in variants:
        with pytest.raises(DecryptionError) as info:
            unwrap_data_key(bad, recipient, key_id="dk-1", info=INFO)
        assert info.value.segment is None


def test_a_wrapped_secret_of_the_wrong_size_is_refused(recipient: ImportPrivateKey) -> None:
    public = KEMKey.from_pyca_cryptography_key(_private_x25519(recipient).public_key())
    enc, sender = PYHPKE_SUITE.create_sender_context(public, INFO)
    # Anyone holding the public import key can make such a blob (HPKE base mode has no sender
    # authentication); it must get the same fixed refusal as any other bad wrapped key.
    with pytest.raises(DecryptionError, match="authentication"):
        unwrap_data_key(enc + sender.seal(bytes(16)), recipient, key_id="dk-1", info=INFO)


# --- pyhpke, an independent HPKE implementation --------------------------------------------------


def test_pyhpke_opens_what_we_wrap(recipient: ImportPrivateKey) -> None:
    key = DataKey.generate()
    wrapped = wrap_data_key(key, recipient.public_key(), info=INFO)
    private = KEMKey.from_pyca_cryptography_key(_private_x25519(recipient))
    opened = PYHPKE_SUITE.create_recipient_context(wrapped[:32], private, INFO).open(wrapped[32:])
    assert opened == key._secret_bytes()
    with pytest.raises(OpenError):
        PYHPKE_SUITE.create_recipient_context(wrapped[:32], private, INFO + b"x").open(wrapped[32:])


def test_we_unwrap_what_pyhpke_seals(recipient: ImportPrivateKey) -> None:
    secret = bytes(range(7, 39))
    public = KEMKey.from_pyca_cryptography_key(_private_x25519(recipient).public_key())
    enc, sender = PYHPKE_SUITE.create_sender_context(public, INFO)
    wrapped = enc + sender.seal(secret)
    assert unwrap_data_key(wrapped, recipient, key_id="dk-9", info=INFO)._secret_bytes() == secret
    # pyhpke's second message (sequence number 1) uses another nonce: not a valid single-shot wrap
    with pytest.raises(DecryptionError):
        unwrap_data_key(enc + sender.seal(secret), recipient, key_id="dk-9", info=INFO)
    # and non-empty AEAD associated data is not what modelseal writes either
    enc, sender = PYHPKE_SUITE.create_sender_context(public, INFO)
    with pytest.raises(DecryptionError):
        unwrap_data_key(enc + sender.seal(secret, b"aad"), recipient, key_id="dk-9", info=INFO)


# --- import keys --------------------------------------------------------------------------------


def test_public_key_pem_round_trip_and_key_id(recipient: ImportPrivateKey) -> None:
    public = recipient.public_key()
    pem = public.to_pem()
    assert pem.startswith(b"-----BEGIN PUBLIC KEY-----")
    again = ImportPublicKey.from_pem(pem)
    der = serialization.load_pem_public_key(pem).public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert again.key_id == public.key_id == hashlib.sha256(der).hexdigest()
    assert repr(public) == f"ImportPublicKey({public.key_id[:16]}…)"
    key = DataKey.generate()
    assert (
        unwrap_data_key(
            wrap_data_key(key, again, info=INFO), recipient, key_id=key.key_id, info=INFO
        )
        == key
    )


def test_private_key_pem_round_trip(recipient: ImportPrivateKey) -> None:
    plain = recipient.to_pem(None)
    assert plain.startswith(b"-----BEGIN PRIVATE KEY-----")
    encrypted = recipient.to_pem(b"vault passphrase")
    assert encrypted.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    for loaded in (
        ImportPrivateKey.from_pem(plain),
        ImportPrivateKey.from_pem(encrypted, b"vault passphrase"),
    ):
        assert loaded.public_key().key_id == recipient.public_key().key_id
    with pytest.raises(KeyFormatError):
        ImportPrivateKey.from_pem(encrypted, b"wrong")
    with pytest.raises(KeyFormatError):
        ImportPrivateKey.from_pem(encrypted)
    with pytest.raises(KeyFormatError):
        ImportPrivateKey.from_pem(plain, b"not needed")


def test_keys_of_the_wrong_type_are_refused() -> None:
    ed = ed25519.Ed25519PrivateKey.generate()
    private_pem = ed.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public_pem = ed.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with pytest.raises(KeyFormatError, match="X25519"):
        ImportPrivateKey.from_pem(private_pem)
    with pytest.raises(KeyFormatError, match="X25519"):
        ImportPublicKey.from_pem(public_pem)
    for garbage in (b"", b"-----BEGIN PUBLIC KEY-----\n-----END PUBLIC KEY-----\n"):
        with pytest.raises(KeyFormatError):
            ImportPublicKey.from_pem(garbage)
        with pytest.raises(KeyFormatError):
            ImportPrivateKey.from_pem(garbage)


def test_import_keys_are_opaque(recipient: ImportPrivateKey) -> None:
    raw = _private_x25519(recipient).private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    assert repr(recipient) == str(recipient) == "ImportPrivateKey(<private>)"
    assert raw.hex() not in repr(recipient)
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        with pytest.raises(TypeError, match="cannot be pickled"):
            pickle.dumps(recipient, protocol=protocol)
    with pytest.raises(TypeError, match="ImportPrivateKey"):
        ImportPrivateKey(object(), x25519.X25519PrivateKey.generate())
    with pytest.raises(TypeError, match="ImportPublicKey"):
        ImportPublicKey(object(), x25519.X25519PrivateKey.generate().public_key())
