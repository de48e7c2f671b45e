"""``modelseal vault renew-cert``: a new TLS server certificate (and admin credential) from the CA.

The vault CA, its key, the license-signing key and every license stay as they are: licenses and
enrolled devices pin the CA's public key, which a renewal does not touch. Under the home lock
(the one master-key rotation takes), after unlocking the home — which finishes or discards a
renewal that stopped half-way, see :func:`modelseal.vault._layout.settle_staged_pair` — a renewal
of the TLS server certificate runs:

1. issue a new ECDSA P-256 key and a certificate for the home's host names (plus new ones);
2. stage the key, sealed under the home key as ``secrets/tls-server-key.pem.sealed.next`` (with
   the label of its final name, so the rename needs no resealing), fsynced;
3. append the audit entry ``tls.renew`` (one transaction);
4. write ``vault.json`` with the added host names (atomic replace), when there are any;
5. stage the certificate as ``tls/server.pem.next``, fsynced;
6. rename the key into place, then the certificate (each followed by an fsync of its directory).

A failure in steps 1 to 5 removes what was staged. A crash leaves the old pair, or the new pair,
or a staged pair (or staged certificate after the key's rename) that the next unlock renames into
place when it belongs together and to the CA, and deletes otherwise. So a certificate in service
always has its audit entry; a crash between steps 3 and 5 leaves an entry whose certificate was
discarded (the next run records its own).

``--admin`` re-issues the admin credential the same way in its directory: ``client-key.pem.next``,
the audit entry ``admin.renew``, ``client.pem.next``, the renames, then ``credential.json``
(atomic replace, same vault URL). Admin clients do not unlock the home, so the next renewal
settles a half-done admin pair before it starts.

A running ``vault serve`` keeps the certificate it loaded until it is restarted.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

from modelseal.crypto import (
    Certificate,
    DataKey,
    SigningKey,
    issue_server_cert,
    private_key_pem_unencrypted,
    seal_bytes,
)
from modelseal.errors import Error, UsageError
from modelseal.vault import _layout as layout
from modelseal.vault._create import LEAF_DAYS, admin_credential, issue_admin_certificate
from modelseal.vault._layout import PRIVATE_DIR_MODE, PRIVATE_FILE_MODE, PUBLIC_FILE_MODE, HomeError
from modelseal.vault.home import UnlockedVault, VaultHome
from modelseal.vault.rotation import ACTOR, check_secrets, in_transaction
from modelseal.vault.settings import VaultSettings, check_tls_host, dump_settings

if TYPE_CHECKING:
    from sqlalchemy import Connection, Engine

__all__ = [
    "ADMIN_AUDIT_ACTION",
    "TLS_AUDIT_ACTION",
    "RenewalError",
    "RenewalPlan",
    "RenewalReport",
    "RenewedCertificate",
    "plan_renewal",
    "renew_certificates",
]

TLS_AUDIT_ACTION: Final = "tls.renew"
ADMIN_AUDIT_ACTION: Final = "admin.renew"
_RETRY = "nothing of this renewal was kept; run `modelseal vault renew-cert` again"


class RenewalError(Error):
    """The certificates of a vault home cannot be renewed now (another renewal or rotation runs)."""

    code = "CERT_RENEWAL"


@dataclass(frozen=True)
class RenewedCertificate:
    """One certificate a renewal put in place."""

    what: str
    """``TLS server certificate`` or ``admin credential``."""
    path: Path
    """The new certificate file."""
    fingerprint: str
    """SHA-256 of its DER encoding, hex."""
    not_after: dt.datetime
    capped: bool
    """True when the CA's own expiry ended it before the days asked for."""


@dataclass(frozen=True)
class RenewalReport:
    """What :func:`renew_certificates` did."""

    tls: RenewedCertificate
    hosts: tuple[str, ...]
    """The host names in the new TLS certificate."""
    added_hosts: tuple[str, ...]
    """Host names that were not in ``vault.json`` before (now they are)."""
    admin: RenewedCertificate | None


