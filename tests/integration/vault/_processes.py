"""Helpers of the tests that run ``modelseal vault serve`` as real processes and release keys over
mTLS: a vault home prepared through the service (customer, devices with their files, a model, a
license), serve processes (started, waited for, stopped or killed), and one release per call."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from modelseal.agent import request_key
from modelseal.crypto import private_key_pem_unencrypted
from modelseal.vault.client import VaultClient
from modelseal.vault.home import VaultHome, init_vault
from modelseal.vault.service import VaultService
from tests.integration.vault._server import free_port, seal_to_vault, tls_context
from tests.vaulthome import ADMIN, FAST, PASSPHRASE, enroll, issue

PASSPHRASE_ENV = "MODELSEAL_TEST_SERVE_PASSPHRASE"  # noqa: S105 - a variable name
MODEL = "iris"


@dataclass(frozen=True)
class DeviceFiles:
    id: str
    cert: Path
    key: Path


@dataclass(frozen=True)
class Prepared:
    devices: list[DeviceFiles]
    license_id: str
    license_token: str
    package: Path


def make_home(path: Path, *, database_url: str | None = None) -> VaultHome:
    """A vault home valid now (the real servers run on the real clock)."""
    return init_vault(path, database_url=database_url, master=FAST, now=dt.datetime.now(dt.UTC))


def prepare(
    home: VaultHome, folder: Path, *, devices: int, max_loads: int | None = None
) -> Prepared:
    """Customer ``acme``, ``devices`` enrolled devices (certificate and key files in ``folder``),
    model iris v1 sealed to the import key and registered, and a license (at most ``max_loads`` loads)."""
    with home.unlock(passphrase=PASSPHRASE) as vault, VaultService(vault) as service:
        service.create_customer(ADMIN, "acme")
        package, _ = seal_to_vault(folder, home.import_public_key.to_pem(), name=MODEL)
        service.register_model(
            ADMIN,
            manifest=(package / "manifest.json").read_bytes(),
            signature=(package / "manifest.sig").read_bytes(),
        )
        files = []
        for n in range(devices):
            device = enroll(service, name=f"edge-{n}")
            cert, key = folder / f"device-{n}.pem", folder / f"device-{n}.key"
            cert.write_bytes(device.cert.pem())
            key.write_bytes(private_key_pem_unencrypted(device.key))
            files.append(DeviceFiles(device.id, cert, key))
        view, token = issue(service, model=MODEL, max_loads=max_loads)
    return Prepared(files, view.id, token, package)


@dataclass
class Serve:
    """One ``modelseal vault serve`` process."""

    process: subprocess.Popen[bytes]
    url: str
    log: Path

    def errors(self) -> str:
        return self.log.read_text(errors="replace")


def start(home: VaultHome) -> Serve:
    """``vault serve`` on a free loopback port, once it answers /healthz."""
    port = free_port()
    log = home.path.parent / f"serve-{port}.log"
    with log.open("wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "modelseal", "vault", "serve", "--home", str(home.path),
             "--port", str(port), "--passphrase-env", PASSPHRASE_ENV, "--quiet"],
            env={**os.environ, PASSPHRASE_ENV: PASSPHRASE.decode()},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )  # fmt: skip
    serve = Serve(process, f"https://127.0.0.1:{port}", log)
    try:
        _wait_until_up(serve, home)
    except BaseException:
        kill(serve)
        raise
    return serve


def _wait_until_up(serve: Serve, home: VaultHome) -> None:
    deadline = time.monotonic() + 30
    with httpx.Client(verify=tls_context(home.path / "ca/ca.pem"), timeout=5) as http:
        while True:
            if serve.process.poll() is not None:
                raise AssertionError(f"vault serve exited: {serve.errors()}")
            try:
                if http.get(serve.url + "/healthz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "vault serve did not start"
            time.sleep(0.05)


def stop(serve: Serve) -> None:
    """SIGTERM (if still running); the vault must exit 0."""
    if serve.process.poll() is not None:
        return
    serve.process.send_signal(signal.SIGTERM)
    try:
        serve.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        kill(serve)
        raise
    assert serve.process.returncode == 0, serve.errors()


def kill(serve: Serve) -> None:
    """SIGKILL (if still running) and reap."""
    if serve.process.poll() is None:
        os.kill(serve.process.pid, signal.SIGKILL)
        serve.process.wait(timeout=30)


@contextmanager
def serving(home: VaultHome, count: int = 1) -> Iterator[list[Serve]]:
    """``count`` serve processes on the same home, stopped (or killed) at the end."""
    started: list[Serve] = []
    try:
        for _ in range(count):
            started.append(start(home))
        yield started
    finally:
        for serve in started:
            try:
                stop(serve)
            finally:
                kill(serve)


def client(url: str, home: VaultHome, device: DeviceFiles) -> VaultClient:
    return VaultClient.device(url, device.cert, device.key, home.path / "ca/ca.pem", timeout=30)


def release(client: VaultClient, device: DeviceFiles, prepared: Prepared) -> str:
    """One key release (challenge and release over mTLS, key opened); its lease id."""
    released = request_key(
        client,
        device_id=device.id,
        license_token=prepared.license_token,
        model_name=MODEL,
        model_version=1,
    )
    return released.lease_id
