"""The license document: a compact JWS (EdDSA) any JOSE library can verify offline.

Header ``{"alg": "EdDSA", "kid": <license key id>, "typ": "modelseal-license+jwt"}``; claims::

    iss     the vault id                      jti     the license id, "lic-<uuid4>"
    sub     the customer name                 iat     issued at (seconds since the epoch)
    nbf     not before                        exp     expiry (only when the policy has one)
    model   {"name": <model name>, "versions": "*" | "1,2,5-7"}
    policy  the license terms, every field present (see :mod:`modelseal.licensing.policy`)
    vault   {"urls": ["https://…"], "pins": [<SHA-256 hex of the vault's SPKI or CA>, …]}

The vault's database, not this copy, is authoritative for counters and revocation: parsing a
license proves who issued it and what it says, nothing about how much of it is left.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final
from urllib.parse import urlsplit

from modelseal.crypto import (
    FormatError,
    SignatureError,
    SigningKey,
    VerifyingKey,
    sign_jws,
    verify_jws,
)
from modelseal.errors import UsageError
from modelseal.licensing._fields import ClaimReader, instant, label, string_tuple
from modelseal.licensing.codes import Refusal, RefusalCode
from modelseal.licensing.durations import format_datetime, format_duration
from modelseal.licensing.policy import Policy
from modelseal.licensing.versions import VersionSpec

__all__ = [
    "LICENSE_TYP",
    "License",
    "check_model",
    "check_time_window",
    "issue_license",
    "new_license_id",
    "parse_license",
]

LICENSE_TYP: Final = "modelseal-license+jwt"
_LICENSE_ID = re.compile(r"lic-[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
_MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}", re.ASCII)  # as in sealed packages
_PIN = re.compile(r"[0-9a-f]{64}", re.ASCII)
_CLAIMS = frozenset({"iss", "jti", "sub", "iat", "nbf", "exp", "model", "policy", "vault"})
_MAX_URLS = 8
_MAX_PINS = 4


def new_license_id() -> str:
    return f"lic-{uuid.uuid4()}"


@dataclass(frozen=True)
class License:
    """What a license says; construction validates it (:class:`UsageError` naming the field).

    ``expires_at`` is the policy's; the ``exp`` claim mirrors it so that generic JOSE tools see it.
    """

    id: str
    issuer: str
    customer: str
    issued_at: datetime
    not_before: datetime
    model_name: str
    versions: VersionSpec
    policy: Policy
    vault_urls: tuple[str, ...]
    vault_pins: tuple[str, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not _LICENSE_ID.fullmatch(self.id):
            raise UsageError(f"license id {self.id!r} is not 'lic-' and a lowercase UUID4")
        label(self.issuer, "issuer (iss)")
        label(self.customer, "customer (sub)")
        object.__setattr__(self, "issued_at", instant(self.issued_at, "issued_at (iat)"))
        object.__setattr__(self, "not_before", instant(self.not_before, "not_before (nbf)"))
        if not isinstance(self.model_name, str) or not _MODEL_NAME.fullmatch(self.model_name):
            raise UsageError(
                f"model name {self.model_name!r} is not allowed: use letters, digits, '.', '_' "
                "or '-' (max 128), starting with a letter or digit"
            )
        if not isinstance(self.versions, VersionSpec):
            raise UsageError(f"versions must be a VersionSpec, not {self.versions!r}")
        if not isinstance(self.policy, Policy):
            raise UsageError(f"policy must be a Policy, not {self.policy!r}")
        expires = self.policy.expires_at
        if expires is not None and expires <= self.not_before:
            raise UsageError(
                f"the license would expire ({format_datetime(expires)}) before it becomes valid "
                f"({format_datetime(self.not_before)})"
            )
        object.__setattr__(self, "vault_urls", _urls(self.vault_urls))
        object.__setattr__(self, "vault_pins", _pins(self.vault_pins))

    @property
    def expires_at(self) -> datetime | None:
        return self.policy.expires_at

    def end(self, first_use_at: datetime | None) -> datetime | None:
        """When the license stops: its expiry, or its duration after ``first_use_at``."""
        if self.policy.expires_at is not None:
            return self.policy.expires_at
        duration = self.policy.duration_from_first_use
        if duration is not None and first_use_at is not None:
            return instant(first_use_at, "first_use_at") + duration
        return None

    def covers(self, model_name: str, version: int) -> bool:
        return model_name == self.model_name and self.versions.allows(version)

    def to_claims(self) -> dict[str, Any]:
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "jti": self.id,
            "sub": self.customer,
            "iat": _timestamp(self.issued_at),
            "nbf": _timestamp(self.not_before),
            "model": {"name": self.model_name, "versions": str(self.versions)},
            "policy": self.policy.to_claims(),
            "vault": {"urls": list(self.vault_urls), "pins": list(self.vault_pins)},
        }
        if self.expires_at is not None:
            claims["exp"] = _timestamp(self.expires_at)
        return claims

    @classmethod
    def from_claims(cls, claims: Mapping[str, Any]) -> License:
        """The inverse of :meth:`to_claims`; any other shape is a :class:`UsageError`."""
        unknown = sorted(set(claims) - _CLAIMS)
        if unknown:
            raise UsageError(f"unknown claim(s) {', '.join(map(repr, unknown))}")
        read = ClaimReader(claims)
        model = read.object("model", {"name", "versions"})
        vault = read.object("vault", {"urls", "pins"})
        policy = Policy.from_claims(claims.get("policy"))
        exp = read.optional_time("exp")
        if exp != policy.expires_at:
            raise UsageError(
                "exp does not match the policy's expires_at"
                if exp is not None or policy.expires_at is None
                else "exp is missing although the policy has an expiry"
            )
        return cls(
            id=read.string("jti"),
            issuer=read.string("iss"),
            customer=read.string("sub"),
            issued_at=read.time("iat"),
            not_before=read.time("nbf"),
            model_name=model.string("name"),
            versions=VersionSpec.parse(model.string("versions")),
            policy=policy,
            vault_urls=vault.strings("urls"),
            vault_pins=vault.strings("pins"),
        )

    def describe(self) -> list[str]:
        """One line per fact, for people (``license show``)."""
        return [
            f"license {self.id} for {self.customer}",
            f"model {self.model_name} versions {self.versions}",
            f"issued {format_datetime(self.issued_at)} by {self.issuer}, "
            f"valid from {format_datetime(self.not_before)}",
            *self.policy.describe(),
            f"vault {', '.join(self.vault_urls)}",
        ]


def issue_license(
    *,
    key: SigningKey,
    kid: str,
    issuer: str,
    customer: str,
    model_name: str,
    versions: VersionSpec,
    policy: Policy,
    vault_urls: Iterable[str],
    vault_pins: Iterable[str],
    now: datetime,
    not_before: datetime | None = None,
    license_id: str | None = None,
) -> tuple[License, str]:
    """Build a license (valid from ``not_before``, default ``now``) and sign it: (license, JWS)."""
    issued_at = instant(now, "now")
    license_ = License(
        id=license_id or new_license_id(),
        issuer=issuer,
        customer=customer,
        issued_at=issued_at,
        not_before=issued_at if not_before is None else not_before,
        model_name=model_name,
        versions=versions,
        policy=policy,
        vault_urls=string_tuple(vault_urls, "vault_urls"),
        vault_pins=string_tuple(vault_pins, "vault_pins"),
    )
    return license_, sign_jws(license_.to_claims(), key, kid=kid, typ=LICENSE_TYP)


def parse_license(token: str, keys: Mapping[str, VerifyingKey], *, now: datetime | None) -> License:
    """Verify a license's signature and structure; with ``now``, also its fixed time window.

    Everything wrong with the token is a :class:`Refusal` ``LICENSE_INVALID`` naming the problem;
    an expired or not yet valid license is ``EXPIRED`` / ``NOT_YET_VALID``. Pass ``now=None`` only
    to read a license for display. The duration from first use needs the vault's record of the
    first use: check it with :func:`check_time_window`. A non-Ed25519 key in ``keys`` is the
    caller's configuration error (:class:`~modelseal.crypto.KeyFormatError`), not a refusal.
    """
    try:
        claims = verify_jws(
            token.strip() if isinstance(token, str) else token, keys, typ=LICENSE_TYP
        )
    except SignatureError:
        raise Refusal(
            RefusalCode.LICENSE_INVALID,
            "The license signature does not verify: the license was altered or was not "
            "issued by this vault",
        ) from None
    except FormatError as exc:
        raise Refusal(
            RefusalCode.LICENSE_INVALID, f"The license cannot be read: {exc.message}"
        ) from None
    try:
        license_ = License.from_claims(claims)
    except UsageError as exc:
        raise Refusal(
            RefusalCode.LICENSE_INVALID, f"The license is malformed: {exc.message}"
        ) from None
    if now is not None:
        check_time_window(license_, now, None)
    return license_


def check_time_window(
    license_: License,
    now: datetime,
    first_use_at: datetime | None,
    *,
    skew: timedelta = timedelta(0),
) -> None:
    """Raise :class:`Refusal` ``NOT_YET_VALID`` or ``EXPIRED`` unless ``now`` is inside the license.

    ``first_use_at`` is when the license was first used (``None``: not yet); it starts the clock
    of a duration-from-first-use license. ``skew`` tolerates that much clock difference.
    """
    now = instant(now, "now", floor=False)
    if now < license_.not_before - skew:
        raise Refusal(
            RefusalCode.NOT_YET_VALID,
            f"The license is valid from {format_datetime(license_.not_before)}, and it is now "
            f"{format_datetime(now)}",
        )
    end = license_.end(first_use_at)
    if end is None or now < end + skew:
        return
    if license_.policy.expires_at is not None or first_use_at is None:
        detail = f"The license expired at {format_datetime(end)}"
    else:
        duration = license_.policy.duration_from_first_use
        assert duration is not None  # noqa: S101 - end() found one
        detail = (
            f"The license expired at {format_datetime(end)}, {format_duration(duration)} after "
            f"its first use at {format_datetime(first_use_at)}"
        )
    raise Refusal(RefusalCode.EXPIRED, f"{detail}, and it is now {format_datetime(now)}")


def check_model(license_: License, model_name: str, version: int) -> None:
    """Raise :class:`Refusal` ``MODEL_NOT_LICENSED`` unless the license covers this model version."""
    if not license_.covers(model_name, version):
        raise Refusal(
            RefusalCode.MODEL_NOT_LICENSED,
            f"The license covers model {license_.model_name!r} versions {license_.versions}, "
            f"not {model_name!r} version {version}",
        )


# --- validation helpers ---------------------------------------------------------------------------


def _timestamp(value: datetime) -> int:
    return int(value.timestamp())


def _urls(values: object) -> tuple[str, ...]:
    urls = tuple(values) if isinstance(values, tuple | list) else ()
    if not 1 <= len(urls) <= _MAX_URLS:
        raise UsageError(f"a license names 1 to {_MAX_URLS} vault URLs, not {len(urls)}")
    for url in urls:
        if not isinstance(url, str) or not _is_https_url(url):
            raise UsageError(
                f"vault URL {url!r} is not an https:// URL with a host and no user, query "
                "or fragment"
            )
    if len(set(urls)) != len(urls):
        raise UsageError("the vault URLs are listed more than once")
    return urls


def _is_https_url(url: str) -> bool:
    if not url.isprintable() or " " in url or len(url) > 2000:
        return False
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        return False
    return (
        parts.scheme == "https"
        and bool(parts.hostname)
        and parts.username is None
        and not parts.query
        and not parts.fragment
        and "?" not in url
        and "#" not in url
    )


def _pins(values: object) -> tuple[str, ...]:
    pins = tuple(values) if isinstance(values, tuple | list) else ()
    if not 1 <= len(pins) <= _MAX_PINS:
        raise UsageError(
            f"a license names 1 to {_MAX_PINS} vault certificate pins (current and next), "
            f"not {len(pins)}"
        )
    for pin in pins:
        if not isinstance(pin, str) or not _PIN.fullmatch(pin):
            raise UsageError(f"vault pin {pin!r} is not a SHA-256 as 64 lowercase hex characters")
    if len(set(pins)) != len(pins):
        raise UsageError("the vault pins are listed more than once")
    return pins
