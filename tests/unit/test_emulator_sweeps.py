"""The emulator's sweeps: parameter suggestions (grid, random; bayes as random) and the sweep
lifecycle over GraphQL (upsert with a launch scheduler, sweep agents, heartbeats, states)."""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.backend.sweep_operations import M_CREATE_AGENT, M_HEARTBEAT, M_STOP_RUN, Q_GET_SWEEP_STATE
from localenv.wandb_emulator import sweep_search
from localenv.wandb_emulator.testing import EmulatorClient, RunningEmulator, running_emulator, start

ENTITY = "e"

UPSERT = """mutation UpsertSweep($id: ID, $config: String, $entityName: String, $projectName: String,
    $launchScheduler: JSONString, $templateVariableValues: JSONString, $state: String) {
  upsertSweep(input: {id: $id, config: $config, entityName: $entityName, projectName: $projectName,
      launchScheduler: $launchScheduler, templateVariableValues: $templateVariableValues, state: $state}) {
    sweep { id name state runCount runCountExpected project { name entity { name } } }
    inserted
    configValidationWarnings
  }
}"""

RUNS = """query SweepWithRuns($entity: String, $project: String, $sweep: String!, $specs: [JSONString!]!) {
  project(name: $project, entityName: $entity) {
    sweep(sweepName: $sweep) {
      id name method state config scheduler
      runs { edges { node { name state config sweepName failed running sampledHistory(specs: $specs) } } }
    }
  }
}"""


# --- suggestions ----------------------------------------------------------------------------


def test_grid_walks_every_combination_once_last_parameter_fastest() -> None:
    config = {"method": "grid", "parameters": {"a": {"values": [1, 2]}, "b": {"value": "x"},
                                               "c": {"distribution": "int_uniform", "min": 0, "max": 4, "q": 2}}}
    sets = sweep_search.grid(config)
    assert [(s["a"]["value"], s["c"]["value"]) for s in sets] == [(1, 0), (1, 2), (1, 4), (2, 0), (2, 2), (2, 4)]
    assert all(s["b"] == {"value": "x"} for s in sets)
    assert sweep_search.expected_runs(config) == 6
    assert sweep_search.expected_runs({**config, "run_cap": 4}) == 4


def test_grid_of_nested_parameters_and_q_uniform() -> None:
    config = {"method": "grid", "parameters": {
        "opt": {"parameters": {"name": {"values": ["adam", "sgd"]}, "momentum": {"value": 0.9}}},
        "lr": {"distribution": "q_uniform", "min": 0.1, "max": 0.3, "q": 0.1}}}
    sets = sweep_search.grid(config)
    assert len(sets) == 6
    assert sets[0]["opt"]["value"] == {"name": "adam", "momentum": 0.9}
    assert [round(s["lr"]["value"], 6) for s in sets[:3]] == [0.1, 0.2, 0.3]


def test_grid_refuses_a_continuous_distribution() -> None:
    with pytest.raises(sweep_search.SearchError, match="grid search cannot enumerate distribution 'uniform'"):
        sweep_search.grid({"method": "grid", "parameters": {"lr": {"min": 0.1, "max": 0.5}}})
    assert sweep_search.warnings({"method": "grid", "parameters": {"lr": {"min": 0.1, "max": 0.5}}})


