"""The W&B launch-queue operations the agent uses, each with the variables and fields the
official agent sends (and nothing more), so that it works against the real service."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from agent.backend.transport import BackendError, GraphQLClient

LAUNCH_PROJECT = "model-registry"

Q_VIEWER = """query Viewer {
  viewer { id entity username }
}"""

Q_PROJECT_RUN_QUEUES = """query ProjectRunQueues($entity: String!, $projectName: String!) {
  project(entityName: $entity, name: $projectName) {
    runQueues { id name createdBy access }
  }
}"""

M_CREATE_LAUNCH_AGENT = """mutation createLaunchAgent($entity: String!, $project: String!, $queues: [ID!]!,
    $hostname: String!, $agentConfig: JSONString, $version: String) {
  createLaunchAgent(input: {entityName: $entity, projectName: $project, runQueues: $queues,
      hostname: $hostname, agentConfig: $agentConfig, version: $version}) {
    launchAgentId
  }
}"""

Q_ENTITY_IS_TEAM = """query EntityIsTeam($entity: String!) {
  entity(name: $entity) { id isTeam }
}"""

Q_LAUNCH_AGENT = """query LaunchAgent($agentId: ID!) {
  launchAgent(id: $agentId) { id name runQueues hostname agentStatus stopPolling heartbeatAt }
}"""

M_UPDATE_LAUNCH_AGENT = """mutation updateLaunchAgent($agentId: ID!, $agentStatus: String) {
  updateLaunchAgent(input: {launchAgentId: $agentId, agentStatus: $agentStatus}) { success }
}"""

M_POP = """mutation popFromRunQueue($entity: String!, $project: String!, $queueName: String!,
    $launchAgentId: ID) {
  popFromRunQueue(input: {entityName: $entity, projectName: $project, queueName: $queueName,
      launchAgentId: $launchAgentId}) {
    runQueueItemId
    runSpec
  }
}"""

M_ACK = """mutation ackRunQueueItem($itemId: ID!, $runId: String!) {
  ackRunQueueItem(input: {runQueueItemId: $itemId, runName: $runId}) { success }
}"""

M_FAIL = """mutation failRunQueueItem($runQueueItemId: ID!, $message: String!, $stage: String!,
    $filePaths: [String!]) {
  failRunQueueItem(input: {runQueueItemId: $runQueueItemId, message: $message, stage: $stage,
      filePaths: $filePaths}) { success }
}"""

M_WARN = """mutation updateRunQueueItemWarning($runQueueItemId: ID!, $message: String!, $stage: String!,
    $filePaths: [String!]) {
  updateRunQueueItemWarning(input: {runQueueItemId: $runQueueItemId, message: $message, stage: $stage,
      filePaths: $filePaths}) { success }
}"""

Q_RUN_STOPPED = """query RunStoppedStatus($projectName: String, $entityName: String, $runId: String!) {
  project(name: $projectName, entityName: $entityName) {
    run(name: $runId) { stopped }
  }
}"""

STOPPED_BATCH = 50  # runs per batched RunStoppedStatus request
BATCHED_OPERATIONS = ("RunStoppedStatus",)  # sent as N aliased copies of the official query, variables `<name>_<i>`


def runs_stopped_query(n: int) -> str:
    """`RunStoppedStatus` for n runs in one request: the official query's field n times, aliased
    `r<i>`, each with its own variables (`projectName_<i>`, `entityName_<i>`, `runId_<i>`)."""
    params = ", ".join(f"$projectName_{i}: String, $entityName_{i}: String, $runId_{i}: String!" for i in range(n))
    fields = "\n".join(f"  r{i}: project(name: $projectName_{i}, entityName: $entityName_{i}) {{\n"
                        f"    run(name: $runId_{i}) {{ stopped }}\n  }}" for i in range(n))
    return f"query RunStoppedStatus({params}) {{\n{fields}\n}}"


Q_RUN_STATE = """query RunState($project: String!, $entity: String!, $name: String!) {
  project(name: $project, entityName: $entity) {
    run(name: $name) { state }
  }
}"""

Q_RUN_QUEUE_ITEM = """query GetRunQueueItem($projectName: String!, $entityName: String!, $runQueue: String!,
    $itemId: ID!) {
  project(name: $projectName, entityName: $entityName) {
    runQueue(name: $runQueue) {
      runQueueItem(id: $itemId) { id state associatedRunId }
    }
  }
}"""

M_PUSH_BY_NAME = """mutation pushToRunQueueByName($entityName: String!, $projectName: String!, $queueName: String!,
    $runSpec: JSONString!) {
  pushToRunQueueByName(input: {entityName: $entityName, projectName: $projectName, queueName: $queueName,
      runSpec: $runSpec}) {
    runQueueItemId
    runSpec
  }
}"""

ALL_OPERATIONS = {
    "Viewer": Q_VIEWER,
    "ProjectRunQueues": Q_PROJECT_RUN_QUEUES,
    "createLaunchAgent": M_CREATE_LAUNCH_AGENT,
    "EntityIsTeam": Q_ENTITY_IS_TEAM,
    "LaunchAgent": Q_LAUNCH_AGENT,
    "updateLaunchAgent": M_UPDATE_LAUNCH_AGENT,
    "popFromRunQueue": M_POP,
    "ackRunQueueItem": M_ACK,
    "failRunQueueItem": M_FAIL,
    "updateRunQueueItemWarning": M_WARN,
    "RunStoppedStatus": Q_RUN_STOPPED,
    "RunState": Q_RUN_STATE,
    "GetRunQueueItem": Q_RUN_QUEUE_ITEM,
    "pushToRunQueueByName": M_PUSH_BY_NAME,
}


@dataclass(frozen=True)
class ItemState:
    state: str  # PENDING, CLAIMED, LEASED, FAILED, FINISHED (upper case)
    run_id: str


@dataclass(frozen=True)
class PoppedItem:
    item_id: str
    run_spec: dict[str, Any]
    queue: str


class Backend:
    def __init__(self, client: GraphQLClient, entity: str) -> None:
        self._client = client
        self.entity = entity

    @property
    def client(self) -> GraphQLClient:
        """The transport, for the other W&B-side parts (job resolution, sweep schedulers)."""
        return self._client
    def worst_case(self, mutation: bool) -> float:
        """Seconds one call can take at most, retries included."""
        return self._client.worst_case(mutation)

    async def _run(self, name: str, variables: dict[str, Any]) -> dict[str, Any]:
        query = ALL_OPERATIONS[name]
        return await self._client.execute(name, query, variables, mutation=query.startswith("mutation"))

    async def viewer_entity(self) -> str:
        """The API key's default entity (used when no entity is configured, like the official agent)."""
        data = await self._run("Viewer", {})
        viewer = data.get("viewer") or {}
        if not viewer.get("entity"):
            raise BackendError("the API key has no default entity; set entity, WANDB_ENTITY or -e")
        return str(viewer["entity"])

    async def run_queues(self) -> list[dict[str, Any]]:
        data = await self._run("ProjectRunQueues", {"entity": self.entity, "projectName": LAUNCH_PROJECT})
        project = data.get("project")
        if project is None:
            raise BackendError(f"cannot read the run queues of {self.entity}/{LAUNCH_PROJECT}: check that "
                               "the API key has access to this entity")
        return list(project.get("runQueues") or [])

    async def create_launch_agent(self, queue_ids: list[str], hostname: str, agent_config: dict[str, Any],
                                  version: str) -> str:
        data = await self._run("createLaunchAgent", {
            "entity": self.entity, "project": LAUNCH_PROJECT, "queues": queue_ids, "hostname": hostname,
            "agentConfig": json.dumps(agent_config), "version": version})
        return str(data["createLaunchAgent"]["launchAgentId"])

    async def entity_is_team(self) -> bool:
        data = await self._run("EntityIsTeam", {"entity": self.entity})
        if data.get("entity") is None:
            raise BackendError(f"entity {self.entity} not found or not accessible with this API key")
        return bool(data["entity"].get("isTeam"))

    async def launch_agent(self, agent_id: str) -> dict[str, Any]:
        data = await self._run("LaunchAgent", {"agentId": agent_id})
        return dict(data.get("launchAgent") or {})

    async def update_launch_agent(self, agent_id: str, status: str) -> bool:
        data = await self._run("updateLaunchAgent", {"agentId": agent_id, "agentStatus": status})
        return bool((data.get("updateLaunchAgent") or {}).get("success"))

    async def pop(self, queue: str, agent_id: str) -> PoppedItem | None:
        data = await self._run("popFromRunQueue", {"entity": self.entity, "project": LAUNCH_PROJECT,
                                                   "queueName": queue, "launchAgentId": agent_id})
        item = data.get("popFromRunQueue")
        if not item:
            return None
        spec = item.get("runSpec")
        if isinstance(spec, str):
            try:
                spec = json.loads(spec)
            except ValueError:
                spec = None
        return PoppedItem(item_id=str(item["runQueueItemId"]), run_spec=spec if isinstance(spec, dict) else {},
                          queue=queue)

    async def ack(self, item_id: str, run_id: str) -> bool:
        data = await self._run("ackRunQueueItem", {"itemId": item_id, "runId": run_id})
        return bool((data.get("ackRunQueueItem") or {}).get("success"))

    async def fail(self, item_id: str, message: str, stage: str) -> bool:
        data = await self._run("failRunQueueItem", {"runQueueItemId": item_id, "message": message,
                                                    "stage": stage})
        return bool((data.get("failRunQueueItem") or {}).get("success"))

    async def warn(self, item_id: str, message: str, stage: str = "Kubernetes") -> bool:
        data = await self._run("updateRunQueueItemWarning", {"runQueueItemId": item_id, "message": message,
                                                             "stage": stage, "filePaths": []})
        return bool((data.get("updateRunQueueItemWarning") or {}).get("success"))

    async def run_stopped(self, entity: str, project: str, run_id: str) -> bool:
        data = await self._run("RunStoppedStatus", {"projectName": project, "entityName": entity,
                                                    "runId": run_id})
        run = (data.get("project") or {}).get("run") or {}
        return bool(run.get("stopped"))

    async def runs_stopped(self, runs: list[tuple[str, str, str]]) -> list[bool | None]:
        """`run_stopped` for each (entity, project, run id), in one request per `STOPPED_BATCH` runs.
        A batch W&B refuses as a whole (one run's project not readable, say) is asked run by run, so
        one bad run never hides the others' stop requests; None for a run whose answer was an error.
        Raises when W&B cannot be reached."""
        out: list[bool | None] = []
        for start in range(0, len(runs), STOPPED_BATCH):
            chunk = runs[start:start + STOPPED_BATCH]
            variables: dict[str, Any] = {}
            for i, (entity, project, run_id) in enumerate(chunk):
                variables |= {f"projectName_{i}": project, f"entityName_{i}": entity, f"runId_{i}": run_id}
            try:
                data = await self._client.execute("RunStoppedStatus", runs_stopped_query(len(chunk)), variables)
            except BackendError as exc:
                if exc.status != 200:
                    raise
                out += [await self._stopped_or_none(*run) for run in chunk]
                continue
            out += [bool(((data.get(f"r{i}") or {}).get("run") or {}).get("stopped")) for i in range(len(chunk))]
        return out

    async def _stopped_or_none(self, entity: str, project: str, run_id: str) -> bool | None:
        try:
            return await self.run_stopped(entity, project, run_id)
        except BackendError as exc:
            if exc.status != 200:
                raise
            return None

    async def run_state(self, entity: str, project: str, run_id: str) -> str | None:
        data = await self._run("RunState", {"project": project, "entity": entity, "name": run_id})
        run = (data.get("project") or {}).get("run")
        return None if not run else str(run.get("state") or "")

    async def item_state(self, queue: str, item_id: str) -> ItemState | None:
        """The state W&B holds for a run-queue item (None when the item or queue is not found)."""
        data = await self._run("GetRunQueueItem", {"projectName": LAUNCH_PROJECT, "entityName": self.entity,
                                                   "runQueue": queue, "itemId": item_id})
        item = ((data.get("project") or {}).get("runQueue") or {}).get("runQueueItem")
        if not item:
            return None
        return ItemState(state=str(item.get("state") or "").upper(), run_id=str(item.get("associatedRunId") or ""))

    async def push(self, queue: str, run_spec: dict[str, Any]) -> str:
        """Put a run spec on a queue of the agent's entity (the preemption requeue); the new item id."""
        data = await self._run("pushToRunQueueByName", {"entityName": self.entity, "projectName": LAUNCH_PROJECT,
                                                        "queueName": queue, "runSpec": json.dumps(run_spec)})
        pushed = data.get("pushToRunQueueByName") or {}
        if not pushed.get("runQueueItemId"):
            raise BackendError(f"W&B did not add the run to queue {queue}")
        return str(pushed["runQueueItemId"])
