"""deploy/nginx/: Debian's nginx accepts modelseal-serve.conf (``nginx -t``) with certificates
from dev-certs.sh, and, started on loopback, enforces client certificates in front of a small
REST upstream and a gRPC upstream (the KServe v2 service from modelseal's own stubs).

``nginx -t`` resolves upstream host names, and "runtime" exists only on the compose network, so
the test variant of the file differs in exactly two places: the upstream servers become
127.0.0.1:<port> (and, for the live run, the listen ports become free loopback ports).
"""

from __future__ import annotations

import http.client
import http.server
import json
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from modelseal._generated import kserve_v2_pb2
from modelseal.serving.grpc_server import SERVICE
from tests.unit.deploy._recipes import DEV_CERTS, NGINX_CONF

NGINX = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if Path(p).is_file()), None)
pytestmark = pytest.mark.skipif(
    NGINX is None, reason="nginx is not installed (bash tools/system-deps.sh installs it)"
)


@dataclass(frozen=True)
class Certs:
    nginx: Path  # server.pem, server-key.pem, client-ca.pem
    client: Path  # client.pem, client-key.pem, server-ca.pem
    foreign: Path  # a second set: its client certificate is from another CA


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    root = tmp_path_factory.mktemp("certs")
    for name in ("main", "foreign"):
        subprocess.run(
            ["sh", str(DEV_CERTS), str(root / name), "localhost"],
            check=True,
            capture_output=True,
            timeout=30,
        )
    return Certs(root / "main" / "nginx", root / "main" / "client", root / "foreign" / "client")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def render(folder: Path, certs: Certs, *, rest: int, grpc_port: int, listen: bool) -> Path:
    """The test variant of the configuration in ``folder`` (also the prefix), with tls/."""
    text = NGINX_CONF.read_text()
    changes = {
        "server runtime:8000;": f"server 127.0.0.1:{rest};",
        "server runtime:9000;": f"server 127.0.0.1:{grpc_port};",
    }
    if listen:
        changes |= {
            "listen 8443 ssl http2;": f"listen 127.0.0.1:{free_port()} ssl http2;",
            "listen 9443 ssl http2;": f"listen 127.0.0.1:{free_port()} ssl http2;",
        }
    for old, new in changes.items():
        assert text.count(old) == 1, f"modelseal-serve.conf no longer has {old!r}"
        text = text.replace(old, new)
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copytree(certs.nginx, folder / "tls")
    conf = folder / "nginx.conf"
    conf.write_text(text)
    return conf


def nginx_argv(conf: Path, *extra: str, daemon: bool = False) -> list[str]:
    assert NGINX is not None
    prefix = conf.parent
    directives = f"pid {prefix / 'nginx.pid'};" + ("" if daemon else " daemon off;")
    return [NGINX, *extra, "-p", f"{prefix}/", "-c", str(conf), "-e", "stderr", "-g", directives]


def listen_ports(conf: Path) -> tuple[int, int]:
    ports = [
        int(line.split(":")[1].split()[0])
        for line in conf.read_text().splitlines()
        if line.strip().startswith("listen 127.0.0.1:")
    ]
    assert len(ports) == 2
    return ports[0], ports[1]


