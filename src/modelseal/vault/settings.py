"""The vault's settings file, ``vault.json`` in the vault home: what ``vault init`` decided.

It holds no secret but may hold a database password (in the URL), so it is written mode 0600.
``vault init`` writes it as canonical JSON; an operator may edit it by hand (a new public URL, the
database URL after moving PostgreSQL), so it is read as ordinary JSON and checked field by field.
The PKCS#11 PIN and the passphrase of a software master key are never stored: the vault reads
them at start-up (the PIN from the environment variable named by ``pin_env``).
"""

from __future__ import annotations

import ipaddress
import json
import re
import uuid
from typing import Annotated, Final, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from modelseal.crypto import canonical_json
from modelseal.errors import Error

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_PIN_ENV",
    "DEFAULT_PORT",
    "DEFAULT_TLS_HOSTS",
    "MasterKeySettings",
    "Pkcs11MasterKeySettings",
    "SettingsError",
    "SoftwareMasterKeySettings",
    "VaultSettings",
    "check_tls_host",
    "default_public_url",
    "dump_settings",
    "load_settings",
    "normalize_public_url",
    "url_host",
]

DEFAULT_HOST: Final = "127.0.0.1"
DEFAULT_PORT: Final = 8443
DEFAULT_TLS_HOSTS: Final = ("127.0.0.1", "localhost")
DEFAULT_PIN_ENV: Final = "MODELSEAL_PKCS11_PIN"
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_DNS_LABEL = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")
_FROZEN = ConfigDict(extra="forbid", frozen=True)


class SettingsError(Error):
    """``vault.json`` is missing a field, has a wrong one, or is not JSON."""

    code = "VAULT_SETTINGS"


class SoftwareMasterKeySettings(BaseModel):
    """A master key kept in ``master-key.json``, sealed with scrypt from a passphrase."""

    model_config = _FROZEN

    kind: Literal["software"] = Field(
        default="software", description="The master key is a passphrase-sealed file in the home."
    )


class Pkcs11MasterKeySettings(BaseModel):
    """A master key that is a non-extractable AES-256 object in a PKCS#11 token."""

    model_config = _FROZEN

    kind: Literal["pkcs11"] = Field(
        default="pkcs11", description="The master key lives in a PKCS#11 token."
    )
    module: str = Field(
        min_length=1, description="Path of the PKCS#11 module (the token vendor's shared library)."
    )
    token_label: str = Field(min_length=1, description="Label of the token holding the key.")
    key_label: str = Field(
        min_length=1,
        description="Label of the key object without its version: the object is LABEL-vN, "
        "N being master_version.",
    )
    pin_env: str = Field(
        default=DEFAULT_PIN_ENV,
        description="Environment variable the vault reads the token's user PIN from at start-up "
        "(the PIN itself is never stored).",
    )

    @field_validator("pin_env")
    @classmethod
    def _env_name(cls, value: str) -> str:
        if not _ENV_NAME.fullmatch(value):
            raise ValueError(f"{value!r} is not an environment variable name")
        return value


MasterKeySettings = Annotated[
    SoftwareMasterKeySettings | Pkcs11MasterKeySettings, Field(discriminator="kind")
]


class VaultSettings(BaseModel):
    """Everything a vault process needs to know about its home, besides the secrets."""

    model_config = _FROZEN

    vault_id: str = Field(
        pattern=r"^vault-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$",
        description="This vault's identity, vault-<uuid>; it names the CA and binds the home key.",
    )
    database_url: str | None = Field(
        default=None,
        repr=False,
        description="SQLAlchemy URL of the vault database; null means the SQLite file vault.db "
        "in the home (so a home can be moved or restored as a whole).",
    )
    master_key: MasterKeySettings = Field(description="Where the master key is kept.")
    master_version: int = Field(
        default=1, ge=1, le=0xFFFFFFFF, description="Version of the current master key."
    )
    host: str = Field(default=DEFAULT_HOST, description="Address the vault listens on.")
    port: int = Field(default=DEFAULT_PORT, ge=1, le=65535, description="Port it listens on.")
    public_urls: list[str] = Field(
        min_length=1,
        description="HTTPS URLs clients reach the vault at; the first goes into MODELSEAL_VAULT.",
    )
    tls_hosts: list[str] = Field(
        min_length=1, description="DNS names and IP addresses in the TLS server certificate."
    )
    license_kid: str = Field(
        min_length=1,
        description="Key id (RFC 7638 JWK thumbprint) of the license-signing key in use.",
    )

    @field_validator("public_urls")
    @classmethod
    def _urls(cls, values: list[str]) -> list[str]:
        return [normalize_public_url(value) for value in values]

    @field_validator("tls_hosts")
    @classmethod
    def _hosts(cls, values: list[str]) -> list[str]:
        return [check_tls_host(value) for value in values]

    @property
    def vault_uuid(self) -> uuid.UUID:
        return uuid.UUID(self.vault_id.removeprefix("vault-"))


def dump_settings(settings: VaultSettings) -> bytes:
    """``vault.json``: canonical JSON of every field, defaults included."""
    return canonical_json(settings.model_dump(mode="json"))


def load_settings(data: bytes, *, where: str) -> VaultSettings:
    """Parse ``vault.json``; every problem is one :class:`SettingsError` naming ``where``."""
    try:
        document = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SettingsError(f"{where} is not UTF-8 JSON: {exc}") from None
    try:
        return VaultSettings.model_validate(document)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, error['loc'])) or 'top level'}: {error['msg']}"
            for error in exc.errors(include_url=False)
        )
        raise SettingsError(
            f"{where} is not valid: {problems}",
            hint="fix the file by hand or restore it from a backup",
        ) from None


def default_public_url(port: int) -> str:
    return f"https://{DEFAULT_HOST}:{port}"


def normalize_public_url(url: str) -> str:
    """``https://HOST[:PORT]`` with a trailing ``/`` removed; anything else is a ``ValueError``."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"{url!r} is not a URL: {exc}") from None
    if parts.scheme != "https" or not parts.hostname:
        raise ValueError(f"{url!r} is not an https:// URL with a host; the vault speaks only HTTPS")
    if (
        parts.username
        or parts.password
        or parts.query
        or parts.fragment
        or parts.path not in ("", "/")
    ):
        raise ValueError(f"{url!r} must be https://HOST[:PORT] alone (no path, query or user)")
    if port == 0:
        raise ValueError(f"{url!r} has port 0")
    return url.strip().rstrip("/")


def url_host(url: str) -> str:
    """The host of a URL checked by :func:`normalize_public_url` (no brackets around IPv6)."""
    host = urlsplit(url).hostname
    if host is None:  # pragma: no cover - normalize_public_url refused it already
        raise ValueError(f"{url!r} has no host")
    return host


def check_tls_host(host: str) -> str:
    """``host`` if it is an IP address or a DNS name (``*.`` wildcards allowed)."""
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    labels = host.removesuffix(".").split(".")
    if labels[0] == "*" and len(labels) > 2:
        labels = labels[1:]
    if len(host) > 253 or not all(_DNS_LABEL.fullmatch(label) for label in labels):
        raise ValueError(f"{host!r} is neither a DNS name nor an IP address")
    return host.lower()
