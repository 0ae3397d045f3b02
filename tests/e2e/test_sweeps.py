"""Sweeps on Launch through our agent: `wandb launch-sweep` (the official CLI) creates the sweep and
W&B (the emulator) queues its scheduler; our agent runs the scheduler inside its process, pushes one
run per parameter set and launches those runs as Jobs on the local control plane; kwok runs the
pods and the run player tells W&B what each run's own wandb client would."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from official_agent import wandb_cli as official_wandb_cli
from sweep_site import (
    GRID,
    RANDOM,
    SWEEP_ENV,
    RunPlayer,
    Site,
    install,
    job_queue,
    launch_sweep,
    parameter_sets,
    pushed_runs,
    wait_for,
    wandb_cli,
)

from localenv.wandb_emulator import start_emulator
from localenv.wandb_emulator.testing import EntityAdmin

pytestmark = pytest.mark.e2e

ENTITY = "sweeper"
PROJECT = "tune"


@pytest.fixture(scope="module")
def emu() -> Iterator[EntityAdmin]:
    server, key = start_emulator(entity=ENTITY, username=ENTITY, claim_timeout=5)
    try:
        yield EntityAdmin(server.url, key, ENTITY)
    finally:
        server.stop()


@pytest.fixture
def site(kube: Any, namespace: Any, emu: EntityAdmin, tmp_path: Any) -> Iterator[Site]:
    s = install(kube, namespace, emu, tmp_path)
    player = RunPlayer(kube, emu, s.jobs_ns, ENTITY, PROJECT)
    player.start()
    s.player = player  # type: ignore[attr-defined]
    try:
        yield s
    finally:
        player.stop()
        for proc in s.procs:
            proc.kill()


def config_for(queue: str, *, max_jobs: int = 8, max_schedulers: int = 2, extra: str = "") -> str:
    return (f"entity: {ENTITY}\nqueues: [{queue}]\nmax_jobs: {max_jobs}\nmax_schedulers: {max_schedulers}\n"
            f"stopped_run_timeout: 0\n{extra}")


def sweep_of(site: Site, sweep: str) -> dict[str, Any]:
    return site.emu.sweep(ENTITY, PROJECT, sweep)


def scheduler_item(site: Site, queue: str, sweep: str) -> dict[str, Any]:
    (item,) = [i for i in site.emu.items(ENTITY, queue) if i["run_spec"].get("uri") == "placeholder-uri-scheduler"
               and i["run_spec"].get("run_id") == sweep]
    return item


def records(site: Site) -> list[dict[str, Any]]:
    return site.kube.get("configmaps", namespace=site.agent_ns, selector="launch-agent.wandb.ai/role=scheduler")


def jobs_by_run(site: Site) -> dict[str, int]:
    counts: dict[str, int] = {}
    for job in site.jobs("wandb.ai/run-id"):
        run_id = job["metadata"]["labels"]["wandb.ai/run-id"]
        counts[run_id] = counts.get(run_id, 0) + 1
    return counts


def assert_each_run_once(site: Site, queue: str, sweep: str) -> list[dict[str, Any]]:
    """Every parameter set W&B handed out was pushed once and launched as one Job."""
    issued = sweep_of(site, sweep)["runs"]
    pushed = pushed_runs(site.emu, ENTITY, queue, sweep)
    assert sorted(s["run_id"] for s in pushed) == sorted(r["run"] for r in issued), "one item per issued run"
    for spec, run in zip(sorted(pushed, key=lambda s: s["run_id"]), sorted(issued, key=lambda r: r["run"]),
                         strict=True):
        assert spec["overrides"]["run_config"] == {k: v["value"] for k, v in run["args"].items()}
    counts = jobs_by_run(site)
    assert all(counts.get(s["run_id"]) == 1 for s in pushed), counts
    return pushed


def test_grid_and_random_sweeps_run_to_finished(site: Site) -> None:
    queue = job_queue(site, "sweeps")
    site.emu.clear_requests()
    agent = site.agent([queue], config=config_for(queue), env=SWEEP_ENV)
    started = time.monotonic()
    grid = launch_sweep(site.emu, site.workdir / "cli", GRID, queue=queue, project=PROJECT, entity=ENTITY)
    rand = launch_sweep(site.emu, site.workdir / "cli", RANDOM, queue=queue, project=PROJECT, entity=ENTITY)
    wait_for("both sweeps FINISHED", lambda: sweep_of(site, grid)["state"] == "FINISHED"
             and sweep_of(site, rand)["state"] == "FINISHED", timeout=240)
    elapsed = time.monotonic() - started

    grid_runs = assert_each_run_once(site, queue, grid)
    combos = [{"batch": b, "lr": lr} for b, lr in itertools.product((16, 32), (0.1, 0.01))]
    assert parameter_sets(grid_runs) == sorted(json.dumps(c, sort_keys=True) for c in combos)
    rand_runs = assert_each_run_once(site, queue, rand)
    assert len(rand_runs) == 5
    for spec in rand_runs:
        cfg = spec["overrides"]["run_config"]
        assert 0.0001 <= cfg["lr"] <= 0.1 and cfg["opt"] in ("adam", "sgd") and 1 <= cfg["layers"] <= 8
        assert spec["docker"] == {"docker_image": "busybox:1.36"} and spec["sweep_id"] == rand
    job = site.jobs(f"wandb.ai/run-id={grid_runs[0]['run_id']}")[0]
    env = {e["name"]: e.get("value") for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["WANDB_SWEEP_ID"] == grid
    assert json.loads(env["WANDB_CONFIG"]) == grid_runs[0]["overrides"]["run_config"]

    for sweep in (grid, rand):
        item = scheduler_item(site, queue, sweep)
        assert item["associated_run_id"] == sweep and item["claim_count"] == 1
        wait_for("the scheduler's run finished", lambda s=sweep: site.emu.run(ENTITY, PROJECT, s)["state"]
                 == "finished")
        assert scheduler_item(site, queue, sweep)["state"] == "FINISHED"
    wait_for("scheduler records removed", lambda: not records(site))
    counts = site.emu.counts()
    runs = len(grid_runs) + len(rand_runs)
    print(f"\nsweeps: grid 4 + random 5 finished in {elapsed:.1f} s; W&B requests: {json.dumps(counts)}; "
          f"scheduler requests per sweep run: {scheduler_requests(counts) / runs:.1f}")
    assert agent.metric(f'launch_agent_sweep_runs_pushed_total{{queue="{queue}"}}') == 9
    assert agent.terminate() == 0


def scheduler_requests(counts: dict[str, int]) -> int:
    ops = ("SweepWithRuns", "GetSweepState", "CreateAgent", "Heartbeat", "UpsertSweep", "pushToRunQueueByName",
           "GetRunQueueItem", "StopRun", "UpsertBucket", "RunState", "file_stream")
    return sum(counts.get(op, 0) for op in ops)


def grid_of(n: int, **extra: Any) -> dict[str, Any]:
    return {"method": "grid", "image_uri": "busybox:1.36", "parameters": {"x": {"values": list(range(n))}},
            "scheduler": {"num_workers": 2}, **extra}


def graphql(site: Site, text: str, variables: dict[str, Any]) -> dict[str, Any]:
    answer = site.emu.graphql(text, variables)
    assert not answer.get("errors"), answer
    return answer["data"]


def patch_record(site: Site, name: str, data: dict[str, str | None]) -> None:
    site.kube.kubectl("patch", "configmap", name, "-n", site.agent_ns, "--type", "merge", "-p",
                      json.dumps({"data": data}))


def test_sigkill_mid_sweep_and_restart_launch_each_set_once(site: Site) -> None:
    from agent.backend.sweep_operations import M_CREATE_AGENT, M_HEARTBEAT

    queue = job_queue(site, "restart", seconds=3)
    first = site.agent([queue], config=config_for(queue), env=SWEEP_ENV)
    sweep = launch_sweep(site.emu, site.workdir / "cli", grid_of(6), queue=queue, project=PROJECT, entity=ENTITY)
    wait_for("two runs pushed", lambda: len(pushed_runs(site.emu, ENTITY, queue, sweep)) >= 2)
    first.kill()  # SIGKILL: no chance to tidy up
    (record,) = records(site)
    entries = {k: json.loads(v) for k, v in record["data"].items() if k.startswith("run.")}
    # What a crash at the worst moments leaves: a run whose push went out but was never confirmed,
    # and a run W&B handed out that was recorded but never pushed.
    unconfirmed = next(k for k, v in entries.items() if v["item"])
    patch_record(site, record["metadata"]["name"], {unconfirmed: json.dumps({**entries[unconfirmed], "item": None})})
    agent_id = graphql(site, M_CREATE_AGENT, {"host": "crashed", "entityName": ENTITY, "projectName": PROJECT,
                                              "sweep": sweep})["createAgent"]["agent"]["id"]
    (command,) = json.loads(graphql(site, M_HEARTBEAT, {"id": agent_id, "metrics": "{}", "runState": "{}"})
                            ["agentHeartbeat"]["commands"])
    patch_record(site, record["metadata"]["name"], {f"run.{command['run_id']}": json.dumps(
        {"args": command["args"], "worker": 0, "item": None})})

    second = site.agent([queue], config=config_for(queue), env=SWEEP_ENV)
    wait_for("the sweep FINISHED", lambda: sweep_of(site, sweep)["state"] == "FINISHED", timeout=240)
    pushed = assert_each_run_once(site, queue, sweep)
    assert parameter_sets(pushed) == sorted(json.dumps({"x": x}) for x in range(6))
    assert "re-adopted the scheduler of sweep" in second.text()
    assert f"run {command['run_id']} was never pushed; pushing it now" in second.text()
    assert f"run {unconfirmed[4:]} was pushed before the restart" in second.text()
    assert scheduler_item(site, queue, sweep)["claim_count"] == 1, "the scheduler item was never handed out again"
    assert second.terminate() == 0


def test_stop_and_cancel_from_wandb(site: Site) -> None:
    queue = job_queue(site, "stop", outcome="keep-running")
    agent = site.agent([queue], config=config_for(queue), env=SWEEP_ENV)
    cli = site.workdir / "cli"

    def two_running(sweep: str) -> bool:
        runs = pushed_runs(site.emu, ENTITY, queue, sweep)
        return len(runs) == 2 and all(site.emu.run(ENTITY, PROJECT, r["run_id"])["state"] == "running"
                                      for r in runs)

    stopped = launch_sweep(site.emu, cli, grid_of(4), queue=queue, project=PROJECT, entity=ENTITY)
    wait_for("two runs of the first sweep running", lambda: two_running(stopped))
    wandb_cli(site.emu, cli, "sweep", "--stop", f"{ENTITY}/{PROJECT}/{stopped}")
    wait_for("its scheduler ended", lambda: site.emu.run(ENTITY, PROJECT, stopped)["state"] == "finished")
    assert sweep_of(site, stopped)["state"] == "FINISHED"
    assert len(pushed_runs(site.emu, ENTITY, queue, stopped)) == 2, "no run was pushed after the stop"
    for run in pushed_runs(site.emu, ENTITY, queue, stopped):  # a stopped sweep lets its runs finish
        assert not site.emu.run(ENTITY, PROJECT, run["run_id"])["stopped"]
        assert site.jobs(f"wandb.ai/run-id={run['run_id']}")

    cancelled = launch_sweep(site.emu, cli, grid_of(4), queue=queue, project=PROJECT, entity=ENTITY)
    wait_for("two runs of the second sweep running", lambda: two_running(cancelled))
    wandb_cli(site.emu, cli, "sweep", "--cancel", f"{ENTITY}/{PROJECT}/{cancelled}")
    runs = pushed_runs(site.emu, ENTITY, queue, cancelled)
    wait_for("its runs stopped and their Jobs deleted", lambda: all(
        site.emu.run(ENTITY, PROJECT, r["run_id"])["stopped"] and not site.jobs(f"wandb.ai/run-id={r['run_id']}")
        for r in runs))
    wait_for("its scheduler ended", lambda: site.emu.run(ENTITY, PROJECT, cancelled)["state"] == "finished")
    assert sweep_of(site, cancelled)["state"] == "CANCELED"
    assert len(pushed_runs(site.emu, ENTITY, queue, cancelled)) == 2
    wait_for("scheduler records removed", lambda: not records(site))
    assert agent.terminate() == 0


def test_a_failing_scheduler_cancels_its_sweep(site: Site) -> None:
    queue = job_queue(site, "failing")
    agent = site.agent([queue], config=config_for(queue), env=SWEEP_ENV)
    site.emu.add_fault("pushToRunQueueByName", "graphql_error", message="the queue is read-only", times=50)
    try:
        sweep = launch_sweep(site.emu, site.workdir / "cli", grid_of(2), queue=queue, project=PROJECT, entity=ENTITY)
        wait_for("the sweep CANCELED", lambda: sweep_of(site, sweep)["state"] == "CANCELED")
    finally:
        site.emu.clear_faults()
    item = scheduler_item(site, queue, sweep)
    assert item["state"] == "FAILED", item
    assert "the sweep scheduler failed" in item["error"]["message"]
    assert "the queue is read-only" in item["error"]["message"]
    wait_for("its run failed", lambda: site.emu.run(ENTITY, PROJECT, sweep)["state"] == "failed")
    assert not records(site)
    assert agent.terminate() == 0


UPSERT_SWEEP = """mutation UpsertSweep($config: String, $entityName: String, $projectName: String,
    $launchScheduler: JSONString, $state: String) {
  upsertSweep(input: {config: $config, entityName: $entityName, projectName: $projectName,
      launchScheduler: $launchScheduler, state: $state}) { sweep { name } }
}"""


def create_sweep(site: Site, queue: str, config: dict[str, Any], spec: dict[str, Any]) -> str:
    """A sweep created with the mutation `wandb launch-sweep` sends, for scheduler items the CLI
    itself would refuse to build."""
    import yaml

    scheduler = {"queue": queue, "run_queue_project": "model-registry", "run_spec": json.dumps(spec)}
    data = graphql(site, UPSERT_SWEEP, {"config": yaml.safe_dump(config), "entityName": ENTITY,
                                        "projectName": PROJECT, "launchScheduler": json.dumps(scheduler),
                                        "state": "PENDING"})
    return str(data["upsertSweep"]["sweep"]["name"])


def default_scheduler(runs_queue: str, *args: str) -> dict[str, Any]:
    """The default scheduler's run spec as `wandb launch-sweep` builds it."""
    return {"uri": "placeholder-uri-scheduler", "entity": ENTITY, "project": PROJECT,
            "name": "Scheduler.WANDB_SWEEP_ID", "run_id": "WANDB_SWEEP_ID", "resource": "local-process",
            "docker": {}, "git": {},
            "overrides": {"run_config": {"scheduler": {"num_workers": 1}},
                          "entry_point": ["wandb", "scheduler", "WANDB_SWEEP_ID"],
                          "args": ["--queue", f"'{runs_queue}'", "--project", f"'{PROJECT}'", *args]}}


