"""``seal``, ``verify``, ``inspect`` and ``open``: the owner's commands for sealed packages."""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from modelseal.cli._common import (
    passphrase_env_option,
    progress_bar,
    quiet_option,
    read_passphrase,
    say,
)
from modelseal.crypto import (
    Certificate,
    DataKey,
    ImportPublicKey,
    load_certificates,
    load_data_key,
)
from modelseal.errors import UsageError
from modelseal.keys import Keystore
from modelseal.package import (
    SealedPackage,
    SealResult,
    VerifyReport,
    open_package,
    seal,
    verify_package,
)

__all__ = ["COMMANDS"]

_existing_path = click.Path(exists=False, path_type=Path)
_UNTRUSTED = "  warning: signer not checked against a trust anchor (pass --trust CERT)"


def _read_file(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {what} {path}: {exc.strerror}") from exc


def _load_trust(paths: tuple[Path, ...]) -> list[Certificate]:
    return [
        cert for p in paths for cert in load_certificates(_read_file(p, "certificate"), what=str(p))
    ]


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n} B"  # pragma: no cover


@click.command("seal")
@click.argument("model", type=_existing_path)
@click.option(
    "--keystore", type=_existing_path, required=True, help="Owner keystore (from `keys create`)."
)
@click.option("--name", required=True, help="Model name, e.g. `ocr-rec` (letters, digits, . _ -).")
@click.option(
    "--version", "version", type=click.IntRange(min=1), required=True, help="Model version (≥ 1)."
)
@click.option(
    "--out", type=_existing_path, required=True, help="New sealed package (must not exist)."
)
@click.option(
    "--archive", is_flag=True, help="Write one archive file (tar) instead of a directory."
)
@click.option(
    "--data-key-out", type=_existing_path, help="Write the data key here (mode 0600) for the owner."
)
@click.option(
    "--vault-import-key",
    "import_keys",
    type=_existing_path,
    multiple=True,
    help="Vault import public key (PEM); the data key is HPKE-wrapped to it inside the package.",
)
@click.option("--model-id", help="Reuse a model id (UUID) across versions; default: a fresh one.")
@click.option(
    "--vault",
    "vault_url",
    metavar="URL",
    help="Ask this vault for a fresh data key (generate-data-key) and register the package with it "
    "in one step (needs the admin credential, --admin).",
)
@click.option(
    "--admin",
    "admin_dir",
    envvar="MODELSEAL_ADMIN",
    show_envvar=True,
    type=click.Path(path_type=Path, file_okay=False),
    help="The admin credential directory (admin/ of the vault home); used with --vault.",
)
@passphrase_env_option("Environment variable holding the keystore passphrase (default: prompt).")
@quiet_option
def seal_command(
    model: Path,
    keystore: Path,
    name: str,
    version: int,
    out: Path,
    archive: bool,
    data_key_out: Path | None,
    import_keys: tuple[Path, ...],
    model_id: str | None,
    vault_url: str | None,
    admin_dir: Path | None,
    passphrase_env: str | None,
    quiet: bool,
) -> None:
    """Encrypt and sign MODEL (a file or a directory) into a sealed package.

    Every file is encrypted with a fresh random data key (AES-256-GCM streaming, Tink
    AES256_GCM_HKDF_1MB format); the manifest listing each file's size and SHA-256 is signed with
    the keystore's key. The data key leaves only through --data-key-out (a file for the owner)
    and/or --vault-import-key (wrapped to the vault, so offline sealing never needs the master key).
    With --vault URL the vault generates the data key instead, keeps it wrapped by its master key,
    and the package is registered there as soon as it is sealed.
    """
    store = Keystore.load(keystore)
    recipients = [ImportPublicKey.from_pem(_read_file(p, "import key")) for p in import_keys]
    signing_key = store.signing_key(
        read_passphrase(passphrase_env, prompt=f"Passphrase for {keystore}")
    )

    def run_seal(data_key: DataKey | None, package_model_id: str | None) -> SealResult:
        with progress_bar(quiet) as progress:
            return seal(
                model,
                out,
                name=name,
                version=version,
                signing_key=signing_key,
                certificates=store.certificate_chain(),
                import_keys=recipients,
                data_key=data_key,
                data_key_out=data_key_out,
                archive=archive,
                model_id=package_model_id,
                progress=progress,
            )

    registered: str | None = None
    if vault_url is None:
        result = run_seal(None, model_id)
    else:
        from modelseal.cli.admin import admin_client
        from modelseal.package.manifest import MANIFEST_NAME, SIGNATURE_NAME

        with admin_client(vault_url, admin_dir) as client:
            grant = client.generate_data_key(
                model_id=model_id or str(uuid.uuid4()), version=version
            )
            result = run_seal(load_data_key(grant.key_file), grant.model_id)
            with SealedPackage.open(result.path) as package:
                manifest = package.container.read(MANIFEST_NAME)
                signature = package.container.read(SIGNATURE_NAME)
            view = client.register_model(
                manifest=manifest, signature=signature, wrapped=grant.wrapped
            )
            registered = f"registered {view.name}:{view.version} with the vault at {client.url}"
    m = result.manifest
    say(
        quiet,
        f"sealed {m.model.name} v{m.model.version} ({len(m.files)} files, {_size(m.total_size)}) → {out}",
    )
    say(
        quiet,
        f"  model id {m.model.id}, data key {m.key_id}, signed by {store.certificate.subject}",
    )
    if data_key_out:
        say(quiet, f"  data key written to {data_key_out} (mode 0600): keep it secret")
    for wrapped in m.wrapped_keys:
        say(quiet, f"  data key wrapped to vault import key {wrapped.recipient[:16]}…")
    if registered is not None:
        say(quiet, f"  {registered}")


