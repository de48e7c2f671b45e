"""Signing keys: sign/verify per algorithm, cross-checked with PyNaCl and the openssl binary."""

from __future__ import annotations

import copy
import pickle
import subprocess
from pathlib import Path

import nacl.exceptions
import nacl.signing
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa, x25519
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from modelseal.crypto import (
    ALGORITHMS,
    Algorithm,
    KeyFormatError,
    SignatureError,
    SigningKey,
    VerifyingKey,
)

DATA = b'{"files":[],"model_id":"m-1","version":1}'
PASSPHRASE = b"correct horse battery staple"
_KEYS = {algorithm: SigningKey.generate(algorithm) for algorithm in ALGORITHMS}
_DIGEST = {"ecdsa-p256": "-sha256", "ecdsa-p384": "-sha384"}


def _flip(data: bytes, position: int) -> bytes:
    out = bytearray(data)
    out[position] ^= 0x01
    return bytes(out)


def _public_pem(key: VerifyingKey) -> bytes:
    der = key.public_bytes_der()
    return serialization.load_der_public_key(der).public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _openssl(*args: str | Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["openssl", *map(str, args)], capture_output=True, check=False, timeout=30
    )


def test_the_three_algorithms() -> None:
    assert ALGORITHMS == ("ed25519", "ecdsa-p256", "ecdsa-p384")
    assert SigningKey.generate().algorithm == "ed25519"


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_sign_and_verify(algorithm: Algorithm) -> None:
    key = _KEYS[algorithm]
    signature = key.sign(DATA)
    verifying = key.verifying_key()
    assert key.algorithm == verifying.algorithm == algorithm
    verifying.verify(signature, DATA)
    verifying.verify(key.sign(b""), b"")


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_tampered_data_or_signature_raises_signature_error(algorithm: Algorithm) -> None:
    key = _KEYS[algorithm]
    verifying = key.verifying_key()
    signature = key.sign(DATA)
    bad_signatures = [
        _flip(signature, 0),
        _flip(signature, len(signature) // 2),
        _flip(signature, len(signature) - 1),
        signature[:-1],
        signature + b"\x00",
        b"",
        bytes(len(signature)),
    ]
    for bad in bad_signatures:
        with pytest.raises(SignatureError, match="signature verification failed"):
            verifying.verify(bad, DATA)
    for data in (_flip(DATA, 0), _flip(DATA, len(DATA) - 1), DATA + b" ", DATA[:-1], b""):
        with pytest.raises(SignatureError):
            verifying.verify(signature, data)
    other = SigningKey.generate(algorithm).verifying_key()
    with pytest.raises(SignatureError):
        other.verify(signature, DATA)


def test_a_signature_from_another_algorithm_does_not_verify() -> None:
    p256, p384 = _KEYS["ecdsa-p256"], _KEYS["ecdsa-p384"]
    with pytest.raises(SignatureError):
        p384.verifying_key().verify(p256.sign(DATA), DATA)
    with pytest.raises(SignatureError):
        _KEYS["ed25519"].verifying_key().verify(p256.sign(DATA)[:64].ljust(64, b"\x00"), DATA)


# --- independent implementations ----------------------------------------------------------------


def _raw_ed25519_public(key: VerifyingKey) -> bytes:
    public = serialization.load_der_public_key(key.public_bytes_der())
    assert isinstance(public, ed25519.Ed25519PublicKey)
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def test_ed25519_signatures_verify_with_pynacl() -> None:
    key = _KEYS["ed25519"]
    signature = key.sign(DATA)
    assert len(signature) == 64
    nacl_key = nacl.signing.VerifyKey(_raw_ed25519_public(key.verifying_key()))
    assert nacl_key.verify(DATA, signature) == DATA
    with pytest.raises(nacl.exceptions.BadSignatureError):
        nacl_key.verify(_flip(DATA, 3), signature)
    with pytest.raises(nacl.exceptions.BadSignatureError):
        nacl_key.verify(DATA, _flip(signature, 3))


def test_ed25519_signatures_equal_pynacls_for_the_same_seed() -> None:
    """Ed25519 is deterministic: the same seed must give byte-identical signatures."""
    seed = bytes(range(32))
    pem = ed25519.Ed25519PrivateKey.from_private_bytes(seed).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(PASSPHRASE),
    )
    ours = SigningKey.from_pem(pem, PASSPHRASE)
    theirs = nacl.signing.SigningKey(seed)
    assert ours.sign(DATA) == theirs.sign(DATA).signature
    ours.verifying_key().verify(theirs.sign(b"from nacl").signature, b"from nacl")
    assert _raw_ed25519_public(ours.verifying_key()) == bytes(theirs.verify_key)


