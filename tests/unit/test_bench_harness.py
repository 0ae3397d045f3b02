"""The benchmark harness's arithmetic: audit-log parsing, percentiles, sizes from the environment,
the figure documents and the table. No timing is asserted anywhere (figures live in `make bench`)."""

from __future__ import annotations

import json
import math
from pathlib import Path

from benchmarks import audit, config, report, stats
from benchmarks.launches import _counts
from benchmarks.site import Cluster, Site

USER = "system:serviceaccount:bench-agent:ours"


def event(audit_id: str, stage: str, verb: str, resource: str, *, user: str = USER, at: str = "2026-01-01T00:00:01.5Z",
          code: int = 200, name: str = "", labels: dict | None = None, request: dict | None = None) -> dict:
    e = {"auditID": audit_id, "stage": stage, "verb": verb, "user": {"username": user},
         "objectRef": {"resource": resource, "name": name}, "requestReceivedTimestamp": "2026-01-01T00:00:01Z",
         "stageTimestamp": at, "responseStatus": {"code": code}}
    if labels is not None:
        e["responseObject"] = {"metadata": {"name": name, "labels": labels}}
    if request is not None:
        e["requestObject"] = request
    return e


def test_a_watch_counts_once_and_other_users_not_at_all():
    events = [event("w", "ResponseStarted", "watch", "pods"), event("w", "ResponseComplete", "watch", "pods"),
              event("c", "ResponseComplete", "create", "jobs", code=201),
              event("x", "ResponseComplete", "get", "jobs", user="someone-else")]
    got = audit.requests_of(events, USER)
    assert sorted(e["auditID"] for e in got) == ["c", "w"]
    assert audit.verbs(got) == {"create jobs": 1, "watch pods": 1}
    assert audit.requests_of(events, USER, since=audit.timestamp("2026-01-01T00:00:02Z")) == []


def test_create_times_come_from_the_answer_and_only_successful_creates_count():
    events = [event("a", "ResponseComplete", "create", "jobs", code=201, name="j-a", labels={"wandb.ai/run-id": "r1"},
                    at="2026-01-01T00:00:03.25Z"),
              event("b", "ResponseComplete", "create", "jobs", code=409, name="j-a", labels={"wandb.ai/run-id": "r1"}),
              event("c", "ResponseComplete", "create", "jobs", code=201, name="j-c", labels={})]
    assert audit.created(events, USER, "jobs") == {"r1": audit.timestamp("2026-01-01T00:00:03.25Z")}
    assert audit.created_names(events, USER, "jobs") == {"r1": "j-a"}
    assert audit.names(events, USER, "jobs") == {"j-a", "j-c"}


def test_a_workload_ends_when_its_first_pod_ends_or_its_condition_says_so():
    pod_end = event("p", "ResponseComplete", "patch", "pods", user=audit.KWOK, name="job1-abcde",
                    at="2026-01-01T00:00:05Z", request={"status": {"phase": "Failed"}})
    running = event("q", "ResponseComplete", "patch", "pods", user=audit.KWOK, name="job1-abcde",
                    at="2026-01-01T00:00:04Z", request={"status": {"phase": "Running"}})
    condition = event("j", "ResponseComplete", "update", "jobs", user=audit.JOB_CONTROLLER, name="job1",
                      at="2026-01-01T00:00:06Z",
                      request={"status": {"conditions": [{"type": "Failed", "status": "True"}]}})
    other = event("k", "ResponseComplete", "update", "jobs", user=audit.JOB_CONTROLLER, name="job2",
                  at="2026-01-01T00:00:07Z", request={"status": {"conditions": [{"type": "Complete", "status": "True"}]}})
    events = [running, pod_end, condition, other]
    assert audit.workloads_finished(events, ["job1", "job2"]) == {
        "job1": audit.timestamp("2026-01-01T00:00:05Z"), "job2": audit.timestamp("2026-01-01T00:00:07Z")}


def test_percentiles_and_spread():
    assert stats.percentile([1, 2, 3, 4, 5], 50) == 3
    assert stats.percentile([0, 10], 95) == 9.5
    assert math.isnan(stats.percentile([], 50))
    assert stats.spread([3.0, None, 1.0, 2.0]) == {"median": 2.0, "min": 1.0, "max": 3.0, "n": 3}
    assert stats.spread([None]) is None


def test_sizes_from_the_environment():
    got = config.sizes("quick", {"BENCH_BURST_RUNS": "9", "BENCH_AGENTS": "ours,official-nodocker",
                                 "BENCH_LATENCIES_MS": "0,25", "BENCH_OFFICIAL_DOCKER_VARIANT": "yes"})
    assert (got.burst_runs, got.agents, got.latencies_ms, got.official_docker_variant) == (
        9, ("ours", "official-nodocker"), (0.0, 25.0), True)
    assert config.sizes("default", {}) == config.PRESETS["default"]


