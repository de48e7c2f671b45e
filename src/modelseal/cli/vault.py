"""``modelseal vault``: create and run the key and license service.

This module stays light (``modelseal --help`` must not load SQLAlchemy or PKCS#11): each command
imports the vault code it needs when it runs.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from modelseal.cli._common import passphrase_env_option, quiet_option, read_passphrase, say
from modelseal.cli.admin import admin_client, admin_options
from modelseal.errors import UsageError

if TYPE_CHECKING:
    from modelseal.attestation import Collateral
    from modelseal.vault.home import VaultHome

__all__ = ["vault"]

_DIR = click.Path(path_type=Path, file_okay=False)
_DEFAULT_PIN_ENV = "MODELSEAL_PKCS11_PIN"
_LAYOUT = """\
\b
The vault home holds:
  vault.json          settings (vault id, database URL, master key, URLs)
  vault.db            the SQLite database (unless --database-url)
  master-key.json     the software master key, sealed with scrypt
                      (master-key.vN.json after a rotation to version N)
  ca/ca.pem           the vault CA certificate
  tls/server.pem      the TLS server certificate
  license-keys.json   the license-signing public key (JWKS)
  import-key.pem      the import public key for offline sealing
  secrets/            every private key, sealed under the master key
  admin/              the admin credential: client.pem, client-key.pem (unencrypted,
                      mode 0600: whoever holds it administers the vault), ca.pem,
                      credential.json
