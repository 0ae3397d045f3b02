"""The sweep scheduler sends only operations, variables and fields that the official scheduler and
client send (tests/fixtures/official-agent-operations.json, recorded from `wandb launch-sweep`, the
official scheduler and the official client against the emulator)."""

from __future__ import annotations

import asyncio

import httpx
import pytest
import yaml
from graphql import parse
from test_agent_operations import covered, official

from agent.backend.sweep_operations import SWEEP_OPERATIONS, SweepApi, operation_name
from agent.backend.transport import GraphQLClient
from localenv.wandb_emulator import start_emulator
from localenv.wandb_emulator.operations import describe


@pytest.mark.parametrize("key", sorted(SWEEP_OPERATIONS))
def test_each_sweep_query_text_is_a_subset_of_the_official_one(key: str) -> None:
    text = SWEEP_OPERATIONS[key]
    ours = describe(parse(text), None)
    assert ours["name"] == operation_name(text)
    theirs = official().get(ours["name"])
    assert theirs, f"{ours['name']} is not an operation the official client sends"
    problem = covered(ours, theirs)
    assert problem is None, f"{key}: {problem}"


def test_what_the_scheduler_sends_over_the_wire_is_covered() -> None:
    server, key = start_emulator(entity="acme", username="acme")
    try:
        httpx.post(server.url + "/_emulator/queues", json={"entity": "acme", "name": "q"}, timeout=10)
        create = ("mutation UpsertSweep($config: String, $entityName: String, $projectName: String) {"
                  " upsertSweep(input: {config: $config, entityName: $entityName, projectName: $projectName})"
                  " { sweep { id name } } }")
        config = yaml.safe_dump({"method": "random", "parameters": {"a": {"values": [1]}}})
        body = {"query": create, "variables": {"config": config, "entityName": "acme", "projectName": "p"}}
        created = httpx.post(server.url + "/graphql", json=body, auth=("api", key), timeout=10).json()
        sweep = created["data"]["upsertSweep"]["sweep"]
        httpx.delete(server.url + "/_emulator/requests", timeout=10)

        async def scenario() -> None:
            client = GraphQLClient(server.url, key, timeout=5)
            api = SweepApi(client)
            try:
                assert (await api.sweep("acme", "p", sweep["name"]) or {})["id"] == sweep["id"]
                await api.upsert_run("acme", "p", sweep["name"], f"Scheduler.{sweep['name']}", {"queue": "q"})
                worker = await api.register("h-0", "acme", "p", sweep["name"])
                (command,) = await api.heartbeat(worker, {})
                spec = {"entity": "acme", "project": "p", "run_id": command["run_id"], "sweep_id": sweep["name"],
                        "docker": {"docker_image": "busybox"}, "overrides": {"run_config": {"a": 1}}}
                item = await api.push("acme", "q", spec, 2, None)
                item2 = await api.push("acme", "q", {**spec, "run_id": "other"}, 2, {})
                assert await api.item_state("acme", "q", item) == "PENDING"
                assert [i["id"] for i in await api.queue_items("acme", "q")] == [item, item2]
                assert await api.run_state("acme", "p", command["run_id"]) == "pending"
                assert await api.sweep_state("acme", "p", sweep["name"]) == "RUNNING"
                assert await api.stop_run("acme", "p", command["run_id"])
                await api.set_sweep_state(sweep["id"], "acme", "p", "FINISHED")
                assert await api.file_stream("acme", "p", sweep["name"], {"complete": True, "exitcode": 0}) == {}
            finally:
                await client.aclose()

        asyncio.run(scenario())
        sent = httpx.get(server.url + "/_emulator/operations", timeout=10).json()
        run = httpx.get(server.url + f"/_emulator/runs/acme/p/{sweep['name']}", timeout=10).json()
    finally:
        server.stop()
    assert run["state"] == "finished", "the scheduler's own run is finished through its file_stream"
    names = {rec["name"] for rec in sent}
    assert names == {operation_name(text) for text in SWEEP_OPERATIONS.values()}
    reference = official()
    for rec in sent:
        assert rec["name"] in reference, f"{rec['name']} is not sent by the official client"
        problem = covered(rec, reference[rec["name"]])
        assert problem is None, f"{rec['name']}: {problem}"