def test_a_failed_run_is_a_failure_in_the_document_and_the_table():
    fig = report.Figure("total", "s")
    for value in (2.0, 4.0, 3.0):
        fig.add("ours", value)
    fig.add("official", 30.0)
    fig.fail("official", "the official agent exited")
    fig.add("floor", 1.5)
    doc = fig.doc()
    assert doc["ours"]["median"] == 3.0 and doc["ratio"] == 0.1 and doc["ratio_floor"] == 2.0
    assert doc["failures"] == {"official": ["the official agent exited"]}
    sc = report.Scenario("burst", "burst of 3")
    sc.figures["total"] = fig
    table = report.table({"scenarios": {"burst": sc.doc()}})
    assert "| burst of 3 | total (s) | 3.00 (2.00-4.00) | 30.0 +1 failed | 1.50 | 0.10x | 2.00x |" in table
    assert "the official agent exited" in report.notes({"scenarios": {"burst": sc.doc()}})


def test_wandb_requests_per_run_count_everything_sent():
    got = _counts({"popFromRunQueue": 12, "ackRunQueueItem": 10, "LaunchAgent": 3}, {"LaunchAgent": 0.1}, 30.0, 10)
    assert got["wandb_requests_per_run"] == 2.5
    assert got["wandb_breakdown"]["popFromRunQueue"] == 1.2
    assert got["idle_wandb_requests_per_min"] == 6.0


def test_a_run_on_a_kept_cluster_sees_only_its_own_events(tmp_path: Path):
    log = tmp_path / "audit.log"
    earlier = event("old", "ResponseComplete", "update", "jobs", user=audit.JOB_CONTROLLER, name="job1")
    earlier["objectRef"]["namespace"] = "bench-jobs-1"
    log.write_text(json.dumps(earlier) + "\n")
    c = Cluster(tmp_path, tmp_path, tmp_path / "kubeconfig", tmp_path, log, nodes=1, runs=1)
    s = Site(c, "bench-agent-2", "bench-jobs-2", "bench2", audit_offset=audit.size(log))
    late = dict(earlier, auditID="late")  # the earlier run's Job, written after this run started
    mine = event("mine", "ResponseComplete", "update", "jobs", user=audit.JOB_CONTROLLER, name="job1")
    mine["objectRef"]["namespace"] = "bench-jobs-2"
    ours = event("ours", "ResponseComplete", "get", "jobs", user="system:serviceaccount:bench-agent-2:ours")
    other = event("other", "ResponseComplete", "get", "jobs", user="system:serviceaccount:bench-agent-1:ours")
    with log.open("a") as f:
        f.write("".join(json.dumps(e) + "\n" for e in (late, mine, ours, other)) + '{"torn": ')
    assert [e["auditID"] for e in s.audit_events()] == ["mine", "ours"]


def test_the_audit_log_is_read_as_it_grows_and_a_torn_line_waits_for_its_end(tmp_path: Path):
    log = tmp_path / "audit.log"
    first, second = (event(i, "ResponseComplete", "get", "jobs") for i in ("first", "second"))
    log.write_text(json.dumps(first) + "\n" + json.dumps(second)[:20])
    tail = audit.Tail(log)
    assert [e["auditID"] for e in tail.read()] == ["first"]
    with log.open("a") as f:
        f.write(json.dumps(second)[20:] + "\n")
    assert [e["auditID"] for e in tail.read()] == ["second"]
    assert tail.read() == []


def test_a_site_keeps_the_events_it_read(tmp_path: Path):
    """Each call reads only what is new, and still answers with every event of the run."""
    log = tmp_path / "audit.log"
    log.write_text(json.dumps(event("a", "ResponseComplete", "get", "jobs")) + "\n")
    c = Cluster(tmp_path, tmp_path, tmp_path / "kubeconfig", tmp_path, log, nodes=1, runs=1)
    s = Site(c, "bench-agent", "bench-jobs", "bench1")
    assert [e["auditID"] for e in s.audit_events()] == ["a"]
    with log.open("a") as f:
        f.write(json.dumps(event("b", "ResponseComplete", "get", "jobs")) + "\n")
    assert [e["auditID"] for e in s.audit_events()] == ["a", "b"]


def test_the_floor_creates_its_jobs_suspended_and_nothing_else_changes():
    """Its Jobs never run: their pods would queue at the job controller ahead of the agent's."""
    from benchmarks import floor

    job = {"kind": "Job", "spec": {"backoffLimit": 0, "template": {}}}
    assert floor.suspended(job) == {"kind": "Job", "spec": {"backoffLimit": 0, "template": {}, "suspend": True}}
    other = {"kind": "PyTorchJob", "spec": {}}
    assert floor.suspended(other) == {"kind": "PyTorchJob", "spec": {}}


def test_steady_state_nodes_have_room_for_every_run_on_a_kept_cluster():
    from benchmarks import steady

    assert steady.nodes_for("Job", 300, 2) == 6 and steady.nodes_for("Job", 300, 1) == 3
    assert steady.nodes_for("Job", 6, 1) == 1 and steady.nodes_for("PyTorchJob", 500, 2) == 1


