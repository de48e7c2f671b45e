"""The sealed box: small secrets sealed under a data key and bound to a label."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from hypothesis import given
from hypothesis import strategies as st

from modelseal.crypto import DataKey, DecryptionError, open_bytes, seal_bytes
from modelseal.crypto.sealedbox import SEALED_BOX_MAGIC
from tests.conftest import expect_error

KEY = DataKey.generate()
LABEL = "modelseal vault home: secrets/ca-key.pem.sealed"
FIXED = "ciphertext failed authentication"


@given(data=st.binary(max_size=4096), label=st.text(min_size=1, max_size=80))
def test_round_trip(data: bytes, label: str) -> None:
    blob = seal_bytes(KEY, data, label=label)
    assert blob.startswith(SEALED_BOX_MAGIC)
    assert len(blob) == 4 + 12 + len(data) + 16
    assert open_bytes(KEY, blob, label=label) == data


def test_layout_matches_the_documented_recipe() -> None:
    """An independent recomputation: HKDF-SHA256(info = prefix ‖ label), AES-256-GCM, AAD = magic."""
    blob = seal_bytes(KEY, b"secret pem", label=LABEL)
    derived = HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=None,
        info=b"modelseal/v1 sealed-box\x00" + LABEL.encode(),
    ).derive(KEY._secret_bytes())
    assert AESGCM(derived).decrypt(blob[4:16], blob[16:], b"MSB1") == b"secret pem"


def test_every_seal_uses_a_fresh_nonce() -> None:
    assert seal_bytes(KEY, b"x", label=LABEL) != seal_bytes(KEY, b"x", label=LABEL)


def test_wrong_label_or_key_is_refused() -> None:
    blob = seal_bytes(KEY, b"secret", label=LABEL)
    expect_error(DecryptionError, lambda: open_bytes(KEY, blob, label=LABEL + "x"), FIXED)
    expect_error(DecryptionError, lambda: open_bytes(DataKey.generate(), blob, label=LABEL), FIXED)


@pytest.mark.parametrize("position", [0, 3, 4, 15, 16, 20, -1])
def test_any_flipped_byte_is_refused(position: int) -> None:
    blob = bytearray(seal_bytes(KEY, b"secret data", label=LABEL))
    blob[position] ^= 0x01
    expect_error(DecryptionError, lambda: open_bytes(KEY, bytes(blob), label=LABEL), FIXED)


@pytest.mark.parametrize("length", [0, 4, 16, 31])
def test_truncated_blob_is_refused(length: int) -> None:
    blob = seal_bytes(KEY, b"", label=LABEL)
    assert len(blob) == 32
    expect_error(DecryptionError, lambda: open_bytes(KEY, blob[:length], label=LABEL), FIXED)


def test_empty_label_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="non-empty label"):
        seal_bytes(KEY, b"x", label="")
