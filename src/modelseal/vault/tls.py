"""HTTPS with client certificates: the TLS context, and uvicorn passing the peer certificate on.

uvicorn does not tell the application which client certificate the TLS handshake verified, so
:class:`TLSHttpToolsProtocol` adds the ASGI TLS extension
(https://asgi.readthedocs.io/en/latest/specs/tls.html) to every request scope:
``scope["extensions"]["tls"] = {"client_cert_chain": (PEM leaf,) or (), "client_cert_name": …,
"client_cert_error": None, "server_cert": None, "tls_version": 0x0304, "cipher_suite": 0x1302}``.
The certificate is read once per connection, right after the handshake.

The context asks for a client certificate but does not require one (``CERT_OPTIONAL``), so open
routes (``/healthz``, ``/v1/ca``, ``/v1/license-keys``) work without; a certificate that is sent
must chain to the vault CA and allow client authentication, or the handshake fails. Routes decide
what they need with :mod:`modelseal.vault.auth`.
"""

from __future__ import annotations

import asyncio
import functools
import ssl
from collections.abc import Callable
from os import PathLike
from typing import Any

from uvicorn import Config, Server
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.supervisors import Multiprocess

from modelseal.crypto import KeyFormatError, load_certificates
from modelseal.errors import Error

__all__ = [
    "TLSConfigError",
    "TLSHttpToolsProtocol",
    "build_uvicorn_config",
    "run_https",
    "server_ssl_context",
    "tls_extension",
]

StrPath = str | PathLike[str]
TLSExtension = dict[str, Any]

_TLS_VERSIONS = {"TLSv1.2": 0x0303, "TLSv1.3": 0x0304}
_CIPHER_IDS: dict[str, int] = {}  # OpenSSL cipher name -> IANA id, filled from the context


class TLSConfigError(Error):
    """The TLS certificate, key or client CA file cannot be used."""

    code = "TLS_CONFIG"


def server_ssl_context(
    cert_file: StrPath,
    key_file: StrPath,
    client_ca_file: StrPath,
    *,
    key_password: bytes | None = None,
) -> ssl.SSLContext:
    """A server context: TLS 1.2 or 1.3 (1.3 when the client can), ECDHE with AEAD ciphers only,
    client certificates optional but verified against ``client_ca_file`` alone, ALPN http/1.1."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers("ECDHE+AESGCM:ECDHE+CHACHA20")  # TLS 1.2; the 1.3 suites are all AEAD
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    try:
        context.load_cert_chain(cert_file, key_file, password=key_password)
    except (OSError, ssl.SSLError) as exc:
        raise TLSConfigError(
            f"cannot load the TLS certificate {cert_file} with key {key_file}: {exc}",
            hint="check both files exist, are PEM, belong together, and the key password",
        ) from exc
    try:
        context.load_verify_locations(cafile=client_ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise TLSConfigError(
            f"cannot load the client CA certificate {client_ca_file}: {exc}"
        ) from exc
    context.verify_mode = ssl.CERT_OPTIONAL
    context.verify_flags |= ssl.VERIFY_X509_STRICT
    context.set_alpn_protocols(["http/1.1"])
    return context


def tls_extension(ssl_object: ssl.SSLObject | ssl.SSLSocket) -> TLSExtension:
    """The ASGI TLS extension for a connection whose handshake has completed."""
    der = ssl_object.getpeercert(binary_form=True)
    chain: tuple[str, ...] = ()
    name: str | None = None
    error: str | None = None
    if der:
        try:
            (cert,) = load_certificates(der, what="the client certificate")
        except KeyFormatError as exc:  # OpenSSL accepted what cryptography cannot read
            error = exc.message
        else:
            chain = (cert.pem().decode("ascii"),)
            name = cert.subject
    cipher = ssl_object.cipher()
    version = ssl_object.version()
    return {
        "server_cert": None,  # Python's ssl cannot return the local certificate
        "client_cert_chain": chain,  # Python 3.11 exposes only the leaf
        "client_cert_name": name,
        # A certificate that fails verification fails the handshake; this only reports one that
        # verified but cannot be parsed here (the app then sees no certificate at all).
        "client_cert_error": error,
        "tls_version": _TLS_VERSIONS.get(version) if version else None,
        "cipher_suite": _cipher_id(ssl_object.context, cipher[0]) if cipher else None,
    }


def _cipher_id(context: ssl.SSLContext, name: str) -> int | None:
    if name not in _CIPHER_IDS:
        for entry in context.get_ciphers():
            _CIPHER_IDS.setdefault(entry["name"], entry["id"] & 0xFFFF)
    return _CIPHER_IDS.get(name)


class TLSHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol plus the ASGI TLS extension in each request scope."""

    _tls: TLSExtension | None = None

    def connection_made(  # type: ignore[override]
        self, transport: asyncio.Transport
    ) -> None:
        super().connection_made(transport)
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is not None:
            self._tls = tls_extension(ssl_object)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._tls is not None:
            tls: dict[object, object] = dict(self._tls.items())  # a copy per request
            self.scope["extensions"] = {"tls": tls}


def build_uvicorn_config(
    app: Any,
    *,
    host: str,
    port: int,
    cert_file: StrPath,
    key_file: StrPath,
    client_ca_file: StrPath,
    key_password: bytes | None = None,
    workers: int = 1,
    loop: str = "auto",
    log_level: str = "warning",
    **options: Any,
) -> Config:
    """A uvicorn config serving ``app`` (an ASGI app, or an import string for ``workers > 1``)
    over HTTPS with :func:`server_ssl_context` and :class:`TLSHttpToolsProtocol`."""
    factory = functools.partial(_context_factory, cert_file, key_file, client_ca_file, key_password)
    return Config(
        app,
        host=host,
        port=port,
        http=TLSHttpToolsProtocol,
        ssl_context_factory=factory,
        workers=workers,
        loop=loop,
        log_level=log_level,
        access_log=False,
        server_header=False,
        **options,
    )


def run_https(config: Config) -> None:
    """Serve until interrupted: one process, or ``config.workers`` processes sharing the socket."""
    if config.workers > 1:
        if not isinstance(config.app, str):
            raise TLSConfigError("several workers need the app as an import string 'module:attr'")
        Multiprocess(config, sockets=[config.bind_socket()]).run()
    else:
        Server(config).run()


def _context_factory(
    cert_file: StrPath,
    key_file: StrPath,
    client_ca_file: StrPath,
    key_password: bytes | None,
    _config: Config,
    _default: Callable[[], ssl.SSLContext],
) -> ssl.SSLContext:
    """uvicorn's ``ssl_context_factory`` hook; module-level so worker processes can unpickle it."""
    return server_ssl_context(cert_file, key_file, client_ca_file, key_password=key_password)