def test_a_kept_cluster_serves_runs_of_its_node_count_until_one_asks_for_another_or_breaks(monkeypatch):
    import contextlib

    import pytest

    from benchmarks import site

    log: list[str] = []

    @contextlib.contextmanager
    def fake_cluster(nodes: int):
        log.append(f"up {nodes}")
        yield Cluster(Path("/r"), Path("/s"), Path("/k"), Path("/b"), Path("/a"), nodes)
        log.append(f"down {nodes}")

    @contextlib.contextmanager
    def fake_run_on(c: Cluster):
        yield c

    monkeypatch.setattr(site, "cluster", fake_cluster)
    monkeypatch.setattr(site, "run_on", fake_run_on)
    monkeypatch.setattr(site.time, "sleep", lambda _s: None)
    with site.Sites(fresh=False) as sites:
        for nodes in (2, 2, 6, 2):
            with sites.run(nodes):
                pass
        with pytest.raises(RuntimeError), sites.run(2):
            raise RuntimeError("the API server went away")
        with sites.run(2):
            pass
        sites.stop()
        log.append("alone")
    assert log == ["up 2", "down 2", "up 6", "down 6", "up 2", "down 2", "up 2", "down 2", "alone"]


def test_a_process_that_exited_while_sampled_has_no_children_and_the_sampler_goes_on():
    """It raised FileNotFoundError in the sampler's thread once: the CPU and RSS of the rest of the run were lost."""
    import subprocess

    from benchmarks import procs

    proc = subprocess.Popen(["true"])
    proc.wait()
    assert procs._children(proc.pid) == [] and procs.tree(proc.pid) == [proc.pid]


def test_the_trickle_phases_push_runs_of_their_own():
    """The figures of each phase find their workloads by run id: the phases never share one."""
    from types import SimpleNamespace

    from benchmarks import trickle

    pushed: list[dict] = []
    site = SimpleNamespace(emu=SimpleNamespace(push=lambda entity, queue, spec: pushed.append(spec) or spec))
    first: list[dict] = []
    second: list[dict] = []
    trickle._enqueue(site, "trickle", 0.001, 0.0, first)
    trickle._enqueue(site, "failing", 0.001, 0.0, second)
    assert first and second
    assert not {s["run_id"] for s in first} & {s["run_id"] for s in second}


def test_the_official_agent_gets_the_benchmarks_path_and_ours_its_tuning(tmp_path, monkeypatch):
    """The official agent is started with a PATH of the benchmark's (no docker); it raised
    TypeError once the driver set PATH itself. Ours gets the LAUNCH_AGENT_* tuning of `make bench`,
    never the settings the benchmark fixes for both agents."""
    from benchmarks import agents

    driver = agents._official_driver()
    env = driver.official_env(tmp_path, "http://127.0.0.1:9", "k", PATH="/nowhere", WANDB_RELEASE_NAME="r")
    assert env["PATH"] == "/nowhere" and env["WANDB_RELEASE_NAME"] == "r"
    tuning = agents.tuning_env({"LAUNCH_AGENT_POP_WIDTH": "1", "LAUNCH_AGENT_POLL_INTERVAL": "1", "HOME": "/h"})
    assert tuning == {"LAUNCH_AGENT_POP_WIDTH": "1"}


def test_the_readme_links_the_results_file_that_was_written():
    """The JSON's name carries the time of the run; the README used to link `<date>.json`."""
    from benchmarks import readme

    doc = {"machine": {"cores": 2, "cpu": "c", "memory_gib": 1}, "settings": {"preset": "default"},
           "date": "2026-12-02", "commit": "abc", "load_average_before": [0.1], "load_average_after": [0.2],
           "official_wandb": "0.31.0", "scenarios": {}}
    text = readme.section(doc, [], "2026-12-02-062830.json")
    assert "(benchmarks/results/2026-12-02-062830.json)" in text and "(benchmarks/results/2026-12-02.json)" not in text


def test_the_steady_window_waits_for_every_pod_to_run(monkeypatch):
    """The window measured the end of the launch (the job controller still making pods, their
    events reaching the agent) as if it were the steady state; it now starts once every Job's pod
    runs, then a quiet moment."""
    from benchmarks import steady

    lists: list[int] = []
    slept: list[float] = []

    class FakeSite:
        def list(self, resource: str, selector: str = "") -> list[dict]:
            lists.append(1)
            running = min(len(lists) * 100, 300)
            return [{"status": {"phase": "Running"}}] * running + [{"status": {"phase": "Pending"}}] * (300 - running)

    monkeypatch.setattr(steady.time, "sleep", slept.append)
    steady.settle(FakeSite(), "Job", 300)
    assert len(lists) == 3 and slept == [1.0, 1.0, steady.QUIET]
    slept.clear()
    steady.settle(FakeSite(), "PyTorchJob", 300)
    assert slept == [steady.SETTLE]
