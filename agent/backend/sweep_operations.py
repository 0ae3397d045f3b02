"""The W&B operations of a sweep scheduler, each with (a subset of) the variables and fields the
official scheduler sends, so that it works against the real service; plus the run's file_stream
heartbeat and completion, as wandb-core sends them for the scheduler's own run."""

from __future__ import annotations

import base64
import json
import re
from typing import Any

from agent.backend.operations import LAUNCH_PROJECT, Q_RUN_QUEUE_ITEM, Q_RUN_STATE
from agent.backend.transport import BackendError, GraphQLClient

Q_SWEEP_WITH_RUNS = """query SweepWithRuns($entity: String, $project: String, $sweep: String!) {
  project(name: $project, entityName: $entity) {
    sweep(sweepName: $sweep) {
      id name state config
      runs { edges { node { name state summaryMetrics } } }
    }
  }
}"""

Q_GET_SWEEP_STATE = """query GetSweepState($entity: String, $project: String, $sweep: String!) {
  project(name: $project, entityName: $entity) {
    sweep(sweepName: $sweep) { state }
  }
}"""

M_CREATE_AGENT = """mutation CreateAgent($host: String!, $projectName: String, $entityName: String, $sweep: String!) {
  createAgent(input: {host: $host, projectName: $projectName, entityName: $entityName, sweep: $sweep}) {
    agent { id }
  }
}"""

M_HEARTBEAT = """mutation Heartbeat($id: ID!, $metrics: JSONString, $runState: JSONString) {
  agentHeartbeat(input: {id: $id, metrics: $metrics, runState: $runState}) {
    agent { id }
    commands
  }
}"""

M_UPSERT_SWEEP_STATE = """mutation UpsertSweep($id: ID, $state: String, $entityName: String, $projectName: String) {
  upsertSweep(input: {id: $id, state: $state, entityName: $entityName, projectName: $projectName}) {
    sweep { name }
  }
}"""

M_PUSH = """mutation pushToRunQueueByName($entityName: String!, $projectName: String!, $queueName: String!,
    $runSpec: JSONString!, $priority: Int) {
  pushToRunQueueByName(input: {entityName: $entityName, projectName: $projectName, queueName: $queueName,
      runSpec: $runSpec, priority: $priority}) {
    runQueueItemId
  }
}"""

M_PUSH_WITH_TEMPLATE = """mutation pushToRunQueueByName($entityName: String!, $projectName: String!,
    $queueName: String!, $runSpec: JSONString!, $priority: Int, $templateVariableValues: JSONString) {
  pushToRunQueueByName(input: {entityName: $entityName, projectName: $projectName, queueName: $queueName,
      runSpec: $runSpec, priority: $priority, templateVariableValues: $templateVariableValues}) {
    runQueueItemId
  }
}"""

Q_RUN_QUEUE_ITEMS = """query GetRunQueueItem($projectName: String!, $entityName: String!, $runQueue: String!) {
  project(name: $projectName, entityName: $entityName) {
    runQueue(name: $runQueue) {
      runQueueItems { edges { node { id state associatedRunId } } }
    }
  }
}"""

M_STOP_RUN = """mutation StopRun($id: ID!) {
  stopRun(input: {id: $id}) { success }
}"""

M_UPSERT_BUCKET = """mutation UpsertBucket($name: String, $project: String, $entity: String, $displayName: String,
    $config: JSONString) {
  upsertBucket(input: {name: $name, modelName: $project, entityName: $entity, displayName: $displayName,
      config: $config}) {
    bucket { id name }
    inserted
  }
}"""

SWEEP_OPERATIONS = {
    "SweepWithRuns": Q_SWEEP_WITH_RUNS,
    "GetSweepState": Q_GET_SWEEP_STATE,
    "CreateAgent": M_CREATE_AGENT,
    "Heartbeat": M_HEARTBEAT,
    "UpsertSweep": M_UPSERT_SWEEP_STATE,
    "pushToRunQueueByName": M_PUSH,
    "pushToRunQueueByName+templateVariableValues": M_PUSH_WITH_TEMPLATE,
    "GetRunQueueItem": Q_RUN_QUEUE_ITEM,
    "GetRunQueueItem (all items)": Q_RUN_QUEUE_ITEMS,
    "StopRun": M_STOP_RUN,
    "UpsertBucket": M_UPSERT_BUCKET,
    "RunState": Q_RUN_STATE,
}


_NAME = re.compile(r"^\s*(?:query|mutation)\s+(\w+)")


def operation_name(text: str) -> str:
    found = _NAME.match(text)
    assert found is not None, text
    return found.group(1)


def storage_id(entity: str, project: str, run: str) -> str:
    """W&B's storage id of a run, the id ``stopRun`` takes."""
    return base64.standard_b64encode(f"Run:v1:{run}:{project}:{entity}".encode()).decode()


