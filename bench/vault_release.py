"""Key releases per second through the real vault: ``modelseal vault serve`` over keep-alive mTLS.

For each engine (a SQLite home; a PostgreSQL home on a benchmark-local server started like the
tests' ``tests/postgres.py``: Debian binaries, loopback, ``fsync`` on) the benchmark initialises a
vault home (small scrypt cost), creates a customer, registers a small model sealed offline to the
import key, enrols ``--devices`` devices and issues a license with no load limit, then starts
``modelseal vault serve`` as a subprocess on a free loopback port. ``--clients`` keep-alive mTLS
connections (raw asyncio streams writing HTTP/1.1 by hand, as in ``bench/vault_mtls.py``; httpx
costs ~1 ms of client CPU per request on this 2-core box), spread over ``--client-procs``
processes, each loop: ``POST /v1/challenge`` then ``POST /v1/keys/release`` with a fresh X25519
key. One pair is one release. Every answer must be a grant: refusals are counted by code and
printed, and each connection opens its first granted key with its one-time private key.

Reported per engine: releases/s, p50/p99 latency of the release call alone and of the pair, CPU
per release of the vault process (and of PostgreSQL's processes), client and other CPU, and the
ratios to the targets (issue 3): >= 1,000 releases/s on SQLite, >= 800/s on PostgreSQL,
p99 <= 50 ms.

    .venv/bin/python bench/vault_release.py [--seconds 10] [--clients 32] [--client-procs 1]
                                            [--devices 1] [--quick]

Prints a table and writes ``bench/results/vault_release.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import ssl
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from _common import CpuWatch, cpu_busy_fraction, machine_info, percentile, print_table, write_json
from vault_mtls import Window, free_port, process_tree_cpu, stop_server

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for tests.postgres

SCRIPT = Path(__file__).resolve()
HOST = "127.0.0.1"
PASSPHRASE = "vault release benchmark passphrase"  # noqa: S105 - a throw-away benchmark vault
PASSPHRASE_ENV = "MODELSEAL_BENCH_VAULT_PASSPHRASE"  # noqa: S105 - a variable name
ADMIN = "OU=admin,CN=bench"
MODEL = "bench-model"
TARGETS = {"sqlite": 1000.0, "postgresql": 800.0}
P99_TARGET_MS = 50.0


# --- setting up a vault home ---------------------------------------------------------------------


def prepare_home(folder: Path, database_url: str | None, devices: int) -> dict[str, Any]:
    """A vault home with one customer, one model, ``devices`` enrolled devices (certificate and
    key files in ``folder``) and one license with no limits; what the clients need to know."""
    from modelseal.crypto import (
        SigningKey,
        create_csr,
        create_self_signed,
        load_certificates,
        parse_subject,
        private_key_pem_unencrypted,
    )
    from modelseal.licensing import Policy, VersionSpec
    from modelseal.package import seal
    from modelseal.vault import _layout as layout
    from modelseal.vault.home import SoftwareMaster, init_vault
    from modelseal.vault.service import VaultService

    now = datetime.now(UTC)
    master = SoftwareMaster(PASSPHRASE.encode(), scrypt_n=2**10)
    home = init_vault(folder / "home", database_url=database_url, master=master, now=now)
    model = folder / "model"
    model.mkdir()
    (model / "config.json").write_text('{"classes": 3}\n')
    (model / "weights.bin").write_bytes(os.urandom(64 * 1024))
    owner_key = SigningKey.generate()
    owner = create_self_signed(owner_key, parse_subject("CN=Bench Models"))
    package = seal(
        model, folder / "model.sealed", name=MODEL, version=1, signing_key=owner_key,
        certificates=[owner], import_keys=[home.import_public_key], now=now,
    ).path  # fmt: skip
    device_files: list[dict[str, str]] = []
    with home.unlock(passphrase=PASSPHRASE.encode()) as vault, VaultService(vault) as service:
        service.create_customer(ADMIN, "bench")
        service.register_model(
            ADMIN,
            manifest=(package / "manifest.json").read_bytes(),
            signature=(package / "manifest.sig").read_bytes(),
            wrapped=None,
        )
        for index in range(devices):
            token = service.create_enrollment_token(ADMIN, customer="bench", ttl=timedelta(hours=1))
            key = SigningKey.generate("ecdsa-p256")
            enrolment = service.enroll_device(
                token=token, csr_pem=create_csr(key, parse_subject(f"CN=bench-device-{index}"))
            )
            cert_path, key_path = folder / f"device-{index}.pem", folder / f"device-{index}.key"
            load_certificates(enrolment.certificate_pem, what="the device certificate")
            cert_path.write_bytes(enrolment.certificate_pem)
            key_path.write_bytes(private_key_pem_unencrypted(key))
            key_path.chmod(0o600)
            device_files.append(
                {"id": enrolment.device_id, "cert": str(cert_path), "key": str(key_path)}
            )
        license_view, license_jws = service.issue_license(
            ADMIN,
            customer="bench",
            model_name=MODEL,
            versions=VersionSpec.parse("*"),
            policy=Policy(lease=timedelta(hours=1)),
        )
    return {
        "home": str(home.path),
        "ca": str(home.path / layout.CA_CERT),
        "license": license_jws,
        "license_id": license_view.id,
        "devices": device_files,
    }


@contextlib.contextmanager
def postgres_database() -> Iterator[tuple[str, int]]:
    """A throw-away PostgreSQL server (``tests/postgres.py``) with one empty database: its URL
    and the postmaster's pid; the server is stopped and its files removed afterwards."""
    from tests.postgres import start_postgres

    server = start_postgres()
    try:
        if server.process is None:
            raise RuntimeError("PostgreSQL did not start")
        yield server.create_database(), server.process.pid
    finally:
        server.stop()


