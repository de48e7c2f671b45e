"""``modelseal serve``: the KServe v2 model server (REST and gRPC) for plain and sealed models.

This module stays light: the server, its backends and the agent are imported when the command runs.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from modelseal.errors import UsageError

if TYPE_CHECKING:
    from modelseal.agent.source import KeySource
    from modelseal.serving.settings import ServeSettings

__all__ = ["serve"]

_FILE = click.Path(path_type=Path, dir_okay=False)
_DIR = click.Path(path_type=Path, file_okay=False)
_EPILOG = """\
\b
Examples:
  modelseal serve --config config.json --agent-home ~/.modelseal/agent
  modelseal serve --model-name ocr --model-path models/ocr --agent-socket /run/modelseal.sock

Every option can also be set as MODELSEAL_SERVE_<OPTION> (e.g. MODELSEAL_SERVE_REST_PORT).
docs/serving.md describes config.json, the repository layout and the error statuses.
"""


@click.command(epilog=_EPILOG)
@click.option("--config", type=_FILE, help="OVMS-style config.json listing the models.")
@click.option("--model-name", help="Single-model mode: the name to serve the model under.")
@click.option("--model-path", type=_DIR, help="Single-model mode: base path with version dirs.")
@click.option("--license", "license_file", type=_FILE, help="Single-model mode: license file.")
@click.option(
    "--backend", type=click.Choice(["onnxruntime", "openvino"]), help="Single-model mode: backend."
)
@click.option("--rest-host", help="REST listen address [127.0.0.1].")
@click.option("--rest-port", type=int, help="REST port [8000].")
@click.option("--grpc-host", help="gRPC listen address [127.0.0.1].")
@click.option("--grpc-port", type=int, help="gRPC port [9000].")
@click.option("--agent-home", type=_DIR, help="Run the key agent here with this agent home.")
@click.option("--agent-socket", type=_FILE, help="Get keys from `modelseal agent serve` here.")
@click.option("--tls-cert", type=_FILE, help="PEM certificate of both ports (enables TLS).")
@click.option("--tls-key", type=_FILE, help="PEM private key of --tls-cert.")
@click.option("--tls-client-ca", type=_FILE, help="Require client certificates from this CA.")
@click.option("--max-body-size", type=int, help="Largest request in bytes [64 MiB].")
@click.option("--license-poll-interval", type=float, help="Seconds between license checks [5].")
@click.option("--metrics/--no-metrics", default=None, help="Serve /metrics [on].")
def serve(**options: Any) -> None:
    """Serve models over KServe v2 REST and gRPC; sealed ones with keys from the agent.

    Sealed models are decrypted in memory only. When a license is revoked or runs out, the
    model is unloaded and requests get 503 naming the reason; a new license file loads it again.
    """
    from pydantic import ValidationError

    from modelseal.serving.settings import ServeSettings

    options["license"] = options.pop("license_file")
    given = {key: value for key, value in options.items() if value is not None}
    try:
        settings = ServeSettings(**given)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        raise UsageError(f"{where.replace('_', '-')}: {message}" if where else message) from None
    _serve(settings)


def _serve(settings: Any) -> None:
    from modelseal.serving.config import load_config, single_model_config
    from modelseal.serving.repository import scan
    from modelseal.serving.server import ModelServer

    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log = logging.getLogger("modelseal.serving")
    log.addHandler(handler)
    log.setLevel(min(logging.INFO, logging.getLogger().getEffectiveLevel()))
    log.propagate = False

    if settings.config is not None:
        config = load_config(settings.config)
    else:
        config = single_model_config(
            settings.model_name,
            settings.model_path,
            license=settings.license,
            backend=settings.backend,
        )
    sealed = any(source.sealed for model in config.models for source in scan(model))
    key_source = _key_source(settings) if sealed else None
    ModelServer(settings, config, key_source).run()


def _key_source(settings: ServeSettings) -> KeySource:
    if settings.agent_home is not None:
        from modelseal.agent import AgentHome, default_evidence
        from modelseal.agent.keyagent import KeyAgent

        # Software evidence measures the server configuration along with the runtime.
        measured = [settings.config] if settings.config is not None else []
        return KeyAgent(AgentHome.open(settings.agent_home), evidence=default_evidence(measured))
    if settings.agent_socket is not None:
        from modelseal.agent.socket_client import AgentSocketClient

        return AgentSocketClient(settings.agent_socket)
    raise UsageError(
        "the repository holds sealed models, which need keys from the agent",
        hint="pass --agent-home DIR (agent in this process) or --agent-socket PATH",
    )
