"""HTTPS with client certificates on loopback: real uvicorn, real TLS, httpx, curl and openssl.

A tiny FastAPI app stands in for the vault: ``/healthz`` is open, ``/device`` and ``/admin`` need
the role. Certificates come from the vault CA (``modelseal.crypto.ca``) through CSRs.
"""

from __future__ import annotations

import datetime as dt
import inspect
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import httpx
import pytest
import uvicorn
from fastapi import Depends, FastAPI, Request
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from modelseal.crypto import (
    Certificate,
    CertificateAuthority,
    Role,
    SigningKey,
    create_ca,
    create_csr,
    issue_from_csr,
    issue_server_cert,
    parse_subject,
    private_key_pem_unencrypted,
)
from modelseal.vault.auth import add_auth_error_handler, require_role
from modelseal.vault.tls import (
    TLSConfigError,
    TLSHttpToolsProtocol,
    build_uvicorn_config,
    run_https,
    server_ssl_context,
    tls_extension,
)
from tests.conftest import expect_error

TLS13_SUITES = {0x1301, 0x1302, 0x1303}


# --- certificates --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Credential:
    cert: Path
    key: Path
    subject: str


@dataclass(frozen=True)
class PKI:
    ca: Path
    server: Credential
    device: Credential
    admin: Credential
    foreign: Credential  # a device certificate from another CA


def _write(folder: Path, name: str, cert: Certificate, key: SigningKey) -> Credential:
    (folder / f"{name}.pem").write_bytes(cert.pem())
    (folder / f"{name}.key").write_bytes(private_key_pem_unencrypted(key))
    (folder / f"{name}.key").chmod(0o600)
    return Credential(folder / f"{name}.pem", folder / f"{name}.key", cert.subject)


def _client(folder: Path, ca: CertificateAuthority, name: str, role: Role) -> Credential:
    key = SigningKey.generate("ecdsa-p256")
    csr = create_csr(key, parse_subject(f"CN={name}"))
    now = dt.datetime.now(dt.UTC)
    cert = issue_from_csr(ca, csr, subject_override=None, role=role, days=1, now=now)
    return _write(folder, name, cert, key)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    folder = tmp_path_factory.mktemp("pki")
    now = dt.datetime.now(dt.UTC)
    ca = create_ca("CN=modelseal vault CA", days=2, now=now)
    (folder / "ca.pem").write_bytes(ca.certificate.pem())
    server_key = SigningKey.generate("ecdsa-p256")
    server = issue_server_cert(ca, server_key, hosts=["127.0.0.1", "localhost"], days=1, now=now)
    other_ca = create_ca("CN=another CA", days=2, now=now)
    return PKI(
        ca=folder / "ca.pem",
        server=_write(folder, "server", server, server_key),
        device=_client(folder, ca, "device-1", "device"),
        admin=_client(folder, ca, "operator", "admin"),
        foreign=_client(folder, other_ca, "intruder", "device"),
    )


# --- the server ----------------------------------------------------------------------------------


def _app(hits: list[str] | None = None) -> FastAPI:
    app = FastAPI()
    add_auth_error_handler(app)

    def describe(request: Request, subject: str | None) -> dict[str, Any]:
        if hits is not None:
            hits.append(request.url.path)
        tls = request.scope.get("extensions", {}).get("tls")
        client = request.scope["client"]
        return {"subject": subject, "client_port": client[1] if client else None, "tls": tls}

    @app.get("/healthz")
    def healthz(request: Request) -> dict[str, Any]:
        return describe(request, None)

    @app.get("/device")
    def device(
        request: Request, cert: Annotated[Certificate, Depends(require_role("device"))]
    ) -> dict[str, Any]:
        return describe(request, cert.subject)

    @app.get("/admin")
    def admin(
        request: Request, cert: Annotated[Certificate, Depends(require_role("admin"))]
    ) -> dict[str, Any]:
        return describe(request, cert.subject)

    return app