@dataclass(frozen=True)
class RenewalPlan:
    """The checked arguments of a renewal (known before any secret is asked for)."""

    home: VaultHome
    hosts: tuple[str, ...]
    added_hosts: tuple[str, ...]
    admin_dir: Path | None


def plan_renewal(
    home: Path | VaultHome,
    *,
    tls_hosts: Sequence[str] = (),
    admin: bool = False,
    admin_out: Path | None = None,
    days: int = LEAF_DAYS,
) -> RenewalPlan:
    """Check the arguments of :func:`renew_certificates` without a secret, so a CLI can refuse
    them before it asks for a passphrase or PIN."""
    vault_home = home if isinstance(home, VaultHome) else VaultHome.open(Path(home))
    if days < 1:
        raise UsageError(f"a certificate must be valid for at least one day, not {days}")
    hosts = list(vault_home.settings.tls_hosts)
    added: list[str] = []
    for name in tls_hosts:
        try:
            host = check_tls_host(name.strip())
        except ValueError as exc:
            raise UsageError(f"--tls-host {exc}") from None
        if host not in hosts:
            hosts.append(host)
            added.append(host)
    admin_dir: Path | None = None
    if admin_out is not None and not admin:
        raise UsageError("--admin-out needs --admin")
    if admin:
        if admin_out is not None:
            admin_dir = Path(os.path.abspath(admin_out))
            if not admin_dir.parent.is_dir():
                raise UsageError(f"the parent directory of --admin-out {admin_dir} does not exist")
            if admin_dir.exists() and not admin_dir.is_dir():
                raise UsageError(f"--admin-out {admin_dir} is not a directory")
        else:
            admin_dir = vault_home.path / layout.ADMIN_DIR
            if not admin_dir.is_dir():
                raise UsageError(
                    f"the vault home {vault_home.path} has no {layout.ADMIN_DIR}/ directory "
                    "(vault init --admin-out put the admin credential elsewhere)",
                    hint="give --admin-out DIR: the admin credential directory to renew",
                )
    return RenewalPlan(vault_home, tuple(hosts), tuple(added), admin_dir)


def renew_certificates(
    home: Path | VaultHome,
    *,
    passphrase: bytes | None = None,
    pin: str | None = None,
    tls_hosts: Sequence[str] = (),
    days: int = LEAF_DAYS,
    admin: bool = False,
    admin_out: Path | None = None,
    now: dt.datetime,
    report: Callable[[str], None] | None = None,
) -> RenewalReport:
    """Issue a new TLS server key and certificate from the vault CA for the home's host names
    plus ``tls_hosts``, valid ``days`` days (at most until the CA expires), and put them in place
    (see the module docstring); with ``admin``, re-issue the admin credential too, in the home's
    ``admin/`` or ``admin_out``. ``passphrase`` opens a software master key, ``pin`` a PKCS#11
    one. ``report`` receives one line per finished step.

    A running ``vault serve`` keeps serving the old certificate until it is restarted.
    """
    if now.tzinfo is None:
        raise UsageError("the renewal needs an aware time (with a time zone)")
    path = home.path if isinstance(home, VaultHome) else Path(home).absolute()
    say = report or (lambda _line: None)

    def busy() -> RenewalError:
        return RenewalError(
            f"another certificate renewal or master-key rotation of {path} is running",
            hint="wait for it to finish",
        )

    with layout.home_lock(path, busy=busy):
        plan = plan_renewal(  # read again under the lock
            path, tls_hosts=tls_hosts, admin=admin, admin_out=admin_out, days=days
        )
        check_secrets(plan.home.settings, passphrase, pin)
        with plan.home.unlock(passphrase=passphrase, pin=pin) as vault:
            engine = vault.engine()
            try:
                renewal = _Renewal(vault, engine, now, days, say)
                tls = renewal.tls(plan)
                renewed_admin = (
                    renewal.admin(plan.admin_dir) if plan.admin_dir is not None else None
                )
            finally:
                engine.dispose()
    return RenewalReport(tls, plan.hosts, plan.added_hosts, renewed_admin)


