"""``modelseal`` with the test KeySource: the real CLI code, with the vault + agent chain replaced
by ``StaticKeySource`` (tests/unit/cfs/keysource.py) holding the key in the file named by
``MODELSEAL_TEST_DATA_KEY_FILE``. ``--agent-home`` must still be given (any directory).

Sending SIGUSR1 to this process ends the lease as a revocation would (code REVOKED).

    python -m tests.integration.cfs.static_cli run --model PKG --at DIR --license FILE \\
        --agent-home DIR -- CMD ...
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from types import FrameType

from modelseal.agent.source import KeySource
from modelseal.cli import cfs as cli_cfs
from modelseal.cli.main import main
from modelseal.crypto import load_data_key
from tests.unit.cfs.keysource import StaticKeySource

KEY_ENV = "MODELSEAL_TEST_DATA_KEY_FILE"


def _static_source(agent_home: Path | None, agent_socket: Path | None) -> KeySource:
    source = StaticKeySource(load_data_key(Path(os.environ[KEY_ENV]).read_bytes()))

    def revoke(signum: int, frame: FrameType | None) -> None:
        for held in source.held:
            held.end("REVOKED", "the license was revoked by the model controller")

    signal.signal(signal.SIGUSR1, revoke)
    return source


if __name__ == "__main__":
    cli_cfs._key_source = _static_source
    main(sys.argv[1:])
