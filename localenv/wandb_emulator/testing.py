"""Test helpers: start an emulator on a free port (in this process or as a subprocess) and
talk to its admin API.

    from localenv.wandb_emulator.testing import running_emulator

    with running_emulator() as emu:              # or running_emulator(mode="process")
        emu.client.create_queue("acme", "q", {"spec": {...}})
        emu.client.push("acme", "q", {"docker": {"docker_image": "busybox"}, ...})

The pytest fixtures `wandb_emulator` (a started in-process emulator, function scope) and
`wandb_emulator_factory` (call it with ``mode=``, ``state_file=``, ... to start more) are
defined here; a conftest or plugin makes them available with
``pytest_plugins = ["localenv.wandb_emulator.testing"]``.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from localenv.wandb_emulator import start_emulator
from localenv.wandb_emulator.client import AdminCallError, EmulatorClient

__all__ = [
    "AdminCallError",
    "EmulatorClient",
    "RunningEmulator",
    "running_emulator",
    "start",
    "wandb_emulator",
    "wandb_emulator_factory",
]


@dataclass
class RunningEmulator:
    url: str
    api_key: str
    client: EmulatorClient
    stop: Callable[[], None]
    port: int
    process: subprocess.Popen[str] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class EntityAdmin(EmulatorClient):
    """The admin client bound to one entity: the short calls agent tests make all the time."""

    def __init__(self, url: str, api_key: str, entity: str, timeout: float = 30.0) -> None:
        super().__init__(url, api_key, timeout)
        self.entity = entity

    @property
    def key(self) -> str:
        return self.api_key

    def admin(self, method: str, path: str, body: Any = None) -> Any:
        """A raw admin call, *path* relative to ``/_emulator``."""
        return self.call(method, "/_emulator" + path, body)

    def queue(self, name: str, config: dict[str, Any] | None = None) -> None:
        self.create_queue(self.entity, name, config)

    def enqueue(self, queue: str, spec: dict[str, Any]) -> str:
        """Push a run onto *queue*; the new item's id."""
        return str(self.push(self.entity, queue, spec)["id"])


def _start_thread(state_file: Path | None, claim_timeout: float, port: int, api_key: str | None) -> RunningEmulator:
    server, key = start_emulator(port=port, state_file=state_file, claim_timeout=claim_timeout, api_key=api_key)
    return RunningEmulator(server.url, key, EmulatorClient(server.url, key), server.stop, server.port)


def _start_process(state_file: Path | None, claim_timeout: float, port: int, api_key: str | None,
                   entity: str | None = None) -> RunningEmulator:
    cmd = [sys.executable, "-m", "localenv.wandb_emulator", "--port", str(port), "--claim-timeout", str(claim_timeout)]
    if entity is not None:
        cmd += ["--entity", entity]
    if state_file is not None:
        cmd += ["--state-file", str(state_file)]
    if api_key is not None:
        cmd += ["--api-key", api_key]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ))
    assert proc.stdout is not None
    values: dict[str, str] = {}
    for line in proc.stdout:
        if not line.strip():
            break
        name, _, value = line.strip().partition("=")
        values[name] = value
    if "WANDB_BASE_URL" not in values:
        proc.kill()
        _, err = proc.communicate(timeout=10)
        raise RuntimeError(f"emulator did not start: {err.strip()}")

    def stop() -> None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    url, key = values["WANDB_BASE_URL"], values["WANDB_API_KEY"]
    return RunningEmulator(url, key, EmulatorClient(url, key), stop, int(url.rsplit(":", 1)[1]), process=proc)


def start(
    *,
    mode: str = "thread",
    state_file: Path | None = None,
    claim_timeout: float = 60.0,
    port: int = 0,
    api_key: str | None = None,
    entity: str | None = None,
) -> RunningEmulator:
    """Start an emulator on ``port`` (0: a free one), in this process (``thread``) or as a ``process``;
    ``entity`` (process mode) is the API key's entity and user name."""
    if mode == "thread":
        return _start_thread(state_file, claim_timeout, port, api_key)
    if mode == "process":
        return _start_process(state_file, claim_timeout, port, api_key, entity)
    raise ValueError("mode must be 'thread' or 'process'")


@contextlib.contextmanager
def running_emulator(**kwargs: Any) -> Iterator[RunningEmulator]:
    emu = start(**kwargs)
    try:
        yield emu
    finally:
        emu.stop()


@pytest.fixture
def wandb_emulator() -> Iterator[EmulatorClient]:
    """A fresh in-process emulator; the value is its admin client (``.url``, ``.api_key``)."""
    with running_emulator() as emu:
        yield emu.client


@pytest.fixture
def wandb_emulator_factory() -> Iterator[Callable[..., RunningEmulator]]:
    """Start emulators with `start`'s arguments; all are stopped at the end of the test."""
    started: list[RunningEmulator] = []

    def factory(**kwargs: Any) -> RunningEmulator:
        emu = start(**kwargs)
        started.append(emu)
        return emu

    yield factory
    for emu in reversed(started):
        emu.stop()
