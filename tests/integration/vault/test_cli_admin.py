"""The controller's and the device's CLI against a real vault: ``modelseal vault serve`` runs as
a subprocess on a loopback port (stopped with SIGTERM, which must exit cleanly); the commands run
through click with ``MODELSEAL_VAULT`` / ``MODELSEAL_ADMIN`` set, as an operator would.

The flow: customer, enrolment token, agent enroll, model sealed to the vault's import key and
registered, license issued (its JWS verified by joserfc with the vault's JWKS), agent check granted,
license revoked, agent check refused with REVOKED.
"""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner, Result
from joserfc import jws
from joserfc.jwk import KeySet

from modelseal.keys import create_keystore
from modelseal.licensing import LICENSE_TYP
from modelseal.vault.home import Pkcs11Master, VaultHome, init_vault
from tests.integration.vault._server import (
    PASSPHRASE,
    PASSPHRASE_ENV,
    free_port,
    make_home,
    model_dir,
    tls_context,
)
from tests.softhsm import new_token

KEYSTORE_PASSPHRASE = "owner keystore passphrase"  # noqa: S105 - a test passphrase
KEYSTORE_ENV = "MODELSEAL_TEST_KEYSTORE_PASSPHRASE"
TOKEN = re.compile(r"mset1\.[A-Za-z0-9_-]{43}\.[0-9a-f]{64}\n")
LICENSE_ID = re.compile(r"lic-[0-9a-f-]{36}\n")
GRANTED = re.compile(r"granted: lease \S+ until \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\n")


@dataclass(frozen=True)
class Vault:
    home: VaultHome
    url: str
    tmp: Path

    @property
    def admin(self) -> Path:
        return self.home.path / "admin"


pytestmark = pytest.mark.filterwarnings(
    "ignore:EdDSA is deprecated via RFC 9864:joserfc.errors.SecurityWarning"
)


