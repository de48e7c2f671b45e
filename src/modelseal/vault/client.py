"""A synchronous HTTPS client of the vault's REST API, used by the admin CLI and the device agent.

Three ways in:

- :meth:`VaultClient.admin` — the admin credential directory ``vault init`` wrote (client
  certificate and key, and the vault CA to trust);
- :meth:`VaultClient.device` — an enrolled device's certificate, key and the vault CA;
- :meth:`VaultClient.bootstrap` — no credential yet (enrolment): the vault CA is fetched without
  verification once and accepted only if its key matches the pin from the enrolment token.

Every failure is an :class:`~modelseal.errors.Error` with one sentence: the vault's own refusal
(:class:`VaultRequestError`, carrying its stable code, e.g. ``USAGE_EXHAUSTED``) or a connection
problem (:class:`VaultConnectionError`: nothing listening, a server certificate this client does
not trust, or a client certificate the vault refused during the handshake).
"""

from __future__ import annotations

import errno
import json
import ssl
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final, TypeVar

import httpx
from pydantic import BaseModel, TypeAdapter, ValidationError

from modelseal._closing import Closing
from modelseal.crypto import KeyFormatError, load_certificates, spki_sha256
from modelseal.errors import Error, UsageError
from modelseal.vault.api import schemas as s

__all__ = [
    "ADMIN_CA",
    "ADMIN_CERT",
    "ADMIN_CREDENTIAL",
    "ADMIN_KEY",
    "DEFAULT_TIMEOUT",
    "VaultClient",
    "VaultConnectionError",
    "VaultRequestError",
]

ADMIN_CERT: Final = "client.pem"
ADMIN_KEY: Final = "client-key.pem"
ADMIN_CA: Final = "ca.pem"
ADMIN_CREDENTIAL: Final = "credential.json"
DEFAULT_TIMEOUT: Final = 30.0
_PEM_TYPES: Final = "application/pem-certificate-chain, application/x-pem-file, text/plain"

M = TypeVar("M", bound=BaseModel)