DISTRIBUTIONS: list[tuple[dict[str, Any], Any]] = [
    ({"values": ["a", "b", "c"]}, lambda v: v in ("a", "b", "c")),
    ({"values": ["a", "b"], "probabilities": [0.0, 1.0]}, lambda v: v == "b"),
    ({"value": 3}, lambda v: v == 3),
    ({"min": 2, "max": 5}, lambda v: isinstance(v, int) and 2 <= v <= 5),
    ({"min": 0.5, "max": 0.75}, lambda v: isinstance(v, float) and 0.5 <= v <= 0.75),
    ({"distribution": "q_uniform", "min": 0, "max": 10, "q": 5}, lambda v: v in (0, 5, 10)),
    ({"distribution": "log_uniform", "min": -2, "max": 0}, lambda v: math.exp(-2) <= v <= 1),
    ({"distribution": "log_uniform_values", "min": 0.001, "max": 0.1}, lambda v: 0.001 <= v <= 0.1),
    ({"distribution": "inv_log_uniform_values", "min": 2, "max": 4}, lambda v: 0.25 <= v <= 0.5),
    ({"distribution": "normal", "mu": 10, "sigma": 0.001}, lambda v: abs(v - 10) < 1),
    ({"distribution": "q_log_normal", "mu": 0, "sigma": 0.001, "q": 1}, lambda v: v == 1),
    ({"distribution": "beta", "a": 2, "b": 2}, lambda v: 0 <= v <= 1),
]


@pytest.mark.parametrize(("spec", "ok"), DISTRIBUTIONS)
def test_random_draws_stay_within_their_distribution(spec: dict[str, Any], ok: Any) -> None:
    config = {"method": "random", "parameters": {"p": spec}}
    assert sweep_search.warnings(config) == []
    for index in range(30):
        value = sweep_search.draw(config, seed=1, index=index)["p"]["value"]
        assert ok(value), value


def test_random_draws_are_reproducible_per_seed_and_index() -> None:
    config = {"method": "random", "parameters": {"lr": {"min": 0.0, "max": 1.0}}}
    assert sweep_search.draw(config, 5, 3) == sweep_search.draw(config, 5, 3)
    assert sweep_search.draw(config, 5, 3) != sweep_search.draw(config, 5, 4)
    assert sweep_search.draw(config, 5, 3) != sweep_search.draw(config, 6, 3)
    bayes = next(sweep_search.suggestions({**config, "method": "bayes"}, 5, 3))
    assert bayes == sweep_search.draw(config, 5, 3), "bayes is answered as random"


def test_unknown_methods_and_distributions_are_reported() -> None:
    assert sweep_search.warnings({"method": "hyperband"}) == ["method: 'hyperband' is not one of grid, random, bayes"]
    assert "distribution 'zipf'" in sweep_search.warnings(
        {"method": "random", "parameters": {"p": {"distribution": "zipf"}}})[0]
    with pytest.raises(sweep_search.SearchError, match="custom scheduler"):
        next(sweep_search.suggestions({"method": "custom"}, 1, 0))


# --- the sweep lifecycle over GraphQL ---------------------------------------------------------


@pytest.fixture
def emu() -> Iterator[EmulatorClient]:
    with running_emulator() as running:
        running.client.create_entity(ENTITY)
        running.client.create_queue(ENTITY, "q", {"metadata": {"namespace": "ns"}})
        yield running.client


def gql(emu: EmulatorClient, text: str, variables: dict[str, Any]) -> dict[str, Any]:
    answer = emu.graphql(text, variables)
    assert not answer.get("errors"), answer
    return answer["data"]


def scheduler_doc(queue: str = "q") -> str:
    spec = {"uri": "placeholder-uri-scheduler", "entity": ENTITY, "project": "p", "run_id": "WANDB_SWEEP_ID",
            "name": "Scheduler.WANDB_SWEEP_ID", "resource": "local-process",
            "overrides": {"entry_point": ["wandb", "scheduler", "WANDB_SWEEP_ID"], "args": []}}
    return json.dumps({"queue": queue, "run_queue_project": "model-registry", "run_spec": json.dumps(spec)})


def create(emu: EmulatorClient, config: dict[str, Any], **extra: Any) -> dict[str, Any]:
    variables = {"config": yaml.safe_dump(config), "entityName": ENTITY, "projectName": "p", "state": "PENDING",
                 **extra}
    return gql(emu, UPSERT, variables)["upsertSweep"]


def agent(emu: EmulatorClient, sweep: str) -> str:
    data = gql(emu, M_CREATE_AGENT, {"host": "h", "entityName": ENTITY, "projectName": "p", "sweep": sweep})
    return str(data["createAgent"]["agent"]["id"])


