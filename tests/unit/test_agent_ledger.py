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
