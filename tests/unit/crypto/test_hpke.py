"""Sealing a released data key to a one-time key (X25519 and ML-KEM-768 + X25519), and MAC keys."""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric import mlkem, x25519
from pyhpke import AEADId, CipherSuite, KDFId, KEMId, KEMKey

from modelseal.crypto import DataKey, DecryptionError, KeyFormatError
from modelseal.crypto.hpke import (
    KEMS,
    PUBLIC_KEY_SIZES,
    EphemeralPrivateKey,
    EphemeralPublicKey,
    open_data_key,
    release_info,
    seal_data_key,
)
from modelseal.crypto.mac import MacKey

INFO = release_info(device="dev-1", license="lic-1", model="iris", version=2, lease_expires=100)


def test_release_info_is_a_label_then_canonical_json() -> None:
    label, _, body = INFO.partition(b"\x00")
    assert label == b"modelseal/v1 key-release"
    assert json.loads(body) == {
        "device": "dev-1",
        "lease_expires": 100,
        "license": "lic-1",
        "model": "iris",
        "version": 2,
    }
    assert (
        body
        == b'{"device":"dev-1","lease_expires":100,"license":"lic-1","model":"iris","version":2}'
    )


@pytest.mark.parametrize("kem", KEMS)
def test_round_trip(kem: str) -> None:
    key = DataKey.generate()
    private = EphemeralPrivateKey.generate(kem)
    public = EphemeralPublicKey.from_bytes(private.public_bytes(), kem=kem)
    assert len(private.public_bytes()) == PUBLIC_KEY_SIZES[public.kem]
    sealed = seal_data_key(key, public, info=INFO)
    assert open_data_key(sealed, private, info=INFO, key_id=key.key_id) == key
    assert sealed != seal_data_key(key, public, info=INFO)  # a fresh encapsulation each time
    other_info = release_info(
        device="dev-2", license="lic-1", model="iris", version=2, lease_expires=100
    )
    wrong_key = EphemeralPrivateKey.generate(kem)
    refused: list[Callable[[], DataKey]] = [
        lambda: open_data_key(sealed, private, info=other_info, key_id=key.key_id),
        lambda: open_data_key(sealed, wrong_key, info=INFO, key_id=key.key_id),
        lambda: open_data_key(sealed[:-1], private, info=INFO, key_id=key.key_id),
    ]
    for call in refused:
        with pytest.raises(DecryptionError):
            call()


def test_x25519_interoperates_with_pyhpke() -> None:
    """pyhpke, an independent HPKE, opens what we seal to a raw X25519 key."""
    key = DataKey.generate()
    receiver = x25519.X25519PrivateKey.generate()
    public = EphemeralPublicKey.from_bytes(receiver.public_key().public_bytes_raw(), kem="x25519")
    sealed = seal_data_key(key, public, info=INFO)
    suite = CipherSuite.new(KEMId.DHKEM_X25519_HKDF_SHA256, KDFId.HKDF_SHA256, AEADId.AES256_GCM)
    skr = KEMKey.from_pyca_cryptography_key(receiver)
    recipient = suite.create_recipient_context(sealed[:32], skr, info=INFO)
    assert recipient.open(sealed[32:]) == key._secret_bytes()


def test_the_hybrid_public_key_is_mlkem_then_x25519() -> None:
    """The X-Wing encoding: ML-KEM-768 encapsulation key (1184 bytes), then X25519 (32)."""
    m_key, x_key = mlkem.MLKEM768PrivateKey.generate(), x25519.X25519PrivateKey.generate()
    raw = m_key.public_key().public_bytes_raw() + x_key.public_key().public_bytes_raw()
    public = EphemeralPublicKey.from_bytes(raw, kem="mlkem768-x25519")
    key = DataKey.generate()
    sealed = seal_data_key(key, public, info=INFO)
    suite = hpke.Suite(hpke.KEM.MLKEM768_X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM)
    private = hpke.MLKEM768X25519PrivateKey(m_key, x_key)
    assert suite.decrypt(sealed, private, info=INFO) == key._secret_bytes()


@pytest.mark.parametrize(
    ("raw", "kem", "message"),
    [
        (bytes(31), "x25519", "a x25519 public key has 32 bytes, not 31"),
        (b"\xff" * 1216, "mlkem768-x25519", "is not valid"),
        (bytes(32), "rsa", "unknown key encapsulation 'rsa'"),
    ],
)
def test_bad_public_keys(raw: bytes, kem: str, message: str) -> None:
    with pytest.raises(KeyFormatError, match=message):
        EphemeralPublicKey.from_bytes(raw, kem=kem)


def test_a_small_order_point_cannot_be_sealed_to() -> None:
    public = EphemeralPublicKey.from_bytes(bytes(32), kem="x25519")
    with pytest.raises(KeyFormatError, match="cannot be used"):
        seal_data_key(DataKey.generate(), public, info=INFO)


def test_handles_are_opaque() -> None:
    private = EphemeralPrivateKey.generate()
    assert "private" in repr(private)
    with pytest.raises(TypeError):
        pickle.dumps(private)
    with pytest.raises(TypeError):
        EphemeralPrivateKey(object(), "x25519", x25519.X25519PrivateKey.generate(), b"")
    with pytest.raises(ValueError, match="info"):
        seal_data_key(
            DataKey.generate(),
            EphemeralPublicKey.from_bytes(private.public_bytes(), kem="x25519"),
            info=b"",
        )


def test_mac_keys_are_per_label_and_opaque() -> None:
    key = DataKey.generate()
    audit = MacKey.derive(key, label="audit")
    assert audit.hexdigest(b"x") == MacKey.derive(key, label="audit").hexdigest(b"x")
    assert audit.hexdigest(b"x") != MacKey.derive(key, label="other").hexdigest(b"x")
    assert audit.hexdigest(b"x") != audit.hexdigest(b"y")
    assert len(audit.hexdigest(b"")) == 64
    assert "secret" in repr(audit) and key._secret_bytes().hex() not in repr(audit)
    with pytest.raises(TypeError):
        pickle.dumps(audit)
    with pytest.raises(ValueError, match="label"):
        MacKey.derive(key, label="")
