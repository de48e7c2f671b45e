"""The vault's certificate authority: device and admin client certificates, the TLS server certificate.

The CA and the server use ECDSA P-256: Python's ``ssl`` (OpenSSL 3) also accepts Ed25519
certificates for TLS 1.2 and 1.3, but browsers, many TLS stacks and most hardware key stores do
not, and P-256 costs nothing here. Device keys in CSRs may be ECDSA P-256, P-384 or Ed25519.

A certificate's role (``device`` or ``admin``) is its subject's ``OU``, always set by the CA and
never taken from the request. The pin of a CA is ``sha256:<hex>`` over its SubjectPublicKeyInfo,
the form of ``kubeadm join --discovery-token-ca-cert-hash``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
from typing import Literal, get_args

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from modelseal.crypto.errors import CryptoError, KeyFormatError, SignatureError
from modelseal.crypto.signing import Algorithm, SigningKey, VerifyingKey
from modelseal.crypto.x509 import Certificate, parse_subject

__all__ = [
    "ROLES",
    "CertificateAuthority",
    "Role",
    "ca_pin",
    "certificate_role",
    "create_ca",
    "csr_public_key",
    "issue_from_csr",
    "issue_server_cert",
    "private_key_pem_unencrypted",
    "spki_sha256",
]

Role = Literal["device", "admin"]
ROLES: tuple[Role, ...] = get_args(Role)
_CA_ALGORITHM: Algorithm = "ecdsa-p256"
_BACKDATE = dt.timedelta(minutes=5)  # tolerate clocks a little behind the vault's
_PIN_PREFIX = "sha256:"
_MAX_SERIAL = 1 << 159  # RFC 5280: at most 20 octets, positive
_LeafPublicKey = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey


class CertificateAuthority:
    """A CA signing key and its self-signed certificate, checked to belong together."""

    __slots__ = ("_key", "certificate")

    def __init__(self, key: SigningKey, certificate: Certificate) -> None:
        if not certificate.is_ca():
            raise KeyFormatError(f"certificate {certificate.subject!r} is not a CA certificate")
        if certificate.verifying_key() != key.verifying_key():
            raise KeyFormatError(
                f"the CA key does not belong to the CA certificate {certificate.subject!r}"
            )
        self._key = key
        self.certificate = certificate

    @property
    def key(self) -> SigningKey:
        return self._key

    @property
    def pin(self) -> str:
        """``sha256:<hex>`` of the CA's SubjectPublicKeyInfo (see :func:`ca_pin`)."""
        return ca_pin(self.certificate)

    def __repr__(self) -> str:
        return f"CertificateAuthority(subject={self.certificate.subject!r}, pin={self.pin[:23]}…)"


def create_ca(subject: str, *, days: int, now: dt.datetime) -> CertificateAuthority:
    """A new CA (ECDSA P-256) with a self-signed certificate valid for ``days`` from ``now``."""
    if days <= 0:
        raise CryptoError(f"a CA must be valid for at least one day, not {days}")
    key = SigningKey.generate(_CA_ALGORITHM)
    name = parse_subject(subject)
    public = key.verifying_key()._key
    ski = x509.SubjectKeyIdentifier.from_public_key(public)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
        .sign(key._private_key(), hashes.SHA256())
    )
    return CertificateAuthority(key, Certificate(cert))


def csr_public_key(csr_pem: bytes) -> VerifyingKey:
    """The public key of a PEM CSR whose self-signature verifies; raises otherwise."""
    return VerifyingKey._wrap(_load_csr(csr_pem)[1])


def issue_from_csr(
    ca: CertificateAuthority,
    csr_pem: bytes,
    *,
    subject_override: str | None,
    role: Role,
    days: int,
    now: dt.datetime,
    serial: int | None = None,
) -> Certificate:
    """A TLS client certificate for the key in ``csr_pem``, with role ``role``.

    Only the CSR's key (and, without ``subject_override``, its subject) is used: requested
    extensions are ignored and any ``OU`` is replaced by the role. Validity ends at the CA's.
    """
    if role not in ROLES:
        raise CryptoError(f"unknown certificate role {role!r}; choose one of {', '.join(ROLES)}")
    csr, public = _load_csr(csr_pem)
    if subject_override is not None:
        base = parse_subject(subject_override)
    elif csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME):
        base = csr.subject
    else:
        raise KeyFormatError("the CSR subject needs a CN= part")
    keep = [attr for attr in base if attr.oid != NameOID.ORGANIZATIONAL_UNIT_NAME]
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, role), *keep])
    eku = ExtendedKeyUsageOID.CLIENT_AUTH
    return _issue_leaf(ca, public, subject, eku, [], days=days, now=now, serial=serial)


