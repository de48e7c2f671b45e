"""The agent home: a device's identity, created by ``modelseal agent enroll``.

Layout::

    device-key.pem   the device's ECDSA P-256 private key, PKCS#8, NOT encrypted, mode 0600
    device.pem       its certificate, issued by the vault CA (role ``device``)
    ca.pem           the vault CA certificate (checked against the token's pin at enrolment)
    agent.json       {"vault_url": …, "device_id": …}

The key is not encrypted because the agent must start unattended (after a reboot, under a service
manager) and a passphrase kept beside it would protect nothing. Like an SSH host key, it is
protected by the file mode and whoever administers the machine; a device with a TPM or a TEE should
keep it there instead (the attestation issue). The directory is created mode 0700.

Enrolment creates the key on the device (it never leaves), sends only a CSR, and writes the home
in a temporary directory renamed into place at the end: a failed enrolment leaves nothing behind.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from modelseal._files import write_new
from modelseal.agent.token import parse_enrollment_token
from modelseal.crypto import (
    SigningKey,
    create_csr,
    load_certificates,
    parse_subject,
    private_key_pem_unencrypted,
    public_key_matches,
)
from modelseal.errors import Error, UsageError

__all__ = ["AGENT_FILE", "CA_FILE", "CERT_FILE", "KEY_FILE", "AgentHome", "AgentHomeError"]

KEY_FILE: Final = "device-key.pem"
CERT_FILE: Final = "device.pem"
CA_FILE: Final = "ca.pem"
AGENT_FILE: Final = "agent.json"
_DIR_MODE: Final = 0o700
_PRIVATE: Final = 0o600
_PUBLIC: Final = 0o644


class AgentHomeError(Error):
    """An agent home is missing, incomplete or damaged."""

    code = "AGENT_HOME"


@dataclass(frozen=True)
class AgentHome:
    """An enrolled device: where its files are, which vault it talks to, and its id."""

    path: Path
    vault_url: str
    device_id: str

    @property
    def key_file(self) -> Path:
        return self.path / KEY_FILE

    @property
    def cert_file(self) -> Path:
        return self.path / CERT_FILE

    @property
    def ca_file(self) -> Path:
        return self.path / CA_FILE

    @classmethod
    def open(cls, path: Path) -> AgentHome:
        """Read ``agent.json`` of the home at ``path`` and check its files are there."""
        path = Path(os.path.abspath(path))
        settings = path / AGENT_FILE
        if not settings.is_file():
            raise AgentHomeError(
                f"{path} is not an agent home (it has no {AGENT_FILE})",
                hint="enrol this device first: modelseal agent enroll --vault URL --token T "
                f"--home {path}",
            )
        try:
            document = json.loads(settings.read_bytes())
            url, device_id = document["vault_url"], document["device_id"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise AgentHomeError(f"{settings} is damaged: {exc}") from None
        if not isinstance(url, str) or not isinstance(device_id, str):
            raise AgentHomeError(f"{settings} is damaged: vault_url and device_id must be text")
        for name in (KEY_FILE, CERT_FILE, CA_FILE):
            if not (path / name).is_file():
                raise AgentHomeError(
                    f"{name} is missing from the agent home {path}",
                    hint="restore it, or enrol the device again with a new token",
                )
        return cls(path, url, device_id)

    @classmethod
    def enroll(cls, path: Path, *, vault_url: str, token: str) -> AgentHome:
        """Enrol this device with the vault at ``vault_url`` and create its home at ``path``
        (absent or an empty directory)."""
        from modelseal.vault.client import VaultClient

        path = _check_new_home(Path(os.path.abspath(path)))
        parsed = parse_enrollment_token(token)
        key = SigningKey.generate("ecdsa-p256")
        csr = create_csr(key, parse_subject(f"CN={_host_label()}"))
        bootstrap, ca_pem = VaultClient.bootstrap(vault_url, parsed.ca_pin)
        with bootstrap:
            enrollment = bootstrap.enroll(parsed.text, csr)
            url = bootstrap.url
        cert_pem = enrollment.certificate.encode("ascii")
        (certificate,) = load_certificates(cert_pem, what="the device certificate")
        if not public_key_matches(certificate, key):
            raise AgentHomeError("the vault returned a certificate for another key; try again")
        files = {
            KEY_FILE: (private_key_pem_unencrypted(key), _PRIVATE),
            CERT_FILE: (cert_pem, _PUBLIC),
            CA_FILE: (ca_pem, _PUBLIC),
            AGENT_FILE: (_settings(url, enrollment.device_id), _PUBLIC),
        }
        _write_home(path, files)
        return cls(path, url, enrollment.device_id)


def _settings(url: str, device_id: str) -> bytes:
    document = {"vault_url": url, "device_id": device_id}
    return (json.dumps(document, indent=2, sort_keys=True) + "\n").encode("utf-8")


def _host_label() -> str:
    """The CSR's common name: this host's name (the vault names the device by its own id)."""
    name = "".join(c for c in platform.node() if c.isalnum() or c in ".-_")[:64]
    return name or "device"


def _check_new_home(path: Path) -> Path:
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        raise UsageError(f"the agent home {path} exists and is not a directory")
    if path.is_dir() and any(path.iterdir()):
        raise UsageError(
            f"the agent home {path} is not empty; enrolment never overwrites a device identity",
            hint="choose a new directory (each enrolment creates a new device)",
        )
    if not path.parent.is_dir():
        raise UsageError(f"the directory {path.parent} does not exist; create it first")
    if not os.access(path.parent, os.W_OK):
        raise UsageError(f"cannot write in {path.parent}")
    return path


def _write_home(path: Path, files: dict[str, tuple[bytes, int]]) -> None:
    staging = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.enroll-"))
    try:
        os.chmod(staging, _DIR_MODE)
        for name, (data, mode) in files.items():
            write_new(staging / name, data, mode)
        os.rename(staging, path)  # replaces an empty directory, fails on a non-empty one
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise AgentHomeError(f"cannot write the agent home {path}: {exc.strerror}") from exc
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