"""


@click.group()
def vault() -> None:
    """The vault: master key, model keys, licenses, devices and key release."""


@vault.command(epilog=_LAYOUT)
@click.option(
    "--home", required=True, type=_DIR, help="Directory to create; it must be new or empty."
)
@click.option(
    "--database-url",
    metavar="URL",
    help="PostgreSQL (postgresql+psycopg://USER@HOST/DB), empty of vault tables. "
    "Default: SQLite file vault.db in the home.",
)
@click.option(
    "--master-key",
    "master_kind",
    type=click.Choice(["software", "pkcs11"]),
    default="software",
    show_default=True,
    help="Keep the master key in a passphrase-sealed file, or in a PKCS#11 token.",
)
@passphrase_env_option(
    "Software master key: read its passphrase from environment variable VAR instead of asking."
)
@click.option("--pkcs11-module", metavar="PATH", help="PKCS#11 module (shared library).")
@click.option("--pkcs11-token", metavar="LABEL", help="Label of the PKCS#11 token.")
@click.option(
    "--pkcs11-pin-env",
    metavar="VAR",
    help=f"Environment variable holding the token's user PIN, now and when the vault starts "
    f"(default {_DEFAULT_PIN_ENV}; the PIN is never stored).",
)
@click.option(
    "--url",
    "urls",
    multiple=True,
    metavar="URL",
    help="Public https:// URL of the vault (repeatable; the first is printed). "
    "Default: https://127.0.0.1:PORT.",
)
@click.option(
    "--tls-host",
    "tls_hosts",
    multiple=True,
    metavar="NAME",
    help="Extra DNS name or IP address for the TLS certificate (repeatable); "
    "127.0.0.1, localhost and the --url hosts are always in.",
)
@click.option(
    "--port", type=click.IntRange(1, 65535), default=8443, show_default=True, help="HTTPS port."
)
@click.option(
    "--admin-out",
    type=_DIR,
    help="Write the admin credential here instead of HOME/admin (new or empty directory).",
)
@quiet_option
def init(
    home: Path,
    database_url: str | None,
    master_kind: str,
    passphrase_env: str | None,
    pkcs11_module: str | None,
    pkcs11_token: str | None,
    pkcs11_pin_env: str | None,
    urls: tuple[str, ...],
    tls_hosts: tuple[str, ...],
    port: int,
    admin_out: Path | None,
    quiet: bool,
) -> None:
    """Create a vault home: database schema, master key, CA, keys, TLS and admin credential.

    Prints two lines for the shell on standard output (everything else goes to stderr):

    \b
      export MODELSEAL_VAULT=https://127.0.0.1:8443
      export MODELSEAL_ADMIN=/abs/path/of/the/admin/credential
    """
    from modelseal.vault.home import (
        Pkcs11Master,
        SoftwareMaster,
        check_init_arguments,
        init_vault,
    )

    # Refuse a used home or a bad URL before asking for a passphrase or PIN.
    check_init_arguments(
        home, public_urls=urls, tls_hosts=tls_hosts, port=port, admin_out=admin_out
    )
    master: SoftwareMaster | Pkcs11Master
    if master_kind == "software":
        _refuse_pkcs11_options(pkcs11_module, pkcs11_token, pkcs11_pin_env)
        passphrase = read_passphrase(
            passphrase_env, prompt="Passphrase for the vault master key", confirm=True
        )
        master = SoftwareMaster(passphrase)
    else:
        if passphrase_env:
            raise UsageError("--passphrase-env is for --master-key software only")
        if not pkcs11_module or not pkcs11_token:
            raise UsageError(
                "--master-key pkcs11 needs --pkcs11-module PATH and --pkcs11-token LABEL",
                hint="SoftHSM2: --pkcs11-module /usr/lib/softhsm/libsofthsm2.so",
            )
        pin_env = pkcs11_pin_env or _DEFAULT_PIN_ENV
        master = Pkcs11Master(pkcs11_module, pkcs11_token, _read_pin(pin_env), pin_env=pin_env)

    vault_home = init_vault(
        home,
        database_url=database_url,
        master=master,
        public_urls=urls,
        tls_hosts=tls_hosts,
        port=port,
        admin_out=admin_out,
        now=dt.datetime.now(dt.UTC),
        report=lambda line: say(quiet, line),
    )
    admin = admin_out if admin_out is not None else vault_home.path / "admin"
    click.echo(f"export MODELSEAL_VAULT={shlex.quote(vault_home.settings.public_urls[0])}")
    click.echo(f"export MODELSEAL_ADMIN={shlex.quote(os.path.abspath(admin))}")


@vault.command("rotate-master-key")
@click.option("--home", required=True, type=_DIR, help="The vault home.")
@passphrase_env_option(
    "Software master key: read its current passphrase from environment variable VAR instead "
    "of asking."
)
@click.option(
    "--new-passphrase-env",
    metavar="VAR",
    help="Software master key: seal the new version under the passphrase in VAR "
    "(default: the current passphrase).",
)
@click.option(
    "--pkcs11-pin-env",
    metavar="VAR",
    help="PKCS#11 master key: environment variable holding the token's user PIN "
    "(default: the one named in vault.json).",
)
@click.option(
    "--destroy-old",
    is_flag=True,
    help="Delete the old version (its file, or its PKCS#11 object) instead of keeping it "
    "retired. Irreversible: backups wrapped under it no longer open.",
)
@quiet_option
def rotate_master_key(
    home: Path,
    passphrase_env: str | None,
    new_passphrase_env: str | None,
    pkcs11_pin_env: str | None,
    destroy_old: bool,
    quiet: bool,
) -> None:
    """Make a new master key version and rewrap every data key, the audit key and the home key.

    Stop every vault process of this home first. When interrupted, run the same command again:
    it finishes the rotation where it stopped. The old version is then retired (software:
    master-key….json is renamed *.retired; PKCS#11: the old object is kept unless --destroy-old).
    """
    from modelseal.vault.home import VaultHome
    from modelseal.vault.rotation import rotate_master_key as rotate

    vault_home = VaultHome.open(home)
    if new_passphrase_env and _is_pkcs11(vault_home):
        raise UsageError(
            "--passphrase-env and --new-passphrase-env are for a software master key; this "
            "vault's is in a PKCS#11 token"
        )
    passphrase, pin = _unlock_secrets(vault_home, passphrase_env, pkcs11_pin_env)
    new_passphrase = None
    if new_passphrase_env:
        new_passphrase = read_passphrase(new_passphrase_env, prompt="New passphrase")
    result = rotate(
        home,
        passphrase=passphrase,
        pin=pin,
        new_passphrase=new_passphrase,
        destroy_old=destroy_old,
        now=dt.datetime.now(dt.UTC),
        report=lambda line: say(quiet, line),
    )
    say(
        quiet,
        f"master key rotated from version {result.previous_version} to {result.version}"
        f"{' (finished an interrupted rotation)' if result.resumed else ''}",
    )


@vault.command("renew-cert")
@click.option("--home", required=True, type=_DIR, help="The vault home.")
@passphrase_env_option(
    "Software master key: read its passphrase from environment variable VAR instead of asking."
)
@click.option(
    "--pkcs11-pin-env",
    metavar="VAR",
    help="PKCS#11 master key: environment variable holding the token's user PIN "
    "(default: the one named in vault.json).",
)
@click.option(
    "--tls-host",
    "tls_hosts",
    multiple=True,
    metavar="NAME",
    help="DNS name or IP address to add to the TLS certificate (repeatable); the home's "
    "host names are always in, and new ones are saved in vault.json.",
)
@click.option(
    "--days",
    type=click.IntRange(1, 3650),
    default=730,  # LEAF_DAYS of vault init (not imported: this module stays light; a test checks)
    show_default=True,
    help="Lifetime of the new certificates (at most until the vault CA expires).",
)
@click.option(
    "--admin",
    "renew_admin",
    is_flag=True,
    help="Re-issue the admin credential too (new key and certificate, role admin).",
)
@click.option(
    "--admin-out",
    type=_DIR,
    help="With --admin: the admin credential directory to renew (default HOME/admin).",
)
@quiet_option
def renew_cert(
    home: Path,
    passphrase_env: str | None,
    pkcs11_pin_env: str | None,
    tls_hosts: tuple[str, ...],
    days: int,
    renew_admin: bool,
    admin_out: Path | None,
    quiet: bool,
) -> None:
    """Renew the vault's TLS server certificate (and, with --admin, the admin credential).

    Issues a new key and certificate from the vault CA for the home's host names and replaces
    tls/server.pem and its sealed key so that an interruption leaves the old pair or the new one
    (unlocking the home finishes or discards a half-done renewal). The CA, licenses and device
    certificates are untouched: they pin the CA, not the server certificate. Renew before the
    certificates expire (two years after vault init). Refused while a master-key rotation or
    another renewal of the home runs.

    A running `vault serve` keeps the old certificate: restart it afterwards. The old admin
    certificate stays valid until it expires; keep it private or delete it.
    """
    from modelseal.vault.renewal import plan_renewal, renew_certificates

    # Refuse bad hosts or a missing admin directory before asking for a passphrase or PIN.
    plan = plan_renewal(
        home, tls_hosts=tls_hosts, admin=renew_admin, admin_out=admin_out, days=days
    )
    passphrase, pin = _unlock_secrets(plan.home, passphrase_env, pkcs11_pin_env)
    result = renew_certificates(
        plan.home,
        passphrase=passphrase,
        pin=pin,
        tls_hosts=tls_hosts,
        days=days,
        admin=renew_admin,
        admin_out=admin_out,
        now=dt.datetime.now(dt.UTC),
        report=lambda line: say(quiet, line),
    )
    for renewed in (result.tls, result.admin):
        if renewed is None:
            continue
        until = f"{renewed.not_after:%Y-%m-%d %H:%M} UTC"
        if renewed.capped:
            until += " (the vault CA's own expiry)"
        click.echo(f"renewed the {renewed.what}: {renewed.path}")
        click.echo(f"  sha256 {renewed.fingerprint}, valid until {until}")
    click.echo(f"  TLS host names: {', '.join(result.hosts)}")
    click.echo(
        "restart `modelseal vault serve` for this home: a running vault keeps the old certificate"
    )


def _is_pkcs11(vault_home: VaultHome) -> bool:
    from modelseal.vault.settings import Pkcs11MasterKeySettings

    return isinstance(vault_home.settings.master_key, Pkcs11MasterKeySettings)


def _unlock_secrets(
    vault_home: VaultHome, passphrase_env: str | None, pkcs11_pin_env: str | None
) -> tuple[bytes | None, str | None]:
    """(passphrase, PIN) for the home's master key, from the options, the environment or a
    prompt; an option for the other kind of master key is refused."""
    from modelseal.vault.settings import Pkcs11MasterKeySettings

    chosen = vault_home.settings.master_key
    if isinstance(chosen, Pkcs11MasterKeySettings):
        if passphrase_env:
            raise UsageError(
                "--passphrase-env is for a software master key; this vault's is in a PKCS#11 token"
            )
        return None, _read_pin(pkcs11_pin_env or chosen.pin_env)
    if pkcs11_pin_env:
        raise UsageError("--pkcs11-pin-env is for a PKCS#11 master key")
    return read_passphrase(passphrase_env, prompt="Passphrase of the vault master key"), None


def _refuse_pkcs11_options(*values: str | None) -> None:
    if any(values):
        raise UsageError(
            "--pkcs11-module, --pkcs11-token and --pkcs11-pin-env need --master-key pkcs11"
        )


def _read_collateral(files: tuple[Path, ...]) -> list[Collateral]:
    if not files:
        return []
    from modelseal.attestation import load_collateral

    return [load_collateral(path.read_bytes(), what=f"collateral file {path}") for path in files]


def _read_pin(env_var: str) -> str:
    value = os.environ.get(env_var)
    if value:
        return value
    if not sys.stdin.isatty():
        raise UsageError(
            f"environment variable {env_var} holds no PIN and standard input is not a terminal",
            hint=f"export {env_var}=… (the vault reads the PIN from it when it starts, too)",
        )
    return str(click.prompt("User PIN of the PKCS#11 token", hide_input=True))


@vault.command()
@click.option("--home", required=True, type=_DIR, help="The vault home `vault init` created.")
@click.option("--host", help="Address to listen on (default: the home's, 127.0.0.1).")
@click.option(
    "--port", type=click.IntRange(1, 65535), help="HTTPS port (default: the home's, 8443)."
)
@passphrase_env_option(
    "Software master key: read its passphrase from environment variable VAR instead of asking."
)
@click.option(
    "--collateral",
    "collateral_files",
    multiple=True,
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    metavar="FILE",
    help="Intel DCAP collateral (dcap-qvl QuoteCollateralV3 JSON: TCB info, QE identity, CRLs) "
    "for verifying sgx and tdx evidence; repeat for several platforms. Without it, licenses "
    "that require sgx or tdx evidence are refused.",
)
@quiet_option
def serve(
    home: Path,
    host: str | None,
    port: int | None,
    passphrase_env: str | None,
    collateral_files: tuple[Path, ...],
    quiet: bool,
) -> None:
    """Serve the vault's REST API over HTTPS until SIGTERM or Ctrl-C.

    Device routes need a device certificate from the vault CA, admin routes the admin
    credential; /healthz, /metrics and /openapi.json are open. A PKCS#11 master key's PIN is read
    from the environment variable named in vault.json (default MODELSEAL_PKCS11_PIN).
    """
    from modelseal.vault.home import VaultHome
    from modelseal.vault.server import serve as run_server
    from modelseal.vault.settings import Pkcs11MasterKeySettings

    collateral = _read_collateral(collateral_files)
    chosen = VaultHome.open(home).settings.master_key
    passphrase: bytes | None = None
    pin: str | None = None
    if isinstance(chosen, Pkcs11MasterKeySettings):
        if passphrase_env:
            raise UsageError("--passphrase-env is for a software master key; this one is PKCS#11")
        pin = _read_pin(chosen.pin_env)
    else:
        passphrase = read_passphrase(passphrase_env, prompt="Passphrase of the vault master key")
    run_server(
        home,
        host=host,
        port=port,
        passphrase=passphrase,
        pin=pin,
        on_ready=lambda url: say(quiet, f"vault serving {url} (stop with Ctrl-C or SIGTERM)"),
        collateral=collateral,
    )
    say(quiet, "vault stopped")


@vault.group()
def audit() -> None:
    """The audit log: hash-chained entries for every change, release and refusal."""


@audit.command("verify")
@click.option(
    "--home",
    type=_DIR,
    help="Verify locally from the vault home: reads its database (no secret needed) and also "
    "checks the signed checkpoints. Without it, ask the running vault (--vault, --admin).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON (with --home).")
@admin_options
def audit_verify(
    home: Path | None, as_json: bool, vault_url: str | None, admin_dir: Path | None
) -> None:
    """Recompute the audit log's hash chain; name the first entry that does not verify.

    Exits 0 when the whole chain verifies; otherwise names the first bad entry (with --home:
    "audit chain broken at entry N: <why>") and exits 1.
    """
    if home is not None:
        from modelseal.vault.audit_verify import verify_audit

        result = verify_audit(home)
        if as_json:
            click.echo(json.dumps(result.to_json(), indent=2, sort_keys=True))
        else:
            click.echo(result.summary())
        if not result.ok:
            click.get_current_context().exit(1)
        return
    if as_json:
        raise UsageError("--json needs --home")
    with admin_client(vault_url, admin_dir) as client:
        report = client.verify_audit()
    if report.ok:
        click.echo(f"audit log verifies: {report.entries} entries")
        return
    click.echo(
        f"audit log broken: entry {report.first_bad} does not verify "
        f"({report.entries} entries checked)"
    )
    click.get_current_context().exit(1)