class _Renewal:
    def __init__(
        self,
        vault: UnlockedVault,
        engine: Engine,
        now: dt.datetime,
        days: int,
        say: Callable[[str], None],
    ) -> None:
        self.vault, self.engine, self.now, self.days, self.say = vault, engine, now, days, say
        self.path = vault.home.path

    def tls(self, plan: RenewalPlan) -> RenewedCertificate:
        home_key: DataKey = self.vault.home.unwrap_home_key(self.vault.master_key)
        key = SigningKey.generate("ecdsa-p256")
        cert = issue_server_cert(
            self.vault.ca, key, hosts=list(plan.hosts), days=self.days, now=self.now
        )
        sealed = seal_bytes(
            home_key, private_key_pem_unencrypted(key), label=layout.seal_label(layout.TLS_KEY)
        )
        previous = self.vault.home.tls_certificate
        staged = [layout.staged(layout.TLS_KEY), layout.staged(layout.TLS_CERT)]
        try:
            _stage(self.path, layout.TLS_KEY, sealed, PRIVATE_FILE_MODE)
            self._audit(
                TLS_AUDIT_ACTION,
                subject=layout.TLS_CERT,
                cert=cert,
                previous=previous,
                hosts=list(plan.hosts),
            )
            if plan.added_hosts:
                self._write_settings(plan.hosts)
                self.say(f"{layout.SETTINGS} now names {', '.join(plan.added_hosts)} too")
            _stage(self.path, layout.TLS_CERT, cert.pem(), PUBLIC_FILE_MODE)
        except BaseException:
            _discard(self.path, staged)
            raise
        _promote(self.path, layout.TLS_KEY)
        _promote(self.path, layout.TLS_CERT)
        self.vault.home.tls_certificate = cert
        self.say(f"renewed the TLS server certificate ({layout.TLS_CERT})")
        return self._renewed("TLS server certificate", self.path / layout.TLS_CERT, cert)

    def admin(self, folder: Path) -> RenewedCertificate:
        ca = self.vault.ca
        if not folder.exists():
            _os(
                folder.parent,
                f"create {folder.name} in",
                lambda: folder.mkdir(mode=PRIVATE_DIR_MODE),
            )
        else:  # finish or discard an admin renewal that stopped half-way
            _os(
                folder,
                "finish the interrupted admin renewal in",
                lambda: layout.settle_staged_pair(
                    folder,
                    layout.ADMIN_KEY,
                    layout.ADMIN_CERT,
                    ca=ca.certificate,
                    open_key=lambda pem: SigningKey.from_pem(pem, None),
                ),
            )
        previous = _certificate_or_none(folder / layout.ADMIN_CERT)
        key, cert = issue_admin_certificate(ca, days=self.days, now=self.now)
        staged = [layout.staged(layout.ADMIN_KEY), layout.staged(layout.ADMIN_CERT)]
        try:
            _stage(folder, layout.ADMIN_KEY, private_key_pem_unencrypted(key), PRIVATE_FILE_MODE)
            self._audit(
                ADMIN_AUDIT_ACTION, subject=cert.subject, cert=cert, previous=previous, hosts=None
            )
            _stage(folder, layout.ADMIN_CERT, cert.pem(), PUBLIC_FILE_MODE)
        except BaseException:
            _discard(folder, staged)
            raise
        _promote(folder, layout.ADMIN_KEY)
        _promote(folder, layout.ADMIN_CERT)
        ca_pem = ca.certificate.pem()
        url = _recorded_url(folder) or self.vault.settings.public_urls[0]
        _os(
            folder,
            f"write {layout.ADMIN_CA} in",
            lambda: _replace_unless_same(folder, layout.ADMIN_CA, ca_pem, PUBLIC_FILE_MODE),
        )
        _os(
            folder,
            f"write {layout.ADMIN_CREDENTIAL} in",
            lambda: layout.replace_file(
                folder,
                layout.ADMIN_CREDENTIAL,
                admin_credential(url, now=self.now),
                PUBLIC_FILE_MODE,
            ),
        )
        self.say(f"renewed the admin credential in {folder}")
        return self._renewed("admin credential", folder / layout.ADMIN_CERT, cert)

    def _renewed(self, what: str, path: Path, cert: Certificate) -> RenewedCertificate:
        capped = cert.not_after < self.now + dt.timedelta(days=self.days) - dt.timedelta(minutes=5)
        return RenewedCertificate(what, path, cert.fingerprint, cert.not_after, capped)

    def _audit(
        self,
        action: str,
        *,
        subject: str,
        cert: Certificate,
        previous: Certificate | None,
        hosts: list[str] | None,
    ) -> None:
        from modelseal.vault.db import append_audit

        details: dict[str, object] = {
            "sha256": cert.fingerprint,
            "not_after": cert.not_after.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "previous_sha256": previous.fingerprint if previous is not None else None,
        }
        if hosts is not None:
            details["hosts"] = hosts

        def step(conn: Connection) -> None:
            append_audit(
                conn,
                at=self.now,
                actor=ACTOR,
                action=action,
                subject=subject,
                outcome="ok",
                details=details,
            )

        in_transaction(self.engine, f"record {action} in", step, hint=_RETRY)

    def _write_settings(self, hosts: Sequence[str]) -> None:
        fields = self.vault.settings.model_dump(mode="json")
        fields["tls_hosts"] = list(hosts)
        data = dump_settings(VaultSettings.model_validate(fields))
        _os(
            self.path,
            f"write {layout.SETTINGS} in",
            lambda: layout.replace_file(self.path, layout.SETTINGS, data, PRIVATE_FILE_MODE),
        )