def _report_lines(report: VerifyReport) -> list[str]:
    m, signer = report.manifest, report.signer
    lines = [
        f"OK {report.path}: {m.model.name} v{m.model.version}, {len(m.files)} files, {_size(m.total_size)}",
        f"  signature valid ({signer.algorithm}), signed by {signer.certificate.subject} "
        f"(SHA-256 {signer.certificate.fingerprint})",
        "  every ciphertext matches its signed SHA-256",
    ]
    if report.trusted_by is not None:
        lines.append(f"  signer trusted through {report.trusted_by.subject}")
    else:
        lines.append(_UNTRUSTED)
    return lines


@click.command("verify")
@click.argument("sealed", type=_existing_path)
@click.option(
    "--trust", type=_existing_path, multiple=True, help="Trusted owner or CA certificate (PEM/DER)."
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
@quiet_option
def verify_command(sealed: Path, trust: tuple[Path, ...], as_json: bool, quiet: bool) -> None:
    """Check a sealed package without any key: signature, signer, structure, ciphertext digests.

    Exits 0 only when everything holds. Without --trust the signature is checked but the signer is
    not: anyone can sign a package with their own key, so give the owner's certificate or its CA.
    """
    with progress_bar(quiet) as progress:
        report = verify_package(sealed, trust=_load_trust(trust), progress=progress)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "ok": True,
                    "model": report.manifest.to_dict()["model"],
                    "signer": report.signer.certificate.subject,
                    "signer_sha256": report.signer.certificate.fingerprint,
                    "trusted_by": report.trusted_by.subject if report.trusted_by else None,
                    "files": len(report.manifest.files),
                }
            )
        )
        return
    for line in _report_lines(report):
        say(quiet, line)


@click.command("inspect")
@click.argument("sealed", type=_existing_path)
@click.option(
    "--json", "as_json", is_flag=True, help="Print the signed manifest as JSON on stdout."
)
def inspect_command(sealed: Path, as_json: bool) -> None:
    """Show the signed manifest of a sealed package (checks the signature, needs no key)."""
    with SealedPackage.open(sealed) as package:
        m, signer = package.manifest, package.signer
    if as_json:
        click.echo(json.dumps(m.to_dict(), indent=2))
        return
    out = Console(highlight=False, soft_wrap=False, width=None if sys.stdout.isatty() else 140)
    head = Table.grid(padding=(0, 2))
    for label, value in [
        ("model", f"{m.model.name} v{m.model.version}"),
        ("model id", m.model.id),
        ("created", f"{m.created} by {m.tool}"),
        ("cipher", f"{m.suite} (segment {m.segment_size} bytes)"),
        ("data key id", m.key_id),
        ("wrapped to", ", ".join(w.recipient[:16] + "…" for w in m.wrapped_keys) or "-"),
        ("signed by", f"{signer.certificate.subject} ({signer.algorithm})"),
        ("signer SHA-256", signer.certificate.fingerprint),
        ("issuer", signer.certificate.issuer),
    ]:
        head.add_row(Text(label, style="bold"), Text(value))
    files = Table("path", "size", "SHA-256 of the plaintext", title=f"{len(m.files)} files")
    for e in m.files:
        files.add_row(Text(e.path), f"{e.size:,}", e.sha256)
    out.print(head)
    out.print(files)


@click.command("open")
@click.argument("sealed", type=_existing_path)
@click.option(
    "--data-key",
    type=_existing_path,
    required=True,
    help="The data key file (from seal --data-key-out).",
)
@click.option(
    "--out",
    type=_existing_path,
    required=True,
    help="New directory for the plaintext (must not exist).",
)
@click.option(
    "--trust", type=_existing_path, multiple=True, help="Trusted owner or CA certificate (PEM/DER)."
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    help="Decryption processes (default: all cores but one, which checks digests).",
)
@quiet_option
def open_command(
    sealed: Path,
    data_key: Path,
    out: Path,
    trust: tuple[Path, ...],
    workers: int | None,
    quiet: bool,
) -> None:
    """Decrypt a sealed package for its owner into a new directory.

    Every segment is authenticated and every ciphertext checked against the signed manifest before
    the directory appears; on any failure nothing decrypted is left behind.
    """
    key = load_data_key(_read_file(data_key, "data key"))
    with progress_bar(quiet) as progress:
        manifest = open_package(
            sealed, key, out, trust=_load_trust(trust), workers=workers, progress=progress
        )
    say(
        quiet,
        f"opened {manifest.model.name} v{manifest.model.version}: {len(manifest.files)} files → {out}",
    )
    if not trust:
        say(quiet, _UNTRUSTED)


COMMANDS = [seal_command, verify_command, inspect_command, open_command]
