"""tests/fixtures/official-agent-operations.json: every GraphQL operation (name, type, variables,
selected fields, field arguments, sending client) the official agent, client and SDK sent to the
emulator in the scenarios of the e2e tests that run them. Each scenario's operations are checked
against the file; with ``RECORD_OFFICIAL_AGENT_OPERATIONS=1`` the file is instead rewritten from
what all the scenarios sent (tests/e2e/record_official_agent_operations.py runs them)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import wandb

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "official-agent-operations.json"
RECORD = os.environ.get("RECORD_OFFICIAL_AGENT_OPERATIONS") == "1"
# scenario -> the test module that runs it (the recorder runs them all)
SCENARIOS = {
    "no-cluster": "test_official_agent.py",
    "cluster": "test_official_agent.py",
    "preemption": "test_official_agent.py",
    "client": "test_official_agent.py",
    "jobs": "test_jobs_differential.py",
    "sweep": "test_official_agent.py",
    "sweep-cli": "test_official_agent.py",
}


def _key(op: dict[str, Any]) -> str:
    return json.dumps(op, sort_keys=True)


def fixture_doc(operations: list[dict[str, Any]]) -> dict[str, Any]:
    unique = {_key(op): op for op in operations}
    ordered = sorted(unique.values(), key=lambda op: (op["client"], op["name"].lower(), _key(op)))
    return {
        "wandb_version": wandb.__version__,
        "note": "GraphQL operations the official agent, client and SDK sent to the emulator; regenerate with "
                "`.venv/bin/python tests/e2e/record_official_agent_operations.py`",
        "operations": ordered,
    }


class OperationsFixture:
    """Checks what an official-agent scenario sent against the fixture, or collects it for recording."""

    def __init__(self) -> None:
        self.seen: dict[str, list[dict[str, Any]]] = {}

    def check(self, scenario: str, operations: list[dict[str, Any]]) -> None:
        assert scenario in SCENARIOS, f"add scenario {scenario!r} to SCENARIOS"
        self.seen[scenario] = operations
        if RECORD:
            return
        doc = json.loads(FIXTURE.read_text())
        assert doc["wandb_version"] == wandb.__version__, "regenerate the fixture for this wandb release"
        listed = {_key(op) for op in doc["operations"]}
        missing = [op for op in operations if _key(op) not in listed]
        assert not missing, f"operations missing from {FIXTURE.name}: {json.dumps(missing, indent=1)}"

    def write(self) -> None:
        absent = [s for s in SCENARIOS if s not in self.seen]
        if absent:
            raise AssertionError(f"not recording {FIXTURE.name}: scenario(s) {', '.join(absent)} did not run")
        seen = [op for ops in self.seen.values() for op in ops]
        FIXTURE.write_text(json.dumps(fixture_doc(seen), indent=2) + "\n")