# --- the file steps (each fsynced; tests interrupt a renewal between them) -----------------------


def _stage(root: Path, relative: str, data: bytes, mode: int) -> None:
    """Write the replacement of ``root/relative`` as ``<relative>.next`` (a new file), durably."""
    name = layout.staged(relative)

    def write() -> None:
        layout.write_file(root, name, data, mode)
        layout.fsync_dir((root / name).parent)

    _os(root, f"write {name} in", write)


def _promote(root: Path, relative: str) -> None:
    """Rename ``<relative>.next`` over ``relative``, durably."""
    target = root / relative

    def rename() -> None:
        os.replace(root / layout.staged(relative), target)
        layout.fsync_dir(target.parent)

    _os(root, f"rename {layout.staged(relative)} to {relative} in", rename)


def _discard(root: Path, names: Sequence[str]) -> None:
    for name in names:
        try:
            (root / name).unlink(missing_ok=True)
        except OSError:
            pass  # the next unlock (or renewal) deletes what it cannot use


def _os(root: Path, doing: str, action: Callable[[], object]) -> None:
    try:
        action()
    except OSError as exc:
        raise HomeError(
            f"cannot {doing} {root}: {exc.strerror}",
            hint="fix the cause and run `modelseal vault renew-cert` again; opening the home "
            "finishes or discards a renewal that stopped half-way",
        ) from exc


def _replace_unless_same(root: Path, relative: str, data: bytes, mode: int) -> None:
    try:
        if (root / relative).read_bytes() == data:
            return
    except FileNotFoundError:
        pass
    layout.replace_file(root, relative, data, mode)


def _certificate_or_none(path: Path) -> Certificate | None:
    from modelseal.crypto import CryptoError, load_certificates

    try:
        certificates = load_certificates(path.read_bytes(), what=path.name)
    except (OSError, CryptoError):
        return None
    return certificates[0] if len(certificates) == 1 else None


def _recorded_url(folder: Path) -> str | None:
    try:
        url = json.loads((folder / layout.ADMIN_CREDENTIAL).read_bytes())["vault_url"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return url if isinstance(url, str) else None