def beat(emu: EmulatorClient, agent_id: str) -> list[dict[str, Any]]:
    data = gql(emu, M_HEARTBEAT, {"id": agent_id, "metrics": "{}", "runState": "{}"})
    return list(json.loads(data["agentHeartbeat"]["commands"]))


def state_of(emu: EmulatorClient, sweep: str) -> str:
    return str(gql(emu, Q_GET_SWEEP_STATE, {"entity": ENTITY, "project": "p", "sweep": sweep})
               ["project"]["sweep"]["state"])


def test_upsert_with_a_launch_scheduler_queues_it_with_the_sweep_id(emu: EmulatorClient) -> None:
    created = create(emu, {"method": "grid", "parameters": {"a": {"values": [1, 2]}}},
                     launchScheduler=scheduler_doc(), templateVariableValues="null")
    sweep = created["sweep"]
    assert created["inserted"] and created["configValidationWarnings"] == []
    assert sweep["state"] == "PENDING" and sweep["runCountExpected"] == 2
    assert sweep["project"] == {"name": "p", "entity": {"name": ENTITY}}
    (item,) = emu.items(ENTITY, "q")
    spec = item["run_spec"]
    assert spec["run_id"] == sweep["name"] and spec["name"] == f"Scheduler.{sweep['name']}"
    assert spec["overrides"]["entry_point"] == ["wandb", "scheduler", sweep["name"]]
    assert spec["resource_args"] == {"kubernetes": {"metadata": {"namespace": "ns"}}}, "the queue config merged in"
    read = gql(emu, RUNS, {"entity": ENTITY, "project": "p", "sweep": sweep["name"], "specs": "{}"})
    assert json.loads(read["project"]["sweep"]["scheduler"])["queue"] == "q"


def test_upsert_refuses_an_unknown_queue_and_creates_nothing(emu: EmulatorClient) -> None:
    answer = emu.graphql(UPSERT, {"config": "method: grid\n", "entityName": ENTITY, "projectName": "p",
                                  "launchScheduler": scheduler_doc("nope")})
    assert "run queue nope not found" in answer["errors"][0]["message"]
    assert emu.sweeps() == [] and emu.items(ENTITY, "q") == []


def test_unknown_method_is_a_warning_and_the_heartbeat_error(emu: EmulatorClient) -> None:
    created = create(emu, {"method": "hyperband"})
    assert created["configValidationWarnings"] == ["method: 'hyperband' is not one of grid, random, bayes"]
    answer = emu.graphql(M_HEARTBEAT, {"id": agent(emu, created["sweep"]["name"]), "runState": "{}"})
    assert "is not one of grid, random, bayes" in answer["errors"][0]["message"]


def test_a_grid_is_handed_out_once_and_finishes_when_its_runs_end(emu: EmulatorClient) -> None:
    sweep = create(emu, {"method": "grid", "parameters": {"a": {"values": [1, 2, 3]}}})["sweep"]["name"]
    first, second = agent(emu, sweep), agent(emu, sweep)
    assert state_of(emu, sweep) == "RUNNING", "the first sweep agent starts the sweep"
    commands = beat(emu, first) + beat(emu, second) + beat(emu, first)
    assert [c["args"]["a"]["value"] for c in commands] == [1, 2, 3]
    assert all(c["type"] == "run" and len(c["run_id"]) == 8 for c in commands)
    assert beat(emu, second) == [], "the grid is exhausted"
    runs = gql(emu, RUNS, {"entity": ENTITY, "project": "p", "sweep": sweep, "specs": ["{}"]})
    nodes = [e["node"] for e in runs["project"]["sweep"]["runs"]["edges"]]
    assert [n["state"] for n in nodes] == ["pending"] * 3 and {n["sweepName"] for n in nodes} == {sweep}
    assert json.loads(nodes[0]["config"]) == {"a": {"value": 1}} and nodes[0]["sampledHistory"] == [[]]
    emu.set_run(ENTITY, "p", commands[0]["run_id"], state="finished")
    emu.set_run(ENTITY, "p", commands[1]["run_id"], state="crashed")
    assert state_of(emu, sweep) == "RUNNING", "a run is still going"
    emu.set_run(ENTITY, "p", commands[2]["run_id"], state="failed")
    assert state_of(emu, sweep) == "FINISHED"
    assert beat(emu, first) == [], "a finished sweep hands out nothing and does not cancel its agents"


