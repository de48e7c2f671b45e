"""``modelseal keys``: create a keystore, import a CA-issued certificate, show what is inside."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import click

from modelseal.cli._common import passphrase_env_option, quiet_option, read_passphrase, say
from modelseal.crypto import ALGORITHMS, Algorithm, Certificate
from modelseal.keys import Keystore, create_keystore, import_certificate
from modelseal.keys.keystore import (
    CERTIFICATE,
    CHAIN,
    PREVIOUS_CERTIFICATE,
    PRIVATE_KEY,
    REQUEST,
    check_new_keystore_dir,
)

__all__ = ["keys"]

_LAYOUT = """\
\b
A keystore is a directory holding:
  keystore.json             name, algorithm, subject and creation time
  private-key.pem           the signing key, encrypted with your passphrase
                            (PKCS#8, mode 0600; keep it secret and backed up)
  certificate.pem           the certificate: self-signed until you import one
  request.csr.pem           a certificate signing request (PKCS#10) for a CA
  chain.pem                 the CA chain, issuer first, after an import
  certificate.previous.pem  the certificate an import replaced
"""
_PATH = click.Path(path_type=Path, file_okay=False)
_FILE = click.Path(path_type=Path, exists=True, dir_okay=False, readable=True)


@click.group(epilog=_LAYOUT)
def keys() -> None:
    """Keystores: your signing key, its X.509 certificate and a CSR for a CA.

    Create a keystore once, optionally have a CA certify it, then seal models with it.
    The key, certificate and CSR are standard PEM files, so openssl reads them too.
    """


@keys.command(epilog=_LAYOUT)
@click.option(
    "--name",
    required=True,
    help="Who signs, e.g. your organisation; the default subject is CN=NAME.",
)
@click.option(
    "--out",
    required=True,
    type=_PATH,
    help="The keystore directory to create; it must not exist or be empty.",
)
@click.option(
    "--algorithm",
    type=click.Choice(ALGORITHMS),
    default="ed25519",
    show_default=True,
    help="Signature algorithm of the key.",
)
@click.option(
    "--subject",
    metavar="DN",
    help='Certificate subject, e.g. "CN=Acme Models,O=Acme" (needs a CN).',
)
@passphrase_env_option(
    "Read the passphrase for the private key from environment variable VAR instead of asking."
)
@quiet_option
def create(
    name: str,
    out: Path,
    algorithm: Algorithm,
    subject: str | None,
    passphrase_env: str | None,
    quiet: bool,
) -> None:
    """Generate a signing key and write a new keystore to OUT.

    The key is encrypted with a passphrase (asked twice unless --passphrase-env is given). The
    keystore starts with a self-signed certificate, which you can use as is (verifiers then pin
    its fingerprint), and a certificate signing request to send to a CA; import what the CA
    returns with `modelseal keys import-cert`.
    """
    check_new_keystore_dir(out)  # before the prompt, so nobody types a passphrase for nothing
    passphrase = read_passphrase(
        passphrase_env, prompt="Passphrase for the new private key", confirm=True
    )
    keystore = create_keystore(
        out, name=name, passphrase=passphrase, algorithm=algorithm, subject=subject
    )
    cert = keystore.certificate
    say(
        quiet,
        f"Created keystore {out} ({keystore.algorithm})",
        f"  subject      {cert.subject}",
        f"  fingerprint  SHA-256 {cert.fingerprint}",
        f"  valid        {_when(cert.not_before)} to {_when(cert.not_after)}",
        f"  {out / PRIVATE_KEY}  private key, encrypted with your passphrase (keep it secret)",
        f"  {out / CERTIFICATE}  self-signed certificate",
        f"  {out / REQUEST}  certificate signing request",
        "Next: send request.csr.pem to your CA and import the certificate it returns with",
        f"  modelseal keys import-cert --keystore {out} --cert CERT.pem --chain CA.pem",
        "or seal with the self-signed certificate as is.",
    )


@keys.command("import-cert", epilog=_LAYOUT)
@click.option(
    "--keystore", "keystore_dir", required=True, type=_PATH, help="The keystore directory."
)
@click.option(
    "--cert",
    "cert_file",
    required=True,
    type=_FILE,
    help="The certificate the CA issued (PEM or DER).",
)
@click.option(
    "--chain",
    "chain_file",
    type=_FILE,
    help="The CA certificates, issuer first, up to the root (PEM).",
)
@quiet_option
def import_cert(keystore_dir: Path, cert_file: Path, chain_file: Path | None, quiet: bool) -> None:
    """Replace the keystore's certificate with one a CA issued for request.csr.pem.

    The certificate must be for the keystore's key and valid now; a --chain must actually issue
    it. No passphrase is needed. The old certificate is kept as certificate.previous.pem and the
    chain is stored as chain.pem, so signatures carry the whole chain.
    """
    chain = chain_file.read_bytes() if chain_file is not None else None
    keystore = import_certificate(keystore_dir, cert_file.read_bytes(), chain)
    cert = keystore.certificate
    say(
        quiet,
        f"Imported {cert_file} into keystore {keystore_dir}",
        f"  subject      {cert.subject}",
        f"  issuer       {cert.issuer}",
        f"  valid        {_when(cert.not_before)} to {_when(cert.not_after)}",
        f"  fingerprint  SHA-256 {cert.fingerprint}",
        f"  chain        {len(keystore.chain)} certificate(s) in {CHAIN}",
        f"  the replaced certificate is kept as {PREVIOUS_CERTIFICATE}",
    )


@keys.command()
@click.option(
    "--keystore", "keystore_dir", required=True, type=_PATH, help="The keystore directory."
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def show(keystore_dir: Path, as_json: bool) -> None:
    """Show a keystore's identity: name, algorithm, certificate subject, issuer, validity and
    SHA-256 fingerprint, whether it is self-signed, and the CA chain. No passphrase is needed."""
    info = _describe(Keystore.load(keystore_dir))
    if as_json:
        click.echo(json.dumps(info, indent=2, ensure_ascii=False))
        return
    status = "valid now" if info["valid_now"] else "NOT valid now"
    lines = [
        f"keystore     {info['path']}",
        f"name         {info['name']}",
        f"algorithm    {info['algorithm']}",
        f"subject      {info['subject']}",
        f"issuer       {info['issuer']}" + (" (self-signed)" if info["self_signed"] else ""),
        f"valid        {info['not_before']} to {info['not_after']} ({status})",
        f"fingerprint  SHA-256 {info['fingerprint_sha256']}",
    ]
    lines += [
        f"chain        {c['subject']} (SHA-256 {c['fingerprint_sha256']})" for c in info["chain"]
    ]
    click.echo("\n".join(lines))


def _describe(keystore: Keystore) -> dict[str, Any]:
    cert = keystore.certificate
    now = dt.datetime.now(dt.UTC)
    return {
        "path": str(keystore.path),
        "name": keystore.name,
        "algorithm": keystore.algorithm,
        "subject": cert.subject,
        "issuer": cert.issuer,
        "self_signed": cert.is_self_signed(),
        "not_before": _when(cert.not_before),
        "not_after": _when(cert.not_after),
        "valid_now": cert.not_before <= now <= cert.not_after,
        "fingerprint_sha256": cert.fingerprint,
        "chain": [_brief(c) for c in keystore.chain],
    }


def _brief(cert: Certificate) -> dict[str, str]:
    return {"subject": cert.subject, "issuer": cert.issuer, "fingerprint_sha256": cert.fingerprint}


def _when(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
