"""TLS with client-certificate authentication on both ports of ``modelseal serve``: tritonclient
with a client certificate is served; without one the handshake is refused, on REST and gRPC."""

from __future__ import annotations

import socket
import ssl

import httpx
import pytest
from tritonclient.utils import InferenceServerException

from tests.integration.runtime._chain import grpc_client, http_client, iris_input
from tests.integration.runtime.conftest import Chain
from tests.triton import release_http


def test_clients_with_a_certificate_are_served(chain: Chain) -> None:
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    server = chain.socket_server
    rest = http_client(server)
    try:
        assert rest.is_server_ready() and rest.is_model_ready("iris")
        tensor = httpclient.InferInput("float_input", [3, 2], "FP32")
        tensor.set_data_from_numpy(iris_input())
        assert rest.infer("iris", [tensor]).as_numpy("label").shape == (3,)
    finally:
        release_http(rest)
    grpc = grpc_client(server)
    try:
        assert grpc.is_server_ready() and grpc.is_model_ready("iris")
        tensor = grpcclient.InferInput("float_input", [3, 2], "FP32")
        tensor.set_data_from_numpy(iris_input())
        assert grpc.infer("iris", [tensor]).as_numpy("label").shape == (3,)
    finally:
        grpc.close()


def test_rest_without_a_client_certificate_is_refused(chain: Chain) -> None:
    server = chain.socket_server
    assert server.tls is not None
    context = server.tls.context(client_cert=False)
    with pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError)) as info:
        with socket.create_connection(("127.0.0.1", server.rest), timeout=10) as raw:
            with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                # TLS 1.3: the server checks the certificate after the client's Finished, so the
                # refusal arrives as an alert on the first read
                tls.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
                assert tls.recv(1024) == b"", "the server answered a client without a certificate"
                raise ConnectionResetError("closed without an answer")
    print(f"\nREST without a client certificate: {info.value!r}")
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{server.base}/v2/health/live", verify=context, timeout=10)
    client = http_client(server, client_cert=False)
    try:
        with pytest.raises(Exception):  # noqa: B017 - gevent's own SSL error classes
            client.is_server_live()
    finally:
        release_http(client)
    # and plain HTTP gets nothing either
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://{server.rest_url}/v2/health/live", timeout=10)


def test_grpc_without_a_client_certificate_is_refused(chain: Chain) -> None:
    import tritonclient.grpc as grpcclient

    server = chain.socket_server
    client = grpc_client(server, client_cert=False)
    try:
        tensor = grpcclient.InferInput("float_input", [3, 2], "FP32")
        tensor.set_data_from_numpy(iris_input())
        with pytest.raises(InferenceServerException) as info:
            client.infer("iris", [tensor], client_timeout=10)
        assert info.value.status() == "StatusCode.UNAVAILABLE"
        print(f"\ngRPC without a client certificate: {info.value.message()}")
    finally:
        client.close()
    plain = grpcclient.InferenceServerClient(server.grpc_url)
    try:
        with pytest.raises(InferenceServerException):
            plain.is_server_live(client_timeout=10)
    finally:
        plain.close()