def test_bad_sweeps_fail_their_scheduler_item_and_the_agent_keeps_serving(site: Site) -> None:
    queue = job_queue(site, "bad")
    elsewhere = job_queue(site, "elsewhere")  # exists in W&B; this agent does not poll it
    agent = site.agent([queue], config=config_for(queue, max_schedulers=4), env=SWEEP_ENV)
    cli = site.workdir / "cli"
    unknown = launch_sweep(site.emu, cli, {**grid_of(2), "method": "hyperband"}, queue=queue, project=PROJECT,
                           entity=ENTITY)
    nothing = create_sweep(site, queue, grid_of(2, image_uri=None), default_scheduler(queue))
    other = create_sweep(site, queue, grid_of(2), default_scheduler(elsewhere, "--image_uri", "busybox:1.36"))
    missing_job = f"{ENTITY}/{PROJECT}/no-such-job:latest"
    missing = create_sweep(site, queue, grid_of(2, image_uri=None, job=missing_job),
                           default_scheduler(queue, "--job", f"'{missing_job}'"))
    messages = {}
    for sweep in (unknown, nothing, other, missing):
        wait_for(f"the scheduler item of {sweep} failed", lambda s=sweep: scheduler_item(site, queue, s)["state"]
                 == "FAILED")
        messages[sweep] = scheduler_item(site, queue, sweep)["error"]["message"]
        assert not pushed_runs(site.emu, ENTITY, queue, sweep) and not pushed_runs(site.emu, ENTITY, elsewhere, sweep)
        assert sweep_of(site, sweep)["state"] in ("PENDING", "CANCELED"), sweep_of(site, sweep)["state"]
    assert "method 'hyperband' is not one of grid, random, bayes" in messages[unknown]
    assert "neither job nor image_uri" in messages[nothing]
    assert f"queue {elsewhere}, which this agent does not serve" in messages[other]
    assert f"the sweep's job cannot be launched: job {missing_job} not found" in messages[missing]
    for message in messages.values():
        assert "\n" not in message and "Traceback" not in message
    # and it keeps serving: an ordinary run and a good sweep launch
    item = site.emu.enqueue(queue, {"entity": ENTITY, "project": PROJECT, "run_id": f"plain-{site.release}",
                                    "docker": {"docker_image": "busybox:1.36"}})
    good = launch_sweep(site.emu, cli, grid_of(2), queue=queue, project=PROJECT, entity=ENTITY)
    wait_for("the good sweep FINISHED", lambda: sweep_of(site, good)["state"] == "FINISHED")
    wait_for("the plain run's Job", lambda: site.jobs(f"wandb.ai/run-id=plain-{site.release}"))
    assert site.emu.item(item)["state"] in ("LEASED", "FINISHED")
    assert agent.terminate() == 0


