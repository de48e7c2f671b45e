"""The ceiling of the vault's HTTP stack: a trivial device-authenticated GET over mTLS.

Before any database or crypto work, how many requests per second can one uvicorn worker
(httptools, :class:`modelseal.vault.tls.TLSHttpToolsProtocol`) answer when 32 keep-alive clients
each present a device certificate and FastAPI checks the role (``require_role("device")``)?
The vault targets >= 1,000 key releases/s, so this bounds what is left for the release itself.

Servers: one worker on the asyncio loop, one on uvloop, two uvloop workers; the peers in the
same run are the same app over plain HTTP (no TLS) and the bare ASGI protocol (no FastAPI).
Clients (separate processes, 32 connections in total, each opened once and reused):
``httpx`` (32 ``AsyncClient``s) and ``raw`` (asyncio streams writing HTTP/1.1 by hand, the
cheapest client Python has, so more of the CPU goes to the server). The box has two cores that
server and clients share, so each row also shows the server's CPU time per request: 1 s divided
by it is what one fully busy core could serve, and "other cores" shows CPU taken by anything
else on the machine meanwhile (a row with other load above ~0.1 understates the server).

    .venv/bin/python bench/vault_mtls.py [--seconds 5] [--connections 32] [--client-procs 1]
                                         [--quick]

Prints a table and writes ``bench/results/vault_mtls.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import httpx
from fastapi import Depends, FastAPI
from fastapi.responses import Response

from _common import CpuWatch, cpu_busy_fraction, machine_info, percentile, print_table, write_json
from modelseal.crypto import Certificate
from modelseal.vault.auth import add_auth_error_handler, require_role

SCRIPT = Path(__file__).resolve()
HOST = "127.0.0.1"


# --- the server (``--serve``) --------------------------------------------------------------------


def create_app() -> FastAPI:
    """The app under test: one device-authenticated route and an open one."""
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    add_auth_error_handler(app)

    @app.get("/device")
    async def device(cert: Annotated[Certificate, Depends(require_role("device"))]) -> Response:
        return Response(b'{"ok":true}', media_type="application/json")

    @app.get("/healthz")
    async def healthz() -> Response:
        return Response(b'{"ok":true}', media_type="application/json")

    return app


async def bare_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The same answer without FastAPI: what uvicorn + TLS alone cost."""
    if scope["type"] != "http":
        return
    tls = scope.get("extensions", {}).get("tls") or {}
    ok = bool(tls.get("client_cert_chain")) or scope["path"] == "/healthz"
    await send(
        {
            "type": "http.response.start",
            "status": 200 if ok else 401,
            "headers": [(b"content-type", b"application/json"), (b"content-length", b"11")],
        }
    )
    await send({"type": "http.response.body", "body": b'{"ok":true}'})


def serve(args: argparse.Namespace) -> None:
    import uvicorn

    from modelseal.vault.tls import TLSHttpToolsProtocol, build_uvicorn_config, run_https

    pki = Path(args.pki)
    app = "vault_mtls:bare_app" if args.bare else "vault_mtls:create_app"
    options: dict[str, Any] = {"factory": not args.bare, "lifespan": "off", "backlog": 1024}
    if args.plain:
        config = uvicorn.Config(
            app, host=HOST, port=args.port, http=TLSHttpToolsProtocol, loop=args.loop,
            workers=args.workers, log_level="warning", access_log=False, **options,
        )  # fmt: skip
    else:
        config = build_uvicorn_config(
            app, host=HOST, port=args.port, cert_file=pki / "server.pem",
            key_file=pki / "server.key", client_ca_file=pki / "ca.pem", workers=args.workers,
            loop=args.loop, **options,
        )  # fmt: skip
    run_https(config)


# --- the clients (``--client``) ------------------------------------------------------------------


def client_context(pki: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=pki / "ca.pem")
    context.load_cert_chain(pki / "device.pem", pki / "device.key")
    return context


@dataclass
class Window:
    start: float
    end: float

    def record(self, began: float, done: float, latencies: list[float]) -> bool:
        if self.start <= done <= self.end:
            latencies.append(done - began)
        return done < self.end


async def httpx_worker(url: str, context: ssl.SSLContext, window: Window, out: list[float]) -> int:
    errors = 0
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    async with httpx.AsyncClient(verify=context, limits=limits, timeout=30) as client:
        while True:
            began = time.monotonic()
            response = await client.get(url)
            errors += response.status_code != 200
            if not window.record(began, time.monotonic(), out):
                return errors


async def raw_worker(
    port: int, path: str, context: ssl.SSLContext | None, window: Window, out: list[float]
) -> int:
    reader, writer = await asyncio.open_connection(
        HOST, port, ssl=context, server_hostname=HOST if context else None
    )
    request = f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\n\r\n".encode()
    errors = 0
    try:
        while True:
            began = time.monotonic()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            await reader.readexactly(length)
            errors += not head.startswith(b"HTTP/1.1 200 ")
            if not window.record(began, time.monotonic(), out):
                return errors
    finally:
        writer.close()


