"""The agent sends only operations, variables and fields that the official agent or client sends
(tests/fixtures/official-agent-operations.json, recorded by running the official agent and client
against the emulator). Anything new fails here: it might not exist on the real W&B service."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import pytest
from graphql import parse

from agent.backend.jobs import DirectUrls, JobResolver
from agent.backend.jobs.operations import ARTIFACT_OPERATIONS
from agent.backend.operations import ALL_OPERATIONS, BATCHED_OPERATIONS, Backend, runs_stopped_query
from agent.backend.transport import GraphQLClient
from agent.source import materialize
from localenv.wandb_emulator import start_emulator
from localenv.wandb_emulator.operations import describe

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "official-agent-operations.json"
SENT = {**ALL_OPERATIONS, **ARTIFACT_OPERATIONS}  # the queue protocol, job resolution, fetch-source


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


_COPY = re.compile(r"_\d+\b")


def unbatched(ours: dict[str, Any]) -> dict[str, Any]:
    """A batched operation (N aliased copies of an official one, variables `<name>_<i>`) as one copy."""
    if ours["name"] not in BATCHED_OPERATIONS:
        return ours
    return {**ours, "variables": {_COPY.sub("", k): v for k, v in ours["variables"].items()},
            "arguments": sorted({_COPY.sub("", a) for a in ours["arguments"]})}


def covered(ours: dict[str, Any], theirs: list[dict[str, Any]]) -> str | None:
    """None when one official record sends at least our variables (same types), fields and field
    arguments (same values: the same variable or literal, input objects field by field). A batched
    operation is compared copy by copy (the copies differ only in their variables' index)."""
    ours = unbatched(ours)
    problems = []
    for rec in theirs:
        extra_vars = {k: v for k, v in ours["variables"].items() if rec["variables"].get(k) != v}
        extra_fields = sorted(set(ours["fields"]) - set(rec["fields"]))
        extra_args = sorted(set(ours["arguments"]) - set(rec["arguments"]))
        if not extra_vars and not extra_fields and not extra_args and ours["type"] == rec["type"]:
            return None
        problems.append(f"variables {extra_vars} fields {extra_fields} arguments {extra_args}")
    return "; ".join(problems) or "never sent by the official agent"


@pytest.mark.parametrize("name", [*sorted(SENT), "RunStoppedStatus x3"])
def test_each_query_text_is_a_subset_of_the_official_one(name):
    text = runs_stopped_query(3) if name == "RunStoppedStatus x3" else SENT[name]
    name = name.split(" ")[0]
    ours = describe(parse(text), None)
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
                await backend.runs_stopped([("acme", "p", "r"), ("acme", "q", "s")])
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


def test_a_batch_is_covered_only_copy_by_copy():
    """The aliased copies of RunStoppedStatus are the official query's; a copy with another
    argument, or an operation that is not batched, is not covered."""
    theirs = official()["RunStoppedStatus"]
    assert covered(describe(parse(runs_stopped_query(2)), None), theirs) is None
    wrong = runs_stopped_query(2).replace("run(name: $runId_1)", "run(name: $runId_1, x: $runId_1)")
    assert covered(describe(parse(wrong), None), theirs) is not None
    renamed = describe(parse(runs_stopped_query(2).replace("RunStoppedStatus", "RunState")), None)
    assert covered(renamed, official()["RunState"]) is not None


def test_covered_compares_arguments():
    """An argument the official client does not send (or sends with another value) is not covered."""
    theirs = [describe(parse("query Q($a: String!) { project(name: $a) { id } }"), None)]
    assert covered(describe(parse("query Q($a: String!) { project(name: $a) { id } }"), None), theirs) is None
    assert covered(describe(parse("query Q($a: String!) { project { id } }"), None), theirs) is None
    for text in ("query Q($a: String!) { project(name: $a, entityName: $a) { id } }",
                 'query Q($a: String!) { project(name: "x") { id } }',
                 "mutation Q($a: String!) { project(name: $a) { id } }"):
        assert covered(describe(parse(text), None), theirs) is not None, text
    nested = [describe(parse("mutation M($q: String!) { pop(input: {queueName: $q, entityName: $q}) { id } }"), None)]
    assert covered(describe(parse("mutation M($q: String!) { pop(input: {queueName: $q}) { id } }"), None),
                   nested) is None
    assert covered(describe(parse("mutation M($q: String!) { pop(input: {projectName: $q}) { id } }"), None),
                   nested) is not None


def test_job_resolution_and_fetch_source_over_the_wire_are_covered(tmp_path):
    """Resolve a code job and fetch its source (what the agent and `fetch-source` send) against the
    emulator; every operation in its request log, arguments included, is one the official agent sent."""
    import httpx
    from job_documents import job_document

    server, key = start_emulator(entity="acme", username="acme")

    def seed(name: str, type_name: str, files: dict[str, Any]) -> dict[str, Any]:
        body = {"entity": "acme", "project": "p", "type": type_name, "name": name,
                "files": {k: (json.dumps(v) if isinstance(v, dict) else v) for k, v in files.items()}}
        return httpx.post(server.url + "/_emulator/artifacts", json=body, timeout=10).json()

    try:
        code = seed("code-train.py", "code", {"train.py": "print(1)\n"})
        seed("code-job", "job", job_document("artifact", code_artifact_id=code["id"],
                                             code_artifact_name="code-train.py:v0"))
        seed("image-job", "job", job_document("image"))

        async def scenario() -> None:
            client = GraphQLClient(server.url, key, timeout=5)
            downloads = DirectUrls(timeout=5)
            try:
                resolver = JobResolver(client, downloads)
                await resolver.resolve("acme/p/image-job:latest")
                job = await resolver.resolve("acme/p/code-job:latest")
                assert job.code is not None
                await materialize(tmp_path / "src", client=client, downloads=downloads, code=job.code, job=job.job)
            finally:
                await client.aclose()
                await downloads.aclose()

        asyncio.run(scenario())
        sent = httpx.get(server.url + "/_emulator/operations", timeout=10).json()
    finally:
        server.stop()
    assert (tmp_path / "src" / "train.py").is_file() and (tmp_path / "src" / ".job" / "wandb-job.json").is_file()
    assert {rec["name"] for rec in sent} == set(ARTIFACT_OPERATIONS)
    reference = official()
    for rec in sent:
        assert rec["name"] in reference, f"{rec['name']} is not sent by the official agent"
        problem = covered(rec, reference[rec["name"]])
        assert problem is None, f"{rec['name']}: {problem}"
