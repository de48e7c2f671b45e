"""Helpers of the vault API tests: a fresh vault home, the real server on a loopback port, TLS
contexts from the vault's own files, certificates from another CA, and a small sealed model."""

from __future__ import annotations

import datetime as dt
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from modelseal.crypto import (
    DataKey,
    ImportPublicKey,
    SigningKey,
    create_ca,
    create_csr,
    issue_from_csr,
    parse_subject,
    private_key_pem_unencrypted,
)
from modelseal.package import seal
from modelseal.vault.home import SoftwareMaster, UnlockedVault, VaultHome, init_vault
from modelseal.vault.server import VaultServer
from tests.conftest import make_identity, random_bytes

PASSPHRASE = "vault api test passphrase"  # noqa: S105 - a test passphrase
PASSPHRASE_ENV = "MODELSEAL_TEST_VAULT_PASSPHRASE"  # noqa: S105 - a variable name
FAST = SoftwareMaster(PASSPHRASE.encode(), scrypt_n=2**10)


def make_home(path: Path) -> VaultHome:
    return init_vault(path, database_url=None, master=FAST, now=dt.datetime.now(dt.UTC))


@dataclass(frozen=True)
class RunningVault:
    url: str
    server: VaultServer
    vault: UnlockedVault


@contextmanager
def running_vault(home: VaultHome) -> Iterator[RunningVault]:
    """The real vault server (server.py) in a thread on a free loopback port."""
    with home.unlock(passphrase=PASSPHRASE.encode()) as vault:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        with VaultServer(vault, host="127.0.0.1", port=port) as server:
            thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
            thread.start()
            deadline = time.monotonic() + 15
            while not server.started:
                assert thread.is_alive() and time.monotonic() < deadline, "the vault did not start"
                time.sleep(0.01)
            try:
                yield RunningVault(f"https://127.0.0.1:{port}", server, vault)
            finally:
                server.stop()
                thread.join(timeout=15)
                sock.close()
                assert not thread.is_alive(), "the vault did not stop"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def tls_context(ca: Path, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    """A client context trusting ``ca`` only, presenting ``cert`` when given."""
    context = ssl.create_default_context(cafile=ca)
    if cert is not None:
        context.load_cert_chain(cert, key)
    return context


def foreign_device(folder: Path) -> tuple[Path, Path]:
    """A device certificate and key from a CA that is not the vault's."""
    now = dt.datetime.now(dt.UTC)
    other = create_ca("CN=another CA", days=2, now=now)
    key = SigningKey.generate("ecdsa-p256")
    csr = create_csr(key, parse_subject("CN=intruder"))
    cert = issue_from_csr(other, csr, subject_override=None, role="device", days=1, now=now)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "foreign.pem").write_bytes(cert.pem())
    (folder / "foreign.key").write_bytes(private_key_pem_unencrypted(key))
    return folder / "foreign.pem", folder / "foreign.key"


def model_dir(folder: Path) -> Path:
    """A small model: two files, one of them three segments long."""
    root = folder / "model"
    root.mkdir(parents=True)
    (root / "config.json").write_text('{"classes": 3}\n')
    (root / "weights.bin").write_bytes(random_bytes(2_500_000, seed=7))
    return root


def seal_to_vault(
    folder: Path,
    import_key_pem: bytes | None,
    *,
    name: str = "iris",
    version: int = 1,
    data_key: DataKey | None = None,
    model_id: str | None = None,
) -> tuple[Path, DataKey]:
    """A package sealed offline to the vault's import key (or with ``data_key`` from the vault's
    generate-data-key); (its path, its data key)."""
    owner = make_identity("Acme Models")
    result = seal(
        model_dir(folder / f"{name}-{version}-src"),
        folder / f"{name}-{version}.sealed",
        name=name,
        version=version,
        signing_key=owner.key,
        certificates=[owner.cert],
        import_keys=[] if import_key_pem is None else [ImportPublicKey.from_pem(import_key_pem)],
        data_key=data_key,
        model_id=model_id,
    )
    return result.path, result.data_key