def issue_server_cert(
    ca: CertificateAuthority,
    key: SigningKey,
    *,
    hosts: list[str],
    days: int,
    now: dt.datetime,
) -> Certificate:
    """A TLS server certificate for ``key`` naming ``hosts`` (DNS names and IP addresses)."""
    if not hosts:
        raise CryptoError("a server certificate needs at least one host name or IP address")
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            if not host or any(c.isspace() or c in "/:@" for c in host):
                raise CryptoError(f"{host!r} is neither a DNS name nor an IP address") from None
            names.append(x509.DNSName(host))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])])
    public = key.verifying_key()._key
    eku = ExtendedKeyUsageOID.SERVER_AUTH
    return _issue_leaf(ca, public, subject, eku, names, days=days, now=now, serial=None)


def certificate_role(cert: Certificate) -> Role | None:
    """The role the CA gave ``cert`` (its single ``OU``), or ``None`` when it has none."""
    values = [
        attr.value
        for attr in cert._cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
    ]
    if len(values) != 1:
        return None
    for role in ROLES:
        if values[0] == role:
            return role
    return None


def spki_sha256(cert: Certificate) -> str:
    """Hex SHA-256 of the certificate's DER SubjectPublicKeyInfo (stable across re-issuing)."""
    spki = cert._cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(spki).hexdigest()


def ca_pin(cert: Certificate) -> str:
    """``sha256:<hex>`` of the CA certificate's SPKI, as ``kubeadm``'s discovery hash."""
    return _PIN_PREFIX + spki_sha256(cert)


def private_key_pem_unencrypted(key: SigningKey) -> bytes:
    """PKCS#8 PEM without encryption, for TLS stacks that read a key file (store it mode 0600)."""
    return key._private_key().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


# --- internals ----------------------------------------------------------------------------------


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not cert_sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _load_csr(csr_pem: bytes) -> tuple[x509.CertificateSigningRequest, _LeafPublicKey]:
    try:
        csr = x509.load_pem_x509_csr(csr_pem)
    except ValueError as exc:
        raise KeyFormatError("the certificate request is not a PEM PKCS#10 CSR") from exc
    try:
        public = csr.public_key()
    except ValueError as exc:  # e.g. a point not on the curve
        raise KeyFormatError("the CSR holds an unreadable public key") from exc
    if not isinstance(public, ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey) or (
        isinstance(public, ec.EllipticCurvePublicKey)
        and public.curve.name not in ("secp256r1", "secp384r1")
    ):
        raise KeyFormatError(
            f"the CSR holds a {_describe(public)} key; device keys must be "
            "ECDSA P-256, ECDSA P-384 or Ed25519"
        )
    if not csr.is_signature_valid:
        raise SignatureError("the CSR signature does not verify: it was altered or is not signed")
    return csr, public


def _describe(public: object) -> str:
    if isinstance(public, ec.EllipticCurvePublicKey):
        return f"ECDSA {public.curve.name}"
    return type(public).__name__.removeprefix("_").replace("PublicKey", "") or "unknown"


def _issue_leaf(
    ca: CertificateAuthority,
    public: _LeafPublicKey,
    subject: x509.Name,
    eku: x509.ObjectIdentifier,
    names: list[x509.GeneralName],
    *,
    days: int,
    now: dt.datetime,
    serial: int | None,
) -> Certificate:
    if days <= 0:
        raise CryptoError(f"a certificate must be valid for at least one day, not {days}")
    ca_cert = ca.certificate
    if not ca_cert.not_before <= now < ca_cert.not_after:
        raise CryptoError(
            f"the CA {ca_cert.subject!r} is not valid at {now:%Y-%m-%d %H:%M} UTC "
            f"(valid {ca_cert.not_before:%Y-%m-%d} to {ca_cert.not_after:%Y-%m-%d})",
            hint="create a new vault CA and re-enrol the devices",
        )
    if serial is not None and not 0 < serial < _MAX_SERIAL:
        raise CryptoError(f"a certificate serial must be positive and below 2**159, not {serial}")
    try:
        ski = ca_cert._cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)
    except x509.ExtensionNotFound:
        aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.verifying_key()._key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert._cert.subject)
        .public_key(public)
        .serial_number(serial if serial is not None else x509.random_serial_number())
        .not_valid_before(max(now - _BACKDATE, ca_cert.not_before))
        .not_valid_after(min(now + dt.timedelta(days=days), ca_cert.not_after))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([eku]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(aki, critical=False)
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    hash_ = None if ca.key.algorithm == "ed25519" else _hash_of(ca.key)
    return Certificate(builder.sign(ca.key._private_key(), hash_))


def _hash_of(key: SigningKey) -> hashes.SHA256 | hashes.SHA384:
    return hashes.SHA256() if key.algorithm == "ecdsa-p256" else hashes.SHA384()
