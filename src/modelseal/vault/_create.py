"""``vault init``: build a vault home in a temporary directory, then rename it into place.

Order, chosen so that what a rename cannot undo comes last:

1. check the arguments, the target directories and (for an external database) that the database
   holds no vault tables yet — nothing is written before these pass;
2. in a temporary directory beside the home: the CA, TLS, license-signing and import keys and
   certificates, the admin credential, the home key and every private key sealed with it;
3. the master key (a PKCS#11 key is created in its token here), wrapping the home key;
4. the database schema (SQLite inside the temporary directory, or the external database);
5. rename the admin credential (when ``--admin-out`` puts it elsewhere) and the home into place.

A failure in steps 3 to 5 removes the temporary directories, drops the tables created in an external
database, and says in the error what could not be undone (the key left in a PKCS#11 token).
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Final

from modelseal.crypto import (
    Certificate,
    CertificateAuthority,
    DataKey,
    ImportPrivateKey,
    SigningKey,
    canonical_json,
    create_ca,
    create_csr,
    issue_from_csr,
    issue_server_cert,
    jwk_thumbprint,
    jwks,
    parse_subject,
    private_key_pem_unencrypted,
    seal_bytes,
)
from modelseal.crypto.masterkey import MasterKey, SoftwareMasterKey
from modelseal.errors import Error, UsageError
from modelseal.vault import _layout as layout
from modelseal.vault._layout import PRIVATE_DIR_MODE, PRIVATE_FILE_MODE, PUBLIC_FILE_MODE, HomeError
from modelseal.vault._plan import MasterKeyChoice, SoftwareMaster, check_master_choice, plan_home
from modelseal.vault.settings import (
    MasterKeySettings,
    Pkcs11MasterKeySettings,
    SoftwareMasterKeySettings,
    VaultSettings,
    dump_settings,
)

if TYPE_CHECKING:
    from sqlalchemy import Engine

__all__ = ["LEAF_DAYS", "admin_credential", "create_home", "issue_admin_certificate"]

CA_DAYS: Final = 3650
LEAF_DAYS: Final = 730  # TLS server and admin certificates
MASTER_VERSION: Final = 1
ADMIN_SUBJECT: Final = "CN=admin"


def create_home(
    home: Path,
    *,
    database_url: str | None,
    master: MasterKeyChoice,
    public_urls: list[str],
    tls_hosts: list[str],
    port: int,
    admin_out: Path | None,
    now: dt.datetime,
    report: Callable[[str], None],
) -> Path:
    """Create the vault home (see the module docstring); returns its absolute path."""
    if now.tzinfo is None:
        raise UsageError("vault init needs an aware time (with a time zone)")
    check_master_choice(master)
    plan = plan_home(
        home, admin_out=admin_out, public_urls=public_urls, tls_hosts=tls_hosts, port=port
    )
    home, admin, urls, hosts = plan.home, plan.admin, plan.urls, plan.hosts
    vault_id = f"vault-{uuid.uuid4()}"
    engine = _external_database(database_url, home) if database_url is not None else None
    try:
        with _Staging(home, admin) as staging:
            _build(staging, vault_id, database_url, master, urls, hosts, port, now, engine, report)
    finally:
        if engine is not None:
            engine.dispose()
    report(f"vault home ready: {home}")
    return home


class _Staging:
    """The temporary directories, removed on failure; ``commit`` renames them into place."""

    def __init__(self, home: Path, admin: Path) -> None:
        self.home, self.admin = home, admin
        self.admin_inside = admin == home / layout.ADMIN_DIR
        self.admin_existed = admin.is_dir()  # an empty directory, by the checks of plan_home
        self.root = Path(tempfile.mkdtemp(dir=home.parent, prefix=f".{home.name}.init-"))
        try:
            self.admin_root = (
                self.root / layout.ADMIN_DIR
                if self.admin_inside
                else Path(tempfile.mkdtemp(dir=admin.parent, prefix=f".{admin.name}.init-"))
            )
        except BaseException:
            shutil.rmtree(self.root, ignore_errors=True)
            raise
        self.left_behind: list[str] = []  # what a failure cannot undo
        self.undo: list[Callable[[], None]] = []

    def __enter__(self) -> _Staging:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, _: object
    ) -> None:
        if exc is None:
            return
        for path in (self.root, self.admin_root):
            shutil.rmtree(path, ignore_errors=True)
        for step in reversed(self.undo):
            step()
        if self.left_behind and isinstance(exc, Exception):
            cause = exc.message if isinstance(exc, Error) else f"{type(exc).__name__}: {exc}"
            raise HomeError(
                f"vault init failed and was undone except that {'; '.join(self.left_behind)}: "
                f"{cause}",
                hint=getattr(exc, "hint", None),
            ) from exc

    def commit(self) -> None:
        for path in (self.root, self.admin_root):
            layout.fsync_dir(path)
        if not self.admin_inside:
            _rename_into(self.admin_root, self.admin, "the admin credential directory")
            self.undo.append(self._remove_admin)
        _rename_into(self.root, self.home, "the vault home")
        layout.fsync_dir(self.home.parent)

    def _remove_admin(self) -> None:
        shutil.rmtree(self.admin, ignore_errors=True)
        if self.admin_existed:
            self.admin.mkdir(mode=PRIVATE_DIR_MODE, exist_ok=True)


def _build(
    staging: _Staging,
    vault_id: str,
    database_url: str | None,
    master: MasterKeyChoice,
    urls: list[str],
    hosts: list[str],
    port: int,
    now: dt.datetime,
    engine: Engine | None,
    report: Callable[[str], None],
) -> None:
    root = staging.root
    os.chmod(root, PRIVATE_DIR_MODE)
    for name in layout.DIRS:
        (root / name).mkdir(mode=PRIVATE_DIR_MODE)
    home_key = DataKey.generate()

    def secret(relative: str, pem: bytes) -> None:
        sealed = seal_bytes(home_key, pem, label=layout.seal_label(relative))
        layout.write_file(root, relative, sealed, PRIVATE_FILE_MODE)

    ca = create_ca(f"CN=modelseal {vault_id},O=modelseal vault", days=CA_DAYS, now=now)
    layout.write_file(root, layout.CA_CERT, ca.certificate.pem(), PUBLIC_FILE_MODE)
    secret(layout.CA_KEY, private_key_pem_unencrypted(ca.key))
    report(f"created the vault CA ({ca.pin})")

    tls_key = SigningKey.generate("ecdsa-p256")
    tls_cert = issue_server_cert(ca, tls_key, hosts=hosts, days=LEAF_DAYS, now=now)
    layout.write_file(root, layout.TLS_CERT, tls_cert.pem(), PUBLIC_FILE_MODE)
    secret(layout.TLS_KEY, private_key_pem_unencrypted(tls_key))
    report(f"issued the TLS server certificate for {', '.join(hosts)}")

    license_key = SigningKey.generate("ed25519")
    kid = jwk_thumbprint(license_key.verifying_key())
    key_set = canonical_json(jwks({kid: license_key.verifying_key()}))
    layout.write_file(root, layout.LICENSE_KEYS, key_set, PUBLIC_FILE_MODE)
    secret(layout.LICENSE_KEY, private_key_pem_unencrypted(license_key))
    report(f"created the license-signing key (kid {kid})")

    import_key = ImportPrivateKey.generate()
    layout.write_file(root, layout.IMPORT_KEY, import_key.public_key().to_pem(), PUBLIC_FILE_MODE)
    secret(layout.IMPORT_PRIVATE_KEY, import_key.to_pem(None))
    report("created the import key for offline sealing")

    _write_admin(staging.admin_root, ca, url=urls[0], now=now)
    report("issued the admin credential (its key is not encrypted: keep the directory private)")

    master_key, master_settings = _create_master_key(staging, vault_id, master)
    report(f"created the master key ({_describe(master_settings)})")
    try:
        settings = VaultSettings(
            vault_id=vault_id,
            database_url=database_url,
            master_key=master_settings,
            master_version=master_key.version,
            port=port,
            public_urls=urls,
            tls_hosts=hosts,
            license_kid=kid,
        )
        context = layout.home_key_context(
            vault_id, key_id=home_key.key_id, master_version=MASTER_VERSION
        )
        wrapped = master_key.wrap(home_key, context=context)
    finally:
        master_key.close()
    home_key_file = layout.dump_wrapped_home_key(
        key_id=home_key.key_id, master_version=MASTER_VERSION, wrapped=wrapped
    )
    layout.write_file(root, layout.HOME_KEY, home_key_file, PRIVATE_FILE_MODE)
    layout.write_file(root, layout.SETTINGS, dump_settings(settings), PRIVATE_FILE_MODE)
    for name in layout.DIRS:
        layout.fsync_dir(root / name)

    report(f"created the database schema ({_create_schema(staging, engine)})")
    staging.commit()


def _create_master_key(
    staging: _Staging, vault_id: str, master: MasterKeyChoice
) -> tuple[MasterKey, MasterKeySettings]:
    if isinstance(master, SoftwareMaster):
        software, sealed = SoftwareMasterKey.create(
            master.passphrase, version=MASTER_VERSION, scrypt_n=master.scrypt_n
        )
        layout.write_file(staging.root, layout.MASTER_KEY, sealed, PRIVATE_FILE_MODE)
        return software, SoftwareMasterKeySettings()
    from modelseal.crypto.masterkey import Pkcs11MasterKey

    key_label = master.key_label or f"modelseal-{vault_id}"
    settings = Pkcs11MasterKeySettings(
        module=master.module,
        token_label=master.token_label,
        key_label=key_label,
        pin_env=master.pin_env,
    )
    key = Pkcs11MasterKey.create(
        module=master.module,
        token_label=master.token_label,
        pin=master.pin,
        label=key_label,
        version=MASTER_VERSION,
    )
    staging.left_behind.append(
        f"PKCS#11 token '{master.token_label}' keeps the master key "
        f"'{key_label}-v{MASTER_VERSION}' this init created (no vault uses it; delete it with "
        f"pkcs11-tool --module {master.module} --login --delete-object --type secrkey "
        f"--label {key_label}-v{MASTER_VERSION})"
    )
    return key, settings


def _describe(settings: MasterKeySettings) -> str:
    if isinstance(settings, Pkcs11MasterKeySettings):
        return f"'{settings.key_label}-v{MASTER_VERSION}' in PKCS#11 token '{settings.token_label}'"
    return f"software, sealed with scrypt in {layout.MASTER_KEY}"


def _create_schema(staging: _Staging, engine: Engine | None) -> str:
    """Migrate the database to the newest schema; returns where, for the report."""
    from modelseal.vault.db import (
        create_vault_engine,
        default_sqlite_url,
        downgrade,
        redact_url,
        upgrade,
    )
    from modelseal.vault.db.engine import DATABASE_FILE

    if engine is None:
        local = create_vault_engine(default_sqlite_url(staging.root), pool_size=1, max_overflow=0)
        try:
            upgrade(local)
        finally:
            local.dispose()
        os.chmod(staging.root / DATABASE_FILE, PRIVATE_FILE_MODE)
        return f"SQLite, {DATABASE_FILE} in the home"
    upgrade(engine)
    where = redact_url(engine.url)

    def drop_tables() -> None:
        try:
            downgrade(engine, "base")
        except Error:
            staging.left_behind.append(f"the database {where} keeps the vault tables")

    staging.undo.append(drop_tables)
    return where


def _external_database(url: str, home: Path) -> Engine:
    """An engine on ``url``, refused when the database already holds a vault."""
    from sqlalchemy import inspect
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, SQLAlchemyError

    from modelseal.vault.db import (
        StorageError,
        create_vault_engine,
        current_revision,
        metadata,
        redact_url,
    )

    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        parsed = None  # create_vault_engine explains what is wrong with it
    if parsed is not None and parsed.get_backend_name() == "sqlite" and parsed.database:
        database = Path(os.path.abspath(parsed.database))
        if home == database or home in database.parents:
            raise UsageError(
                "--database-url points into the new vault home; leave it out to keep the "
                "database in the home"
            )
    engine = create_vault_engine(url, pool_size=1, max_overflow=0)
    try:
        existing = set(inspect(engine).get_table_names()) & set(metadata.tables)
        revision = current_revision(engine)
    except SQLAlchemyError as exc:
        engine.dispose()
        raise StorageError(f"cannot list the tables of {redact_url(url)}: {exc}") from exc
    except BaseException:
        engine.dispose()
        raise
    if existing or revision is not None:
        engine.dispose()
        raise HomeError(
            f"the database {redact_url(url)} already holds a vault's tables; vault init needs "
            "an empty database",
            hint="give another database, or open the existing vault's home",
        )
    return engine


def _write_admin(root: Path, ca: CertificateAuthority, *, url: str, now: dt.datetime) -> None:
    if not root.exists():
        root.mkdir(mode=PRIVATE_DIR_MODE)
    os.chmod(root, PRIVATE_DIR_MODE)
    key, cert = issue_admin_certificate(ca, days=LEAF_DAYS, now=now)
    layout.write_file(root, layout.ADMIN_CERT, cert.pem(), PUBLIC_FILE_MODE)
    layout.write_file(root, layout.ADMIN_KEY, private_key_pem_unencrypted(key), PRIVATE_FILE_MODE)
    layout.write_file(root, layout.ADMIN_CA, ca.certificate.pem(), PUBLIC_FILE_MODE)
    layout.write_file(
        root, layout.ADMIN_CREDENTIAL, admin_credential(url, now=now), PUBLIC_FILE_MODE
    )


def issue_admin_certificate(
    ca: CertificateAuthority, *, days: int, now: dt.datetime
) -> tuple[SigningKey, Certificate]:
    """A new admin key and its client certificate (role admin, ``CN=admin``) from ``ca``."""
    key = SigningKey.generate("ecdsa-p256")
    csr = create_csr(key, parse_subject(ADMIN_SUBJECT))
    cert = issue_from_csr(ca, csr, subject_override=None, role="admin", days=days, now=now)
    return key, cert


def admin_credential(url: str, *, now: dt.datetime) -> bytes:
    """``credential.json`` of the admin credential: the vault URL and when it was issued."""
    created = now.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return canonical_json({"vault_url": url, "created": created})


def _rename_into(source: Path, target: Path, what: str) -> None:
    try:
        os.rename(source, target)  # replaces an empty directory, fails on a non-empty one
    except OSError as exc:
        raise HomeError(f"cannot move {what} into {target}: {exc.strerror}") from exc
