"""The W&B emulator over HTTP: GraphQL as the W&B clients send it, auth, in-band errors,
the queue protocol's wire shapes, uploads, file_stream, the admin API and fault injection."""

from __future__ import annotations

import base64
import http.client
import json
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from localenv.wandb_emulator.testing import AdminCallError, EmulatorClient, running_emulator, start

PUSH = """
mutation pushToRunQueueByName($entityName: String!, $projectName: String!, $queueName: String!,
    $runSpec: JSONString!, $priority: Int, $templateVariableValues: JSONString) {
  pushToRunQueueByName(input: {entityName: $entityName, projectName: $projectName, queueName: $queueName,
      runSpec: $runSpec, priority: $priority, templateVariableValues: $templateVariableValues}) {
    runQueueItemId
    runSpec
  }
}
"""
POP = """
mutation popFromRunQueue($entity: String!, $project: String!, $queueName: String!, $launchAgentId: ID)  {
  popFromRunQueue(input: {entityName: $entity, projectName: $project, queueName: $queueName,
      launchAgentId: $launchAgentId}) {
    runQueueItemId
    runSpec
  }
}
"""
ACK = """
mutation ackRunQueueItem($itemId: ID!, $runId: String!)  {
  ackRunQueueItem(input: { runQueueItemId: $itemId, runName: $runId }) { success }
}
"""
RUN_STATE = """
query RunState($project: String!, $entity: String!, $name: String!) {
  project(name: $project, entityName: $entity) { run(name: $name) { state } }
}
"""
STOPPED = """
query RunStoppedStatus($projectName: String, $entityName: String, $runId: String!) {
  project(name:$projectName, entityName:$entityName) { run(name:$runId) { stopped } }
}
"""
QUEUE_CONFIG = {"metadata": {"namespace": "jobs"}, "spec": {"template": {"spec": {"containers": [{"name": "main"}]}}}}


@pytest.fixture
def emu() -> Iterator[EmulatorClient]:
    with running_emulator() as running:
        running.client.create_entity("acme")
        running.client.create_queue("acme", "q", QUEUE_CONFIG)
        yield running.client


def run_spec(run_id: str = "r1") -> dict:
    return {
        "entity": "acme",
        "project": "demo",
        "run_id": run_id,
        "docker": {"docker_image": "busybox"},
        "resource_args": {"kubernetes": {"metadata": {"labels": {"x": "y"}}}},
    }


def push(emu: EmulatorClient, spec: dict, **extra: object) -> dict:
    variables = {"entityName": "acme", "projectName": "model-registry", "queueName": "q", "runSpec": json.dumps(spec)}
    variables.update(extra)  # type: ignore[arg-type]
    return emu.graphql(PUSH, variables)


def pop(emu: EmulatorClient, api_key: str | None = None) -> dict:
    variables = {"entity": "acme", "project": "model-registry", "queueName": "q", "launchAgentId": None}
    return emu.graphql(POP, variables, api_key=api_key)


def test_push_returns_string_and_pop_returns_object(emu: EmulatorClient) -> None:
    pushed = push(emu, run_spec())
    assert "errors" not in pushed
    payload = pushed["data"]["pushToRunQueueByName"]
    assert isinstance(payload["runSpec"], str)
    merged = json.loads(payload["runSpec"])
    assert merged["resource_args"]["kubernetes"]["metadata"] == {"namespace": "jobs", "labels": {"x": "y"}}
    assert merged["resource"] == "kubernetes"
    popped = pop(emu)["data"]["popFromRunQueue"]
    assert popped["runQueueItemId"] == payload["runQueueItemId"]
    assert popped["runSpec"] == merged, "pop returns the stored, merged spec as an object"
    assert pop(emu) == {"data": {"popFromRunQueue": None}}


def test_ack_creates_pending_run_then_admin_starts_it(emu: EmulatorClient) -> None:
    item_id = push(emu, run_spec("abc"))["data"]["pushToRunQueueByName"]["runQueueItemId"]
    pop(emu)
    assert emu.graphql(ACK, {"itemId": item_id, "runId": "abc"})["data"]["ackRunQueueItem"]["success"] is True
    state = emu.graphql(RUN_STATE, {"project": "demo", "entity": "acme", "name": "abc"})
    assert state["data"]["project"]["run"]["state"] == "pending"
    emu.set_run("acme", "demo", "abc", state="running")
    state = emu.graphql(RUN_STATE, {"project": "demo", "entity": "acme", "name": "abc"})
    assert state["data"]["project"]["run"]["state"] == "running"
    assert emu.item(item_id)["state"] == "LEASED"
    missing = emu.graphql(RUN_STATE, {"project": "demo", "entity": "acme", "name": "nope"})
    assert missing == {"data": {"project": {"run": None}}}


