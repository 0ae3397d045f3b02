"""GraphQL requests per second the W&B emulator answers on loopback.

The emulator runs as its own process (as under ``python -m localenv up``); client threads
on keep-alive connections send a bounded number of requests in two mixes:

* ``idle agents``: what polling agents send (LaunchAgent, popFromRunQueue on an empty queue,
  updateLaunchAgent, RunStoppedStatus);
* ``item lifecycle``: pushToRunQueueByName, popFromRunQueue, ackRunQueueItem, RunState.

Target: at least 500 requests/s. Usage: ``python -m benchmarks emulator_throughput``.
"""

from __future__ import annotations

import base64
import http.client
import json
import threading
import time
from collections.abc import Callable
from typing import Any

from localenv.wandb_emulator.testing import start

CLIENTS = 4
REQUESTS_PER_CLIENT = 600
TARGET = 500.0

LAUNCH_AGENT = """query LaunchAgent($agentId: ID!) { launchAgent(id: $agentId) {
  id name runQueues hostname agentStatus stopPolling heartbeatAt } }"""
POP = """mutation popFromRunQueue($entity: String!, $project: String!, $queueName: String!, $launchAgentId: ID) {
  popFromRunQueue(input: {entityName: $entity, projectName: $project, queueName: $queueName,
    launchAgentId: $launchAgentId}) { runQueueItemId runSpec } }"""
UPDATE = """mutation updateLaunchAgent($agentId: ID!, $agentStatus: String){
  updateLaunchAgent(input: {launchAgentId: $agentId, agentStatus: $agentStatus}) { success } }"""
STOPPED = """query RunStoppedStatus($projectName: String, $entityName: String, $runId: String!) {
  project(name:$projectName, entityName:$entityName) { run(name:$runId) { stopped } } }"""
CREATE_AGENT = """mutation createLaunchAgent($entity: String!, $project: String!, $queues: [ID!]!,
  $hostname: String!, $agentConfig: JSONString, $version: String) { createLaunchAgent(input: {
  entityName: $entity, projectName: $project, runQueues: $queues, hostname: $hostname,
  agentConfig: $agentConfig, version: $version}) { launchAgentId } }"""
PUSH = """mutation pushToRunQueueByName($entityName: String!, $projectName: String!, $queueName: String!,
  $runSpec: JSONString!) { pushToRunQueueByName(input: {entityName: $entityName, projectName: $projectName,
  queueName: $queueName, runSpec: $runSpec}) { runQueueItemId runSpec } }"""
ACK = """mutation ackRunQueueItem($itemId: ID!, $runId: String!) {
  ackRunQueueItem(input: { runQueueItemId: $itemId, runName: $runId }) { success } }"""
RUN_STATE = """query RunState($project: String!, $entity: String!, $name: String!) {
  project(name: $project, entityName: $entity) { run(name: $name) { state } } }"""


class Connection:
    def __init__(self, url: str, api_key: str) -> None:
        host, port = url.removeprefix("http://").split(":")
        self._conn = http.client.HTTPConnection(host, int(port), timeout=30)
        token = base64.b64encode(f"api:{api_key}".encode()).decode()
        self._headers = {"Authorization": f"Basic {token}", "Content-Type": "application/json"}

    def gql(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        body = json.dumps({"query": query, "variables": variables, "operationName": ""})
        self._conn.request("POST", "/graphql", body=body, headers=self._headers)
        response = self._conn.getresponse()
        doc: dict[str, Any] = json.loads(response.read())
        if response.status != 200 or doc.get("errors"):
            raise RuntimeError(f"unexpected answer {response.status}: {doc}")
        return doc["data"]

    def close(self) -> None:
        self._conn.close()


def _run_clients(url: str, api_key: str, work: Callable[[Connection, int], int]) -> float:
    """Run CLIENTS threads of ``work``; return requests per second over the whole run."""
    done: list[int] = []
    errors: list[BaseException] = []
    start_gate = threading.Barrier(CLIENTS + 1)

    def client(index: int) -> None:
        conn = Connection(url, api_key)
        try:
            start_gate.wait()
            done.append(work(conn, index))
        except BaseException as exc:
            errors.append(exc)
        finally:
            conn.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
    for t in threads:
        t.start()
    start_gate.wait()
    began = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - began
    if errors:
        raise errors[0]
    return sum(done) / elapsed


def measure() -> dict[str, float]:
    emu = start(mode="process")
    try:
        admin = emu.client
        admin.create_entity("bench")
        queue = admin.create_queue("bench", "idle", {"metadata": {"namespace": "jobs"}})
        admin.create_queue("bench", "busy", {"spec": {"template": {"spec": {"containers": [{}]}}}})
        setup = Connection(emu.url, emu.api_key)
        agent_ids = [
            setup.gql(CREATE_AGENT, {"entity": "bench", "project": "model-registry", "queues": [queue["id"]],
                                     "hostname": f"h{i}", "agentConfig": "{}", "version": "bench"})
            ["createLaunchAgent"]["launchAgentId"]
            for i in range(CLIENTS)
        ]
        setup.close()

        def idle(conn: Connection, index: int) -> int:
            agent = agent_ids[index]
            pop_vars = {"entity": "bench", "project": "model-registry", "queueName": "idle", "launchAgentId": agent}
            for n in range(REQUESTS_PER_CLIENT // 4):
                conn.gql(LAUNCH_AGENT, {"agentId": agent})
                conn.gql(POP, pop_vars)
                conn.gql(UPDATE, {"agentId": agent, "agentStatus": "POLLING"})
                conn.gql(STOPPED, {"projectName": "demo", "entityName": "bench", "runId": f"r{n}"})
            return (REQUESTS_PER_CLIENT // 4) * 4

        def lifecycle(conn: Connection, index: int) -> int:
            agent = agent_ids[index]
            pop_vars = {"entity": "bench", "project": "model-registry", "queueName": "busy", "launchAgentId": agent}
            sent = 0
            for n in range(REQUESTS_PER_CLIENT // 4):
                run_id = f"c{index}-{n}"
                spec = {"entity": "bench", "project": "demo", "run_id": run_id, "docker": {"docker_image": "busybox"}}
                conn.gql(PUSH, {"entityName": "bench", "projectName": "model-registry", "queueName": "busy",
                                "runSpec": json.dumps(spec)})
                popped = conn.gql(POP, pop_vars)["popFromRunQueue"]
                sent += 2
                if popped is not None:
                    conn.gql(ACK, {"itemId": popped["runQueueItemId"], "runId": popped["runSpec"]["run_id"]})
                    conn.gql(RUN_STATE, {"project": "demo", "entity": "bench", "name": popped["runSpec"]["run_id"]})
                    sent += 2
            return sent

        return {"idle agents": _run_clients(emu.url, emu.api_key, idle),
                "item lifecycle": _run_clients(emu.url, emu.api_key, lifecycle)}
    finally:
        emu.stop()


def main() -> None:
    results = measure()
    print(f"W&B emulator on loopback, {CLIENTS} keep-alive clients x {REQUESTS_PER_CLIENT} GraphQL requests")
    print(f"{'mix':<16} {'requests/s':>11} {'vs target 500/s':>16}")
    for name, rate in results.items():
        print(f"{name:<16} {rate:>11.0f} {rate / TARGET:>15.2f}x")


if __name__ == "__main__":
    main()
