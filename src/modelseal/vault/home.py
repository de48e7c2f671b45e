"""The vault home directory: created by ``modelseal vault init``, opened and unlocked by the vault.

Layout (see ``docs/vault.md``)::

    vault.json                  settings (VaultSettings), mode 0600
    vault.db                    SQLite database (when no --database-url)
    master-key.json             software master key sealed with scrypt (software kind only);
    master-key.v<N>.json        version N after a rotation (see ``_master``)
    ca/ca.pem                   vault CA certificate
    tls/server.pem              TLS server certificate (issued by the vault CA)
    license-keys.json           JWKS of the license-signing key
    import-key.pem              X25519 import public key (for offline sealing)
    secrets/home-key.wrapped    the home key, wrapped by the master key
    secrets/*.pem.sealed        each private key (CA, TLS, license-signing, import), sealed
                                with the home key; mode 0600
    admin/                      the admin credential (unless --admin-out put it elsewhere)
    tls/server.pem.next,        the TLS pair ``vault renew-cert`` stages; ``unlock`` renames a
    secrets/tls-server-key.pem.sealed.next   pair that fits into place, or deletes it

No private key of the vault is ever on disk in clear: each is a PKCS#8 PEM sealed with
:func:`~modelseal.crypto.seal_bytes` under the *home key*, a random data key that is itself
stored only wrapped by the master key (as model data keys are). So the master key — in a PKCS#11
token, or sealed by a passphrase — guards everything, and rotating it rewraps one more key.
The admin credential's key is the exception: like a kubeconfig, it is a plain PKCS#8 file
(mode 0600) that a TLS client reads; whoever holds it is the vault's administrator.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import TYPE_CHECKING, Final, NoReturn

from modelseal._closing import Closing
from modelseal.crypto import (
    Certificate,
    CertificateAuthority,
    DataKey,
    DecryptionError,
    FormatError,
    ImportPrivateKey,
    ImportPublicKey,
    KeyFormatError,
    SigningKey,
    VerifyingKey,
    jwk_thumbprint,
    keys_from_jwks,
    load_certificates,
    open_bytes,
    parse_canonical_json,
    public_key_matches,
)
from modelseal.crypto.masterkey import MasterKey, MasterKeyRing
from modelseal.errors import UsageError
from modelseal.vault import _layout as layout
from modelseal.vault._create import create_home
from modelseal.vault._layout import HomeError, home_key_context
from modelseal.vault._master import open_ring
from modelseal.vault._plan import MasterKeyChoice, Pkcs11Master, SoftwareMaster, plan_home
from modelseal.vault.settings import (
    DEFAULT_PORT,
    Pkcs11MasterKeySettings,
    VaultSettings,
    load_settings,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from sqlalchemy import Engine

__all__ = [
    "HomeError",
    "MasterKeyChoice",
    "Pkcs11Master",
    "SoftwareMaster",
    "UnlockedVault",
    "VaultHome",
    "check_init_arguments",
    "home_key_context",
    "init_vault",
]

_RENEWAL_WAIT: Final = 30.0
"""Seconds ``unlock`` waits for a running renewal before it finishes a half-done one itself."""


def init_vault(
    home: Path,
    *,
    database_url: str | None,
    master: MasterKeyChoice,
    public_urls: Sequence[str] = (),
    tls_hosts: Sequence[str] = (),
    port: int = DEFAULT_PORT,
    admin_out: Path | None = None,
    now: dt.datetime,
    report: Callable[[str], None] | None = None,
) -> VaultHome:
    """Create a vault home in ``home`` (absent or an empty directory) and its database schema.

    Everything is built in a temporary directory beside ``home`` and renamed into place at the
    end, so a failure leaves no half-made home. Two things cannot be undone by a rename: a PKCS#11
    master key (created near the end; if a later step fails, the error names what the token kept)
    and the tables in an external database (dropped again when a later step fails). An external
    database that already holds vault tables is refused before anything is created.
    ``report`` receives one line per finished step.
    """
    path = create_home(
        home,
        database_url=database_url,
        master=master,
        public_urls=list(public_urls),
        tls_hosts=list(tls_hosts),
        port=port,
        admin_out=admin_out,
        now=now,
        report=report or (lambda _line: None),
    )
    return VaultHome.open(path)


def check_init_arguments(
    home: Path,
    *,
    public_urls: Sequence[str] = (),
    tls_hosts: Sequence[str] = (),
    port: int = DEFAULT_PORT,
    admin_out: Path | None = None,
) -> None:
    """Refuse what :func:`init_vault` would refuse before it needs a secret (a used home, a bad
    URL), so a CLI can check before asking for a passphrase or PIN."""
    plan_home(
        home,
        admin_out=admin_out,
        public_urls=list(public_urls),
        tls_hosts=list(tls_hosts),
        port=port,
    )


class VaultHome:
    """A vault home's settings and public material, read without any secret."""

    __slots__ = (
        "ca_certificate",
        "import_public_key",
        "license_keys",
        "path",
        "settings",
        "tls_certificate",
    )

    def __init__(
        self,
        path: Path,
        settings: VaultSettings,
        ca_certificate: Certificate,
        tls_certificate: Certificate,
        license_keys: dict[str, VerifyingKey],
        import_public_key: ImportPublicKey,
    ) -> None:
        self.path = path
        self.settings = settings
        self.ca_certificate = ca_certificate
        self.tls_certificate = tls_certificate
        self.license_keys = license_keys
        self.import_public_key = import_public_key

    @classmethod
    def open(cls, home: Path) -> VaultHome:
        """Read ``vault.json`` and the public certificates and keys of the home at ``home``."""
        home = Path(home).absolute()
        if not (home / layout.SETTINGS).is_file():
            raise HomeError(
                f"{home} is not a vault home (it has no {layout.SETTINGS})",
                hint="create one with `modelseal vault init --home DIR`, or check the path",
            )
        settings = load_settings(
            layout.read_file(home, layout.SETTINGS), where=f"{home / layout.SETTINGS}"
        )
        try:
            ca = _one_certificate(home, layout.CA_CERT)
            tls = _one_certificate(home, layout.TLS_CERT)
            jwks = parse_canonical_json(
                layout.read_file(home, layout.LICENSE_KEYS), what=layout.LICENSE_KEYS
            )
            if not isinstance(jwks, dict):
                raise FormatError(f"{layout.LICENSE_KEYS} is not a JSON object")
            license_keys = keys_from_jwks(jwks)
            import_key = ImportPublicKey.from_pem(layout.read_file(home, layout.IMPORT_KEY))
        except (FormatError, KeyFormatError) as exc:
            raise HomeError(
                f"the vault home {home} has a damaged public file: {exc}",
                hint="restore the file from a backup",
            ) from exc
        if settings.license_kid not in license_keys:
            raise HomeError(
                f"{layout.LICENSE_KEYS} in {home} has no key with the license_kid of "
                f"{layout.SETTINGS} ({settings.license_kid})",
                hint="restore both files from the same backup",
            )
        return cls(home, settings, ca, tls, license_keys, import_key)

    @property
    def database_url(self) -> str:
        """The database URL: the settings', or the SQLite file ``vault.db`` in this home."""
        if self.settings.database_url is not None:
            return self.settings.database_url
        from modelseal.vault.db import default_sqlite_url

        return default_sqlite_url(self.path)

    def unlock(self, *, passphrase: bytes | None = None, pin: str | None = None) -> UnlockedVault:
        """Open the master key (``passphrase`` for a software key, ``pin`` for PKCS#11), unwrap
        the home key and open every sealed private key, checking each against its public half."""
        master = open_master_key(self, passphrase=passphrase, pin=pin)
        try:
            home_key = self.unwrap_home_key(master)
            self._settle_tls_renewal(home_key)
            ca_key = SigningKey.from_pem(self._open_sealed(home_key, layout.CA_KEY), None)
            tls_pem = self._open_sealed(home_key, layout.TLS_KEY)
            tls_key = SigningKey.from_pem(tls_pem, None)
            license_key = SigningKey.from_pem(self._open_sealed(home_key, layout.LICENSE_KEY), None)
            import_key = ImportPrivateKey.from_pem(
                self._open_sealed(home_key, layout.IMPORT_PRIVATE_KEY)
            )
            try:
                ca = CertificateAuthority(ca_key, self.ca_certificate)
            except KeyFormatError as exc:
                raise self._mismatch(layout.CA_KEY, layout.CA_CERT) from exc
            if not public_key_matches(self.tls_certificate, tls_key):
                raise self._mismatch(layout.TLS_KEY, layout.TLS_CERT)
            if jwk_thumbprint(license_key.verifying_key()) != self.settings.license_kid:
                raise self._mismatch(layout.LICENSE_KEY, layout.SETTINGS)
            if import_key.public_key().to_pem() != self.import_public_key.to_pem():
                raise self._mismatch(layout.IMPORT_PRIVATE_KEY, layout.IMPORT_KEY)
        except BaseException:
            master.close()
            raise
        return UnlockedVault(self, master, ca, license_key, import_key, tls_pem)

    def _settle_tls_renewal(self, home_key: DataKey) -> None:
        """Finish or discard a ``vault renew-cert`` that stopped half-way (docs/vault.md): a staged
        ``.next`` pair that belongs together and to the CA is renamed into place, anything else
        staged is deleted. Done under the home lock, waiting for a renewal still running."""
        staged = [layout.staged(name) for name in (layout.TLS_KEY, layout.TLS_CERT)]
        if not any(os.path.lexists(self.path / name) for name in staged):
            self._reread_tls_certificate()  # a renewal may have replaced it since open()
            return

        def open_key(blob: bytes) -> SigningKey:
            label = layout.seal_label(layout.TLS_KEY)  # staged under the name it will have
            return SigningKey.from_pem(open_bytes(home_key, blob, label=label), None)

        def busy() -> HomeError:
            return HomeError(
                f"a certificate renewal or master-key rotation of {self.path} is still running",
                hint="try again when it has finished",
            )

        with layout.home_lock(self.path, busy=busy, wait=_RENEWAL_WAIT):
            try:
                renewed = layout.settle_staged_pair(
                    self.path,
                    layout.TLS_KEY,
                    layout.TLS_CERT,
                    ca=self.ca_certificate,
                    open_key=open_key,
                )
            except OSError as exc:
                raise HomeError(
                    f"cannot finish the interrupted TLS certificate renewal in {self.path}: "
                    f"{exc.strerror}",
                    hint="fix the cause (permissions, disk space) and open the home again",
                ) from exc
        if renewed is not None:
            self.tls_certificate = renewed
        else:
            self._reread_tls_certificate()

    def _reread_tls_certificate(self) -> None:
        try:
            self.tls_certificate = _one_certificate(self.path, layout.TLS_CERT)
        except FormatError as exc:
            raise HomeError(
                f"the vault home {self.path} has a damaged public file: {exc}",
                hint="restore the file from a backup",
            ) from exc

    def unwrap_home_key(self, master: MasterKey) -> DataKey:
        """The home key, unwrapped by ``master`` (which must hold the version it names)."""
        key_id, version, wrapped = layout.load_wrapped_home_key(
            layout.read_file(self.path, layout.HOME_KEY), home=self.path
        )
        versions = master.versions if isinstance(master, MasterKeyRing) else (master.version,)
        if version not in versions:
            raise HomeError(
                f"{layout.HOME_KEY} in {self.path} is wrapped by master key version {version}, "
                f"but the master key open is version {', '.join(map(str, versions))}",
                hint="finish the master-key rotation (`modelseal vault rotate-master-key`, with "
                "the new passphrase too if it had one), or restore the home from one backup",
            )
        context = home_key_context(self.settings.vault_id, key_id=key_id, master_version=version)
        try:
            return master.unwrap(wrapped, context=context, key_id=key_id)
        except DecryptionError:
            raise HomeError(
                f"{layout.HOME_KEY} in {self.path} does not open with the master key: it was "
                "altered, or belongs to another vault or master key",
                hint="restore it from a backup of this vault home",
            ) from None

    def _open_sealed(self, home_key: DataKey, relative: str) -> bytes:
        blob = layout.read_file(self.path, relative)
        try:
            return open_bytes(home_key, blob, label=layout.seal_label(relative))
        except DecryptionError:
            raise HomeError(
                f"{relative} in {self.path} failed authentication: it was altered or replaced",
                hint="restore it from a backup of this vault home",
            ) from None

    def _mismatch(self, secret: str, public: str) -> HomeError:
        return HomeError(
            f"{secret} in {self.path} does not belong to {public}",
            hint="restore both files from the same backup",
        )

    def __repr__(self) -> str:
        return f"VaultHome({str(self.path)!r}, vault_id={self.settings.vault_id!r})"


