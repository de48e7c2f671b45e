"""``modelseal agent``: the device side — enrol this device, check that it can get a key, and
serve keys to local workloads over a Unix socket.

This module stays light: the HTTP client and the agent code are imported when a command runs.
"""

from __future__ import annotations

from pathlib import Path

import click

from modelseal.cli._common import quiet_option, say
from modelseal.errors import UsageError

__all__ = ["agent"]

_DIR = click.Path(path_type=Path, file_okay=False)
_LAYOUT = """\
\b
The agent home holds:
  device-key.pem  the device's private key (ECDSA P-256, PKCS#8, NOT encrypted so
                  the agent starts unattended; mode 0600 in a 0700 directory)
  device.pem      the device certificate the vault CA issued
  ca.pem          the vault CA certificate (pinned by the enrolment token)
  agent.json      the vault URL and this device's id
"""


@click.group()
def agent() -> None:
    """The device agent: this device's identity, its key releases, and the local key service."""


@agent.command(epilog=_LAYOUT)
@click.option(
    "--vault",
    "vault_url",
    required=True,
    envvar="MODELSEAL_VAULT",
    show_envvar=True,
    metavar="URL",
    help="The vault's https:// URL.",
)
@click.option(
    "--token",
    required=True,
    envvar="MODELSEAL_ENROLL_TOKEN",
    show_envvar=True,
    help="The one-time token from `modelseal device enroll-token` (the environment variable "
    "keeps it out of the process list).",
)
@click.option("--home", required=True, type=_DIR, help="The agent home to create (new or empty).")
@quiet_option
def enroll(vault_url: str, token: str, home: Path, quiet: bool) -> None:
    """Enrol this device: create its key here, send a CSR with the token, store the certificate.

    The vault's CA is checked against the pin inside the token before anything is sent. Prints
    the new device id alone on stdout.
    """
    from modelseal.agent import AgentHome

    enrolled = AgentHome.enroll(home, vault_url=vault_url, token=token)
    say(quiet, f"enrolled device {enrolled.device_id} with {enrolled.vault_url} in {enrolled.path}")
    click.echo(enrolled.device_id)


@agent.command()
@click.option("--home", required=True, type=_DIR, help="The agent home `agent enroll` created.")
@click.option(
    "--license",
    "license_file",
    required=True,
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    help="The license file (a JWS) from the model controller.",
)
@click.option(
    "--model",
    "model_spec",
    required=True,
    metavar="NAME[:VERSION]",
    help="The model to get the key of (VERSION may be left out when the license covers one).",
)
def check(home: Path, license_file: Path, model_spec: str) -> None:
    """Perform one real key release (it counts as a load) and say whether it was granted.

    Prints `granted: lease ID until TIME` and exits 0, or `refused: CODE: sentence` and exits 1.
    The key is opened in memory to prove it works, then dropped; it is never printed.
    """
    from modelseal.agent import AgentHome, request_key
    from modelseal.licensing import Refusal, format_datetime
    from modelseal.vault.client import VaultClient, VaultRequestError

    name, version = _model_and_version(model_spec)
    enrolled = AgentHome.open(home)
    token = _read_license(license_file)
    with VaultClient.device(
        enrolled.vault_url, enrolled.cert_file, enrolled.key_file, enrolled.ca_file
    ) as client:
        try:
            released = request_key(
                client,
                device_id=enrolled.device_id,
                license_token=token,
                model_name=name,
                model_version=version,
            )
        except VaultRequestError as exc:
            click.echo(f"refused: {exc.code}: {exc.reason}")
            click.get_current_context().exit(1)
        except Refusal as exc:  # the license failed the local check before any request
            click.echo(f"refused: {exc.code.value}: {exc.message}")
            click.get_current_context().exit(1)
    click.echo(f"granted: lease {released.lease_id} until {format_datetime(released.expires_at)}")


_SERVE_EPILOG = """\
\b
Protocol (docs/agent.md): newline-delimited JSON objects (at most 1 MiB each)
over a stream socket, one connection per held key:
  -> {"op": "acquire", "license": JWS, "model": NAME, "version": N}
  <- {"type": "granted", "key": {...}, "status": {...}}  or
     {"type": "error", "code": CODE, "message": SENTENCE, ...}
  -> {"op": "count", "inferences": N}   <- {"type": "ok"} or an error (RATE_LIMITED)
  -> {"op": "status"}                   <- {"type": "status", "status": {...}}
  <- {"type": "ended", "status": {...}} pushed when the lease ends
Closing the connection lets go of the key.

\b
Access: the socket is mode 0600 (0660 with --allow-uid, so that members of its
group can open it); each connection's peer uid (SO_PEERCRED) must be this
agent's uid, root, or an --allow-uid; other peers get PEER_NOT_ALLOWED.
"""


@agent.command(epilog=_SERVE_EPILOG)
@click.option("--home", required=True, type=_DIR, help="The agent home `agent enroll` created.")
@click.option(
    "--socket",
    "socket_path",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="Where to create the Unix socket (a stale socket there is replaced; anything else "
    "is left alone and the command stops).",
)
@click.option(
    "--allow-uid",
    "allow_uids",
    multiple=True,
    type=click.IntRange(min=0),
    metavar="UID",
    help="Also serve processes of this user id (repeat for several). Without it only this "
    "agent's own user and root may connect.",
)
@click.option(
    "--evidence-config",
    "evidence_config",
    multiple=True,
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    metavar="FILE",
    help="A file measured into `software` evidence along with the runtime, e.g. the model "
    "server's config.json (repeat for several); used only for licenses that require it.",
)
def serve(
    home: Path, socket_path: Path, allow_uids: tuple[int, ...], evidence_config: tuple[Path, ...]
) -> None:
    """Give model keys to local workloads over a Unix socket, so they never see the device key.

    Each connection asks for one model's key with its license; the agent releases it from the
    vault (one load), renews its lease every heartbeat with the inferences the workload reports,
    and tells the workload when the lease ends (revoked, exhausted, expired, or the vault
    unreachable past the license's offline grace). Runs until SIGTERM or SIGINT (Ctrl-C), then
    ends every lease and removes the socket.
    """
    import signal
    import threading

    from modelseal.agent import AgentHome, AgentSocketServer, KeyAgent, default_evidence

    enrolled = AgentHome.open(home)
    stop = threading.Event()
    previous = {
        number: signal.signal(number, lambda *_: stop.set())
        for number in (signal.SIGTERM, signal.SIGINT)
    }
    key_agent = KeyAgent(enrolled, evidence=default_evidence(evidence_config))
    server = AgentSocketServer(key_agent, socket_path, allow_uids=allow_uids)
    try:
        server.start()
        say(
            False,
            f"agent of device {enrolled.device_id} listening on {server.path} "
            f"(vault {enrolled.vault_url}); stop it with SIGTERM or Ctrl-C",
        )
        while not stop.wait(0.5):
            pass
    finally:
        key_agent.close()  # ends every lease: each workload gets its "ended" event first
        server.close()  # then the connections close and the socket file goes
        for number, handler in previous.items():
            signal.signal(number, handler)
    say(False, f"agent stopped; {server.path} removed")


def _model_and_version(text: str) -> tuple[str, int | None]:
    name, sep, version = text.partition(":")
    if not name or (sep and not version.isdigit()) or (sep and int(version) < 1):
        raise UsageError(f"--model {text!r}: write NAME or NAME:VERSION (iris, iris:2)")
    return name, int(version) if sep else None


def _read_license(path: Path) -> str:
    try:
        return path.read_text("ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read the license {path}: it is not a license file") from exc