def test_a_scheduler_job_is_a_workload_and_its_failure_cancels_the_sweep(site: Site) -> None:
    queue = job_queue(site, "custom", seconds=3, outcome="fail")
    agent = site.agent([queue], config=config_for(queue), env=SWEEP_ENV)
    spec = {"uri": "placeholder-uri-scheduler", "job": f"{ENTITY}/{PROJECT}/my-scheduler:latest",
            "entity": ENTITY, "project": PROJECT, "name": "Scheduler.WANDB_SWEEP_ID", "run_id": "WANDB_SWEEP_ID",
            "resource": "local-container", "docker": {"docker_image": "busybox:1.36"}, "git": {},
            "overrides": {"run_config": {"sweep_args": {"sweep_id": "WANDB_SWEEP_ID", "queue": queue,
                                                        "project": PROJECT, "image_uri": "busybox:1.36"}}}}
    sweep = create_sweep(site, queue, {**grid_of(2), "method": "custom"}, spec)
    (job,) = wait_for("the scheduler's Job", lambda: site.jobs(f"wandb.ai/run-id={sweep}"))
    env = {e["name"]: e.get("value") for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["WANDB_RUN_ID"] == sweep
    assert json.loads(env["WANDB_CONFIG"])["sweep_args"]["sweep_id"] == sweep
    wait_for("the sweep CANCELED", lambda: sweep_of(site, sweep)["state"] == "CANCELED")
    item = scheduler_item(site, queue, sweep)
    assert item["state"] == "FAILED" and item["error"]["stage"] == "run", item
    assert not records(site), "a scheduler job keeps no record of its own"
    assert agent.terminate() == 0


def test_max_schedulers_holds(site: Site) -> None:
    queue = job_queue(site, "capped")
    cli = site.workdir / "cli"
    first = launch_sweep(site.emu, cli, grid_of(3), queue=queue, project=PROJECT, entity=ENTITY)
    second = launch_sweep(site.emu, cli, grid_of(3), queue=queue, project=PROJECT, entity=ENTITY)
    # Both schedulers are queued before the agent starts: it pops the second right after starting
    # the first, finds max_schedulers reached and leaves it unacked.
    agent = site.agent([queue], config=config_for(queue, max_schedulers=1), env=SWEEP_ENV)
    most = 0

    def both_finished() -> bool:
        nonlocal most
        most = max(most, int(agent.metric("launch_agent_sweep_schedulers")))
        return all(sweep_of(site, s)["state"] == "FINISHED" for s in (first, second))

    wait_for("both sweeps FINISHED one after the other", both_finished, timeout=240)
    assert most == 1
    claims = sorted(scheduler_item(site, queue, s)["claim_count"] for s in (first, second))
    assert claims[0] == 1 and claims[1] >= 2, "the second scheduler waited, unacked, for the first to end"
    for sweep in (first, second):
        assert_each_run_once(site, queue, sweep)
    assert agent.terminate() == 0


def test_two_replicas_only_the_leader_schedules(site: Site) -> None:
    queue = job_queue(site, "ha", seconds=3)
    env = {**SWEEP_ENV, "LAUNCH_AGENT_LEADER_ELECTION": "true", "LAUNCH_AGENT_LEASE_NAME": f"la-{site.release}"}
    leader = site.agent([queue], config=config_for(queue), env=env)
    wait_for("the first replica leads", lambda: "acquired lease" in leader.text())
    standby = site.agent([queue], config=config_for(queue), env=env)
    wait_for("the second waits", lambda: "waiting for lease" in standby.text())
    sweep = launch_sweep(site.emu, site.workdir / "cli", grid_of(6), queue=queue, project=PROJECT, entity=ENTITY)
    wait_for("two runs pushed", lambda: len(pushed_runs(site.emu, ENTITY, queue, sweep)) >= 2)
    assert "scheduler" not in standby.text()
    assert len(sweep_of(site, sweep)["agents"]) == 2, "only the leader registered sweep workers"
    leader.kill()
    wait_for("the standby took over the scheduler", lambda: "re-adopted the scheduler of sweep" in standby.text())
    wait_for("the sweep FINISHED", lambda: sweep_of(site, sweep)["state"] == "FINISHED", timeout=240)
    assert_each_run_once(site, queue, sweep)
    assert standby.terminate() == 0


def test_without_the_configmap_rights_a_scheduler_item_fails_and_runs_still_launch(
        kube: Any, namespace: Any, emu: EntityAdmin, tmp_path: Any) -> None:
    site = install(kube, namespace, emu, tmp_path, sweep_rbac=False)
    try:
        queue = job_queue(site, "norbac")
        agent = site.agent([queue], config=config_for(queue), env=SWEEP_ENV)
        sweep = launch_sweep(site.emu, tmp_path / "cli", grid_of(2), queue=queue, project=PROJECT, entity=ENTITY)
        wait_for("the scheduler item failed", lambda: scheduler_item(site, queue, sweep)["state"] == "FAILED")
        message = scheduler_item(site, queue, sweep)["error"]["message"]
        assert message.startswith("403: this agent may not create ConfigMaps") and "grant configmaps" in message
        wait_for("told it cannot resume schedulers, and it went on", lambda: "cannot list ConfigMaps" in agent.text())
        site.emu.enqueue(queue, {"entity": ENTITY, "project": PROJECT, "run_id": f"r-{site.release}",
                                 "docker": {"docker_image": "busybox:1.36"}})
        wait_for("an ordinary run's Job", lambda: site.jobs(f"wandb.ai/run-id=r-{site.release}"))
        assert agent.terminate() == 0
    finally:
        for proc in site.procs:
            proc.kill()


def test_a_sweep_over_a_job_artifact_runs_to_finished(site: Site) -> None:
    """`wandb job create image` then `wandb launch-sweep` with `job:` in the sweep config: each run
    pushed carries the job (no image), the agent resolves it and launches the job's image with the
    run's parameters."""
    queue = job_queue(site, "byjob")
    cli = site.workdir / "cli"
    cli.mkdir(parents=True, exist_ok=True)
    official_wandb_cli(cli, site.emu.url, site.emu.api_key, "job", "create", "--entity", ENTITY, "--project",
                       PROJECT, "--name", "trainer", "image", "busybox:1.36")
    job = f"{ENTITY}/{PROJECT}/trainer:latest"
    agent = site.agent([queue], config=config_for(queue), env=SWEEP_ENV)
    config = {k: v for k, v in grid_of(3).items() if k != "image_uri"} | {"job": job}
    sweep = launch_sweep(site.emu, cli, config, queue=queue, project=PROJECT, entity=ENTITY)
    wait_for("the sweep FINISHED", lambda: sweep_of(site, sweep)["state"] == "FINISHED", timeout=240)
    pushed = assert_each_run_once(site, queue, sweep)
    assert parameter_sets(pushed) == sorted(json.dumps({"x": x}) for x in range(3))
    for spec in pushed:
        assert spec["job"] == job and not (spec.get("docker") or {}).get("docker_image"), spec
        (launched,) = site.jobs(f"wandb.ai/run-id={spec['run_id']}")
        container = launched["spec"]["template"]["spec"]["containers"][0]
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert container["image"] == "busybox:1.36"
        assert env["WANDB_SWEEP_ID"] == sweep
        assert json.loads(env["WANDB_CONFIG"]) == spec["overrides"]["run_config"]
    assert agent.terminate() == 0


def test_a_custom_scheduler_from_launch_sweep_runs_as_a_workload_of_its_job(site: Site) -> None:
    """`scheduler.job` in the sweep config (method custom): `wandb launch-sweep` queues the
    scheduler job itself (resource local-container, the CLI default); the agent resolves that job
    and launches it as an ordinary workload whose run id is the sweep's id."""
    queue = job_queue(site, "cjob", seconds=3)
    cli = site.workdir / "cli"
    cli.mkdir(parents=True, exist_ok=True)
    for name in ("trainer", "my-scheduler"):
        official_wandb_cli(cli, site.emu.url, site.emu.api_key, "job", "create", "--entity", ENTITY, "--project",
                           PROJECT, "--name", name, "image", "busybox:1.36")
    agent = site.agent([queue], config=config_for(queue), env=SWEEP_ENV)
    config = {"method": "custom", "job": f"{ENTITY}/{PROJECT}/trainer:latest",
              "parameters": {"x": {"values": [1, 2]}},
              "scheduler": {"job": f"{ENTITY}/{PROJECT}/my-scheduler:latest", "num_workers": 1}}
    sweep = launch_sweep(site.emu, cli, config, queue=queue, project=PROJECT, entity=ENTITY)
    item = scheduler_item(site, queue, sweep)
    assert item["run_spec"]["resource"] == "local-container" and item["run_spec"]["job"].endswith("my-scheduler:latest")
    (job,) = wait_for("the scheduler's Job", lambda: site.jobs(f"wandb.ai/run-id={sweep}"))
    container = job["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert container["image"] == "busybox:1.36"
    assert env["WANDB_RUN_ID"] == sweep
    assert json.loads(env["WANDB_CONFIG"])["sweep_args"]["sweep_id"] == sweep
    wait_for("the scheduler's run reported finished", lambda: scheduler_item(site, queue, sweep)["state"] == "FINISHED")
    assert not records(site), "a scheduler job keeps no record of its own"
    assert not pushed_runs(site.emu, ENTITY, queue, sweep), "the agent itself schedules nothing for a custom scheduler"
    assert agent.terminate() == 0


def test_after_a_restart_recorded_schedulers_count_against_max_schedulers(site: Site) -> None:
    """A scheduler resumed from its record counts against max_schedulers from the first pop on: a
    second sweep queued while the agent was down waits, unacked, until the first sweep ends."""
    queue = job_queue(site, "recap", seconds=3)
    cli = site.workdir / "cli"
    first = site.agent([queue], config=config_for(queue, max_schedulers=1), env=SWEEP_ENV)
    resumed = launch_sweep(site.emu, cli, grid_of(6), queue=queue, project=PROJECT, entity=ENTITY)
    wait_for("two runs pushed", lambda: len(pushed_runs(site.emu, ENTITY, queue, resumed)) >= 2)
    first.kill()
    waiting = launch_sweep(site.emu, cli, grid_of(2), queue=queue, project=PROJECT, entity=ENTITY)
    second = site.agent([queue], config=config_for(queue, max_schedulers=1), env=SWEEP_ENV)
    most = 0

    def both_finished() -> bool:
        nonlocal most
        most = max(most, int(second.metric("launch_agent_sweep_schedulers") or 0))
        return all(sweep_of(site, s)["state"] == "FINISHED" for s in (resumed, waiting))

    wait_for("both sweeps FINISHED", both_finished, timeout=300)
    assert most == 1, "one scheduler at a time"
    assert "re-adopted the scheduler of sweep" in second.text()
    assert scheduler_item(site, queue, waiting)["claim_count"] >= 2, "the second scheduler waited, unacked"
    for sweep in (resumed, waiting):
        assert_each_run_once(site, queue, sweep)
    assert second.terminate() == 0