def test_nginx_t_accepts_the_configuration(tmp_path: Path, certs: Certs) -> None:
    conf = render(tmp_path / "nginx", certs, rest=8000, grpc_port=9000, listen=False)
    done = subprocess.run(
        nginx_argv(conf, "-t"), capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "test is successful" in done.stderr
    assert "[warn]" not in done.stderr and "[emerg]" not in done.stderr, done.stderr


def test_nginx_t_refuses_a_broken_configuration(tmp_path: Path, certs: Certs) -> None:
    """The check above can fail: a missing client CA is an error, not a warning."""
    conf = render(tmp_path / "nginx", certs, rest=8000, grpc_port=9000, listen=False)
    (conf.parent / "tls" / "client-ca.pem").unlink()
    done = subprocess.run(
        nginx_argv(conf, "-t"), capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode != 0
    assert "client-ca.pem" in done.stderr


# --- live: NGINX on loopback in front of small upstreams -------------------------------------


class _Upstream(http.server.BaseHTTPRequestHandler):
    """Answers every GET with what it received: the path and the client subject NGINX forwards."""

    def do_GET(self) -> None:
        body = json.dumps(
            {"path": self.path, "client": self.headers.get("X-Client-Subject")}
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _server_live(request: Any, context: grpc.ServicerContext) -> Any:
    """ServerLive of a KServe upstream: live when NGINX forwarded the client's subject."""
    metadata = dict(context.invocation_metadata())
    return kserve_v2_pb2.ServerLiveResponse(live=bool(metadata.get("x-client-subject")))


def _server_live_call(channel: grpc.Channel) -> Any:
    return channel.unary_unary(
        f"/{SERVICE}/ServerLive",
        request_serializer=kserve_v2_pb2.ServerLiveRequest.SerializeToString,
        response_deserializer=kserve_v2_pb2.ServerLiveResponse.FromString,
    )


@pytest.fixture
def upstreams() -> Iterator[tuple[int, int]]:
    rest = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Upstream)
    thread = threading.Thread(target=rest.serve_forever, daemon=True)
    thread.start()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    live = grpc.unary_unary_rpc_method_handler(
        _server_live,
        request_deserializer=kserve_v2_pb2.ServerLiveRequest.FromString,
        response_serializer=kserve_v2_pb2.ServerLiveResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(SERVICE, {"ServerLive": live}),)
    )
    grpc_port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield rest.server_address[1], grpc_port
    finally:
        server.stop(grace=None).wait(5)
        rest.shutdown()
        rest.server_close()
        thread.join(5)


@pytest.fixture
def running_nginx(
    tmp_path: Path, certs: Certs, upstreams: tuple[int, int]
) -> Iterator[tuple[int, int]]:
    conf = render(tmp_path / "nginx", certs, rest=upstreams[0], grpc_port=upstreams[1], listen=True)
    rest_port, grpc_port = listen_ports(conf)
    process = subprocess.Popen(nginx_argv(conf), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while True:
            assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
            try:
                socket.create_connection(("127.0.0.1", rest_port), timeout=1).close()
                socket.create_connection(("127.0.0.1", grpc_port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "nginx did not start listening"
                time.sleep(0.05)
        yield rest_port, grpc_port
    finally:
        process.terminate()  # SIGTERM: fast shutdown; the master waits for its workers
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        if process.stderr:
            process.stderr.close()
    assert not (tmp_path / "nginx" / "nginx.pid").exists(), "nginx left its pid file behind"


def _get(port: int, certs: Certs, client: Path | None) -> tuple[int, bytes]:
    context = ssl.create_default_context(cafile=certs.client / "server-ca.pem")
    if client is not None:
        context.load_cert_chain(client / "client.pem", client / "client-key.pem")
    connection = http.client.HTTPSConnection("localhost", port, context=context, timeout=10)
    try:
        connection.request("GET", "/v2/health/ready")
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_rest_needs_a_client_certificate_from_the_client_ca(
    running_nginx: tuple[int, int], certs: Certs
) -> None:
    rest_port, _ = running_nginx
    status, body = _get(rest_port, certs, None)
    assert status == 400 and b"No required SSL certificate was sent" in body
    status, body = _get(rest_port, certs, certs.foreign)
    assert status == 400 and b"SSL certificate error" in body
    status, body = _get(rest_port, certs, certs.client)
    assert status == 200
    assert json.loads(body) == {"path": "/v2/health/ready", "client": "CN=inference-client"}


def test_grpc_goes_through_grpc_pass_with_a_client_certificate(
    running_nginx: tuple[int, int], certs: Certs
) -> None:
    _, grpc_port = running_nginx
    root = (certs.client / "server-ca.pem").read_bytes()
    options = [("grpc.ssl_target_name_override", "localhost")]
    good = grpc.ssl_channel_credentials(
        root,
        (certs.client / "client-key.pem").read_bytes(),
        (certs.client / "client.pem").read_bytes(),
    )
    with grpc.secure_channel(f"127.0.0.1:{grpc_port}", good, options) as channel:
        answer = _server_live_call(channel)(kserve_v2_pb2.ServerLiveRequest(), timeout=10)
        assert answer.live is True  # the upstream saw the forwarded client subject
    anonymous = grpc.ssl_channel_credentials(root)
    with grpc.secure_channel(f"127.0.0.1:{grpc_port}", anonymous, options) as channel:
        with pytest.raises(grpc.RpcError) as refused:
            _server_live_call(channel)(kserve_v2_pb2.ServerLiveRequest(), timeout=10)
        assert refused.value.code() != grpc.StatusCode.OK  # NGINX's 400, never the upstream


def test_dev_certs_refuses_to_overwrite(tmp_path: Path) -> None:
    target = tmp_path / "certs"
    target.mkdir()
    (target / "keep.pem").write_text("mine")
    done = subprocess.run(
        ["sh", str(DEV_CERTS), str(target)], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 1 and "refusing to overwrite" in done.stderr
    assert (target / "keep.pem").read_text() == "mine"


def test_dev_certs_makes_a_verifiable_set(certs: Certs) -> None:
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(certs.nginx / "server.pem", certs.nginx / "server-key.pem")
    server.load_verify_locations(certs.nginx / "client-ca.pem")
    assert (certs.client / "client-key.pem").stat().st_mode & 0o077 == 0
    assert not list(certs.nginx.parent.joinpath("nginx").glob("*ca-key*"))
