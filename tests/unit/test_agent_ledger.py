"""agent.controller.ledger and reports: the bookkeeping written on workloads, and the spec of a
preempted run's next attempt."""

from __future__ import annotations

from agent.controller import ledger
from agent.controller.reports import resume_count, resume_spec


def test_new_workloads_carry_the_finalizer_and_their_spec_without_a_user_key():
    obj = {"metadata": {"name": "w", "finalizers": ["other.example/keep"], "annotations": {"a": "b"}}}
    spec = {"entity": "e", "project": "p", "run_id": "r", "_wandb_api_key": "local-" + "k" * 40,
            "overrides": {"run_config": {"lr": 0.1}}}
    ledger.stamp_new(obj, spec=spec, scheduler=True)
    ledger.stamp_new(obj, spec=spec, scheduler=True)  # twice: still one finalizer
    assert ledger.finalizers(obj) == ["other.example/keep", ledger.FINALIZER]
    assert ledger.annotations(obj)[ledger.SCHEDULER] == "true"
    back = ledger.run_spec_of(obj)
    assert back == {k: v for k, v in spec.items() if k != "_wandb_api_key"}
    assert "k" * 40 not in str(obj)


def test_a_huge_spec_is_not_kept():
    obj: dict = {"metadata": {}}
    ledger.stamp_new(obj, spec={"overrides": {"run_config": {str(i): "x" * 64 + str(i) for i in range(20000)}}},
                     scheduler=False)
    assert ledger.run_spec_of(obj) is None and ledger.SCHEDULER not in ledger.annotations(obj)


def test_resume_spec_is_the_official_agents():
    spec = {"entity": "e", "project": "p", "run_id": "r1", "sweep_id": "s", "_resume_count": 2,
            "resource_args": {"kubernetes": {"spec": {}}}}
    out = resume_spec(spec, "r1")
    assert out["_resume_count"] == 3 and out["run_id"] == "r1" and "sweep_id" not in out
    assert out["resource_args"] == spec["resource_args"]
    assert {"docker", "git", "overrides", "resource"} <= set(out)
    assert resume_count({}) == 0 and resume_count({"_resume_count": "x"}) == 0


def test_times_read_back():
    assert ledger.seconds_since(ledger.now_text()) is not None
    assert 0 <= ledger.seconds_since(f"refused {ledger.now_text()}") < 60
    assert ledger.seconds_since(None) is None and ledger.seconds_since("nonsense") is None


def test_slots_and_the_scheduler_flag_come_from_the_workloads():
    """A restarted agent knows which adopted workloads are sweep schedulers (max_schedulers) and
    which still hold a max_jobs slot, from the objects alone."""
    import logging

    import httpx2

    from agent.backend.operations import Backend
    from agent.backend.transport import GraphQLClient
    from agent.config import AgentSettings
    from agent.controller.agent import Agent
    from agent.kube.client import JOBS, Kube
    from agent.manifest import ANN_ITEM_ID, LABEL_ROLE
    from agent.metrics import Metrics

    s = AgentSettings(entity="e", queues=("q",), api_key="local-" + "x" * 40, max_jobs=3)
    agent = Agent(s, Backend(GraphQLClient("http://127.0.0.1:9", s.api_key), "e"),
                  Kube(httpx2.AsyncClient(base_url="http://127.0.0.1:9")), Metrics(), logging.getLogger("t"))

    def workload(item: str, **ann: str) -> dict:
        obj = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {
            "name": item, "namespace": "ns", "labels": {LABEL_ROLE: "workload"},
            "annotations": {ANN_ITEM_ID: item, **ann}}}
        return obj

    sched = workload("s1")
    ledger.stamp_new(sched, spec={"uri": "placeholder-uri-scheduler"}, scheduler=True)
    objs = [sched, workload("j1"), workload("j2", **{ledger.REPORTED: "finished"})]
    for obj in objs:
        agent.monitor.objects[(JOBS.key, "ns", obj["metadata"]["name"])] = obj
    assert agent.schedulers() == 1
    assert agent.free_slots() == 3 - 1  # j2 is reported: its slot is free; the scheduler has its own