def start_vault(
    home: str, ca: str, device: dict[str, str], port: int, threads: int | None
) -> subprocess.Popen[bytes]:
    """``modelseal vault serve`` on ``port`` (with ``threads``, :func:`serve_variant` instead),
    once it answers a device over mTLS."""
    if threads is None:
        command = [str(Path(sys.executable).with_name("modelseal")), "vault", "serve"]
        command += ["--home", home, "--host", HOST, "--port", str(port)]
        command += ["--passphrase-env", PASSPHRASE_ENV, "--quiet"]
    else:
        command = [sys.executable, str(SCRIPT), "--serve", home, "--port", str(port)]
        command += ["--threadpool", str(threads)]
    env = {**os.environ, PASSPHRASE_ENV: PASSPHRASE}
    server = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL)
    context = client_context(ca, device)
    deadline = time.monotonic() + 60
    while True:
        if server.poll() is not None or time.monotonic() > deadline:
            stop_server(server)
            raise RuntimeError("the vault did not start")
        try:
            status, _ = asyncio.run(_one_request(port, context, "GET", "/healthz", b""))
            if status == 200:
                return server
        except OSError:
            pass
        time.sleep(0.1)


def serve_variant(home: str, port: int, threads: int) -> None:
    """The vault server of ``vault serve`` with FastAPI's threadpool (anyio's default thread
    limiter, 40 threads) cut to ``threads``: a peer measured in the same run, not a product
    setting. Sync routes and the service calls in them then queue for fewer threads."""
    import anyio.to_thread

    from modelseal.vault import server as vault_server

    original = vault_server._Server.startup

    async def startup(self: Any, sockets: Any = None) -> None:
        anyio.to_thread.current_default_thread_limiter().total_tokens = threads
        await original(self, sockets)

    setattr(vault_server._Server, "startup", startup)  # noqa: B010 - patching a method
    vault_server.serve(Path(home), host=HOST, port=port, passphrase=PASSPHRASE.encode())


# --- the clients (``--client``) ------------------------------------------------------------------


def client_context(ca: str, device: dict[str, str]) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=ca)
    context.load_cert_chain(device["cert"], device["key"])
    return context


