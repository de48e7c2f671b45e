"""The owner's signing identity on disk: a key, its certificate, a CSR, and the CA chain.

A keystore is a directory (mode 0700) holding:

``keystore.json``
    Canonical JSON (RFC 8785): ``{"type": "modelseal.keystore", "version": 1, "name",
    "algorithm", "subject", "created"}``; ``subject`` is the one requested at creation and
    ``created`` is RFC 3339 UTC.
``private-key.pem``
    The signing key, PKCS#8 PEM encrypted with the passphrase (mode 0600).
``certificate.pem``
    The current certificate: self-signed at creation, replaced by :func:`import_certificate`.
``request.csr.pem``
    A PKCS#10 certificate signing request for the key, to send to a CA.
``chain.pem``
    Optional: the CA chain that issued ``certificate.pem``, issuer first.
``certificate.previous.pem``
    The certificate replaced by the last import, kept so nothing is lost.

Every file is a standard encoding, so ``openssl pkey``, ``openssl x509`` and ``openssl req``
read them all.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from modelseal._files import fsync_dir, replace_file, write_new
from modelseal.crypto import (
    ALGORITHMS,
    Algorithm,
    Certificate,
    KeyFormatError,
    SignatureError,
    SigningKey,
    create_csr,
    create_self_signed,
    load_certificates,
    parse_subject,
    public_key_matches,
    verify_chain,
)
from modelseal.errors import UsageError
from modelseal.keys._layout import (
    CERTIFICATE,
    CHAIN,
    CREATE_HINT,
    KEYSTORE_FILE,
    PREVIOUS_CERTIFICATE,
    PRIVATE_KEY,
    REQUEST,
    describe,
    read_description,
)
from modelseal.keys.errors import KeystoreError

__all__ = [
    "CERTIFICATE",
    "CHAIN",
    "KEYSTORE_FILE",
    "PREVIOUS_CERTIFICATE",
    "PRIVATE_KEY",
    "REQUEST",
    "Keystore",
    "KeystoreError",
    "check_new_keystore_dir",
    "create_keystore",
    "import_certificate",
]


@dataclass(frozen=True)
class Keystore:
    """A loaded keystore; the private key stays on disk until :meth:`signing_key` is called."""

    path: Path
    name: str
    algorithm: Algorithm
    certificate: Certificate
    chain: tuple[Certificate, ...]

    @classmethod
    def load(cls, path: Path) -> Keystore:
        """Read the keystore at ``path`` (no passphrase needed)."""
        path = Path(path)
        if not path.is_dir():
            what = "is not a directory" if path.exists() else "does not exist"
            raise KeystoreError(f"no keystore at {path}: it {what}", hint=CREATE_HINT)
        meta_path = path / KEYSTORE_FILE
        if not meta_path.is_file():
            raise KeystoreError(
                f"{path} is not a modelseal keystore: {KEYSTORE_FILE} is missing", hint=CREATE_HINT
            )
        name, algorithm = read_description(meta_path, _read(meta_path))
        for required in (PRIVATE_KEY, CERTIFICATE):
            if not (path / required).is_file():
                raise KeystoreError(f"keystore {path} is incomplete: {required} is missing")
        certificates = _read_certificates(path / CERTIFICATE)
        if len(certificates) != 1:
            raise KeystoreError(f"{path / CERTIFICATE} must hold exactly one certificate")
        certificate = certificates[0]
        if certificate.verifying_key().algorithm != algorithm:
            raise KeystoreError(
                f"{path / CERTIFICATE} holds a {certificate.verifying_key().algorithm} key "
                f"but {meta_path} says {algorithm}"
            )
        chain_path = path / CHAIN
        chain = tuple(_read_certificates(chain_path)) if chain_path.exists() else ()
        return cls(path=path, name=name, algorithm=algorithm, certificate=certificate, chain=chain)

    def signing_key(self, passphrase: bytes) -> SigningKey:
        """Decrypt the private key; it must belong to ``certificate.pem``."""
        key_path = self.path / PRIVATE_KEY
        data = _read(key_path)
        if b"-----BEGIN ENCRYPTED PRIVATE KEY-----" not in data:
            raise KeystoreError(f"{key_path} is not a passphrase-encrypted PKCS#8 PEM key")
        try:
            key = SigningKey.from_pem(data, passphrase)
        except KeyFormatError as exc:
            raise KeystoreError(f"wrong passphrase for {key_path}") from exc
        if not public_key_matches(self.certificate, key):
            raise KeystoreError(
                f"{key_path} does not match {self.path / CERTIFICATE}: "
                "the certificate was issued for another key",
                hint=f"import the certificate a CA issued for {self.path / REQUEST}",
            )
        return key

    def certificate_chain(self) -> list[Certificate]:
        """The certificate followed by its CA chain, issuer first: what signatures carry."""
        return [self.certificate, *self.chain]


def create_keystore(
    out: Path,
    *,
    name: str,
    passphrase: bytes,
    algorithm: Algorithm = "ed25519",
    subject: str | None = None,
    now: dt.datetime | None = None,
) -> Keystore:
    """Generate a key and write a new keystore to ``out`` (absent or an empty directory).

    The files are written into a temporary directory beside ``out`` and renamed into place, so a
    failure leaves either no keystore or a complete one.
    """
    out = Path(out)
    now = _utc(now)
    if not name.strip():
        raise KeystoreError("a keystore needs a non-empty name")
    if algorithm not in ALGORITHMS:
        raise KeystoreError(
            f"unknown algorithm {algorithm!r}; choose one of {', '.join(ALGORITHMS)}"
        )
    if not passphrase:
        raise KeystoreError("an empty passphrase is not allowed for the private key")
    check_new_keystore_dir(out)
    try:
        subject_name = parse_subject(subject if subject is not None else f"CN={_escape(name)}")
    except KeyFormatError as exc:
        raise KeystoreError(exc.message) from exc

    key = SigningKey.generate(algorithm)
    certificate = create_self_signed(key, subject_name, now=now)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
    except OSError as exc:
        raise KeystoreError(f"cannot create keystore {out}: {exc.strerror}") from exc
    try:
        meta = describe(name=name, algorithm=algorithm, subject=certificate.subject, created=now)
        write_new(tmp / KEYSTORE_FILE, meta, 0o644)
        write_new(tmp / PRIVATE_KEY, key.to_pem(passphrase), 0o600)
        write_new(tmp / CERTIFICATE, certificate.pem(), 0o644)
        write_new(tmp / REQUEST, create_csr(key, subject_name), 0o644)
        fsync_dir(tmp)
        os.chmod(tmp, 0o700)
        os.rename(tmp, out)  # replaces an empty directory; fails if `out` filled up meanwhile
        fsync_dir(out.parent)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise KeystoreError(f"cannot create keystore {out}: {exc.strerror or exc}") from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return Keystore.load(out)


def import_certificate(
    path: Path, cert: bytes, chain: bytes | None = None, *, now: dt.datetime | None = None
) -> Keystore:
    """Replace the keystore's certificate with one a CA issued for its key (PEM or DER).

    Extra certificates after the first in ``cert`` (a "full chain" file) count as chain, before
    those in ``chain``. Every check runs before anything is written.
    """
    keystore = Keystore.load(path)
    path = keystore.path
    now = _utc(now)
    certificates = _parse_certificates(cert, "the certificate")
    leaf = certificates[0]
    chain_certs = certificates[1:]
    if chain is not None:
        chain_certs += _parse_certificates(chain, "the chain")
    if leaf.verifying_key() != keystore.certificate.verifying_key():
        raise KeystoreError(
            f"the certificate for {leaf.subject!r} certifies a different key than keystore {path}; "
            "nothing was changed",
            hint=f"have the CA sign {path / REQUEST}",
        )
    if not leaf.not_before <= now <= leaf.not_after:
        raise KeystoreError(
            f"the certificate for {leaf.subject!r} is not valid at {now:%Y-%m-%d %H:%M} UTC "
            f"(valid {leaf.not_before:%Y-%m-%d %H:%M} to {leaf.not_after:%Y-%m-%d %H:%M}); "
            "nothing was changed"
        )
    if chain_certs:
        try:
            verify_chain(leaf, chain_certs[:-1], [chain_certs[-1]], now=now)
        except SignatureError as exc:
            raise KeystoreError(
                f"the chain does not issue the certificate: {exc.message}; nothing was changed"
            ) from exc
    try:
        replace_file(path / PREVIOUS_CERTIFICATE, _read(path / CERTIFICATE), 0o644)
        replace_file(path / CERTIFICATE, leaf.pem(), 0o644)
        if chain_certs:
            replace_file(path / CHAIN, b"".join(c.pem() for c in chain_certs), 0o644)
        else:
            (path / CHAIN).unlink(missing_ok=True)  # a stale chain would not issue the new cert
    except OSError as exc:
        raise KeystoreError(f"cannot update keystore {path}: {exc.strerror or exc}") from exc
    return Keystore.load(path)


def check_new_keystore_dir(out: Path) -> None:
    """Raise :class:`KeystoreError` unless ``out`` is absent or an empty directory."""
    if out.is_symlink() or (out.exists() and not (out.is_dir() and not any(out.iterdir()))):
        raise KeystoreError(
            f"{out} already exists and is not an empty directory; refusing to overwrite it",
            hint="choose a new --out directory, or move the old one away first",
        )


def _escape(value: str) -> str:
    """Escape a value for an RFC 4514 distinguished name."""
    value = re.sub(r'([,+"\\<>;=])', r"\\\1", value)
    if value.startswith(("#", " ")):
        value = "\\" + value
    if value.endswith(" "):
        value = value[:-1] + "\\ "
    return value


def _utc(now: dt.datetime | None) -> dt.datetime:
    if now is None:
        return dt.datetime.now(dt.UTC)
    if now.tzinfo is None:
        raise UsageError("`now` must be a timezone-aware datetime")
    return now.astimezone(dt.UTC)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise KeystoreError(f"cannot read {path}: {exc.strerror or exc}") from exc


def _read_certificates(path: Path) -> list[Certificate]:
    return _parse_certificates(_read(path), str(path))


def _parse_certificates(data: bytes, what: str) -> list[Certificate]:
    try:
        certificates = load_certificates(data, what=what)
    except KeyFormatError as exc:
        raise KeystoreError(exc.message) from exc
    if not certificates:
        raise KeystoreError(f"{what} holds no certificate")
    return certificates