def start_serve(home: VaultHome, port: int, *options: str, **env: str) -> subprocess.Popen[str]:
    """``modelseal vault serve`` in a process of its own."""
    return subprocess.Popen(
        [sys.executable, "-m", "modelseal", "vault", "serve", "--home", str(home.path),
         "--port", str(port), *options],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip


def stop_serve(process: subprocess.Popen[str], url: str) -> None:
    """SIGTERM: the vault must stop gracefully (exit 0, after saying so), not die by the signal."""
    process.send_signal(signal.SIGTERM)
    try:
        out, err = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise
    assert process.returncode == 0, err
    assert f"vault serving {url}" in err and "vault stopped" in err
    assert out == ""


@pytest.fixture(scope="module")
def vault(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Vault]:
    tmp = tmp_path_factory.mktemp("cli")
    home = make_home(tmp / "home")
    port = free_port()
    url = f"https://127.0.0.1:{port}"
    process = start_serve(
        home, port, "--passphrase-env", PASSPHRASE_ENV, **{PASSPHRASE_ENV: PASSPHRASE}
    )
    try:
        _wait_until_up(url, home, process)
        yield Vault(home, url, tmp)
    finally:
        stop_serve(process, url)


def _wait_until_up(url: str, home: VaultHome, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 30
    with httpx.Client(verify=tls_context(home.path / "ca/ca.pem"), timeout=5) as http:
        while True:
            if process.poll() is not None:
                raise AssertionError(f"vault serve exited: {process.communicate()[1]}")
            try:
                if http.get(url + "/healthz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "vault serve did not start"
            time.sleep(0.05)


def run(vault: Vault, *args: str, code: int = 0) -> Result:
    """``modelseal ARGS`` with the admin environment; checks the exit code."""
    from modelseal.cli.main import cli

    env = {"MODELSEAL_VAULT": vault.url, "MODELSEAL_ADMIN": str(vault.admin)}
    result = CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)
    assert result.exit_code == code, (result.stdout, result.stderr)
    return result


@dataclass(frozen=True)
class Enrolled:
    device_id: str
    home: Path


def enroll_device(vault: Vault, customer: str, name: str) -> Enrolled:
    token = run(vault, "device", "enroll-token", "--customer", customer, "--ttl", "10m").stdout
    assert TOKEN.fullmatch(token), token  # the token alone on stdout
    home = vault.tmp / name
    enrolled = run(vault, "agent", "enroll", "--vault", vault.url, "--token", token.strip(),
                   "--home", str(home))  # fmt: skip
    device_id = enrolled.stdout.strip()
    assert enrolled.stdout == device_id + "\n"
    return Enrolled(device_id, home)


def register_model(vault: Vault, name: str, version: int) -> Path:
    """``seal --vault-import-key`` with the key from GET /v1/import-key, then ``model register``."""
    with httpx.Client(verify=tls_context(vault.home.path / "ca/ca.pem")) as http:
        import_key = http.get(vault.url + "/v1/import-key").content
    (vault.tmp / "import-key.pem").write_bytes(import_key)
    keystore = vault.tmp / "keystore"
    if not keystore.exists():
        create_keystore(keystore, name="Acme Models", passphrase=KEYSTORE_PASSPHRASE.encode())
    package = vault.tmp / f"{name}-{version}.sealed"
    os.environ[KEYSTORE_ENV] = KEYSTORE_PASSPHRASE
    try:
        run(vault, "seal", str(model_dir(vault.tmp / f"{name}-{version}")), "--keystore",
            str(keystore), "--name", name, "--version", str(version), "--out", str(package),
            "--vault-import-key", str(vault.tmp / "import-key.pem"), "--passphrase-env",
            KEYSTORE_ENV, "--quiet")  # fmt: skip
    finally:
        del os.environ[KEYSTORE_ENV]
    registered = run(vault, "model", "register", str(package))
    assert registered.stdout.startswith(f"registered {name}:{version} (model ")
    return package


def issue(vault: Vault, out: Path, *options: str) -> str:
    issued = run(vault, "license", "issue", "--out", str(out), *options)
    assert LICENSE_ID.fullmatch(issued.stdout), issued.stdout  # the id alone on stdout
    return issued.stdout.strip()


def check(vault: Vault, device: Enrolled, license_file: Path, model: str, code: int) -> str:
    result = run(vault, "agent", "check", "--home", str(device.home), "--license",
                 str(license_file), "--model", model, code=code)  # fmt: skip
    return result.stdout


# --- the flow ------------------------------------------------------------------------------------


def test_the_whole_flow(vault: Vault) -> None:
    assert run(vault, "customer", "create", "acme").stdout == "created customer acme\n"
    assert "acme\t" in run(vault, "customer", "list").stdout

    device = enroll_device(vault, "acme", "device-1")
    assert stat.S_IMODE((device.home / "device-key.pem").stat().st_mode) == 0o600
    assert stat.S_IMODE(device.home.stat().st_mode) == 0o700
    agent_json = json.loads((device.home / "agent.json").read_text())
    assert agent_json == {"vault_url": vault.url, "device_id": device.device_id}

    register_model(vault, "iris", 1)
    assert "iris:1\t" in run(vault, "model", "list").stdout

    license_file = vault.tmp / "acme.license"
    license_id = issue(vault, license_file, "--customer", "acme", "--model", "iris:1",
                       "--max-loads", "5", "--lease", "10m", "--heartbeat", "1m",
                       "--offline-grace", "1h")  # fmt: skip

    # The file is a compact JWS that an independent JOSE library verifies with the JWKS
    # (joserfc warns that RFC 9864 deprecates the name "EdDSA" for "Ed25519"; the scheme is one).
    with httpx.Client(verify=tls_context(vault.home.path / "ca/ca.pem")) as http:
        jwks = http.get(vault.url + "/v1/license-keys").json()
    token = license_file.read_text().strip()
    verified = jws.deserialize_compact(token, KeySet.import_key_set(jwks), algorithms=["EdDSA"])
    assert verified.headers()["typ"] == LICENSE_TYP
    claims = json.loads(verified.payload)
    assert claims["jti"] == license_id and claims["sub"] == "acme"
    assert claims["model"] == {"name": "iris", "versions": "1"}
    assert claims["policy"]["max_loads"] == 5 and claims["policy"]["offline_grace"] == 3600
    assert (claims["policy"]["lease"], claims["policy"]["heartbeat"]) == (600, 60)

    assert GRANTED.fullmatch(check(vault, device, license_file, "iris:1", code=0))
    shown = json.loads(run(vault, "license", "show", license_id, "--json").stdout)
    assert (shown["state"], shown["loads_used"], shown["max_loads"]) == ("active", 1, 5)
    assert shown["devices"] == [device.device_id]
    text = run(vault, "license", "show", license_id).stdout
    assert "loads     1 of 5" in text and "at most 5 loads in total" in text
    assert license_id in run(vault, "license", "list").stdout

    revoked = run(vault, "license", "revoke", license_id, "--reason", "contract ended")
    assert revoked.stdout == f"revoked license {license_id} (contract ended)\n"
    refused = check(vault, device, license_file, "iris:1", code=1)
    assert refused.startswith("refused: REVOKED: ")
    assert refused.endswith("ask the model controller why and for a new license.\n")

    listed = json.loads(run(vault, "license", "list", "--json").stdout)
    assert [(item["id"], item["state"]) for item in listed] == [(license_id, "revoked")]
    assert run(vault, "vault", "audit", "verify").stdout.startswith("audit log verifies: ")


def test_usage_exhausted_and_a_revoked_device(vault: Vault) -> None:
    run(vault, "customer", "create", "globex")
    device = enroll_device(vault, "globex", "device-globex")
    register_model(vault, "ocr", 3)
    license_file = vault.tmp / "globex.license"
    issue(vault, license_file, "--customer", "globex", "--model", "ocr:3", "--max-loads", "1")
    assert GRANTED.fullmatch(check(vault, device, license_file, "ocr", code=0))  # the only one
    exhausted = check(vault, device, license_file, "ocr:3", code=1)
    assert exhausted.startswith("refused: USAGE_EXHAUSTED: ")
    everything = vault.tmp / "globex-all.license"
    issue(vault, everything, "--customer", "globex", "--model", "ocr")  # every version
    which = run(vault, "agent", "check", "--home", str(device.home), "--license",
                str(everything), "--model", "ocr", code=1)  # fmt: skip
    assert "error: the license covers several versions of ocr; say which one" in which.stderr

    listed = run(vault, "device", "list", "--customer", "globex").stdout
    assert listed.startswith(f"{device.device_id}\tglobex\t") and listed.endswith("\tactive\n")
    run(vault, "device", "revoke", device.device_id, "--reason", "stolen")
    other = vault.tmp / "globex-2.license"
    issue(vault, other, "--customer", "globex", "--model", "ocr:3")
    assert check(vault, device, other, "ocr:3", code=1).startswith("refused: DEVICE_REVOKED: ")


def test_agent_check_exit_codes_in_a_real_process(vault: Vault) -> None:
    run(vault, "customer", "create", "initech")
    device = enroll_device(vault, "initech", "device-initech")
    register_model(vault, "tagger", 1)
    license_file = vault.tmp / "initech.license"
    issue(vault, license_file, "--customer", "initech", "--model", "tagger:1")
    command = [sys.executable, "-m", "modelseal", "agent", "check", "--home", str(device.home),
               "--license", str(license_file), "--model", "tagger:1"]  # fmt: skip
    granted = subprocess.run(command, capture_output=True, text=True, check=False, timeout=60)
    assert granted.returncode == 0 and GRANTED.fullmatch(granted.stdout), granted.stderr
    wrong = subprocess.run(
        [*command[:-1], "tagger:2"], capture_output=True, text=True, check=False, timeout=60
    )
    assert wrong.returncode == 1 and wrong.stdout.startswith("refused: MODEL_NOT_LICENSED: ")


# --- errors as an operator sees them -------------------------------------------------------------


def test_errors_name_the_vaults_code(vault: Vault) -> None:
    run(vault, "customer", "create", "hooli")
    again = run(vault, "customer", "create", "hooli", code=1)
    assert again.stderr == "error: CONFLICT: customer 'hooli' exists already\n"
    missing = run(vault, "device", "enroll-token", "--customer", "nobody", code=1)
    assert missing.stderr.startswith("error: NOT_FOUND: there is no customer 'nobody'")
    assert "hint: list them with `modelseal customer list`" in missing.stderr
    assert missing.stdout == ""  # nothing a script could mistake for a token


def test_license_options_are_checked_before_anything_is_sent(vault: Vault) -> None:
    out = vault.tmp / "never.license"
    both = run(vault, "license", "issue", "--customer", "acme", "--model", "iris",
               "--expires", "2031-01-01", "--duration", "30d-from-first-use", "--out", str(out),
               code=1)  # fmt: skip
    assert both.stderr == "error: give --expires or --duration, not both\n"
    bad_rate = run(vault, "license", "issue", "--customer", "acme", "--model", "iris",
                   "--loads-per", "fortnight=3", "--out", str(out), code=1)  # fmt: skip
    assert "'fortnight' is not a period" in bad_rate.stderr
    slow = run(vault, "license", "issue", "--customer", "acme", "--model", "iris",
               "--lease", "1m", "--heartbeat", "2m", "--out", str(out), code=1)  # fmt: skip
    assert slow.stderr == "error: heartbeat is 2m; it must be from 1s to 1m\n"
    assert not out.exists()


def test_no_vault_listening(vault: Vault) -> None:
    url = f"https://127.0.0.1:{free_port()}"
    result = run(vault, "customer", "list", "--vault", url, code=1)
    assert result.stderr.startswith(f"error: no vault is listening at {url}\n")


def test_the_admin_credential_is_required(vault: Vault) -> None:
    from modelseal.cli.main import cli

    result = CliRunner().invoke(cli, ["customer", "list"], env={"MODELSEAL_ADMIN": None})
    assert result.exit_code == 1
    assert "this command needs the admin credential" in result.stderr


# --- serve -----------------------------------------------------------------------------------------


def test_serve_with_a_pkcs11_master_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The PIN comes from the variable vault.json names; without it, serve says so and stops."""
    token = new_token(tmp_path, monkeypatch)
    master = Pkcs11Master(token.module, token.label, token.pin, pin_env="MS_TEST_SERVE_PIN")
    home = init_vault(tmp_path / "home", database_url=None, master=master, now=datetime.now(UTC))
    port = free_port()
    url = f"https://127.0.0.1:{port}"
    monkeypatch.delenv("MS_TEST_SERVE_PIN", raising=False)
    without = start_serve(home, port)
    _, err = without.communicate(timeout=60)
    assert without.returncode == 1
    assert "environment variable MS_TEST_SERVE_PIN holds no PIN" in err
    process = start_serve(home, port, MS_TEST_SERVE_PIN=token.pin)
    try:
        _wait_until_up(url, home, process)
        with httpx.Client(verify=tls_context(home.path / "ca/ca.pem")) as http:
            assert http.get(url + "/healthz").json()["vault_id"] == home.settings.vault_id
    finally:
        stop_serve(process, url)


def test_serve_with_a_wrong_passphrase(vault: Vault) -> None:
    process = start_serve(
        vault.home, free_port(), "--passphrase-env", PASSPHRASE_ENV, **{PASSPHRASE_ENV: "wrong"}
    )
    out, err = process.communicate(timeout=60)
    assert process.returncode == 1 and out == ""
    assert err.startswith("error: wrong passphrase for the master key") and "Traceback" not in err


def test_serve_on_a_busy_port(vault: Vault) -> None:
    port = int(vault.url.rsplit(":", 1)[1])  # the module's vault listens there
    process = start_serve(
        vault.home, port, "--passphrase-env", PASSPHRASE_ENV, **{PASSPHRASE_ENV: PASSPHRASE}
    )
    _, err = process.communicate(timeout=60)
    assert process.returncode == 1
    assert err.startswith(f"error: cannot listen on 127.0.0.1:{port}: Address already in use")