class Connection:
    """One keep-alive HTTP/1.1 connection over TLS, written by hand (the cheapest Python client)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, port: int):
        self.reader, self.writer = reader, writer
        self.host = f"Host: {HOST}:{port}\r\n".encode()

    @classmethod
    async def open(cls, port: int, context: ssl.SSLContext) -> Connection:
        reader, writer = await asyncio.open_connection(
            HOST, port, ssl=context, server_hostname=HOST
        )
        return cls(reader, writer, port)

    async def request(self, method: str, path: str, body: bytes) -> tuple[int, bytes]:
        head = f"{method} {path} HTTP/1.1\r\n".encode() + self.host
        if body:
            head += b"content-type: application/json\r\n"
        self.writer.write(head + b"content-length: %d\r\n\r\n" % len(body) + body)
        answer = await self.reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":", 1)[1])
            for line in answer.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        return int(answer[9:12]), await self.reader.readexactly(length)

    def close(self) -> None:
        self.writer.close()


async def _one_request(
    port: int, context: ssl.SSLContext, method: str, path: str, body: bytes
) -> tuple[int, bytes]:
    connection = await Connection.open(port, context)
    try:
        return await connection.request(method, path, body)
    finally:
        connection.close()


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _check_grant(body: bytes, private: Any, setup: dict[str, Any], device: str) -> None:
    """Open a granted key as the device would: the info it computes itself, its private key."""
    from modelseal.crypto.hpke import open_data_key, release_info

    grant = json.loads(body)
    expires = int(datetime.fromisoformat(grant["expires_at"]).timestamp())
    info = release_info(
        device=device, license=setup["license_id"], model=MODEL, version=1, lease_expires=expires
    )
    sealed = base64.urlsafe_b64decode(grant["sealed_key"] + "=" * (-len(grant["sealed_key"]) % 4))
    open_data_key(sealed, private, info=info, key_id=grant["key_id"])


async def release_worker(
    port: int, context: ssl.SSLContext, setup: dict[str, Any], device: str, window: Window,
    out: dict[str, list[float]], refusals: Counter[str],
) -> int:  # fmt: skip
    """Loop challenge + release until the window ends; the number of grants opened and checked."""
    from modelseal.crypto.hpke import EphemeralPrivateKey

    connection = await Connection.open(port, context)
    prefix = json.dumps({"license": setup["license"], "model_name": MODEL, "model_version": 1})
    checked = 0
    try:
        while True:
            began = time.monotonic()
            status, body = await connection.request("POST", "/v1/challenge", b"")
            if status != 200:
                refusals[f"challenge {status}"] += 1
                continue
            nonce = json.loads(body)["nonce"]
            private = EphemeralPrivateKey.generate("x25519")
            request = (
                f'{prefix[:-1]}, "nonce": "{nonce}", '
                f'"public_key": "{_b64url(private.public_bytes())}"}}'
            ).encode()
            asked = time.monotonic()
            status, body = await connection.request("POST", "/v1/keys/release", request)
            done = time.monotonic()
            if status == 200:
                if not checked:
                    _check_grant(body, private, setup, device)
                    checked += 1
                if window.start <= done <= window.end:
                    out["release"].append(done - asked)
                    out["pair"].append(done - began)
            elif window.start <= done <= window.end:
                code = json.loads(body).get("code", "?") if body.startswith(b"{") else "?"
                refusals[f"{status} {code}"] += 1
            if done >= window.end:
                return checked
    finally:
        connection.close()


def client(args: argparse.Namespace) -> None:
    import uvloop

    setup = json.loads(Path(args.setup).read_text())

    async def main() -> dict[str, Any]:
        start = args.start_at + args.warmup
        window = Window(start, start + args.seconds)
        out: dict[str, list[float]] = {"release": [], "pair": []}
        refusals: Counter[str] = Counter()
        devices = setup["devices"]
        contexts = [client_context(setup["ca"], device) for device in devices]
        await asyncio.sleep(max(0.0, args.start_at - time.time()))
        offset = time.monotonic() - time.time()  # wall-clock window -> this process's clock
        window.start += offset
        window.end += offset
        jobs = [
            release_worker(
                args.port,
                contexts[(args.first + i) % len(devices)],
                setup,
                devices[(args.first + i) % len(devices)]["id"],
                window,
                out,
                refusals,
            )
            for i in range(args.connections)
        ]
        checked = sum(await asyncio.gather(*jobs))
        return {**out, "refusals": dict(refusals), "checked": checked}

    json.dump(uvloop.run(main()), sys.stdout)


# --- the driver ----------------------------------------------------------------------------------


def run_engine(engine: str, args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix=f"bench-release-{engine}-") as tmp:
        folder = Path(tmp)
        with contextlib.ExitStack() as stack:
            url, pg_pid = None, None
            if engine == "postgresql":
                url, pg_pid = stack.enter_context(postgres_database())
            setup = prepare_home(folder, url, args.devices)
            (folder / "setup.json").write_text(json.dumps(setup))
            port = free_port()
            device = setup["devices"][0]
            server = start_vault(setup["home"], setup["ca"], device, port, args.threadpool)
            clients: list[subprocess.Popen[bytes]] = []
            try:
                return measure(engine, args, folder, port, server, clients, pg_pid)
            finally:
                for process in clients:
                    if process.poll() is None:
                        process.kill()
                        process.wait()
                stop_server(server)
    raise AssertionError("unreachable")  # pragma: no cover


def measure(
    engine: str, args: argparse.Namespace, folder: Path, port: int,
    server: subprocess.Popen[bytes], clients: list[subprocess.Popen[bytes]], pg_pid: int | None,
) -> dict[str, Any]:  # fmt: skip
    start_at = time.time() + 2.0  # time for the clients to import and connect
    per_process = [args.clients // args.client_procs] * args.client_procs
    per_process[0] += args.clients - sum(per_process)
    first = 0
    for count in per_process:
        command = [sys.executable, str(SCRIPT), "--client", "--setup", str(folder / "setup.json")]
        command += ["--port", str(port), "--connections", str(count), "--first", str(first)]
        command += ["--seconds", str(args.seconds), "--warmup", str(args.warmup)]
        command += ["--start-at", repr(start_at)]
        clients.append(subprocess.Popen(command, stdout=subprocess.PIPE, cwd=SCRIPT.parent))
        first += count
    time.sleep(max(0.0, start_at + args.warmup - time.time()))
    server_before, watch = process_tree_cpu(server.pid), CpuWatch()
    db_before = process_tree_cpu(pg_pid) if pg_pid else 0.0
    clients_before = sum(process_tree_cpu(c.pid) for c in clients)
    time.sleep(args.seconds)
    server_cpu = process_tree_cpu(server.pid) - server_before
    db_cpu = process_tree_cpu(pg_pid) - db_before if pg_pid else 0.0
    clients_cpu = sum(process_tree_cpu(c.pid) for c in clients) - clients_before
    machine = watch.stop()
    results = [json.loads(c.communicate(timeout=args.seconds + 60)[0]) for c in clients]
    release = sorted(x for r in results for x in r["release"])
    pair = sorted(x for r in results for x in r["pair"])
    refusals: Counter[str] = Counter()
    for r in results:
        refusals.update(r["refusals"])
    if not release:
        raise RuntimeError(f"{engine}: no release was granted; refusals: {dict(refusals)}")
    rate = len(release) / args.seconds
    p99 = percentile(release, 0.99) * 1e3
    return {
        "engine": engine,
        "releases": len(release),
        "releases_per_s": rate,
        "target_per_s": TARGETS[engine],
        "ratio_to_target": rate / TARGETS[engine],
        "release_p50_ms": percentile(release, 0.50) * 1e3,
        "release_p99_ms": p99,
        "p99_ratio_to_target": p99 / P99_TARGET_MS,
        "pair_p50_ms": percentile(pair, 0.50) * 1e3,
        "pair_p99_ms": percentile(pair, 0.99) * 1e3,
        "refusals": dict(refusals),
        "grants_opened_by_clients": sum(r["checked"] for r in results),
        "server_cpu_us_per_release": server_cpu / len(release) * 1e6,
        "db_cpu_us_per_release": db_cpu / len(release) * 1e6,
        "server_cores_busy": server_cpu / args.seconds,
        "db_cores_busy": db_cpu / args.seconds,
        "client_cores_busy": clients_cpu / args.seconds,
        "client_cpu_us_per_release": clients_cpu / len(release) * 1e6,
        "other_cores_busy": max(
            0.0, machine.get("cpu_seconds_busy", 0.0) - server_cpu - db_cpu - clients_cpu
        )
        / args.seconds,
        "machine_cpu": machine,
    }


def drive(args: argparse.Namespace) -> None:
    busy = cpu_busy_fraction()
    results = [run_engine(engine, args) for engine in args.engines]
    server = (
        "modelseal vault serve"
        if args.threadpool is None
        else f"vault serve with a {args.threadpool}-thread threadpool"
    )
    rows = [
        [
            r["engine"], f"{r['releases_per_s']:.0f}", f"{r['target_per_s']:.0f}",
            f"{r['ratio_to_target']:.2f}", f"{r['release_p50_ms']:.1f}",
            f"{r['release_p99_ms']:.1f}", f"{r['p99_ratio_to_target']:.2f}",
            f"{r['pair_p50_ms']:.1f}", f"{r['server_cpu_us_per_release']:.0f}",
            f"{r['db_cpu_us_per_release']:.0f}", f"{r['server_cores_busy']:.2f}",
            f"{r['db_cores_busy']:.2f}", f"{r['client_cores_busy']:.2f}",
            f"{r['other_cores_busy']:.2f}", str(sum(r["refusals"].values())),
        ]
        for r in results
    ]  # fmt: skip
    print_table(
        f"challenge + key release over keep-alive mTLS, {args.clients} connections, "
        f"{args.devices} device(s), {args.client_procs} client process(es), {args.seconds:g} s "
        f"per engine, server: {server} (CPU busy before start: {busy:.0%})",
        ["engine", "releases/s", "target", "x target", "release p50 ms", "release p99 ms",
         "p99 / 50 ms", "pair p50 ms", "vault µs CPU/release", "db µs CPU/release",
         "vault cores", "db cores", "client cores", "other cores", "refusals"],
        rows,
    )  # fmt: skip
    for r in results:
        for code, count in sorted(r["refusals"].items()):
            print(f"REFUSED on {r['engine']}: {count} x {code}")
    path = write_json(
        "vault_release",
        {
            "machine": machine_info(),
            "cpu_busy_before": busy,
            "clients": args.clients,
            "client_processes": args.client_procs,
            "devices": args.devices,
            "seconds": args.seconds,
            "server": server,
            "p99_target_ms": P99_TARGET_MS,
            "results": results,
        },
    )
    print(f"\nwrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--clients", type=int, default=32, help="keep-alive connections")
    parser.add_argument("--client-procs", type=int, default=1)
    parser.add_argument("--devices", type=int, default=1)
    parser.add_argument(
        "--engine", dest="engines", action="append", choices=sorted(TARGETS),
        help="only this engine (repeatable; default: both)",
    )  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="3 s per engine")
    parser.add_argument(
        "--threadpool", type=int, metavar="N",
        help="peer: serve with FastAPI's threadpool cut to N threads (default: vault serve as is)",
    )  # fmt: skip
    parser.add_argument("--serve", metavar="HOME", help=argparse.SUPPRESS)
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--setup", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--connections", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--first", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--start-at", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        client(args)
        return
    if args.serve:
        serve_variant(args.serve, args.port, args.threadpool)
        return
    args.engines = args.engines or ["sqlite", "postgresql"]
    if args.quick:
        args.seconds = 3.0
    drive(args)


if __name__ == "__main__":
    main()
