"""A model server in its own process for the integration tests (run with ``python -m``).

The tests use tritonclient.grpc, whose generated protobuf classes share the ``inference``
package with the server's: both cannot live in one interpreter, so the server runs here, with
:class:`StaticKeySource` standing in for the vault + agent chain. Prints the two ports as JSON.

Usage: python -m tests.integration.serving._child SETTINGS_JSON KEYS_JSON CONTROL_DIR
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

from modelseal.crypto import load_data_key
from modelseal.serving.config import load_config
from modelseal.serving.server import ModelServer
from modelseal.serving.settings import ServeSettings
from tests.integration.serving.keysource import StaticKeySource


def main(settings_file: str, keys_file: str, control: str) -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    settings = ServeSettings(**json.loads(Path(settings_file).read_text()))
    keys = {
        (entry["name"], entry["version"]): load_data_key(Path(entry["file"]).read_bytes())
        for entry in json.loads(Path(keys_file).read_text())
    }
    assert settings.config is not None
    source = StaticKeySource(keys, inference_limit=1000, control=Path(control))
    server = ModelServer(settings, load_config(settings.config), source)
    print(json.dumps({"rest": server.rest_port, "grpc": server.grpc_port}), flush=True)
    server.run()


if __name__ == "__main__":
    main(*sys.argv[1:4])