def client(args: argparse.Namespace) -> None:
    import uvloop

    pki = Path(args.pki)
    context = None if args.plain else client_context(pki)
    scheme = "http" if args.plain else "https"
    url = f"{scheme}://{HOST}:{args.port}{args.path}"

    async def main() -> dict[str, Any]:
        start = args.start_at + args.warmup
        window = Window(start, start + args.seconds)
        out: list[float] = []
        delay = args.start_at - time.time()
        await asyncio.sleep(max(0.0, delay))
        if args.kind == "httpx":
            jobs = [
                httpx_worker(url, context or ssl.create_default_context(), window, out)
                for _ in range(args.connections)
            ]
        else:
            jobs = [
                raw_worker(args.port, args.path, context, window, out)
                for _ in range(args.connections)
            ]
        # Translate the wall-clock start into this process's monotonic clock.
        offset = time.monotonic() - time.time()
        window.start += offset
        window.end += offset
        errors = sum(await asyncio.gather(*jobs))
        return {"latencies": out, "errors": errors}

    result = uvloop.run(main())
    json.dump(result, sys.stdout)


# --- the driver ----------------------------------------------------------------------------------


def make_pki(folder: Path) -> None:
    from modelseal.crypto import (
        SigningKey,
        create_ca,
        create_csr,
        issue_from_csr,
        issue_server_cert,
        parse_subject,
        private_key_pem_unencrypted,
    )

    now = dt.datetime.now(dt.UTC)
    ca = create_ca("CN=bench vault CA", days=2, now=now)
    (folder / "ca.pem").write_bytes(ca.certificate.pem())
    server_key = SigningKey.generate("ecdsa-p256")
    server = issue_server_cert(ca, server_key, hosts=[HOST], days=1, now=now)
    device_key = SigningKey.generate("ecdsa-p256")
    csr = create_csr(device_key, parse_subject("CN=bench-device"))
    device = issue_from_csr(ca, csr, subject_override=None, role="device", days=1, now=now)
    for name, cert, key in (("server", server, server_key), ("device", device, device_key)):
        (folder / f"{name}.pem").write_bytes(cert.pem())
        (folder / f"{name}.key").write_bytes(private_key_pem_unencrypted(key))
        (folder / f"{name}.key").chmod(0o600)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def process_tree_cpu(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and all its descendants (Linux /proc)."""
    children: dict[int, list[int]] = {}
    stats: dict[int, list[str]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                text = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            fields = text[text.rindex(")") + 2 :].split()
            stats[int(entry)] = fields
            children.setdefault(int(fields[1]), []).append(int(entry))
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        if current in stats:
            fields = stats[current]
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        todo += children.get(current, [])
    return total


@dataclass
class Case:
    name: str
    loop: str
    workers: int
    plain: bool = False
    bare: bool = False
    path: str = "/device"


def start_server(case: Case, pki: Path, port: int) -> subprocess.Popen[bytes]:
    command = [sys.executable, str(SCRIPT), "--serve", "--pki", str(pki), "--port", str(port)]
    command += ["--loop", case.loop, "--workers", str(case.workers)]
    command += ["--plain"] * case.plain + ["--bare"] * case.bare
    server = subprocess.Popen(command, cwd=SCRIPT.parent)
    context = None if case.plain else client_context(pki)
    deadline = time.monotonic() + 30
    while True:
        if server.poll() is not None or time.monotonic() > deadline:
            stop_server(server)
            raise RuntimeError(f"the {case.name} server did not start")
        try:
            scheme = "http" if case.plain else "https"
            verify: ssl.SSLContext | bool = context if context else False
            answers = {
                httpx.get(f"{scheme}://{HOST}:{port}/healthz", verify=verify, timeout=2).status_code
                for _ in range(3 * case.workers)
            }
            if answers == {200}:
                return server
        except httpx.TransportError:
            time.sleep(0.1)


def stop_server(server: subprocess.Popen[bytes]) -> None:
    if server.poll() is None:
        server.send_signal(signal.SIGTERM)  # SIGINT would end in a KeyboardInterrupt trace
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def run_case(case: Case, kind: str, args: argparse.Namespace, pki: Path) -> dict[str, Any]:
    port = free_port()
    server = start_server(case, pki, port)
    clients: list[subprocess.Popen[bytes]] = []
    try:
        start_at = time.time() + 2.0  # time for the clients to import and connect
        per_process = [args.connections // args.client_procs] * args.client_procs
        per_process[0] += args.connections - sum(per_process)
        for count in per_process:
            command = [sys.executable, str(SCRIPT), "--client", kind, "--pki", str(pki)]
            command += ["--port", str(port), "--connections", str(count)]
            command += ["--seconds", str(args.seconds), "--warmup", str(args.warmup)]
            command += ["--start-at", repr(start_at), "--path", case.path]
            command += ["--plain"] * case.plain
            clients.append(subprocess.Popen(command, stdout=subprocess.PIPE, cwd=SCRIPT.parent))
        time.sleep(max(0.0, start_at + args.warmup - time.time()))
        server_before, watch = process_tree_cpu(server.pid), CpuWatch()
        clients_before = sum(process_tree_cpu(c.pid) for c in clients)
        time.sleep(args.seconds)
        server_cpu = process_tree_cpu(server.pid) - server_before
        clients_cpu = sum(process_tree_cpu(c.pid) for c in clients) - clients_before
        machine = watch.stop()
        results = [json.loads(c.communicate(timeout=args.seconds + 60)[0]) for c in clients]
    finally:
        for process in clients:
            if process.poll() is None:
                process.kill()
                process.wait()
        stop_server(server)
    latencies = sorted(x for r in results for x in r["latencies"])
    errors = sum(r["errors"] for r in results)
    rate = len(latencies) / args.seconds
    return {
        "server": case.name,
        "path": case.path,
        "client": kind,
        "requests_per_s": rate,
        "p50_ms": percentile(latencies, 0.50) * 1e3,
        "p99_ms": percentile(latencies, 0.99) * 1e3,
        "errors": errors,
        "server_cpu_s": server_cpu,
        "server_cpu_us_per_request": server_cpu / len(latencies) * 1e6,
        "server_cores_busy": server_cpu / args.seconds,
        "client_cores_busy": clients_cpu / args.seconds,
        # CPU the machine spent on anything but this server and these clients (other programs)
        "other_cores_busy": max(
            0.0, machine.get("cpu_seconds_busy", 0.0) - server_cpu - clients_cpu
        )
        / args.seconds,
        "machine_cpu": machine,
    }


CASES = [
    Case("mTLS, FastAPI, 1 worker, asyncio", "asyncio", 1),
    Case("mTLS, FastAPI, 1 worker, uvloop", "uvloop", 1),
    Case("mTLS, FastAPI, 2 workers, uvloop", "uvloop", 2),
    Case("mTLS, FastAPI without role check, 1 worker, uvloop", "uvloop", 1, path="/healthz"),
    Case("mTLS, bare ASGI, 1 worker, uvloop", "uvloop", 1, bare=True),
    Case(
        "plain HTTP, FastAPI open route, 1 worker, uvloop", "uvloop", 1, plain=True, path="/healthz"
    ),
]


def drive(args: argparse.Namespace) -> None:
    busy = cpu_busy_fraction()
    rows, results = [], []
    with tempfile.TemporaryDirectory(prefix="bench-mtls-") as tmp:
        pki = Path(tmp)
        make_pki(pki)
        kinds = ["raw"] if args.quick else ["httpx", "raw"]
        for case in CASES:
            for kind in kinds:
                result = run_case(case, kind, args, pki)
                results.append(result)
                rows.append(
                    [
                        case.name, kind, f"{result['requests_per_s']:.0f}",
                        f"{result['p50_ms']:.1f}", f"{result['p99_ms']:.1f}",
                        f"{result['server_cpu_us_per_request']:.0f}",
                        f"{1e6 / result['server_cpu_us_per_request'] * case.workers:.0f}",
                        f"{result['server_cores_busy']:.2f}", f"{result['client_cores_busy']:.2f}",
                        f"{result['other_cores_busy']:.2f}", str(result["errors"]),
                    ]
                )  # fmt: skip
    print_table(
        f"GET /device over keep-alive mTLS, {args.connections} connections, "
        f"{args.client_procs} client processes, {args.seconds:g} s "
        f"(CPU busy before start: {busy:.0%})",
        ["server", "client", "req/s", "p50 ms", "p99 ms", "server µs CPU/req",
         "ceiling req/s (workers x 1 core)", "server cores", "client cores",
         "other cores", "errors"],
        rows,
    )  # fmt: skip
    path = write_json(
        "vault_mtls",
        {
            "machine": machine_info(),
            "cpu_busy_before": busy,
            "connections": args.connections,
            "client_processes": args.client_procs,
            "seconds": args.seconds,
            "results": results,
        },
    )
    print(f"\nwrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--client-procs", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="only the raw client")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--client", dest="kind", choices=["httpx", "raw"], help=argparse.SUPPRESS)
    parser.add_argument("--pki", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--loop", default="uvloop", help=argparse.SUPPRESS)
    parser.add_argument("--workers", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--plain", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--bare", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--start-at", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--path", default="/device", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args)
    elif args.kind:
        client(args)
    else:
        drive(args)


if __name__ == "__main__":
    main()