def test_ack_by_another_key_fails(emu: EmulatorClient) -> None:
    other = emu.add_user("mallory", "acme")
    item_id = push(emu, run_spec())["data"]["pushToRunQueueByName"]["runQueueItemId"]
    pop(emu)
    result = emu.graphql(ACK, {"itemId": item_id, "runId": "r1"}, api_key=other)
    assert result["data"]["ackRunQueueItem"]["success"] is False


def test_stopped_flag_reaches_queries_and_file_stream(emu: EmulatorClient) -> None:
    emu.set_run("acme", "demo", "r9", state="running")
    variables = {"projectName": "demo", "entityName": "acme", "runId": "r9"}
    assert emu.graphql(STOPPED, variables)["data"]["project"]["run"]["stopped"] is False
    emu.set_run("acme", "demo", "r9", stopped=True)
    assert emu.graphql(STOPPED, variables)["data"]["project"]["run"]["stopped"] is True
    request = urllib.request.Request(emu.url + "/files/acme/demo/r9/file_stream", data=b"{}", method="POST")
    request.add_header("Authorization", "Basic " + base64.b64encode(f"api:{emu.api_key}".encode()).decode())
    with urllib.request.urlopen(request) as response:
        assert json.loads(response.read()) == {"stopped": True}


def test_unknown_operation_is_answered_in_band(emu: EmulatorClient) -> None:
    result = emu.graphql("query Mystery { nothingHere { id } }")
    assert result["data"] is None and "nothingHere" in result["errors"][0]["message"]
    assert "http_status" not in result
    broken = emu.graphql("query {")
    assert broken["errors"] and "http_status" not in broken
    assert emu.counts()["Mystery"] == 1


def test_operation_name_comes_from_the_query_text(emu: EmulatorClient) -> None:
    emu.graphql("  query EntityIsTeam($entity: String!) { entity(name: $entity) { id isTeam } }", {"entity": "acme"})
    logged = emu.requests("EntityIsTeam")
    assert len(logged) == 1 and logged[0]["variables"] == {"entity": "acme"}
    ops = {o["name"]: o for o in emu.operations()}
    assert ops["EntityIsTeam"]["variables"] == {"entity": "String!"}
    assert ops["EntityIsTeam"]["fields"] == ["entity", "entity.id", "entity.isTeam"]


def test_bad_key_is_unauthorized(emu: EmulatorClient) -> None:
    result = emu.graphql("query Viewer { viewer { id } }", api_key="local-" + "z" * 40)
    assert result["http_status"] == 401


def test_viewer_flags_is_a_json_string(emu: EmulatorClient) -> None:
    viewer = emu.graphql("query Viewer { viewer { id entity username email flags teams { edges { node { name } } } } }")
    assert viewer["data"]["viewer"]["flags"] == "{}"
    assert viewer["data"]["viewer"]["entity"] == "local"


def test_template_errors_and_unknown_queue_are_in_band(emu: EmulatorClient) -> None:
    emu.create_queue("acme", "tv", {"spec": {"parallelism": "{{n}}"}}, template_variables={"n": {"type": "integer"}})
    variables = {"entityName": "acme", "projectName": "model-registry", "queueName": "tv", "runSpec": "{}"}
    result = emu.graphql(PUSH, {**variables, "templateVariableValues": json.dumps({"n": "x"})})
    assert "must be an integer" in result["errors"][0]["message"]
    ok = emu.graphql(PUSH, {**variables, "templateVariableValues": json.dumps({"n": 3})})
    spec = json.loads(ok["data"]["pushToRunQueueByName"]["runSpec"])
    assert spec["resource_args"]["kubernetes"]["spec"]["parallelism"] == 3
    missing = emu.graphql(POP, {"entity": "acme", "project": "model-registry", "queueName": "none"})
    assert "not found" in missing["errors"][0]["message"]


def test_create_run_files_points_uploads_at_the_emulator(emu: EmulatorClient) -> None:
    emu.set_run("acme", "model-registry", "agent-1", state="running")
    query = """mutation CreateRunFiles ($entity: String!, $project: String!, $run: String!, $files: [String!]!) {
      createRunFiles(input: {entityName:$entity,projectName:$project,runName:$run,files:$files}) {
        runID uploadHeaders files { name uploadUrl } } }"""
    variables = {"entity": "acme", "project": "model-registry", "run": "agent-1", "files": ["I1/error/error.log"]}
    files = emu.graphql(query, variables)["data"]["createRunFiles"]["files"]
    assert len(files) == 1
    request = urllib.request.Request(files[0]["uploadUrl"], data=b"Traceback: boom", method="PUT")
    with urllib.request.urlopen(request) as response:
        assert response.status == 200
    assert emu.files() == ["acme/model-registry/agent-1/I1/error/error.log"]
    assert emu.upload("acme/model-registry/agent-1/I1/error/error.log") == b"Traceback: boom"


def test_telemetry_probe_is_404(emu: EmulatorClient) -> None:
    request = urllib.request.Request(emu.url + "/sdk/otel/v1/metrics", data=b"", method="POST")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request)
    assert info.value.code == 404


