"""An emulator of the W&B launch API on loopback (GraphQL, file_stream, uploads, admin API).

Start one with ``python -m localenv.wandb_emulator --port N``, or in-process with
`start_emulator`; tests use `localenv.wandb_emulator.testing`.
"""

from __future__ import annotations

import re
from pathlib import Path

from localenv.wandb_emulator.server import Emulator, EmulatorServer
from localenv.wandb_emulator.state import EmulatorState, new_api_key

API_KEY_FORMAT = re.compile(r"^(?:[A-Za-z0-9]+-)?\w{40,}$")

__all__ = ["API_KEY_FORMAT", "Emulator", "EmulatorServer", "EmulatorState", "new_api_key", "start_emulator"]


def start_emulator(
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    state_file: Path | None = None,
    api_key: str | None = None,
    claim_timeout: float = 60.0,
    username: str = "local",
    entity: str | None = None,
) -> tuple[EmulatorServer, str]:
    """Serve an emulator on a background thread; returns the server and a ready API key.

    The key is ``api_key`` if given, else the first key kept in the state file, else a new one.
    """
    state = EmulatorState(state_file=state_file, claim_timeout=claim_timeout)
    if api_key is None and state.users:
        api_key = next(iter(state.users))
    key = api_key or new_api_key()
    if not API_KEY_FORMAT.match(key):
        raise ValueError("API key must look like local-<40 or more letters, digits or underscores>")
    if state.user_for_key(key) is None:
        state.add_user(key, username, entity or username)
    server = EmulatorServer(Emulator(state), host=host, port=port).start()
    return server, key
