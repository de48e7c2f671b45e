"""The real chain for the runtime tests: a vault over HTTPS on loopback, enrolled devices, models
sealed to the vault and registered, licenses beside them, and ``modelseal serve`` (with the agent
in process, or ``modelseal agent serve`` behind a Unix socket) as subprocesses.

The test process never imports ``modelseal.serving``: its generated protobuf classes and
tritonclient's share the ``inference`` package, so the servers run as real subprocesses.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import shutil
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from modelseal.crypto import ImportPublicKey
from modelseal.licensing import Policy
from modelseal.package import seal
from modelseal.vault.api.schemas import LicenseRequest, PolicyTerms
from modelseal.vault.client import VaultClient
from tests import triton
from tests.conftest import make_identity
from tests.integration.agent._world import VaultControl
from tests.integration.vault._server import free_port
from tests.triton import release_http

ROOT = Path(__file__).resolve().parents[3]
MODELSEAL = [sys.executable, "-m", "modelseal"]
HEARTBEAT = dt.timedelta(seconds=1)
LEASE = dt.timedelta(seconds=30)
CUSTOMER = "acme"


def ocr_model_path() -> Path:
    import rapidocr_onnxruntime

    found = sorted(Path(rapidocr_onnxruntime.__file__).parent.glob("models/*rec*.onnx"))
    assert found, "the PP-OCRv4 recognition model of rapidocr-onnxruntime is missing"
    return found[0]


def iris_input() -> np.ndarray:
    return np.array([[5.1, 3.5], [6.2, 2.9], [7.7, 3.0]], dtype=np.float32)


def ocr_input() -> np.ndarray:
    return np.random.default_rng(7).random((1, 3, 48, 160), dtype=np.float32)


# --- command line ---------------------------------------------------------------------------------


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELSEAL_")}
    return {**env, "PYTHONPATH": str(ROOT / "src"), **extra}


def modelseal(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> str:
    """Run the ``modelseal`` CLI; its stdout (fails the test with stderr on a non-zero exit)."""
    done = subprocess.run(
        [*MODELSEAL, *args],
        capture_output=True,
        text=True,
        env=env or cli_env(),
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, f"modelseal {' '.join(args)} failed:\n{done.stderr}"
    return done.stdout


def stop_process(process: subprocess.Popen[bytes]) -> int | None:
    """SIGTERM, then SIGKILL after 15 s; the exit code (None when it had to be killed)."""
    if process.poll() is not None:
        return process.returncode
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)
        return None


# --- the vault side -------------------------------------------------------------------------------


@dataclass
class Vault:
    control: VaultControl
    tmp: Path

    @property
    def url(self) -> str:
        return self.control.url

    @property
    def admin_dir(self) -> Path:
        return self.control.home.path / "admin"

    def admin(self) -> VaultClient:
        return VaultClient.admin(self.url, self.admin_dir)

    def cli(self, *args: str) -> str:
        """An admin command of the CLI against this vault, with the admin credential."""
        return modelseal(*args, "--vault", self.url, "--admin", str(self.admin_dir))

    def enroll_cli(self, home: Path) -> str:
        """``modelseal agent enroll`` with a fresh one-time token; the new device id."""
        with self.admin() as admin:
            token = admin.create_enrollment_token(customer=CUSTOMER, ttl_seconds=600).token
        out = modelseal(
            "agent", "enroll", "--vault", self.url, "--home", str(home), "--quiet",
            env=cli_env(MODELSEAL_ENROLL_TOKEN=token),
        )  # fmt: skip
        return out.strip()

    def issue(self, model: str, out: Path, **terms: object) -> str:
        """A license for ``model`` version 1 (lease 30 s, heartbeat 1 s unless given) written to
        ``out``; its id."""
        terms.setdefault("lease", LEASE)
        terms.setdefault("heartbeat", HEARTBEAT)
        request = LicenseRequest(
            customer=CUSTOMER,
            model=model,
            versions="1",
            policy=PolicyTerms.of(Policy(**terms)),  # type: ignore[arg-type]
        )
        with self.admin() as admin:
            issued = admin.issue_license(request)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(issued.token + "\n")
        return issued.license.id

    def show(self, license_id: str) -> dict[str, object]:
        import json

        shown: dict[str, object] = json.loads(self.cli("license", "show", license_id, "--json"))
        return shown


def seal_model(vault: Vault, source: Path, out: Path, name: str, *, archive: bool) -> None:
    """``source`` (one ONNX file) sealed offline to the vault's import key as ``name`` version 1
    into ``out``; a directory package is registered through the API, an archive with
    ``modelseal model register``."""
    staging = vault.tmp / "staging" / name
    staging.mkdir(parents=True)
    shutil.copyfile(source, staging / "model.onnx")
    with vault.admin() as admin:
        import_key = ImportPublicKey.from_pem(admin.import_key_pem())
    owner = make_identity("Acme Models")
    out.parent.mkdir(parents=True, exist_ok=True)
    seal(
        staging, out, name=name, version=1, signing_key=owner.key, certificates=[owner.cert],
        import_keys=[import_key], archive=archive,
    )  # fmt: skip
    shutil.rmtree(staging)
    if archive:
        vault.cli("model", "register", str(out))
    else:
        with vault.admin() as admin:
            admin.register_model(
                manifest=(out / "manifest.json").read_bytes(),
                signature=(out / "manifest.sig").read_bytes(),
            )


@contextmanager
def running_vault(tmp: Path) -> Iterator[Vault]:
    from tests.integration.vault._server import make_home

    control = VaultControl(make_home(tmp / "vault"))
    control.start()
    try:
        vault = Vault(control, tmp)
        with vault.admin() as admin:
            admin.create_customer(CUSTOMER)
        yield vault
    finally:
        if control.server is not None:
            control.stop()


# --- TLS of the model server ------------------------------------------------------------------


@dataclass(frozen=True)
class Tls:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path

    def context(self, *, client_cert: bool = True) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.ca)
        if client_cert:
            context.load_cert_chain(self.client_cert, self.client_key)
        return context


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def make_tls(folder: Path) -> Tls:
    """A throw-away CA, a server certificate for 127.0.0.1 and a client certificate."""
    folder.mkdir(parents=True)
    now = dt.datetime.now(dt.UTC)

    def name(text: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])

    def builder(
        subject: str, issuer: x509.Name, key: ec.EllipticCurvePrivateKey
    ) -> x509.CertificateBuilder:
        return (
            x509.CertificateBuilder()
            .subject_name(name(subject))
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
        )

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        builder("runtime test CA", name("runtime test CA"), ca_key)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    leaf = x509.BasicConstraints(ca=False, path_length=None)
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = (
        builder("127.0.0.1", ca.subject, server_key)
        .add_extension(leaf, critical=True)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    client_key = ec.generate_private_key(ec.SECP256R1())
    client = (
        builder("runtime test client", ca.subject, client_key)
        .add_extension(leaf, critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    tls = Tls(
        folder / "ca.pem",
        folder / "server.pem",
        folder / "server.key",
        folder / "client.pem",
        folder / "client.key",
    )
    for cert, path in ((ca, tls.ca), (server, tls.server_cert), (client, tls.client_cert)):
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(server_key, tls.server_key)
    _write_key(client_key, tls.client_key)
    return tls


# --- the model server and the agent as processes -------------------------------------------------


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    rest: int
    grpc: int
    log: Path
    tls: Tls | None = None
    extra: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def rest_url(self) -> str:
        return f"127.0.0.1:{self.rest}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc}"

    @property
    def base(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.rest_url}"

    def http(self) -> httpx.Client:
        verify: ssl.SSLContext | bool = self.tls.context() if self.tls else True
        return httpx.Client(base_url=self.base, verify=verify, timeout=30)

    def infer_json(self, client: httpx.Client, model: str) -> httpx.Response:
        body = {
            "inputs": [
                {"name": "float_input", "shape": [3, 2], "datatype": "FP32",
                 "data": iris_input().ravel().tolist()}
            ]
        }  # fmt: skip
        return client.post(f"/v2/models/{model}/infer", json=body)

    def metrics(self, client: httpx.Client) -> str:
        return client.get("/metrics").text

    def stop(self) -> int | None:
        code = stop_process(self.process)
        for process in self.extra:
            stop_process(process)
        return code


def start_server(folder: Path, *args: str, tls: Tls | None = None) -> Server:
    """``modelseal serve ARGS`` on two free loopback ports, once /v2/health/ready answers 200."""
    rest, grpc = free_port(), free_port()
    command = [*MODELSEAL, "serve", *args, "--rest-port", str(rest), "--grpc-port", str(grpc)]
    command += ["--license-poll-interval", "1"]
    if tls is not None:
        command += ["--tls-cert", str(tls.server_cert), "--tls-key", str(tls.server_key)]
        command += ["--tls-client-ca", str(tls.ca)]
    home = folder / "home"
    home.mkdir(parents=True, exist_ok=True)
    log = folder / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            command,
            cwd=home,
            env=cli_env(TMPDIR=str(home), HOME=str(home)),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = Server(process, rest, grpc, log, tls)
    deadline = time.monotonic() + 60
    with server.http() as client:
        while True:
            if process.poll() is not None or time.monotonic() > deadline:
                server.stop()
                raise AssertionError(f"modelseal serve did not start:\n{log.read_text()}")
            try:
                if client.get("/v2/health/ready").status_code == 200:
                    return server
            except httpx.TransportError:
                pass
            time.sleep(0.05)


def start_agent(home: Path, socket_path: Path, log: Path) -> subprocess.Popen[bytes]:
    """``modelseal agent serve`` once its socket exists."""
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*MODELSEAL, "agent", "serve", "--home", str(home), "--socket", str(socket_path)],
            env=cli_env(),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 30
    while not socket_path.is_socket():
        if process.poll() is not None or time.monotonic() > deadline:
            stop_process(process)
            raise AssertionError(f"modelseal agent serve did not start:\n{log.read_text()}")
        time.sleep(0.05)
    return process


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> float:
    """Poll ``condition`` every 20 ms; the seconds it took."""
    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < timeout, f"timed out waiting for {what}"
        time.sleep(0.02)
    return time.monotonic() - start


# --- tritonclient ---------------------------------------------------------------------------------


def http_client(server: Server, *, client_cert: bool = True) -> Any:
    import tritonclient.http as httpclient

    if server.tls is None:
        return httpclient.InferenceServerClient(server.rest_url)
    import gevent.ssl  # type: ignore[import-untyped]

    tls = server.tls

    def context() -> Any:
        made = gevent.ssl.create_default_context(cafile=str(tls.ca))
        if client_cert:
            made.load_cert_chain(str(tls.client_cert), str(tls.client_key))
        return made

    return httpclient.InferenceServerClient(
        server.rest_url,
        ssl=True,
        ssl_context_factory=context,
        connection_timeout=10,
        network_timeout=10,
    )


def grpc_client(server: Server, *, client_cert: bool = True) -> Any:
    import tritonclient.grpc as grpcclient

    if server.tls is None:
        return grpcclient.InferenceServerClient(server.grpc_url)
    return grpcclient.InferenceServerClient(
        server.grpc_url,
        ssl=True,
        root_certificates=str(server.tls.ca),
        private_key=str(server.tls.client_key) if client_cert else None,
        certificate_chain=str(server.tls.client_cert) if client_cert else None,
    )


def infer_http(
    server: Server, model: str, array: np.ndarray, *, binary: bool
) -> dict[str, np.ndarray]:
    client = http_client(server)
    try:
        return triton.infer_http(client, model, array, binary=binary)
    finally:
        release_http(client)


def infer_grpc(server: Server, model: str, array: np.ndarray) -> dict[str, np.ndarray]:
    with grpc_client(server) as client:
        return triton.infer_grpc(client, model, array)