def test_admin_items_and_agent_stop(emu: EmulatorClient) -> None:
    item = emu.push("acme", "q", run_spec("a1"), priority=1)
    assert item["state"] == "PENDING" and item["run_spec"]["resource_args"]["kubernetes"]["metadata"]["namespace"] == "jobs"
    assert [i["id"] for i in emu.items("acme", "q")] == [item["id"]]
    create = """mutation createLaunchAgent($entity: String!, $project: String!, $queues: [ID!]!, $hostname: String!,
        $agentConfig: JSONString, $version: String) { createLaunchAgent(input: {entityName: $entity,
        projectName: $project, runQueues: $queues, hostname: $hostname, agentConfig: $agentConfig,
        version: $version}) { launchAgentId } }"""
    queue_id = emu.queues()[0]["id"]
    agent_id = emu.graphql(create, {"entity": "acme", "project": "model-registry", "queues": [queue_id],
                                    "hostname": "h", "agentConfig": "{}", "version": "x"})["data"]["createLaunchAgent"]["launchAgentId"]
    query = "query LaunchAgent($agentId: ID!) { launchAgent(id: $agentId) { id name stopPolling } }"
    assert emu.graphql(query, {"agentId": agent_id})["data"]["launchAgent"]["stopPolling"] is False
    emu.stop_agent(agent_id)
    assert emu.graphql(query, {"agentId": agent_id})["data"]["launchAgent"]["stopPolling"] is True
    with pytest.raises(AdminCallError) as info:
        emu.item("missing")
    assert info.value.status == 404


def test_fault_status_and_graphql_error_fire_a_limited_number_of_times(emu: EmulatorClient) -> None:
    emu.add_fault("popFromRunQueue", "status", status=503, times=1)
    emu.add_fault("popFromRunQueue", "graphql_error", message="try later", times=1)
    assert pop(emu)["http_status"] == 503
    assert pop(emu)["errors"] == [{"message": "try later"}]
    assert pop(emu) == {"data": {"popFromRunQueue": None}}
    rules = emu.call("GET", "/_emulator/faults")
    assert [r["fired"] for r in rules] == [1, 1]


def test_fault_latency_is_applied_and_counted(emu: EmulatorClient) -> None:
    emu.add_fault("*", "latency", seconds=0.01)
    assert pop(emu) == {"data": {"popFromRunQueue": None}}
    assert emu.call("GET", "/_emulator/faults")[0]["fired"] == 1


def test_fault_drop_closes_the_connection(emu: EmulatorClient) -> None:
    emu.add_fault("Viewer", "drop", times=1)
    host, port = emu.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.request("POST", "/graphql", body=json.dumps({"query": "query Viewer { viewer { id } }"}),
                  headers={"Authorization": "Basic " + base64.b64encode(f"api:{emu.api_key}".encode()).decode()})
    with pytest.raises((http.client.RemoteDisconnected, ConnectionResetError)):
        conn.getresponse()
    conn.close()
    assert emu.graphql("query Viewer { viewer { id } }")["data"]["viewer"]["id"]


def test_bad_fault_rule_refused(emu: EmulatorClient) -> None:
    with pytest.raises(AdminCallError, match="'kind' must be one of"):
        emu.add_fault("Viewer", "explode")


def test_subprocess_restart_keeps_queues_and_items(tmp_path: Path) -> None:
    state_file = tmp_path / "emu.json"
    first = start(mode="process", state_file=state_file)
    try:
        first.client.create_entity("acme")
        first.client.create_queue("acme", "q", QUEUE_CONFIG)
        item = first.client.push("acme", "q", run_spec())
    finally:
        first.stop()
    second = start(mode="process", state_file=state_file)
    try:
        assert second.api_key == first.api_key, "the ready key is kept in the state file"
        assert [i["id"] for i in second.client.items("acme", "q")] == [item["id"]]
        popped = pop(second.client)["data"]["popFromRunQueue"]
        assert popped["runQueueItemId"] == item["id"]
    finally:
        second.stop()


def test_cli_rejects_a_bad_key_with_one_line() -> None:
    proc = subprocess.run([sys.executable, "-m", "localenv.wandb_emulator", "--api-key", "short"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "--api-key" in proc.stderr


def test_concurrent_pops_hand_out_each_item_once(emu: EmulatorClient) -> None:
    pushed = {emu.push("acme", "q", run_spec(f"c{i}"))["id"] for i in range(60)}
    got: list[str] = []
    lock = threading.Lock()

    def worker() -> None:
        client = EmulatorClient(emu.url, emu.api_key)
        while True:
            popped = pop(client)["data"]["popFromRunQueue"]
            if popped is None:
                return
            with lock:
                got.append(popped["runQueueItemId"])

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == len(set(got)) == 60
    assert set(got) == pushed