def test_ed25519_signatures_verify_with_openssl(tmp_path: Path) -> None:
    key = _KEYS["ed25519"]
    (tmp_path / "pub.pem").write_bytes(_public_pem(key.verifying_key()))
    (tmp_path / "data").write_bytes(DATA)
    (tmp_path / "bad").write_bytes(_flip(DATA, 0))
    (tmp_path / "sig").write_bytes(key.sign(DATA))
    verify = ("pkeyutl", "-verify", "-pubin", "-inkey", tmp_path / "pub.pem", "-rawin")
    ok = _openssl(*verify, "-in", tmp_path / "data", "-sigfile", tmp_path / "sig")
    assert ok.returncode == 0, ok.stderr
    assert b"Signature Verified Successfully" in ok.stdout
    bad = _openssl(*verify, "-in", tmp_path / "bad", "-sigfile", tmp_path / "sig")
    assert bad.returncode != 0


@pytest.mark.parametrize("algorithm", ["ecdsa-p256", "ecdsa-p384"])
def test_ecdsa_signatures_verify_with_openssl(algorithm: Algorithm, tmp_path: Path) -> None:
    key = _KEYS[algorithm]
    signature = key.sign(DATA)
    decode_dss_signature(signature)  # DER SEQUENCE { r, s }
    (tmp_path / "pub.pem").write_bytes(_public_pem(key.verifying_key()))
    (tmp_path / "data").write_bytes(DATA)
    (tmp_path / "bad").write_bytes(_flip(DATA, 5))
    (tmp_path / "sig.der").write_bytes(signature)

    def verify(digest: str, data: str) -> subprocess.CompletedProcess[bytes]:
        pub, sig = tmp_path / "pub.pem", tmp_path / "sig.der"
        return _openssl("dgst", digest, "-verify", pub, "-signature", sig, tmp_path / data)

    ok = verify(_DIGEST[algorithm], "data")
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == b"Verified OK"
    assert verify(_DIGEST[algorithm], "bad").returncode != 0
    other_digest = "-sha384" if algorithm == "ecdsa-p256" else "-sha256"
    assert verify(other_digest, "data").returncode != 0  # the hash is part of the algorithm


