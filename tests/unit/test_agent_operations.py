"""The agent sends only operations, variables and fields that the official agent or client sends
(tests/fixtures/official-agent-operations.json, recorded by running the official agent and client
against the emulator). Anything new fails here: it might not exist on the real W&B service."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from graphql import parse

from agent.backend.operations import ALL_OPERATIONS, Backend
from agent.backend.transport import GraphQLClient
from localenv.wandb_emulator import start_emulator
from localenv.wandb_emulator.operations import describe

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "official-agent-operations.json"


def official() -> dict[str, list[dict[str, Any]]]:
    records = json.loads(FIXTURE.read_text())
    if isinstance(records, dict):
        records = records.get("operations", records)
    by_name: dict[str, list[dict[str, Any]]] = {}
    for rec in records:
        by_name.setdefault(rec["name"], []).append(rec)
    return by_name


def test_recording_covers_the_main_loop():
    """The recorded fixture holds the operations of every poll tick and of failure reporting."""
    records = json.loads(FIXTURE.read_text())["operations"]
    recorded = {r["name"] for r in records}
    assert {"popFromRunQueue", "ackRunQueueItem", "LaunchAgent", "updateLaunchAgent", "createLaunchAgent",
            "ProjectRunQueues", "RunStoppedStatus", "failRunQueueItem", "updateRunQueueItemWarning"} <= recorded


def covered(ours: dict[str, Any], theirs: list[dict[str, Any]]) -> str | None:
    """None when some official record sends at least our variables (same types) and fields."""
    problems = []
    for rec in theirs:
        extra_vars = {k: v for k, v in ours["variables"].items() if rec["variables"].get(k) != v}
        extra_fields = sorted(set(ours["fields"]) - set(rec["fields"]))
        if not extra_vars and not extra_fields and ours["type"] == rec["type"]:
            return None
        problems.append(f"variables {extra_vars} fields {extra_fields}")
    return "; ".join(problems) or "never sent by the official agent"


@pytest.mark.parametrize("name", sorted(ALL_OPERATIONS))
def test_each_query_text_is_a_subset_of_the_official_one(name):
    ours = describe(parse(ALL_OPERATIONS[name]), None)
    assert ours["name"] == name
    theirs = official().get(name)
    assert theirs, f"{name} is not an operation the official agent sends"
    problem = covered(ours, theirs)
    assert problem is None, f"{name}: {problem}"


def test_what_goes_over_the_wire_is_covered():
    """Exercise every backend call against the emulator and compare its request log."""
    server, key = start_emulator(entity="acme", username="acme")
    try:
        async def scenario() -> None:
            client = GraphQLClient(server.url, key, timeout=5)
            backend = Backend(client, "acme")
            try:
                await backend.viewer_entity()
                queues = await backend.run_queues()
                agent_id = await backend.create_launch_agent([q["id"] for q in queues], "h", {"queues": []}, "v")
                await backend.entity_is_team()
                await backend.launch_agent(agent_id)
                await backend.update_launch_agent(agent_id, "POLLING")
                await backend.pop("default", agent_id)
                await backend.ack("UnVuUXVldWVJdGVtOjk5", "r")
                await backend.fail("UnVuUXVldWVJdGVtOjk5", "m", "agent")
                await backend.warn("UnVuUXVldWVJdGVtOjk5", "w")
                await backend.run_stopped("acme", "p", "r")
                await backend.run_state("acme", "p", "r")
                await backend.item_state("default", "UnVuUXVldWVJdGVtOjk5")
                await backend.push("default", {"entity": "acme", "project": "p", "run_id": "r", "_resume_count": 1,
                                               "docker": {"docker_image": "busybox"}})
            finally:
                await client.aclose()

        import httpx
        httpx.post(server.url + "/_emulator/queues", json={"entity": "acme", "name": "default"}, timeout=10)
        asyncio.run(scenario())
        sent = httpx.get(server.url + "/_emulator/operations", timeout=10).json()
    finally:
        server.stop()
    names = {rec["name"] for rec in sent}
    assert names == set(ALL_OPERATIONS)
    reference = official()
    for rec in sent:
        assert rec["name"] in reference, f"{rec['name']} is not sent by the official agent"
        problem = covered(rec, reference[rec["name"]])
        assert problem is None, f"{rec['name']}: {problem}"