class VaultRequestError(Error):
    """The vault answered with an error: ``code`` is its stable code, ``status`` the HTTP status."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        status: int,
        retry_after: int | None = None,
        request_id: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(f"{code}: {message}", hint=hint)
        self.code = code
        self.reason = message
        self.status = status
        self.retry_after = retry_after
        self.request_id = request_id


class VaultConnectionError(Error):
    """The vault could not be reached, or the TLS handshake failed."""

    code = "VAULT_UNREACHABLE"


class VaultClient(Closing):
    """One keep-alive HTTPS connection pool to one vault. Use as a context manager."""

    def __init__(
        self,
        url: str,
        context: ssl.SSLContext,
        *,
        client_cert: Path | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.url = _base_url(url)
        self._client_cert = client_cert
        self._http = httpx.Client(base_url=self.url, verify=context, timeout=timeout)
        self._jwks: dict[str, Any] | None = None

    # --- construction ---------------------------------------------------------------------------

    @classmethod
    def admin(
        cls, url: str | None, admin_dir: Path, *, timeout: float = DEFAULT_TIMEOUT
    ) -> VaultClient:
        """A client holding the admin credential in ``admin_dir`` (``client.pem``,
        ``client-key.pem``, ``ca.pem``); ``url=None`` takes the vault URL recorded in its
        ``credential.json``."""
        admin_dir = Path(admin_dir)
        if not admin_dir.is_dir():
            raise UsageError(
                f"the admin credential directory {admin_dir} does not exist",
                hint="pass --admin DIR (the admin/ directory `modelseal vault init` wrote) "
                "or export MODELSEAL_ADMIN=DIR",
            )
        if url is None:
            url = _recorded_url(admin_dir)
        return cls.device(
            url,
            admin_dir / ADMIN_CERT,
            admin_dir / ADMIN_KEY,
            admin_dir / ADMIN_CA,
            timeout=timeout,
        )

    @classmethod
    def device(
        cls, url: str, cert: Path, key: Path, ca: Path, *, timeout: float = DEFAULT_TIMEOUT
    ) -> VaultClient:
        """A client presenting the certificate ``cert`` (key ``key``) and trusting only ``ca``."""
        context = _trusting(ca)
        try:
            context.load_cert_chain(cert, key)
        except (OSError, ssl.SSLError) as exc:
            raise UsageError(
                f"cannot load the client certificate {cert} with key {key}: {_reason(exc)}",
                hint="check both files exist, are PEM and belong together",
            ) from exc
        return cls(url, context, client_cert=Path(cert), timeout=timeout)

    @classmethod
    def bootstrap(
        cls, url: str, ca_pin: str, *, timeout: float = DEFAULT_TIMEOUT
    ) -> tuple[VaultClient, bytes]:
        """A client without a certificate that trusts the vault CA matching ``ca_pin`` (hex
        SHA-256 of the CA's SubjectPublicKeyInfo), and that CA's PEM.

        The CA is fetched once from ``GET /v1/ca`` without verifying the server (nothing is sent
        but the request); everything after that is verified against it.
        """
        pin = ca_pin.lower().removeprefix("sha256:")
        unverified = ssl.create_default_context()
        unverified.check_hostname = False
        unverified.verify_mode = ssl.CERT_NONE
        with cls(url, unverified, timeout=timeout) as probe:
            ca_pem = probe._text("GET", "/v1/ca")
        try:
            certificates = load_certificates(ca_pem.encode("ascii"), what="the vault CA")
        except (KeyFormatError, UnicodeEncodeError) as exc:
            raise VaultConnectionError(
                f"{probe.url}/v1/ca did not return a PEM certificate; is this a modelseal vault?"
            ) from exc
        if len(certificates) != 1 or spki_sha256(certificates[0]) != pin:
            raise VaultConnectionError(
                f"the CA certificate of {probe.url} does not match the pin in the enrolment "
                "token: this is not the vault the token was made for (or the connection is "
                "intercepted)",
                hint="check the vault URL, or ask the model controller for a new token",
            )
        pem = certificates[0].pem()
        context = ssl.create_default_context(cadata=pem.decode("ascii"))
        return cls(url, context, timeout=timeout), pem

    def close(self) -> None:
        self._http.close()

    # --- open routes ----------------------------------------------------------------------------

    def health(self) -> s.Health:
        return self._call("GET", "/healthz", s.Health)

    def ca_pem(self) -> bytes:
        return self._text("GET", "/v1/ca").encode("ascii")

    def license_keys(self, *, refresh: bool = False) -> dict[str, Any]:
        """The JWKS of the license-signing keys, fetched once per client (``refresh``: again,
        e.g. when a license names a key the copy does not have)."""
        if self._jwks is None or refresh:
            self._jwks = self._call("GET", "/v1/license-keys", s.JWKS).model_dump(mode="json")
        return self._jwks

    def import_key_pem(self) -> bytes:
        return self._text("GET", "/v1/import-key").encode("ascii")

    def enroll(self, token: str, csr_pem: bytes) -> s.Enrollment:
        body = s.EnrollmentRequest(token=token, csr=csr_pem.decode("ascii"))
        return self._call("POST", "/v1/enroll", s.Enrollment, body)

    # --- admin ----------------------------------------------------------------------------------

    def register_model(
        self, *, manifest: bytes, signature: bytes, wrapped: bytes | None = None
    ) -> s.Model:
        body = s.ModelRegistration(manifest=manifest, signature=signature, wrapped=wrapped)
        return self._call("POST", "/v1/models", s.Model, body)

    def register_package(self, sealed: Path) -> s.Model:
        """Register the sealed package at ``sealed`` (directory or archive, sealed to this vault's
        import key); its signature is checked here before anything is sent."""
        from modelseal.package import SealedPackage
        from modelseal.package.manifest import MANIFEST_NAME, SIGNATURE_NAME

        with SealedPackage.open(sealed) as package:
            manifest = package.container.read(MANIFEST_NAME)
            signature = package.container.read(SIGNATURE_NAME)
        return self.register_model(manifest=manifest, signature=signature)

    def list_models(self) -> list[s.Model]:
        return self._list("/v1/models", s.Model)

    def generate_data_key(self, *, model_id: str, version: int) -> s.DataKeyGrant:
        body = s.DataKeyRequest(model_id=model_id, version=version)
        return self._call("POST", "/v1/data-keys", s.DataKeyGrant, body)

    def create_customer(self, name: str) -> s.Customer:
        return self._call("POST", "/v1/customers", s.Customer, s.CustomerCreate(name=name))

    def list_customers(self) -> list[s.Customer]:
        return self._list("/v1/customers", s.Customer)

    def create_enrollment_token(self, *, customer: str, ttl_seconds: int) -> s.EnrollmentToken:
        body = s.EnrollmentTokenRequest(customer=customer, ttl=ttl_seconds)
        return self._call("POST", "/v1/enrollment-tokens", s.EnrollmentToken, body)

    def list_devices(self, *, customer: str | None = None) -> list[s.Device]:
        return self._list("/v1/devices", s.Device, _only(customer=customer))

    def revoke_device(self, device_id: str, *, reason: str) -> s.Device:
        path = f"/v1/devices/{_segment(device_id)}/revoke"
        return self._call("POST", path, s.Device, s.RevokeRequest(reason=reason))

    def issue_license(self, request: s.LicenseRequest) -> s.IssuedLicense:
        return self._call("POST", "/v1/licenses", s.IssuedLicense, request)

    def revoke_license(self, license_id: str, *, reason: str) -> s.LicenseRecord:
        path = f"/v1/licenses/{_segment(license_id)}/revoke"
        return self._call("POST", path, s.LicenseRecord, s.RevokeRequest(reason=reason))

    def show_license(self, license_id: str) -> s.LicenseRecord:
        return self._call("GET", f"/v1/licenses/{_segment(license_id)}", s.LicenseRecord)

    def list_licenses(self, *, customer: str | None = None) -> list[s.LicenseRecord]:
        return self._list("/v1/licenses", s.LicenseRecord, _only(customer=customer))

    def verify_audit(self) -> s.AuditReport:
        return self._call("GET", "/v1/audit/verify", s.AuditReport)

    # --- device ---------------------------------------------------------------------------------

    def challenge(self) -> s.Challenge:
        return self._call("POST", "/v1/challenge", s.Challenge)

    def release(self, request: s.KeyReleaseRequest) -> s.ReleaseGrant:
        return self._call("POST", "/v1/keys/release", s.ReleaseGrant, request)

    def renew(self, lease_id: str, *, inferences: int) -> s.LeaseGrant:
        path = f"/v1/leases/{_segment(lease_id)}/renew"
        return self._call("POST", path, s.LeaseGrant, s.RenewRequest(inferences=inferences))

    # --- plumbing -------------------------------------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        model: type[M],
        body: BaseModel | None = None,
        params: Mapping[str, str] | None = None,
    ) -> M:
        response = self._send(method, path, body, params)
        try:
            return model.model_validate_json(response.content)
        except ValidationError as exc:
            raise self._unexpected(path, exc) from exc

    def _list(self, path: str, model: type[M], params: Mapping[str, str] | None = None) -> list[M]:
        response = self._send("GET", path, None, params)
        try:
            return TypeAdapter(list[model]).validate_json(response.content)  # type: ignore[valid-type]
        except ValidationError as exc:
            raise self._unexpected(path, exc) from exc

    def _text(self, method: str, path: str) -> str:
        return self._send(method, path, None, None, accept=_PEM_TYPES).text

    def _send(
        self,
        method: str,
        path: str,
        body: BaseModel | None,
        params: Mapping[str, str] | None,
        *,
        accept: str = "application/json",
    ) -> httpx.Response:
        content = None if body is None else body.model_dump_json().encode("utf-8")
        headers = {"Accept": accept}
        if content is not None:
            headers["Content-Type"] = "application/json"
        with self._translate_transport_errors():
            response = self._http.request(
                method, path, content=content, headers=headers, params=params
            )
        if response.is_success:
            return response
        raise _request_error(response)

    @contextmanager
    def _translate_transport_errors(self) -> Iterator[None]:
        try:
            yield
        except httpx.TransportError as exc:
            raise _connection_error(exc, self.url, self._client_cert) from exc

    def _unexpected(self, path: str, exc: ValidationError) -> VaultConnectionError:
        return VaultConnectionError(
            f"{self.url}{path} answered with a body this client cannot read "
            f"({exc.error_count()} problem(s)); is the vault the same modelseal version?"
        )

    def __repr__(self) -> str:
        return f"VaultClient({self.url!r})"


def _recorded_url(admin_dir: Path) -> str:
    """The vault URL ``vault init`` wrote into the admin credential."""
    path = admin_dir / ADMIN_CREDENTIAL
    try:
        url = json.loads(path.read_bytes())["vault_url"]
    except (OSError, ValueError, KeyError, TypeError):
        url = None
    if not isinstance(url, str):
        raise UsageError(
            f"no vault URL given, and {path} does not record one",
            hint="pass --vault URL or export MODELSEAL_VAULT=URL",
        )
    return url


def _trusting(ca: Path) -> ssl.SSLContext:
    try:
        return ssl.create_default_context(cafile=ca)
    except (OSError, ssl.SSLError) as exc:
        raise UsageError(f"cannot load the vault CA certificate {ca}: {_reason(exc)}") from exc


def _base_url(url: str) -> str:
    url = url.strip().rstrip("/")
    if not url.startswith("https://"):
        raise UsageError(
            f"the vault URL must start with https:// (the vault speaks only HTTPS), not {url!r}"
        )
    return url


def _only(**params: str | None) -> dict[str, str]:
    return {name: value for name, value in params.items() if value is not None}


def _segment(value: str) -> str:
    if not value or "/" in value or value in (".", ".."):
        raise UsageError(f"{value!r} is not an id")
    return value


def _request_error(response: httpx.Response) -> VaultRequestError:
    try:
        error = s.ErrorBody.model_validate_json(response.content)
    except ValidationError:
        return VaultRequestError(
            f"HTTP_{response.status_code}",
            f"the vault answered {response.status_code} {response.reason_phrase} "
            "without an error body",
            status=response.status_code,
        )
    message = error.message
    if error.request_id:
        message += f" (request id {error.request_id}: the vault's log has the details)"
    return VaultRequestError(
        error.code,
        message,
        status=response.status_code,
        retry_after=error.retry_after,
        request_id=error.request_id,
        hint=error.hint,
    )


def _connection_error(
    exc: httpx.TransportError, url: str, client_cert: Path | None
) -> VaultConnectionError:
    causes = list(_chain(exc))
    if any(isinstance(c, ConnectionRefusedError) for c in causes) or any(
        isinstance(c, OSError) and c.errno == errno.ECONNREFUSED for c in causes
    ):
        return VaultConnectionError(
            f"no vault is listening at {url}",
            hint="start it with `modelseal vault serve`, or check --vault / MODELSEAL_VAULT",
        )
    if isinstance(exc, httpx.TimeoutException):
        return VaultConnectionError(f"the vault at {url} did not answer in time")
    verify = next((c for c in causes if isinstance(c, ssl.SSLCertVerificationError)), None)
    if verify is not None:
        return VaultConnectionError(
            f"the server at {url} is not the vault this client trusts: its TLS certificate "
            f"does not verify ({verify.verify_message})",
            hint="check the URL and that the CA file is this vault's ca.pem",
        )
    if client_cert is not None and isinstance(
        exc, httpx.ConnectError | httpx.ReadError | httpx.WriteError | httpx.RemoteProtocolError
    ):
        return VaultConnectionError(
            f"the vault at {url} refused this client certificate ({client_cert}): it closed "
            "the connection during the TLS handshake, so the certificate is not one its CA "
            "issued, or it has expired",
            hint="use the credential this vault issued (admin/ from `vault init`, or the "
            "device files from `agent enroll`)",
        )
    return VaultConnectionError(f"cannot reach the vault at {url}: {_reason(exc)}")


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
