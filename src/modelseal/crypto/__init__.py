"""The crypto core: the only place that touches ``cryptography.hazmat``.

Everyday code uses the recipes here (streaming AEAD, signing keys, certificates, key wrapping,
canonical JSON); none of them has an algorithm knob it does not need.
"""

from modelseal.crypto.canonical import canonical_json, parse_canonical_json
from modelseal.crypto.datakey import DataKey, dump_data_key, load_data_key
from modelseal.crypto.errors import (
    CryptoError,
    DecryptionError,
    FormatError,
    KeyFormatError,
    SignatureError,
)
from modelseal.crypto.signing import ALGORITHMS, Algorithm, SigningKey, VerifyingKey
from modelseal.crypto.streaming import (
    SEGMENT_SIZE,
    SUITE,
    PositionalSource,
    SegmentReader,
    ciphertext_size,
    encrypt_stream,
    plaintext_size,
)
from modelseal.crypto.wrap import (
    WRAP_ALGORITHM,
    ImportPrivateKey,
    ImportPublicKey,
    unwrap_data_key,
    wrap_data_key,
    wrap_info,
)
from modelseal.crypto.x509 import (
    Certificate,
    create_csr,
    create_self_signed,
    load_certificates,
    parse_subject,
    public_key_matches,
    verify_chain,
)

__all__ = [
    "ALGORITHMS",
    "SEGMENT_SIZE",
    "SUITE",
    "WRAP_ALGORITHM",
    "Algorithm",
    "Certificate",
    "CryptoError",
    "DataKey",
    "DecryptionError",
    "FormatError",
    "ImportPrivateKey",
    "ImportPublicKey",
    "KeyFormatError",
    "PositionalSource",
    "SegmentReader",
    "SignatureError",
    "SigningKey",
    "VerifyingKey",
    "canonical_json",
    "ciphertext_size",
    "create_csr",
    "create_self_signed",
    "dump_data_key",
    "encrypt_stream",
    "load_certificates",
    "load_data_key",
    "parse_canonical_json",
    "parse_subject",
    "plaintext_size",
    "public_key_matches",
    "unwrap_data_key",
    "verify_chain",
    "wrap_data_key",
    "wrap_info",
]