class SweepApi:
    """What one sweep scheduler says to W&B."""

    def __init__(self, client: GraphQLClient) -> None:
        self._client = client

    async def _run(self, name: str, variables: dict[str, Any]) -> dict[str, Any]:
        text = SWEEP_OPERATIONS[name]
        return await self._client.execute(operation_name(text), text, variables,
                                          mutation=text.lstrip().startswith("mutation"))

    async def sweep(self, entity: str, project: str, sweep: str) -> dict[str, Any] | None:
        data = await self._run("SweepWithRuns", {"entity": entity, "project": project, "sweep": sweep})
        found = (data.get("project") or {}).get("sweep")
        if not found:
            return None
        found = dict(found)
        found["runs"] = [e["node"] for e in ((found.get("runs") or {}).get("edges") or [])]
        return found

    async def sweep_state(self, entity: str, project: str, sweep: str) -> str | None:
        data = await self._run("GetSweepState", {"entity": entity, "project": project, "sweep": sweep})
        found = (data.get("project") or {}).get("sweep")
        return str(found["state"]) if found and found.get("state") else None

    async def set_sweep_state(self, sweep_object_id: str, entity: str, project: str, state: str) -> None:
        await self._run("UpsertSweep", {"id": sweep_object_id, "state": state, "entityName": entity,
                                        "projectName": project})

    async def register(self, host: str, entity: str, project: str, sweep: str) -> str:
        data = await self._run("CreateAgent", {"host": host, "projectName": project, "entityName": entity,
                                               "sweep": sweep})
        return str(data["createAgent"]["agent"]["id"])

    async def heartbeat(self, agent_id: str, run_states: dict[str, bool]) -> list[dict[str, Any]]:
        data = await self._run("Heartbeat", {"id": agent_id, "metrics": "{}", "runState": json.dumps(run_states)})
        commands = (data.get("agentHeartbeat") or {}).get("commands")
        parsed = json.loads(commands) if isinstance(commands, str) else commands
        if not isinstance(parsed, list):
            raise BackendError("agentHeartbeat answered commands that are not a list")
        return [c for c in parsed if isinstance(c, dict)]

    async def push(self, entity: str, queue: str, spec: dict[str, Any], priority: int,
                   template_variables: dict[str, Any] | None, project: str = LAUNCH_PROJECT) -> str:
        variables: dict[str, Any] = {"entityName": entity, "projectName": project, "queueName": queue,
                                     "runSpec": json.dumps(spec), "priority": priority}
        name = "pushToRunQueueByName"
        if template_variables is not None:
            variables["templateVariableValues"] = json.dumps(template_variables)
            name = "pushToRunQueueByName+templateVariableValues"
        # A push whose answer was lost is not sent again (the transport's rule for mutations); the
        # scheduler settles it against the queue.
        data = await self._run(name, variables)
        found = data.get("pushToRunQueueByName") or {}
        if not found.get("runQueueItemId"):
            raise BackendError(f"pushing to queue {queue} returned no item")
        return str(found["runQueueItemId"])

    async def run_state(self, entity: str, project: str, run: str) -> str | None:
        data = await self._run("RunState", {"project": project, "entity": entity, "name": run})
        found = (data.get("project") or {}).get("run")
        return str(found.get("state") or "") if found else None

    async def item_state(self, entity: str, queue: str, item_id: str, project: str = LAUNCH_PROJECT) -> str | None:
        data = await self._run("GetRunQueueItem", {"projectName": project, "entityName": entity, "runQueue": queue,
                                                   "itemId": item_id})
        found = ((data.get("project") or {}).get("runQueue") or {}).get("runQueueItem")
        return str(found["state"]) if found else None

    async def queue_items(self, entity: str, queue: str, project: str = LAUNCH_PROJECT) -> list[dict[str, Any]]:
        data = await self._run("GetRunQueueItem (all items)", {"projectName": project, "entityName": entity,
                                                               "runQueue": queue})
        edges = (((data.get("project") or {}).get("runQueue") or {}).get("runQueueItems") or {}).get("edges") or []
        return [e["node"] for e in edges if isinstance(e, dict) and e.get("node")]

    async def stop_run(self, entity: str, project: str, run: str) -> bool:
        data = await self._run("StopRun", {"id": storage_id(entity, project, run)})
        return bool((data.get("stopRun") or {}).get("success"))

    async def upsert_run(self, entity: str, project: str, run: str, display_name: str,
                         config: dict[str, Any]) -> None:
        await self._run("UpsertBucket", {"name": run, "project": project, "entity": entity,
                                         "displayName": display_name,
                                         "config": json.dumps({k: {"value": v} for k, v in config.items()})})

    async def file_stream(self, entity: str, project: str, run: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self._client.post_json(f"/files/{entity}/{project}/{run}/file_stream", body)