def _serve(config: uvicorn.Config) -> Iterator[str]:
    """Run ``config`` in a thread on a free loopback port; yield its base URL; stop it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.01)
    try:
        yield f"{'https' if config.is_ssl else 'http'}://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
        assert not thread.is_alive(), "the server did not stop"


@pytest.fixture(scope="module")
def hits() -> list[str]:
    """The paths the application served, in order."""
    return []


@pytest.fixture(scope="module")
def url(pki: PKI, hits: list[str]) -> Iterator[str]:
    config = build_uvicorn_config(
        _app(hits),
        host="127.0.0.1",
        port=0,
        cert_file=pki.server.cert,
        key_file=pki.server.key,
        client_ca_file=pki.ca,
        lifespan="off",
    )
    yield from _serve(config)


def _context(pki: PKI, who: Credential | None, *, tls12: bool = False) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=pki.ca)
    if who is not None:
        context.load_cert_chain(who.cert, who.key)
    if tls12:
        context.maximum_version = ssl.TLSVersion.TLSv1_2
    return context


def _get(url: str, context: ssl.SSLContext, path: str) -> httpx.Response:
    with httpx.Client(verify=context, timeout=10) as client:
        return client.get(url + path)


# --- tests ---------------------------------------------------------------------------------------


def test_no_client_certificate(url: str, pki: PKI) -> None:
    context = _context(pki, None)
    health = _get(url, context, "/healthz")
    assert health.status_code == 200
    assert health.json()["tls"]["client_cert_chain"] == []
    assert health.json()["tls"]["client_cert_name"] is None
    for path in ("/device", "/admin"):
        response = _get(url, context, path)
        assert response.status_code == 401
        body = response.json()
        assert body["code"] == "CLIENT_CERT_REQUIRED"
        assert "client certificate issued by the vault CA" in body["message"]


def test_device_certificate(url: str, pki: PKI) -> None:
    context = _context(pki, pki.device)
    response = _get(url, context, "/device")
    assert response.status_code == 200
    assert response.json()["subject"] == pki.device.subject == "CN=device-1,OU=device"
    refused = _get(url, context, "/admin")
    assert refused.status_code == 403
    assert refused.json()["code"] == "WRONG_ROLE"
    assert refused.json()["message"] == (
        "This endpoint needs an admin certificate, but the client certificate "
        "'CN=device-1,OU=device' is a device certificate."
    )


def test_admin_certificate(url: str, pki: PKI) -> None:
    context = _context(pki, pki.admin)
    response = _get(url, context, "/admin")
    assert response.status_code == 200
    assert response.json()["subject"] == "CN=operator,OU=admin"
    refused = _get(url, context, "/device")
    assert refused.status_code == 403
    assert refused.json() == {
        "code": "WRONG_ROLE",
        "message": "This endpoint needs a device certificate, but the client certificate "
        "'CN=operator,OU=admin' is an admin certificate.",
    }


# The server aborts the connection without sending the TLS alert (asyncio and uvloop both close
# the transport on a failed handshake), so the client sees an EOF, not "unknown ca".
REFUSED = {
    "tls1.2": (httpx.ConnectError,),  # the handshake itself fails
    # TLS 1.3: the client finishes its side of the handshake before the server checks its
    # certificate, so the refusal shows on the first read or write.
    "tls1.3": (httpx.ConnectError, httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError),
}


@pytest.mark.parametrize("version", sorted(REFUSED))
@pytest.mark.parametrize("who", ["foreign", "server"])
def test_a_certificate_the_handshake_refuses(
    url: str, pki: PKI, who: str, version: str, hits: list[str]
) -> None:
    """A certificate from another CA; and one from the vault CA, but for serverAuth only
    (OpenSSL checks the purpose)."""
    context = _context(pki, getattr(pki, who), tls12=version == "tls1.2")
    before = len(hits)
    with pytest.raises(REFUSED[version]):
        _get(url, context, "/healthz")
    assert len(hits) == before, "the refused connection reached the application"
    assert _get(url, _context(pki, pki.device), "/healthz").status_code == 200
    assert len(hits) == before + 1


def test_the_tls_extension_and_keep_alive(url: str, pki: PKI) -> None:
    with httpx.Client(verify=_context(pki, pki.device), timeout=10) as client:
        first, second = (client.get(url + "/device").json() for _ in range(2))
    assert first["client_port"] == second["client_port"]  # one connection, reused
    tls = first["tls"]
    assert tls["client_cert_chain"] == [pki.device.cert.read_text()]
    assert tls["client_cert_name"] == "CN=device-1,OU=device"
    assert tls["client_cert_error"] is None and tls["server_cert"] is None
    assert tls["tls_version"] == 0x0304
    assert tls["cipher_suite"] in TLS13_SUITES
    with httpx.Client(verify=_context(pki, pki.device, tls12=True), timeout=10) as client:
        tls12 = client.get(url + "/device").json()["tls"]
    assert tls12["tls_version"] == 0x0303
    assert tls12["cipher_suite"] in {0xC02B, 0xC02C, 0xCCA9}  # ECDHE-ECDSA AES-GCM / ChaCha20
    with (
        httpx.Client(verify=_context(pki, pki.device), timeout=10) as one,
        httpx.Client(verify=_context(pki, pki.device), timeout=10) as two,
    ):
        assert (
            one.get(url + "/device").json()["client_port"]
            != two.get(url + "/device").json()["client_port"]
        )


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl(url: str, pki: PKI) -> None:
    base = ["curl", "--silent", "--show-error", "--cacert", str(pki.ca), "--max-time", "10"]
    auth = ["--cert", str(pki.device.cert), "--key", str(pki.device.key)]
    ok = subprocess.run(
        [*base, *auth, "--write-out", "\n%{http_code}", url + "/device"],
        capture_output=True, text=True, check=False, timeout=30,
    )  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.endswith("\n200") and '"subject":"CN=device-1,OU=device"' in ok.stdout
    anonymous = subprocess.run(
        [*base, "--write-out", "\n%{http_code}", url + "/device"],
        capture_output=True, text=True, check=False, timeout=30,
    )  # fmt: skip
    assert anonymous.stdout.endswith("\n401") and "CLIENT_CERT_REQUIRED" in anonymous.stdout


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_openssl_s_client(url: str, pki: PKI) -> None:
    port = url.rsplit(":", 1)[1]
    request = b"GET /device HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    result = subprocess.run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-CAfile", str(pki.ca),
         "-cert", str(pki.device.cert), "-key", str(pki.device.key), "-verify_return_error",
         "-verify_ip", "127.0.0.1", "-alpn", "http/1.1", "-quiet"],
        input=request, capture_output=True, check=False, timeout=30,
    )  # fmt: skip
    assert result.stdout.startswith(b"HTTP/1.1 200 OK"), result.stderr
    assert b"CN=device-1,OU=device" in result.stdout


def test_plain_http_gets_no_tls_extension() -> None:
    """The ASGI TLS spec forbids the extension on connections that are not TLS."""
    config = uvicorn.Config(_app(), http=TLSHttpToolsProtocol, lifespan="off", log_level="warning")
    for base in _serve(config):
        response = httpx.get(base + "/healthz", timeout=10)
        assert response.status_code == 200 and response.json()["tls"] is None


class _FakeSSLObject:
    """What :func:`tls_extension` reads from an ``ssl.SSLObject``."""

    context = ssl.create_default_context()

    def __init__(self, der: bytes | None) -> None:
        self._der = der

    def getpeercert(self, binary_form: bool) -> bytes | None:
        assert binary_form
        return self._der

    def cipher(self) -> tuple[str, str, int]:
        return ("TLS_AES_256_GCM_SHA384", "TLSv1.3", 256)

    def version(self) -> str:
        return "TLSv1.3"


def test_tls_extension_of_a_certificate_that_cannot_be_parsed() -> None:
    extension = tls_extension(_FakeSSLObject(b"\x30\x03\x02\x01\x00"))  # type: ignore[arg-type]
    assert extension["client_cert_chain"] == ()  # so the routes see no certificate: 401
    assert extension["client_cert_name"] is None
    assert "no readable X.509 certificate" in extension["client_cert_error"]
    assert extension["tls_version"] == 0x0304 and extension["cipher_suite"] == 0x1302
    assert tls_extension(_FakeSSLObject(None))["client_cert_error"] is None  # type: ignore[arg-type]


def test_server_context_settings(pki: PKI) -> None:
    context = server_ssl_context(pki.server.cert, pki.server.key, pki.ca)
    assert context.verify_mode == ssl.CERT_OPTIONAL
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert context.verify_flags & ssl.VERIFY_X509_STRICT
    (client_ca,) = context.get_ca_certs()  # only the vault CA, no system roots
    assert client_ca["subject"] == ((("commonName", "modelseal vault CA"),),)
    assert context.get_ca_certs() == [client_ca]


def test_unusable_tls_files_are_named(pki: PKI) -> None:
    error = expect_error(
        TLSConfigError,
        lambda: server_ssl_context(pki.server.cert, pki.device.key, pki.ca),
        f"cannot load the TLS certificate {pki.server.cert} with key {pki.device.key}",
    )
    assert error.hint and "belong together" in error.hint
    expect_error(
        TLSConfigError,
        lambda: server_ssl_context(pki.server.cert, pki.server.key, pki.ca.with_name("nope.pem")),
        "cannot load the client CA certificate",
    )
    config = build_uvicorn_config(
        _app(), host="127.0.0.1", port=0, cert_file=pki.server.cert, key_file=pki.server.key,
        client_ca_file=pki.ca, workers=2,
    )  # fmt: skip
    expect_error(TLSConfigError, lambda: run_https(config), "import string")


def test_the_uvicorn_internals_we_hook_still_exist() -> None:
    """TLSHttpToolsProtocol relies on these; if uvicorn changes them, fix the subclass."""
    assert uvicorn.__version__.split(".")[:1] == ["0"], "uvicorn 1.x: re-check the protocol hooks"
    for name in ("connection_made", "on_message_begin"):
        assert name in vars(HttpToolsProtocol), f"HttpToolsProtocol.{name} is gone"
    assert "self.scope = {" in inspect.getsource(HttpToolsProtocol.on_message_begin)
    assert "ssl_context_factory" in inspect.signature(uvicorn.Config).parameters
    assert "http" in inspect.signature(uvicorn.Config).parameters
