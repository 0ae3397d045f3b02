"""Sweeps and their sweep agents as the emulator keeps them (saved with the rest of the state).

A sweep records every parameter set it handed out (`issued`: run name, the sweep agent it went
to, the arguments), so a restarted emulator continues a grid where it stopped and never hands
the same run out twice.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

SWEEP_STATES = ("PENDING", "RUNNING", "PAUSED", "CANCELED", "FINISHED", "CRASHED")
TERMINAL_SWEEP_STATES = frozenset({"CANCELED", "FINISHED", "CRASHED"})


@dataclass
class Sweep:
    id: str
    name: str
    entity: str
    project: str
    config: str  # the YAML text the client sent
    seed: int
    state: str = "PENDING"
    description: str | None = None
    display_name: str | None = None
    controller: str | None = None
    scheduler: str | None = None  # the launchScheduler document, as sent
    created_at: float = 0.0
    updated_at: float = 0.0
    heartbeat_at: float | None = None
    issued: list[dict[str, Any]] = field(default_factory=list)
    state_history: list[str] = field(default_factory=list)


@dataclass
class SweepAgent:
    id: str
    sweep_id: str
    host: str
    created_at: float = 0.0
    heartbeat_at: float = 0.0
    heartbeats: int = 0


class SweepStore:
    """All sweeps of one emulator; guarded by the state's lock, saved with it."""

    def __init__(self, next_id: Callable[[str], str], now: Callable[[], float], save: Callable[[], None]) -> None:
        self.next_id = next_id
        self.now = now
        self.save = save
        self.sweeps: dict[str, Sweep] = {}
        self.agents: dict[str, SweepAgent] = {}
        self.seed: int | None = None  # the random seed of new sweeps (None: a fresh one each)

    def find(self, entity: str | None, project: str | None, name: str | None) -> Sweep | None:
        for sweep in self.sweeps.values():
            if (sweep.entity, sweep.project, sweep.name) == (entity, project, name):
                return sweep
        return None

    def names(self) -> set[str]:
        return {s.name for s in self.sweeps.values()}

    def set_state(self, sweep: Sweep, state: str) -> None:
        if sweep.state != state:
            sweep.state = state
            sweep.state_history.append(state)
        sweep.updated_at = self.now()

    def dump(self) -> dict[str, Any]:
        return {"sweeps": [asdict(s) for s in self.sweeps.values()],
                "agents": [asdict(a) for a in self.agents.values()]}

    def load(self, doc: dict[str, Any]) -> None:
        self.sweeps = {s["id"]: Sweep(**s) for s in doc.get("sweeps", [])}
        self.agents = {a["id"]: SweepAgent(**a) for a in doc.get("agents", [])}


def storage_id_path(run_id: str) -> tuple[str, str, str] | None:
    """``(entity, project, run)`` of a W&B run storage id (base64 ``Run:v1:<run>:<project>:<entity>``),
    the id launch schedulers send to stop a run."""
    try:
        text = base64.b64decode(run_id, validate=True).decode()
    except (ValueError, UnicodeDecodeError):
        return None
    parts = text.split(":")
    if len(parts) != 5 or parts[:2] != ["Run", "v1"]:
        return None
    return parts[4], parts[3], parts[2]
