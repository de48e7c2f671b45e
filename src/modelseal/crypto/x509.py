"""X.509 certificates and CSRs for signing keys, and chain checks.

Only standard encodings (PEM, DER), so ``openssl x509`` / ``openssl req`` read every file.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from modelseal.crypto.errors import KeyFormatError, SignatureError
from modelseal.crypto.signing import SigningKey, VerifyingKey

__all__ = [
    "Certificate",
    "create_csr",
    "create_self_signed",
    "load_certificates",
    "parse_subject",
    "public_key_matches",
    "verify_chain",
]


class Certificate:
    """An X.509 certificate (a thin, typed view over ``cryptography.x509``)."""

    __slots__ = ("_cert", "_fingerprint")

    def __init__(self, cert: x509.Certificate) -> None:
        self._cert = cert

    @property
    def subject(self) -> str:
        return self._cert.subject.rfc4514_string()

    @property
    def issuer(self) -> str:
        return self._cert.issuer.rfc4514_string()

    @property
    def not_before(self) -> dt.datetime:
        return self._cert.not_valid_before_utc

    @property
    def not_after(self) -> dt.datetime:
        return self._cert.not_valid_after_utc

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the DER encoding, hex (what ``openssl x509 -fingerprint -sha256`` shows)."""
        try:
            return self._fingerprint
        except AttributeError:  # computed once: the vault asks for it on every device request
            self._fingerprint: str = hashlib.sha256(self.der()).hexdigest()
            return self._fingerprint

    def der(self) -> bytes:
        return self._cert.public_bytes(serialization.Encoding.DER)

    def pem(self) -> bytes:
        return self._cert.public_bytes(serialization.Encoding.PEM)

    def verifying_key(self) -> VerifyingKey:
        try:
            key = self._cert.public_key()
        except (ValueError, UnsupportedAlgorithm) as exc:  # e.g. a point not on the curve
            raise KeyFormatError(
                f"certificate {self.subject!r} holds an unreadable public key"
            ) from exc
        return VerifyingKey._wrap(key)

    def is_ca(self) -> bool:
        try:
            return bool(
                self._cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
            )
        except x509.ExtensionNotFound:
            return False

    def is_self_signed(self) -> bool:
        return self._cert.issuer == self._cert.subject and _directly_issued(self, self)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Certificate) and self.der() == other.der()

    def __hash__(self) -> int:
        return hash(self.der())

    def __repr__(self) -> str:
        return f"Certificate(subject={self.subject!r}, sha256={self.fingerprint[:16]}…)"


def parse_subject(text: str) -> x509.Name:
    """Parse ``"CN=Acme Models,O=Acme"`` (RFC 4514; ``/`` separators as openssl prints also work)."""
    text = text.strip()
    if text.startswith("/"):
        text = ",".join(part for part in text.split("/") if part)
    try:
        name = x509.Name.from_rfc4514_string(text)
    except ValueError as exc:
        raise KeyFormatError(
            f"subject {text!r} is not a distinguished name like 'CN=Acme Models'"
        ) from exc
    if not name.get_attributes_for_oid(NameOID.COMMON_NAME):
        raise KeyFormatError(f"subject {text!r} needs a CN= part")
    return name


def _hash_for(key: SigningKey) -> hashes.SHA256 | hashes.SHA384 | None:
    if key.algorithm == "ed25519":
        return None
    return hashes.SHA256() if key.algorithm == "ecdsa-p256" else hashes.SHA384()


def create_self_signed(
    key: SigningKey, subject: x509.Name, *, days: int = 825, now: dt.datetime | None = None
) -> Certificate:
    """A self-signed code-signing certificate for ``key``."""
    now = now or dt.datetime.now(dt.UTC)
    public = key.verifying_key()._key
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=True,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
    )
    return Certificate(builder.sign(key._private_key(), _hash_for(key)))


def create_csr(key: SigningKey, subject: x509.Name) -> bytes:
    """A PKCS#10 CSR in PEM for ``key``."""
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(subject)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
        .sign(key._private_key(), _hash_for(key))
    )
    return csr.public_bytes(serialization.Encoding.PEM)


def load_certificates(data: bytes, *, what: str) -> list[Certificate]:
    """Every certificate in a PEM bundle or a single DER certificate."""
    try:
        if b"-----BEGIN" in data:
            certs = x509.load_pem_x509_certificates(data)
        else:
            certs = [x509.load_der_x509_certificate(data)]
    except ValueError as exc:
        raise KeyFormatError(f"{what} holds no readable X.509 certificate (PEM or DER)") from exc
    return [Certificate(c) for c in certs]


def _directly_issued(child: Certificate, issuer: Certificate) -> bool:
    try:
        child._cert.verify_directly_issued_by(issuer._cert)
    except Exception:
        return False
    return True


def verify_chain(
    leaf: Certificate,
    intermediates: Sequence[Certificate],
    anchors: Sequence[Certificate],
    *,
    now: dt.datetime,
) -> list[Certificate]:
    """Check ``leaf`` chains to one of ``anchors`` through ``intermediates``; return the path.

    An anchor equal to the leaf pins it directly. Every certificate on the path must be valid at
    ``now``; every issuer must be a CA. Raises :class:`SignatureError` naming what failed.
    """
    if not anchors:
        raise SignatureError("no trust anchor given")
    path = [leaf]
    current = leaf
    for _ in range(len(intermediates) + 2):
        if any(current == anchor for anchor in anchors):
            break
        issuer = next(
            (
                c
                for c in [*intermediates, *anchors]
                if c != current
                and c._cert.subject == current._cert.issuer
                and _directly_issued(current, c)
            ),
            None,
        )
        if issuer is None:
            raise SignatureError(
                f"certificate {current.subject!r} does not chain to a trusted certificate"
            )
        if not issuer.is_ca():
            raise SignatureError(f"certificate {issuer.subject!r} signed another but is not a CA")
        path.append(issuer)
        current = issuer
    else:
        raise SignatureError("certificate chain is too long or loops")
    for cert in path:
        if not cert.not_before <= now <= cert.not_after:
            raise SignatureError(
                f"certificate {cert.subject!r} is not valid at {now:%Y-%m-%d %H:%M} UTC "
                f"(valid {cert.not_before:%Y-%m-%d} to {cert.not_after:%Y-%m-%d})"
            )
    return path


def public_key_matches(cert: Certificate, key: SigningKey) -> bool:
    """Whether ``cert`` certifies ``key``."""
    return cert.verifying_key() == key.verifying_key()
