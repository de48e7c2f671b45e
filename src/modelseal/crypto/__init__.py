"""The crypto core: the only place that touches ``cryptography.hazmat``.

Everyday code uses the recipes here (streaming AEAD, signing keys, certificates, key wrapping,
canonical JSON); none of them has an algorithm knob it does not need.
"""

from modelseal.crypto.ca import (
    ROLES,
    CertificateAuthority,
    Role,
    ca_pin,
    certificate_role,
    create_ca,
    csr_public_key,
    issue_from_csr,
    issue_server_cert,
    private_key_pem_unencrypted,
    spki_sha256,
)
from modelseal.crypto.canonical import canonical_json, parse_canonical_json
from modelseal.crypto.datakey import DataKey, dump_data_key, load_data_key
from modelseal.crypto.errors import (
    CryptoError,
    DecryptionError,
    FormatError,
    KeyFormatError,
    SignatureError,
)
from modelseal.crypto.jose import (
    jwk_of,
    jwk_thumbprint,
    jwks,
    keys_from_jwks,
    sign_jws,
    verify_jws,
)
from modelseal.crypto.sealedbox import open_bytes, seal_bytes
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
    "ROLES",
    "SEGMENT_SIZE",
    "SUITE",
    "WRAP_ALGORITHM",
    "Algorithm",
    "Certificate",
    "CertificateAuthority",
    "CryptoError",
    "DataKey",
    "DecryptionError",
    "FormatError",
    "ImportPrivateKey",
    "ImportPublicKey",
    "KeyFormatError",
    "PositionalSource",
    "Role",
    "SegmentReader",
    "SignatureError",
    "SigningKey",
    "VerifyingKey",
    "ca_pin",
    "canonical_json",
    "certificate_role",
    "ciphertext_size",
    "create_ca",
    "create_csr",
    "create_self_signed",
    "csr_public_key",
    "dump_data_key",
    "encrypt_stream",
    "issue_from_csr",
    "issue_server_cert",
    "jwk_of",
    "jwk_thumbprint",
    "jwks",
    "keys_from_jwks",
    "load_certificates",
    "load_data_key",
    "open_bytes",
    "parse_canonical_json",
    "parse_subject",
    "plaintext_size",
    "private_key_pem_unencrypted",
    "public_key_matches",
    "seal_bytes",
    "sign_jws",
    "spki_sha256",
    "unwrap_data_key",
    "verify_chain",
    "verify_jws",
    "wrap_data_key",
    "wrap_info",
]