class UnlockedVault(Closing):
    """A vault home with its master key open and its private keys in memory.

    Close it (or use ``with``) to release the master key (a PKCS#11 login). Never pickled; its
    ``repr`` shows no secret.
    """

    __slots__ = ("_tls_key_pem", "ca", "home", "import_key", "license_key", "master_key")

    def __init__(
        self,
        home: VaultHome,
        master_key: MasterKey,
        ca: CertificateAuthority,
        license_key: SigningKey,
        import_key: ImportPrivateKey,
        tls_key_pem: bytes,
    ) -> None:
        self.home = home
        self.master_key = master_key
        self.ca = ca
        self.license_key = license_key
        self.import_key = import_key
        self._tls_key_pem = tls_key_pem

    @property
    def settings(self) -> VaultSettings:
        return self.home.settings

    @property
    def license_kid(self) -> str:
        return self.home.settings.license_kid

    @property
    def tls_key_pem(self) -> bytes:
        """The TLS server key as unencrypted PKCS#8 PEM, for an in-memory TLS context only."""
        return self._tls_key_pem

    def engine(self) -> Engine:
        """A new engine on the vault database, checked to be at this modelseal's schema.

        The caller owns it (``engine.dispose()`` when done).
        """
        from modelseal.vault.db import check_schema_current, create_vault_engine

        engine = create_vault_engine(self.home.database_url)
        try:
            check_schema_current(engine)
        except BaseException:
            engine.dispose()
            raise
        return engine

    def close(self) -> None:
        self.master_key.close()

    def __reduce__(self) -> NoReturn:
        raise TypeError("an unlocked vault cannot be pickled")

    def __repr__(self) -> str:
        return f"UnlockedVault({self.settings.vault_id!r}, master_key={self.master_key!r})"


def open_master_key(home: VaultHome, *, passphrase: bytes | None, pin: str | None) -> MasterKey:
    """The master key named by the home's settings, opened with the passphrase or PIN, in a
    :class:`MasterKeyRing` with every other version still present (an unfinished rotation)."""
    settings = home.settings
    chosen = settings.master_key
    if isinstance(chosen, Pkcs11MasterKeySettings):
        if pin is None:
            raise UsageError(
                f"the master key of {home.path} is in PKCS#11 token '{chosen.token_label}'; "
                "give its user PIN",
                hint=f"export {chosen.pin_env}=…",
            )
        return open_ring(home.path, settings, pin=pin)
    if passphrase is None:
        raise UsageError(
            f"the master key of {home.path} is sealed by a passphrase; give the passphrase"
        )
    return open_ring(home.path, settings, passphrases=[passphrase])


def _one_certificate(home: Path, relative: str) -> Certificate:
    certificates = load_certificates(layout.read_file(home, relative), what=relative)
    if len(certificates) != 1:
        raise FormatError(f"{relative} must hold exactly one certificate, not {len(certificates)}")
    return certificates[0]