def test_run_cap_states_and_a_failed_item(emu: EmulatorClient) -> None:
    created = create(emu, {"method": "random", "run_cap": 2, "parameters": {"a": {"min": 0, "max": 9}}})
    sweep, sweep_id = created["sweep"]["name"], created["sweep"]["id"]
    worker = agent(emu, sweep)
    (one,), (two,) = beat(emu, worker), beat(emu, worker)
    assert beat(emu, worker) == [], "run_cap runs handed out"
    gql(emu, UPSERT, {"id": sweep_id, "state": "PAUSED", "entityName": ENTITY, "projectName": "p"})
    assert beat(emu, worker) == []
    gql(emu, UPSERT, {"id": sweep_id, "state": "RUNNING", "entityName": ENTITY, "projectName": "p"})
    emu.set_run(ENTITY, "p", one["run_id"], state="finished")
    # the second run's item failed before it started: it counts as ended
    item = emu.push(ENTITY, "q", {"entity": ENTITY, "project": "p", "run_id": two["run_id"], "sweep_id": sweep,
                                  "docker": {"docker_image": "busybox"}})
    pop = ("mutation P($q: String!) { popFromRunQueue(input: {entityName: \"e\", projectName: \"model-registry\", "
           "queueName: $q}) { runQueueItemId } }")
    assert gql(emu, pop, {"q": "q"})["popFromRunQueue"]["runQueueItemId"] == item["id"]
    fail = ("mutation F($i: ID!) { failRunQueueItem(input: {runQueueItemId: $i, message: \"m\", stage: \"agent\"}) "
            "{ success } }")
    assert gql(emu, fail, {"i": item["id"]})["failRunQueueItem"]["success"]
    assert state_of(emu, sweep) == "FINISHED"
    assert emu.sweep(ENTITY, "p", sweep)["state_history"] == ["PENDING", "RUNNING", "PAUSED", "RUNNING", "FINISHED"]


def test_a_canceled_sweep_answers_exit_and_runs_stop_by_storage_id(emu: EmulatorClient) -> None:
    sweep = create(emu, {"method": "random", "parameters": {"a": {"values": [1]}}})["sweep"]["name"]
    worker = agent(emu, sweep)
    (run,) = beat(emu, worker)
    emu.set_sweep_state(ENTITY, "p", sweep, "CANCELED")
    assert beat(emu, worker) == [{"type": "exit"}]
    storage_id = base64.standard_b64encode(f"Run:v1:{run['run_id']}:p:{ENTITY}".encode()).decode()
    assert gql(emu, M_STOP_RUN, {"id": storage_id})["stopRun"]["success"]
    assert emu.run(ENTITY, "p", run["run_id"])["stopped"]


def test_a_restarted_emulator_continues_the_grid(tmp_path: Path) -> None:
    state_file = tmp_path / "state.json"
    first: RunningEmulator = start(state_file=state_file)
    try:
        first.client.create_entity(ENTITY)
        sweep = create(first.client, {"method": "grid", "parameters": {"a": {"values": [1, 2, 3]}}})["sweep"]["name"]
        worker = agent(first.client, sweep)
        (one,) = beat(first.client, worker)
    finally:
        first.stop()
    second = start(state_file=state_file)
    try:
        (two,) = beat(second.client, worker)
        assert (one["args"], two["args"]) == ({"a": {"value": 1}}, {"a": {"value": 2}})
        assert second.client.sweep(ENTITY, "p", sweep)["state"] == "RUNNING"
    finally:
        second.stop()