@pytest.mark.parametrize(("curve", "digest"), [("P-256", "-sha256"), ("P-384", "-sha384")])
def test_keys_and_signatures_made_by_openssl_are_accepted(
    tmp_path: Path, curve: str, digest: str
) -> None:
    key_pem, data = tmp_path / "key.pem", tmp_path / "data"
    data.write_bytes(DATA)
    made = _openssl(
        "genpkey", "-algorithm", "EC", "-pkeyopt", f"ec_paramgen_curve:{curve}",
        "-aes-256-cbc", "-pass", "pass:" + PASSPHRASE.decode(), "-out", key_pem,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    signed = _openssl(
        "dgst", digest, "-sign", key_pem, "-passin", "pass:" + PASSPHRASE.decode(), data
    )
    assert signed.returncode == 0, signed.stderr
    key = SigningKey.from_pem(key_pem.read_bytes(), PASSPHRASE)
    assert key.algorithm == ("ecdsa-p256" if curve == "P-256" else "ecdsa-p384")
    key.verifying_key().verify(signed.stdout, DATA)
    with pytest.raises(SignatureError):
        key.verifying_key().verify(signed.stdout, _flip(DATA, 1))


# --- key files ----------------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_pem_round_trip(algorithm: Algorithm) -> None:
    key = _KEYS[algorithm]
    pem = key.to_pem(PASSPHRASE)
    assert pem.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    loaded = SigningKey.from_pem(pem, PASSPHRASE)
    assert loaded.algorithm == algorithm
    assert loaded.verifying_key() == key.verifying_key()
    key.verifying_key().verify(loaded.sign(DATA), DATA)
    public = VerifyingKey.from_pem(_public_pem(key.verifying_key()))
    assert public == key.verifying_key()
    assert hash(public) == hash(key.verifying_key())
    public.verify(key.sign(DATA), DATA)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_wrong_or_missing_passphrase_is_key_format_error(algorithm: Algorithm) -> None:
    pem = _KEYS[algorithm].to_pem(PASSPHRASE)
    with pytest.raises(KeyFormatError, match="wrong passphrase"):
        SigningKey.from_pem(pem, b"wrong")
    with pytest.raises(KeyFormatError):
        SigningKey.from_pem(pem, None)


def test_an_unencrypted_key_given_a_passphrase_is_key_format_error() -> None:
    pem = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    assert SigningKey.from_pem(pem, None).algorithm == "ed25519"
    with pytest.raises(KeyFormatError):
        SigningKey.from_pem(pem, PASSPHRASE)


def test_empty_passphrase_is_refused() -> None:
    with pytest.raises(KeyFormatError, match="empty passphrase"):
        _KEYS["ed25519"].to_pem(b"")


def test_garbage_is_key_format_error() -> None:
    for data in (
        b"",
        b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        b"\x00" * 40,
    ):
        with pytest.raises(KeyFormatError):
            SigningKey.from_pem(data, PASSPHRASE)
        with pytest.raises(KeyFormatError):
            VerifyingKey.from_pem(data)


def _pkcs8(
    private: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | x25519.X25519PrivateKey,
) -> bytes:
    return private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(PASSPHRASE),
    )


@pytest.mark.parametrize("kind", ["rsa", "p521", "secp256k1", "x25519"])
def test_unsupported_key_types_are_refused(kind: str) -> None:
    private: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | x25519.X25519PrivateKey
    if kind == "rsa":
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    elif kind == "x25519":
        private = x25519.X25519PrivateKey.generate()
    else:
        private = ec.generate_private_key(ec.SECP521R1() if kind == "p521" else ec.SECP256K1())
    with pytest.raises(KeyFormatError, match="unsupported"):
        SigningKey.from_pem(_pkcs8(private), PASSPHRASE)
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with pytest.raises(KeyFormatError, match="unsupported"):
        VerifyingKey.from_pem(public_pem)


def test_unknown_algorithm_is_refused() -> None:
    with pytest.raises(KeyFormatError, match="unknown algorithm"):
        SigningKey.generate("rsa-2048")  # type: ignore[arg-type]


# --- opaque handles -----------------------------------------------------------------------------


def test_no_public_constructors() -> None:
    private = ed25519.Ed25519PrivateKey.generate()
    with pytest.raises(TypeError, match="SigningKey"):
        SigningKey(object(), private)
    with pytest.raises(TypeError, match="no public constructor"):
        VerifyingKey(object(), private.public_key())


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_signing_keys_cannot_be_pickled_or_printed(algorithm: Algorithm) -> None:
    key = _KEYS[algorithm]
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        with pytest.raises(TypeError, match="cannot be pickled"):
            pickle.dumps(key, protocol=protocol)
    with pytest.raises(TypeError):
        copy.deepcopy(key)
    private = key._private_key()
    secrets_as_text = [
        private.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).hex()
    ]
    if isinstance(private, ec.EllipticCurvePrivateKey):
        secrets_as_text += [
            str(private.private_numbers().private_value),
            hex(private.private_numbers().private_value),
        ]
    for text in (repr(key), str(key)):
        assert text == f"SigningKey({algorithm}, <private>)"
        assert not any(secret in text for secret in secrets_as_text)
    assert repr(key.verifying_key()) == f"VerifyingKey({algorithm})"
    assert not hasattr(key, "__dict__")
